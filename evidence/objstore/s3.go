package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"golang.org/x/time/rate"
)

// S3 is an object store in an S3 bucket with object locking, through
// minio-go's Core API (the low-level calls that make uploads resumable).
// It is safe for concurrent use.
type S3 struct {
	core     *minio.Core
	bucket   string
	prefix   string // "" or the key prefix without slashes at either end
	partSize int64
	limiter  *rate.Limiter // nil when unlimited
	now      func() time.Time
}

// NewS3 returns a store for cfg. It does not contact the server; call
// CheckBucket (or InitBucket) at startup to find configuration mistakes early.
func NewS3(cfg S3Config) (*S3, error) {
	switch {
	case cfg.Endpoint == "":
		return nil, errors.New("objstore: S3 endpoint is empty")
	case strings.Contains(cfg.Endpoint, "/"):
		return nil, fmt.Errorf("objstore: S3 endpoint %q: want host[:port] (ParseS3URL reads URLs)", cfg.Endpoint)
	case cfg.AccessKey == "" || cfg.SecretKey == "":
		return nil, errors.New("objstore: S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use an AWS credentials file")
	case cfg.PartSize != 0 && (cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize):
		return nil, fmt.Errorf("objstore: S3 part size %d: want %d (5 MiB) to %d (5 GiB)", cfg.PartSize, MinPartSize, MaxPartSize)
	case cfg.RateLimit < 0:
		return nil, fmt.Errorf("objstore: S3 rate limit %d: want bytes per second, 0 for unlimited", cfg.RateLimit)
	case cfg.Timeout < 0 || cfg.MaxRetries < 0:
		return nil, errors.New("objstore: S3 timeout and retries cannot be negative")
	case cfg.CAFile != "" && !cfg.Secure:
		return nil, fmt.Errorf("objstore: S3 CA file %s given for a plain http endpoint", cfg.CAFile)
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("objstore: S3 bucket %q: %w", cfg.Bucket, err)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := validKey(prefix); err != nil {
			return nil, fmt.Errorf("objstore: S3 prefix: %w", err)
		}
	}

	tr, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("objstore: S3 transport: %w", err)
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("objstore: S3 CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("objstore: S3 CA file %s holds no PEM certificate", cfg.CAFile)
		}
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if cfg.Timeout > 0 {
		tr.DialContext = (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = cfg.Timeout
		tr.ResponseHeaderTimeout = cfg.Timeout
	}

	core, err := minio.NewCore(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:     cfg.Secure,
		Transport:  tr,
		Region:     cfg.Region,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: S3 client: %w", err)
	}
	s := &S3{
		core:     core,
		bucket:   cfg.Bucket,
		prefix:   prefix,
		partSize: cfg.PartSize,
		now:      time.Now,
	}
	if s.partSize == 0 {
		s.partSize = DefaultPartSize
	}
	if cfg.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), rateBurst(cfg.RateLimit))
	}
	return s, nil
}

// rateBurst is the token bucket's depth: a quarter second of traffic, at
// least 32 KiB (one net/http copy buffer) and at most 1 MiB, but never more
// than one second's worth so a low limit holds over short windows too.
func rateBurst(limit int64) int {
	b := min(max(limit/4, 32<<10), 1<<20)
	return int(max(min(b, limit), 1))
}

// objectName maps a key to the bucket's object name under the prefix.
func (s *S3) objectName(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

// InitBucket creates the bucket with object locking (which also turns on
// versioning), or, if it exists, checks that locking is enabled: a bucket
// without it would let anyone with write access delete evidence.
func (s *S3) InitBucket(ctx context.Context) error {
	exists, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.fail(ctx, "init bucket", s.bucket, err)
	}
	if !exists {
		err := s.core.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{ObjectLocking: true})
		if err != nil && s3code(err) != "BucketAlreadyOwnedByYou" {
			if s3code(err) == "BucketAlreadyExists" {
				return fmt.Errorf("objstore: init bucket %q: the name is taken by another account", s.bucket)
			}
			return s.fail(ctx, "init bucket", s.bucket, err)
		}
	}
	return s.CheckBucket(ctx)
}

// CheckBucket checks that the bucket exists, that the credentials can reach
// it, and that object locking is enabled on it.
func (s *S3) CheckBucket(ctx context.Context) error {
	exists, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.fail(ctx, "check bucket", s.bucket, err)
	}
	if !exists {
		return fmt.Errorf("objstore: check bucket %q: %w: the bucket does not exist (InitBucket creates it with object locking)", s.bucket, ErrNotFound)
	}
	enabled, _, _, _, err := s.core.GetObjectLockConfig(ctx, s.bucket)
	if err != nil && s3code(err) != "ObjectLockConfigurationNotFoundError" {
		return s.fail(ctx, "check bucket", s.bucket, err)
	}
	if err != nil || enabled != "Enabled" {
		return fmt.Errorf("objstore: bucket %q: %w: evidence stored there could be deleted; use a bucket created with object locking", s.bucket, ErrNoLocking)
	}
	return nil
}

// Upload stores size bytes from r under key. Objects up to one part go in a
// single PUT (without calls to p: there is nothing to resume); larger ones
// are uploaded in PartSize parts, each read through its own
// io.SectionReader (so memory does not grow with the object), hashed
// (unless r gives its digest: PartDigests), then sent with its SHA-256 for
// the server to check. Metadata, retention and legal hold are given when
// the upload is created, so the object is protected from the moment it
// exists.
//
// With resume.UploadID set, parts the server still holds and that match
// resume.Parts (number, size, ETag) are neither read nor sent again; if the
// server no longer knows the upload, a new one is started. A failed or
// cancelled upload is not aborted, so that it can be resumed; servers discard
// abandoned uploads after a while (MinIO: 24 h; AWS: with a lifecycle rule).
//
// opts.SHA256 is required and is checked against the bytes read
// (ErrMismatch, nothing stored) whenever this call hashes any part of an
// upload that reuses none, or a single PUT. A resumed upload
// records it as given; Verify with deep set checks it against what was
// stored. A part the server received with other bytes than were hashed is
// also ErrMismatch: the source is changing under the upload.
//
// When p is also a Gate the upload is always multipart, and it is completed
// only once the Gate is Ready (see Gate).
func (s *S3) Upload(ctx context.Context, key string, r io.ReaderAt, size int64, opts PutOptions, resume Resume, p Progress) (Object, error) {
	opts, err := checkUpload(key, size, opts)
	if err != nil {
		return Object{}, err
	}
	if _, gated := p.(Gate); gated {
		if size == 0 {
			return Object{}, fmt.Errorf("objstore: upload %s: an empty object cannot be held back by a gate", key)
		}
		return s.putMultipart(ctx, key, r, size, opts, resume, p)
	}
	if size <= s.partSize {
		return s.putSingle(ctx, "upload", key, r, size, opts)
	}
	return s.putMultipart(ctx, key, r, size, opts, resume, p)
}

// PartSize is the size of every part of a multipart upload but the last.
func (s *S3) PartSize() int64 { return s.partSize }

// Uploads lists the multipart uploads in progress for key. MinIO lists
// uploads of one object name only (it does not support prefix listing), so
// the caller names each key it may have started uploads for; on AWS the
// name is a prefix, and uploads of other keys that start with it are left
// out here.
func (s *S3) Uploads(ctx context.Context, key string) ([]PendingUpload, error) {
	if err := validKey(key); err != nil {
		return nil, fmt.Errorf("objstore: list uploads: %w", err)
	}
	obj := s.objectName(key)
	var out []PendingUpload
	keyMarker, idMarker := "", ""
	for {
		res, err := s.core.ListMultipartUploads(ctx, s.bucket, obj, keyMarker, idMarker, "", 1000)
		if err != nil {
			return nil, s.fail(ctx, "list uploads", key, err)
		}
		for _, u := range res.Uploads {
			if u.Key == obj {
				out = append(out, PendingUpload{Key: key, UploadID: u.UploadID, Initiated: u.Initiated.UTC()})
			}
		}
		if !res.IsTruncated || (res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			return out, nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// Abort discards a multipart upload and the parts it holds. An upload the
// server no longer knows (aborted, expired or completed) is not an error.
func (s *S3) Abort(ctx context.Context, key, uploadID string) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("objstore: abort: %w", err)
	}
	if uploadID == "" {
		return fmt.Errorf("objstore: abort %s: no upload id", key)
	}
	err := s.core.AbortMultipartUpload(ctx, s.bucket, s.objectName(key), uploadID)
	if err != nil && s3code(err) != "NoSuchUpload" {
		return s.fail(ctx, "abort", key, err)
	}
	return nil
}

// PutSmall stores data in a single PUT: checkpoints and audit seals. The
// digest is computed here; if opts.SHA256 is set it must match.
func (s *S3) PutSmall(ctx context.Context, key string, data []byte, opts PutOptions) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("objstore: put: %w", err)
	}
	if int64(len(data)) > MaxPartSize {
		return fmt.Errorf("objstore: put %s: %d bytes is more than a single PUT takes; use Upload", key, len(data))
	}
	opts, err := checkPut(opts, false)
	if err != nil {
		return fmt.Errorf("objstore: put %s: %w", key, err)
	}
	_, err = s.putSingle(ctx, "put", key, bytes.NewReader(data), int64(len(data)), opts)
	return err
}

func (s *S3) putSingle(ctx context.Context, op, key string, r io.ReaderAt, size int64, opts PutOptions) (Object, error) {
	md5b64, sum, err := digests(ctx, r, 0, size, make([]byte, min(size, hashBufSize)+1))
	if err != nil {
		return Object{}, fmt.Errorf("objstore: %s %s: %w", op, key, err)
	}
	if opts.SHA256 == "" {
		opts.SHA256 = sum
	} else if opts.SHA256 != sum {
		return Object{}, fmt.Errorf("objstore: %s %s: %w: the data's sha256 is %s, the caller declared %s", op, key, ErrMismatch, sum, opts.SHA256)
	}
	info, err := s.core.PutObject(ctx, s.bucket, s.objectName(key), s.body(ctx, r, 0, size), size, md5b64, sum, s.putOptions(opts))
	if err != nil {
		return Object{}, s.fail(ctx, op, key, err)
	}
	return uploaded(key, info.VersionID, size, opts), nil
}

func (s *S3) putMultipart(ctx context.Context, key string, r io.ReaderAt, size int64, opts PutOptions, resume Resume, p Progress) (Object, error) {
	ps := s.partSize
	nparts := int((size + ps - 1) / ps)
	if nparts > maxParts {
		return Object{}, fmt.Errorf("objstore: upload %s: %d bytes in %d-byte parts is %d parts, S3 allows %d: raise the part size", key, size, ps, nparts, maxParts)
	}
	obj := s.objectName(key)

	var (
		uploadID string
		reuse    map[int]Part
	)
	if resume.UploadID != "" {
		var known bool
		var err error
		reuse, known, err = s.reusableParts(ctx, obj, resume)
		if err != nil {
			return Object{}, s.fail(ctx, "upload", key, err)
		}
		if known {
			uploadID = resume.UploadID
		}
	}
	if uploadID == "" {
		id, err := s.core.NewMultipartUpload(ctx, s.bucket, obj, s.putOptions(opts))
		if err != nil {
			return Object{}, s.fail(ctx, "upload", key, err)
		}
		if p != nil {
			if err := p.Started(id); err != nil {
				// The caller could not record the id, so nobody could
				// resume this upload: do not leave it on the server.
				s.abort(ctx, obj, id)
				return Object{}, fmt.Errorf("objstore: upload %s: recording upload id: %w", key, err)
			}
		}
		uploadID = id
	}

	// When this call hashes every part, the bytes can also be checked
	// against the caller's whole-object digest before the object is
	// completed: a spool file that rotted since ingest hashed it is caught
	// here rather than by a later deep verify. A resumed upload does not
	// re-read the parts already stored, so it cannot. Parts whose digest
	// the source gives (PartDigests) are checked by the server against
	// digests of the bytes as they arrived, which proves the same; the
	// whole object is hashed only once some part is not given, catching up
	// on the given parts before it (wholeAt: how far it has got).
	given, _ := r.(PartDigests)
	var (
		whole   hash.Hash
		wholeAt int64
	)
	checkWhole := len(reuse) == 0
	// Hashing a part and sending it are pipelined: while part n is on the
	// wire (and the server hashes it), part n+1 is read and hashed on
	// another goroutine. At most one part is hashed ahead, and no part is
	// held in memory (the send re-reads it), so memory stays bounded by two
	// hash buffers whatever the size.
	type partJob struct {
		n           int
		off, length int64
		reused      *Part
		sum         string
		err         error
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan partJob, 1)
	go func() {
		defer close(jobs)
		buf := make([]byte, hashBufSize)
		// hashHere hashes a part whose digest the source does not give,
		// feeding the whole-object hash too (after catching it up).
		hashHere := func(off, length int64) (string, error) {
			if !checkWhole {
				return partSHA256(dctx, r, off, length, buf)
			}
			if whole == nil {
				whole = sha256.New()
			}
			if err := hashSection(dctx, r, wholeAt, off-wholeAt, buf, whole); err != nil {
				return "", err
			}
			wholeAt = off + length
			return partSHA256(dctx, r, off, length, buf, whole)
		}
		send := func(j partJob) bool {
			select {
			case jobs <- j:
				return j.err == nil
			case <-dctx.Done():
				return false
			}
		}
		for n := 1; n <= nparts; n++ {
			j := partJob{n: n, off: int64(n-1) * ps}
			j.length = min(ps, size-j.off)
			if part, ok := reuse[n]; ok && part.Size == j.length {
				j.reused = &part
			} else if sum, ok, err := partGiven(given, n, j.off, j.length); err != nil || ok {
				j.sum, j.err = sum, err
			} else {
				j.sum, j.err = hashHere(j.off, j.length)
			}
			if !send(j) {
				return
			}
		}
		if whole != nil && wholeAt < size {
			// The given parts after the last one hashed here.
			if err := hashSection(dctx, r, wholeAt, size-wholeAt, buf, whole); err != nil {
				send(partJob{n: nparts + 1, err: err})
			}
		}
	}()
	completed := make([]minio.CompletePart, 0, nparts)
	for j := range jobs {
		n, off, length := j.n, j.off, j.length
		if j.reused != nil {
			completed = append(completed, minio.CompletePart{PartNumber: n, ETag: j.reused.ETag})
			continue
		}
		if j.err != nil {
			if n > nparts {
				return Object{}, fmt.Errorf("objstore: upload %s: hashing the whole object: %w", key, j.err)
			}
			return Object{}, fmt.Errorf("objstore: upload %s: part %d: %w", key, n, j.err)
		}
		sum := j.sum
		// DisableContentSha256 turns off minio-go's streaming (aws-chunked)
		// signature on plain http, so the part's SHA-256 is sent as
		// X-Amz-Content-Sha256 on http and https alike; the server
		// recomputes it over the received bytes and refuses the part on a
		// mismatch (XAmzContentSHA256Mismatch).
		op, err := s.core.PutObjectPart(ctx, s.bucket, obj, uploadID, n, s.body(ctx, r, off, length), length,
			minio.PutObjectPartOptions{Sha256Hex: sum, DisableContentSha256: true})
		if err != nil {
			return Object{}, s.fail(ctx, "upload", fmt.Sprintf("%s part %d", key, n), err)
		}
		part := Part{Number: n, Size: length, ETag: op.ETag, SHA256: sum}
		if p != nil {
			if err := p.PartDone(part); err != nil {
				return Object{}, fmt.Errorf("objstore: upload %s: recording part %d: %w", key, n, err)
			}
		}
		completed = append(completed, minio.CompletePart{PartNumber: n, ETag: op.ETag})
	}
	if len(completed) != nparts && ctx.Err() == nil {
		return Object{}, fmt.Errorf("objstore: upload %s: only %d of %d parts were prepared", key, len(completed), nparts)
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("objstore: upload %s: %w", key, err)
	}
	if whole != nil { // jobs is closed: the hashing goroutine is done with it
		if got := hex.EncodeToString(whole.Sum(nil)); got != opts.SHA256 {
			// Completing would store bytes that are not the clip the
			// ledger describes; abort so the parts do not linger.
			s.abort(ctx, obj, uploadID)
			return Object{}, fmt.Errorf("objstore: upload %s: %w: the data's sha256 is %s, the caller declared %s", key, ErrMismatch, got, opts.SHA256)
		}
	}
	if g, ok := p.(Gate); ok {
		// Every part is on the server; the object waits for the caller.
		if err := g.Ready(ctx); err != nil {
			return Object{}, fmt.Errorf("objstore: upload %s: held back: %w", key, err)
		}
	}
	info, err := s.core.CompleteMultipartUpload(ctx, s.bucket, obj, uploadID, completed, minio.PutObjectOptions{})
	if err != nil {
		return Object{}, s.fail(ctx, "upload", key, err)
	}
	return uploaded(key, info.VersionID, size, opts), nil
}

// partGiven asks the source for part n's digest (PartDigests), checking
// that what it gives is a SHA-256.
func partGiven(given PartDigests, n int, off, length int64) (string, bool, error) {
	if given == nil {
		return "", false, nil
	}
	sum, ok, err := given.PartSHA256(n, off, length)
	if err != nil || !ok {
		return "", false, err
	}
	sum = strings.ToLower(sum)
	if err := validSHA256(sum); err != nil {
		return "", false, fmt.Errorf("the source's digest of the part: %w", err)
	}
	return sum, true, nil
}

// reusableParts lists the parts the server holds for resume.UploadID and
// returns those that match what the caller recorded. known is false when the
// server no longer has the upload (aborted, expired or already completed).
func (s *S3) reusableParts(ctx context.Context, obj string, resume Resume) (reuse map[int]Part, known bool, err error) {
	recorded := make(map[int]Part, len(resume.Parts))
	for _, p := range resume.Parts {
		recorded[p.Number] = p
	}
	reuse = make(map[int]Part)
	marker := 0
	for {
		res, err := s.core.ListObjectParts(ctx, s.bucket, obj, resume.UploadID, marker, 1000)
		if err != nil {
			if s3code(err) == "NoSuchUpload" {
				return nil, false, nil
			}
			return nil, false, err
		}
		for _, sp := range res.ObjectParts {
			p, ok := recorded[sp.PartNumber]
			if ok && p.Size == sp.Size && sameETag(p.ETag, sp.ETag) {
				reuse[sp.PartNumber] = p
			}
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return reuse, true, nil
		}
		marker = res.NextPartNumberMarker
	}
}

func sameETag(a, b string) bool {
	return a != "" && strings.EqualFold(strings.Trim(a, `"`), strings.Trim(b, `"`))
}

// abort removes an upload nobody can resume. It runs even if ctx is done,
// under its own short deadline, and its failure is not reported: the server
// discards abandoned uploads eventually.
func (s *S3) abort(ctx context.Context, obj, uploadID string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.core.AbortMultipartUpload(actx, s.bucket, obj, uploadID)
}

func (s *S3) putOptions(opts PutOptions) minio.PutObjectOptions {
	meta := make(map[string]string, len(opts.Meta)+1)
	for k, v := range opts.Meta {
		meta[k] = v
	}
	meta["sha256"] = opts.SHA256
	po := minio.PutObjectOptions{
		UserMetadata: meta,
		ContentType:  opts.ContentType,
		// See putMultipart: send our own SHA-256 rather than a streaming
		// signature.
		DisableContentSha256: true,
	}
	if opts.Mode != "" {
		po.Mode = minio.RetentionMode(opts.Mode)
		po.RetainUntilDate = opts.RetainUntil
	}
	if opts.LegalHold {
		po.LegalHold = minio.LegalHoldEnabled
	}
	return po
}

func uploaded(key, versionID string, size int64, opts PutOptions) Object {
	return Object{
		Key:         key,
		VersionID:   versionID,
		Size:        size,
		SHA256:      opts.SHA256,
		Meta:        opts.Meta,
		Mode:        opts.Mode,
		RetainUntil: opts.RetainUntil,
		LegalHold:   opts.LegalHold,
	}
}

// body is a request body: a section of the caller's ReaderAt, paced by the
// store's rate limiter. It is a Seeker so that minio-go can rewind it to
// retry a request. It holds the request's context only to stop a rate-limit
// wait when the upload is cancelled; it lives no longer than the request.
type body struct {
	ctx context.Context
	sr  *io.SectionReader
	lim *rate.Limiter
}

func (s *S3) body(ctx context.Context, r io.ReaderAt, off, n int64) io.ReadSeeker {
	return &body{ctx: ctx, sr: io.NewSectionReader(r, off, n), lim: s.limiter}
}

func (b *body) Read(p []byte) (int, error) {
	if b.lim != nil && len(p) > 0 {
		if burst := b.lim.Burst(); len(p) > burst {
			p = p[:burst]
		}
		if err := b.lim.WaitN(b.ctx, len(p)); err != nil {
			if b.ctx.Err() == nil {
				// The limiter refuses a wait that would outlast the
				// context's deadline, with an error that is not the
				// context's. Wait out the deadline instead, so the
				// upload fails as any other timed-out call does.
				<-b.ctx.Done()
				return 0, b.ctx.Err()
			}
			return 0, err
		}
	}
	return b.sr.Read(p)
}

func (b *body) Seek(offset int64, whence int) (int64, error) { return b.sr.Seek(offset, whence) }

// Stat returns the current version's size, metadata, retention and legal
// hold, or ErrNotFound.
func (s *S3) Stat(ctx context.Context, key string) (Object, error) {
	if err := validKey(key); err != nil {
		return Object{}, fmt.Errorf("objstore: stat: %w", err)
	}
	oi, err := s.core.StatObject(ctx, s.bucket, s.objectName(key), minio.StatObjectOptions{})
	if err != nil {
		return Object{}, s.fail(ctx, "stat", key, err)
	}
	return toObject(key, oi), nil
}

// toObject reads Vigil's metadata and the object-lock headers of a HEAD.
func toObject(key string, oi minio.ObjectInfo) Object {
	o := Object{
		Key:          key,
		VersionID:    oi.VersionID,
		Size:         oi.Size,
		LastModified: oi.LastModified.UTC(),
		Meta:         make(map[string]string, len(oi.UserMetadata)),
	}
	for k, v := range oi.UserMetadata {
		if k = strings.ToLower(k); k == "sha256" {
			o.SHA256 = v
		} else {
			o.Meta[k] = v
		}
	}
	o.Mode = Mode(strings.ToUpper(oi.Metadata.Get("X-Amz-Object-Lock-Mode")))
	if d := oi.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"); d != "" {
		if t, err := time.Parse(time.RFC3339, d); err == nil {
			o.RetainUntil = t.UTC()
		}
	}
	o.LegalHold = strings.EqualFold(oi.Metadata.Get("X-Amz-Object-Lock-Legal-Hold"), "ON")
	return o
}

// Verify checks that key holds an object of size bytes whose recorded digest
// is sha256hex. Without deep, that is a HEAD: the content itself was checked
// part by part by the server during Upload. With deep, the object is read
// back and hashed, which finds an object replaced since (a new version
// written by someone else). A difference is ErrMismatch.
func (s *S3) Verify(ctx context.Context, key string, size int64, sha256hex string, deep bool) error {
	if err := validSHA256(strings.ToLower(sha256hex)); err != nil {
		return fmt.Errorf("objstore: verify %s: expected digest: %w", key, err)
	}
	o, err := s.Stat(ctx, key)
	if errors.Is(err, ErrNotFound) {
		// A HEAD answers 404 without a body, so AWS's "no such key" may
		// really be a missing bucket: that is misconfiguration, not
		// missing evidence, and must not raise a mismatch alarm.
		exists, berr := s.core.BucketExists(ctx, s.bucket)
		if berr != nil {
			return s.fail(ctx, "verify", key, berr)
		}
		if !exists {
			return fmt.Errorf("objstore: verify %s: bucket %q does not exist", key, s.bucket)
		}
		return fmt.Errorf("objstore: verify %s: %w: the object is missing (%w)", key, ErrMismatch, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if err := verifyStat(o, size, sha256hex); err != nil {
		return err
	}
	if !deep {
		return nil
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, s.objectName(key), minio.GetObjectOptions{VersionID: o.VersionID})
	if err != nil {
		return s.fail(ctx, "verify", key, err)
	}
	defer rc.Close()
	err = verifyContent(ctx, key, rc, size, sha256hex)
	if err != nil && !errors.Is(err, ErrMismatch) && transient(ctx, err) {
		// The connection broke while reading back: not a mismatch.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Open returns the current version's content. The caller closes it.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := validKey(key); err != nil {
		return nil, fmt.Errorf("objstore: open: %w", err)
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, s.objectName(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.fail(ctx, "open", key, err)
	}
	return rc, nil
}

// ExtendRetention makes the current version's retention at least mode until
// the given date. It never shortens or weakens: the date kept is the later of
// the current and the requested, the mode the stronger; when the current
// retention already covers the request nothing is written. Turning a live
// GOVERNANCE retention into COMPLIANCE is a change of mode that S3 allows
// only with the governance bypass, which is sent for that case alone (the
// credentials need s3:BypassGovernanceRetention); the result is stronger
// protection, never weaker.
func (s *S3) ExtendRetention(ctx context.Context, key string, mode Mode, until time.Time) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("objstore: extend retention: %w", err)
	}
	if mode != Governance && mode != Compliance || until.IsZero() {
		return fmt.Errorf("objstore: extend retention %s: want mode %s or %s and a date", key, Governance, Compliance)
	}
	o, err := s.Stat(ctx, key)
	if err != nil {
		return err
	}
	newMode, newUntil, upgrade, change := retentionChange(o.Mode, o.RetainUntil, mode, until, s.now())
	if !change {
		return nil
	}
	rm := minio.RetentionMode(newMode)
	err = s.core.PutObjectRetention(ctx, s.bucket, s.objectName(key), minio.PutObjectRetentionOptions{
		Mode:             &rm,
		RetainUntilDate:  &newUntil,
		VersionID:        o.VersionID,
		GovernanceBypass: upgrade,
	})
	if err != nil {
		return s.fail(ctx, "extend retention", key, err)
	}
	return nil
}

// SetLegalHold turns the current version's legal hold on or off.
func (s *S3) SetLegalHold(ctx context.Context, key string, on bool) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("objstore: legal hold: %w", err)
	}
	o, err := s.Stat(ctx, key)
	if err != nil {
		return err
	}
	status := minio.LegalHoldDisabled
	if on {
		status = minio.LegalHoldEnabled
	}
	err = s.core.PutObjectLegalHold(ctx, s.bucket, s.objectName(key), minio.PutObjectLegalHoldOptions{
		VersionID: o.VersionID,
		Status:    &status,
	})
	if err != nil {
		return s.fail(ctx, "legal hold", key, err)
	}
	return nil
}

// Delete permanently deletes the current version of key (a plain DELETE on
// a versioned bucket would only add a delete marker and keep the data).
// Retention or a legal hold refusing it is ErrLocked. bypassGovernance sends
// the governance bypass, which the credentials must be allowed to use.
func (s *S3) Delete(ctx context.Context, key string, bypassGovernance bool) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("objstore: delete: %w", err)
	}
	o, err := s.Stat(ctx, key)
	if err != nil {
		return err
	}
	err = s.core.RemoveObject(ctx, s.bucket, s.objectName(key), minio.RemoveObjectOptions{
		VersionID:        o.VersionID,
		GovernanceBypass: bypassGovernance,
	})
	if err == nil {
		return nil
	}
	// MinIO refuses with 400 InvalidRequest ("Object is WORM protected"),
	// AWS with 403 AccessDenied: match the codes, and only call it a lock
	// when the version was protected, so a plain permission problem is not
	// mistaken for retention.
	switch s3code(err) {
	case "InvalidRequest", "AccessDenied", "ObjectLocked":
		if why := lockReason(o, false, s.now()); why != "" {
			return fmt.Errorf("objstore: delete %s: %w: %s: %w", key, ErrLocked, why, err)
		}
	}
	return s.fail(ctx, "delete", key, err)
}

// List returns the objects whose keys start with prefix (not only at a '/'),
// in key order, with Key, Size and LastModified filled in. Deep verification
// uses it to find objects the ledger does not know.
func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := validPrefix(prefix); err != nil {
		return nil, fmt.Errorf("objstore: list: %w", err)
	}
	full := prefix
	if s.prefix != "" {
		full = s.prefix + "/" + prefix
	}
	var out []Object
	for oi := range s.core.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: full, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.fail(ctx, "list", prefix, oi.Err)
		}
		key := oi.Key
		if s.prefix != "" {
			key = strings.TrimPrefix(key, s.prefix+"/")
		}
		out = append(out, Object{Key: key, Size: oi.Size, LastModified: oi.LastModified.UTC()})
	}
	return out, nil
}

// Presign returns a URL that GETs key without credentials until expiry
// (1 s to 7 days). Anyone holding the URL can read the footage: hand it out
// only after the access decision and audit record.
func (s *S3) Presign(ctx context.Context, key string, expiry time.Duration) (string, error) {
	if err := validKey(key); err != nil {
		return "", fmt.Errorf("objstore: presign: %w", err)
	}
	u, err := s.core.PresignedGetObject(ctx, s.bucket, s.objectName(key), expiry, url.Values{})
	if err != nil {
		return "", s.fail(ctx, "presign", key, err)
	}
	return u.String(), nil
}

// s3code is the S3 error code of err, or "".
func s3code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// fail wraps an error from minio-go with the operation and key, and with
// ErrNotFound or ErrUnavailable when it is one of those.
func (s *S3) fail(ctx context.Context, op, key string, err error) error {
	switch code := s3code(err); {
	case code == "NoSuchKey" || code == "NoSuchVersion":
		return fmt.Errorf("objstore: %s %s: %w: %w", op, key, ErrNotFound, err)
	case code == "XAmzContentSHA256Mismatch" || code == "BadDigest":
		// The server's digest of what it received is not ours of what we
		// read: the source changed between the two reads (or the link
		// damaged the bytes). Retrying blindly could store a changed
		// file, so the caller should re-check its copy first.
		return fmt.Errorf("objstore: %s %s: %w: the bytes sent differ from the bytes hashed: %w", op, key, ErrMismatch, err)
	case code == "NoSuchBucket":
		return fmt.Errorf("objstore: %s %s: bucket %q does not exist: %w", op, key, s.bucket, err)
	case transient(ctx, err):
		return fmt.Errorf("objstore: %s %s: %w: %w", op, key, ErrUnavailable, err)
	}
	return fmt.Errorf("objstore: %s %s: %w", op, key, err)
}

// transient reports whether err is a failure of the store or the network
// that may clear by itself, as opposed to a refusal that will repeat. The
// caller's own cancellation is neither: it is returned as is.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "SlowDown", "SlowDownRead", "SlowDownWrite", "ServiceUnavailable", "InternalError",
			"RequestTimeout", "XMinioServerNotInitialized", "XMinioStorageFull":
			return true
		}
		return er.StatusCode >= 500 || er.StatusCode == 429 || er.StatusCode == 408
	}
	// A certificate the client does not trust, or plain http answered to
	// https, is configuration: it will fail the same way every time.
	var (
		certErr *tls.CertificateVerificationError
		authErr x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
	)
	if errors.As(err, &certErr) || errors.As(err, &authErr) || errors.As(err, &hostErr) || errors.As(err, &invErr) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return false
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, context.DeadlineExceeded)
}
