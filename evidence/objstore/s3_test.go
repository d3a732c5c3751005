package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence/objstore/s3test"
)

// newS3 returns a store on srv's bucket, created with object locking.
func newS3(t testing.TB, srv *s3test.Server, bucket string, mut func(*S3Config)) *S3 {
	t.Helper()
	cfg, err := ParseS3URL(srv.URL(bucket))
	require.NoError(t, err)
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	cfg.Region = s3test.Region
	cfg.PartSize = MinPartSize
	if mut != nil {
		mut(&cfg)
	}
	s, err := NewS3(cfg)
	require.NoError(t, err)
	require.NoError(t, s.InitBucket(context.Background()))
	return s
}

// readBack fetches an object with the AWS SDK and returns its SHA-256.
func readBack(t testing.TB, c *s3.Client, bucket, key string) (string, int64) {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	require.NoError(t, err)
	defer out.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, out.Body)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil)), n
}

func versions(t testing.TB, c *s3.Client, bucket, key string) (objects, markers int) {
	t.Helper()
	out, err := c.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: &key})
	require.NoError(t, err)
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == key {
			objects++
		}
	}
	for _, m := range out.DeleteMarkers {
		if aws.ToString(m.Key) == key {
			markers++
		}
	}
	return objects, markers
}

func TestS3InitBucket(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	aws3 := srv.AWSClient()

	s := newS3(t, srv, "locked", nil)
	require.NoError(t, s.CheckBucket(ctx))
	require.NoError(t, s.InitBucket(ctx), "idempotent")
	lock, err := aws3.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String("locked")})
	require.NoError(t, err)
	assert.Equal(t, types.ObjectLockEnabledEnabled, lock.ObjectLockConfiguration.ObjectLockEnabled)
	ver, err := aws3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String("locked")})
	require.NoError(t, err)
	assert.Equal(t, types.BucketVersioningStatusEnabled, ver.Status)

	// A bucket someone made without locking is refused, by name.
	_, err = aws3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("plain")})
	require.NoError(t, err)
	cfg, err := ParseS3URL(srv.URL("plain"))
	require.NoError(t, err)
	cfg.AccessKey, cfg.SecretKey, cfg.Region = srv.AccessKey, srv.SecretKey, s3test.Region
	plain, err := NewS3(cfg)
	require.NoError(t, err)
	for name, check := range map[string]func(context.Context) error{"InitBucket": plain.InitBucket, "CheckBucket": plain.CheckBucket} {
		err := check(ctx)
		require.ErrorIs(t, err, ErrNoLocking, name)
		assert.Contains(t, err.Error(), `"plain"`, name)
	}

	cfg.Bucket = "absent"
	absent, err := NewS3(cfg)
	require.NoError(t, err)
	err = absent.CheckBucket(ctx)
	require.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "InitBucket")
	err = absent.Verify(ctx, "clips/x", 1, sha(nil), false)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrMismatch, "a missing bucket is not missing evidence")
	assert.Contains(t, err.Error(), "does not exist")

	cfg.Bucket, cfg.SecretKey = "locked", "wrong-secret-value"
	wrong, err := NewS3(cfg)
	require.NoError(t, err)
	err = wrong.CheckBucket(ctx)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "wrong-secret-value")
	assert.NotContains(t, err.Error(), srv.SecretKey)
}

func TestS3Upload(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	aws3 := srv.AWSClient()
	const bucket = "evidence"
	s := newS3(t, srv, bucket, func(c *S3Config) { c.Prefix = "site-1" })

	// 3 × 5 MiB + a 1 MiB tail: four parts.
	const size = 3*MinPartSize + 1<<20
	src := newPattern(size, 1)
	sum := src.sum(t)
	until := time.Now().Add(time.Hour + 300*time.Millisecond)
	key := "clips/site-1/cam-1/2026/03/01/clip-1"
	rec := &recorder{}
	obj, err := s.Upload(ctx, key, src, size, PutOptions{
		SHA256: sum, Meta: map[string]string{"camera": "cam-1", "clip": "clip-1"},
		ContentType: "video/mp4", Mode: Compliance, RetainUntil: until,
	}, Resume{}, rec)
	require.NoError(t, err)
	assert.NotEmpty(t, obj.VersionID)
	assert.Equal(t, []int{1, 2, 3, 4}, rec.partNumbers())
	for _, p := range rec.resume().Parts {
		want := sha256.Sum256(mustRead(t, src, int64(p.Number-1)*MinPartSize, p.Size))
		assert.Equal(t, hex.EncodeToString(want[:]), p.SHA256, "part %d digest", p.Number)
	}
	full := "site-1/" + key

	t.Run("read back with the AWS SDK", func(t *testing.T) {
		head, err := aws3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: &full})
		require.NoError(t, err)
		assert.Equal(t, sum, head.Metadata["sha256"])
		assert.Equal(t, "cam-1", head.Metadata["camera"])
		assert.Equal(t, "video/mp4", aws.ToString(head.ContentType))
		assert.Equal(t, int64(size), aws.ToInt64(head.ContentLength))
		assert.True(t, strings.HasSuffix(strings.Trim(aws.ToString(head.ETag), `"`), "-4"), "multipart, 4 parts: %s", aws.ToString(head.ETag))

		ret, err := aws3.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(bucket), Key: &full})
		require.NoError(t, err)
		assert.Equal(t, types.ObjectLockRetentionModeCompliance, ret.Retention.Mode)
		assert.Equal(t, ceilSecond(until), aws.ToTime(ret.Retention.RetainUntilDate).UTC())
		hold, err := aws3.GetObjectLegalHold(ctx, &s3.GetObjectLegalHoldInput{Bucket: aws.String(bucket), Key: &full})
		if err == nil { // MinIO answers NoSuchObjectLockConfiguration when no hold was ever set
			assert.NotEqual(t, types.ObjectLockLegalHoldStatusOn, hold.LegalHold.Status)
		}

		got, n := readBack(t, aws3, bucket, full)
		assert.Equal(t, sum, got)
		assert.Equal(t, int64(size), n)
	})

	t.Run("stat", func(t *testing.T) {
		o, err := s.Stat(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, obj.VersionID, o.VersionID)
		assert.Equal(t, int64(size), o.Size)
		assert.Equal(t, sum, o.SHA256)
		assert.Equal(t, map[string]string{"camera": "cam-1", "clip": "clip-1"}, o.Meta)
		assert.Equal(t, Compliance, o.Mode)
		assert.Equal(t, ceilSecond(until), o.RetainUntil)
		assert.False(t, o.LegalHold)
		assert.WithinDuration(t, time.Now(), o.LastModified, time.Minute)
		_, err = s.Stat(ctx, "clips/none")
		assert.ErrorIs(t, err, ErrNotFound)
	})

	t.Run("verify", func(t *testing.T) {
		require.NoError(t, s.Verify(ctx, key, size, sum, false))
		require.NoError(t, s.Verify(ctx, key, size, sum, true))
		err := s.Verify(ctx, key, size+1, sum, false)
		require.ErrorIs(t, err, ErrMismatch)
		assert.Contains(t, err.Error(), "size")
		err = s.Verify(ctx, key, size, sha([]byte("x")), false)
		require.ErrorIs(t, err, ErrMismatch)
		assert.Contains(t, err.Error(), "recorded sha256")
		err = s.Verify(ctx, "clips/none", size, sum, false)
		assert.ErrorIs(t, err, ErrMismatch)
		assert.ErrorIs(t, err, ErrNotFound)
	})

	t.Run("open", func(t *testing.T) {
		rc, err := s.Open(ctx, key)
		require.NoError(t, err)
		h := sha256.New()
		_, err = io.Copy(h, rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		assert.Equal(t, sum, hex.EncodeToString(h.Sum(nil)))
		_, err = s.Open(ctx, "clips/none")
		assert.ErrorIs(t, err, ErrNotFound)
	})

	t.Run("presign", func(t *testing.T) {
		u, err := s.Presign(ctx, key, time.Minute)
		require.NoError(t, err)
		assert.NotContains(t, u, srv.SecretKey)
		resp, err := http.Get(u)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		h := sha256.New()
		_, err = io.Copy(h, resp.Body)
		require.NoError(t, err)
		assert.Equal(t, sum, hex.EncodeToString(h.Sum(nil)))
	})

	t.Run("delete refused while retained", func(t *testing.T) {
		for _, bypass := range []bool{false, true} {
			err := s.Delete(ctx, key, bypass)
			require.ErrorIs(t, err, ErrLocked, "bypass=%v", bypass)
		}
		_, err := aws3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: &full, VersionId: &obj.VersionID})
		require.Error(t, err, "the AWS SDK cannot delete the locked version either")
		n, _ := versions(t, aws3, bucket, full)
		assert.Equal(t, 1, n)
		require.NoError(t, s.Verify(ctx, key, size, sum, true))
	})

	t.Run("extend retention", func(t *testing.T) {
		later := ceilSecond(until.Add(24 * time.Hour))
		require.NoError(t, s.ExtendRetention(ctx, key, Compliance, later))
		require.NoError(t, s.ExtendRetention(ctx, key, Compliance, until), "shorter: no-op, no error")
		require.NoError(t, s.ExtendRetention(ctx, key, Governance, later), "weaker: no-op")
		ret, err := aws3.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(bucket), Key: &full})
		require.NoError(t, err)
		assert.Equal(t, types.ObjectLockRetentionModeCompliance, ret.Retention.Mode)
		assert.Equal(t, later, aws.ToTime(ret.Retention.RetainUntilDate).UTC())

		// GOVERNANCE can be raised to COMPLIANCE (evidential footage).
		gkey := "clips/gov"
		require.NoError(t, s.PutSmall(ctx, gkey, []byte("gov"), PutOptions{Mode: Governance, RetainUntil: until}))
		require.NoError(t, s.ExtendRetention(ctx, gkey, Compliance, until))
		o, err := s.Stat(ctx, gkey)
		require.NoError(t, err)
		assert.Equal(t, Compliance, o.Mode)
		assert.Equal(t, ceilSecond(until), o.RetainUntil)
		assert.ErrorIs(t, s.Delete(ctx, gkey, true), ErrLocked)
	})

	t.Run("governance and legal hold", func(t *testing.T) {
		gkey := "clips/governance"
		require.NoError(t, s.PutSmall(ctx, gkey, []byte("g"), PutOptions{Mode: Governance, RetainUntil: until}))
		assert.ErrorIs(t, s.Delete(ctx, gkey, false), ErrLocked)
		require.NoError(t, s.Delete(ctx, gkey, true), "the root user may bypass governance")
		n, markers := versions(t, aws3, bucket, "site-1/"+gkey)
		assert.Equal(t, 0, n, "the version itself is gone")
		assert.Equal(t, 0, markers, "not hidden behind a delete marker")

		hkey := "clips/held"
		require.NoError(t, s.PutSmall(ctx, hkey, []byte("h"), PutOptions{LegalHold: true}))
		hold, err := aws3.GetObjectLegalHold(ctx, &s3.GetObjectLegalHoldInput{Bucket: aws.String(bucket), Key: aws.String("site-1/" + hkey)})
		require.NoError(t, err)
		assert.Equal(t, types.ObjectLockLegalHoldStatusOn, hold.LegalHold.Status)
		assert.ErrorIs(t, s.Delete(ctx, hkey, true), ErrLocked)

		require.NoError(t, s.SetLegalHold(ctx, hkey, false))
		hold, err = aws3.GetObjectLegalHold(ctx, &s3.GetObjectLegalHoldInput{Bucket: aws.String(bucket), Key: aws.String("site-1/" + hkey)})
		require.NoError(t, err)
		assert.Equal(t, types.ObjectLockLegalHoldStatusOff, hold.LegalHold.Status)
		require.NoError(t, s.SetLegalHold(ctx, hkey, true))
		o, err := s.Stat(ctx, hkey)
		require.NoError(t, err)
		assert.True(t, o.LegalHold)
		require.NoError(t, s.SetLegalHold(ctx, hkey, false))
		require.NoError(t, s.Delete(ctx, hkey, false))
		assert.ErrorIs(t, s.Delete(ctx, hkey, false), ErrNotFound)
		assert.ErrorIs(t, s.SetLegalHold(ctx, hkey, true), ErrNotFound)
	})

	t.Run("deep verify finds an overwrite", func(t *testing.T) {
		small := []byte("checkpoint body v1")
		ckey := "checkpoints/example/00000000000000000001"
		require.NoError(t, s.PutSmall(ctx, ckey, small, PutOptions{}))
		require.NoError(t, s.Verify(ctx, ckey, int64(len(small)), sha(small), true))
		// A new version with other bytes of the same length and a copied
		// digest: the HEAD agrees, only the content does not.
		forged := []byte("checkpoint body v2")
		_, err := aws3.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String("site-1/" + ckey),
			Body: bytes.NewReader(forged), Metadata: map[string]string{"sha256": sha(small)},
		})
		require.NoError(t, err)
		require.NoError(t, s.Verify(ctx, ckey, int64(len(small)), sha(small), false))
		err = s.Verify(ctx, ckey, int64(len(small)), sha(small), true)
		require.ErrorIs(t, err, ErrMismatch)
		assert.Contains(t, err.Error(), "content sha256")
	})

	t.Run("single put checks the digest", func(t *testing.T) {
		data := []byte("small clip")
		_, err := s.Upload(ctx, "clips/small", bytes.NewReader(data), int64(len(data)), PutOptions{SHA256: sha([]byte("declared"))}, Resume{}, nil)
		assert.ErrorIs(t, err, ErrMismatch)
		_, err = s.Stat(ctx, "clips/small")
		assert.ErrorIs(t, err, ErrNotFound)
		o, err := s.Upload(ctx, "clips/small", bytes.NewReader(data), int64(len(data)), PutOptions{SHA256: sha(data)}, Resume{}, nil)
		require.NoError(t, err)
		assert.NotEmpty(t, o.VersionID)
		got, _ := readBack(t, aws3, bucket, "site-1/clips/small")
		assert.Equal(t, sha(data), got)
	})

	t.Run("list", func(t *testing.T) {
		objs, err := s.List(ctx, "clips/")
		require.NoError(t, err)
		var keys []string
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		assert.Contains(t, keys, key)
		assert.Contains(t, keys, "clips/small")
		assert.NotContains(t, keys, "checkpoints/example/00000000000000000001")
		for _, k := range keys {
			assert.False(t, strings.HasPrefix(k, "site-1/"), "the store's prefix is not part of a key")
		}
	})

	t.Run("bad keys", func(t *testing.T) {
		for _, k := range []string{"", "/a", "a/../b", "a//b", "caf\u00e9"} {
			_, err := s.Stat(ctx, k)
			assert.Error(t, err, k)
			assert.NotErrorIs(t, err, ErrNotFound, k)
			assert.Error(t, s.PutSmall(ctx, k, nil, PutOptions{}), k)
		}
	})
}

func mustRead(t testing.TB, r io.ReaderAt, off, n int64) []byte {
	b := make([]byte, n)
	_, err := r.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return b
}

func TestS3Resume(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	aws3 := srv.AWSClient()
	s := newS3(t, srv, "evidence", nil)
	const size = 3*MinPartSize + 1<<20
	src := newPattern(size, 2)
	sum := src.sum(t)
	opts := PutOptions{SHA256: sum, Mode: Governance, RetainUntil: time.Now().Add(time.Hour)}

	t.Run("after cancel, completed parts are not sent again", func(t *testing.T) {
		cnt := newCounter(src, MinPartSize)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rec := &recorder{}
		rec.onPart = func(p Part) error {
			if p.Number == 2 {
				cancel()
			}
			return nil
		}
		_, err := s.Upload(cctx, "clips/resume", cnt, size, opts, Resume{}, rec)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, []int{1, 2}, rec.partNumbers())
		// Hashing runs one part ahead of sending: part 3 may have been
		// read for its digest, but never sent (that would read it twice).
		assert.LessOrEqual(t, cnt.read(3), int64(MinPartSize), "part 3 was at most hashed, never sent")
		_, err = s.Stat(ctx, "clips/resume")
		assert.ErrorIs(t, err, ErrNotFound, "no object until the upload completes")

		cnt.reset()
		rec2 := &recorder{}
		obj, err := s.Upload(ctx, "clips/resume", cnt, size, opts, rec.resume(), rec2)
		require.NoError(t, err)
		assert.Zero(t, rec2.started, "the recorded upload was continued, not restarted")
		assert.Equal(t, []int{3, 4}, rec2.partNumbers())
		assert.Zero(t, cnt.read(1), "part 1 was not read again")
		assert.Zero(t, cnt.read(2), "part 2 was not read again")
		assert.NotZero(t, cnt.read(3))
		got, n := readBack(t, aws3, "evidence", "clips/resume")
		assert.Equal(t, sum, got)
		assert.Equal(t, int64(size), n)
		assert.Equal(t, sum, obj.SHA256)
	})

	t.Run("a part recorded differently is sent again", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rec := &recorder{}
		rec.onPart = func(p Part) error {
			if p.Number == 2 {
				cancel()
			}
			return nil
		}
		_, err := s.Upload(cctx, "clips/resume-etag", src, size, opts, Resume{}, rec)
		require.ErrorIs(t, err, context.Canceled)
		r := rec.resume()
		r.Parts[0].ETag = "0123456789abcdef0123456789abcdef"
		cnt := newCounter(src, MinPartSize)
		rec2 := &recorder{}
		_, err = s.Upload(ctx, "clips/resume-etag", cnt, size, opts, r, rec2)
		require.NoError(t, err)
		assert.Equal(t, []int{1, 3, 4}, rec2.partNumbers())
		assert.Zero(t, cnt.read(2))
		got, _ := readBack(t, aws3, "evidence", "clips/resume-etag")
		assert.Equal(t, sum, got)
	})

	t.Run("unknown upload id starts over", func(t *testing.T) {
		cnt := newCounter(src, MinPartSize)
		rec := &recorder{}
		bogus := Resume{UploadID: "bm90LWFuLXVwbG9hZA", Parts: []Part{{Number: 1, Size: MinPartSize, ETag: "abc"}}}
		_, err := s.Upload(ctx, "clips/unknown", cnt, size, opts, bogus, rec)
		require.NoError(t, err)
		assert.Equal(t, 1, rec.started)
		assert.NotEqual(t, bogus.UploadID, rec.uploadID)
		assert.Equal(t, []int{1, 2, 3, 4}, rec.partNumbers())
		got, _ := readBack(t, aws3, "evidence", "clips/unknown")
		assert.Equal(t, sum, got)
	})

	t.Run("aborted upload starts over", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rec := &recorder{}
		rec.onPart = func(p Part) error { cancel(); return nil }
		_, err := s.Upload(cctx, "clips/aborted", src, size, opts, Resume{}, rec)
		require.ErrorIs(t, err, context.Canceled)
		r := rec.resume()
		_, err = aws3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String("evidence"), Key: aws.String("clips/aborted"), UploadId: &r.UploadID,
		})
		require.NoError(t, err)

		rec2 := &recorder{}
		_, err = s.Upload(ctx, "clips/aborted", src, size, opts, r, rec2)
		require.NoError(t, err)
		assert.Equal(t, 1, rec2.started)
		assert.Equal(t, []int{1, 2, 3, 4}, rec2.partNumbers())
		got, _ := readBack(t, aws3, "evidence", "clips/aborted")
		assert.Equal(t, sum, got)
	})

	t.Run("progress error stops the upload", func(t *testing.T) {
		rec := &recorder{}
		rec.onPart = func(p Part) error { return errors.New("database is locked") }
		_, err := s.Upload(ctx, "clips/progress", src, size, opts, Resume{}, rec)
		require.ErrorContains(t, err, "database is locked")
		assert.Equal(t, []int{1}, rec.partNumbers())
	})
}

// corrupter serves r's bytes but flips one bit in every read once more than
// after bytes have been read in total: the upload hashes a part, then sends
// other bytes.
type corrupter struct {
	r     io.ReaderAt
	after int64
	mu    sync.Mutex
	total int64
}

func (c *corrupter) ReadAt(b []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(b, off)
	c.mu.Lock()
	c.total += int64(n)
	bad := c.total > c.after
	c.mu.Unlock()
	if bad && n > 0 {
		b[0] ^= 1
	}
	return n, err
}

// partsWorldSize is three parts and a short fourth.
const partsWorldSize = 3*MinPartSize + 1<<20

// partsWorld is a store on a fresh MinIO (one retry per request), the AWS
// SDK client to read it back with, and a source of partsWorldSize bytes
// made from seed, with its SHA-256.
func partsWorld(t *testing.T, seed uint64) (*S3, *s3.Client, *pattern, string) {
	t.Helper()
	srv := s3test.Start(t)
	s := newS3(t, srv, "evidence", func(c *S3Config) { c.MaxRetries = 1 })
	src := newPattern(partsWorldSize, seed)
	return s, srv.AWSClient(), src, src.sum(t)
}

// TestS3PartDigests shows that the server, not the client, checks each part
// against the digest computed when it was hashed, and that a fresh upload is
// checked against the caller's whole-object digest.
func TestS3PartDigests(t *testing.T) {
	ctx := context.Background()
	s, aws3, src, sum := partsWorld(t, 7)
	const size = partsWorldSize

	// After 15 MiB have been read the source lies. Hashing runs one part
	// ahead of sending, so which part meets the first lie depends on the
	// interleaving; whichever it is, the server refuses it.
	bad := &corrupter{r: src, after: 3 * MinPartSize}
	rec := &recorder{}
	_, err := s.Upload(ctx, "clips/changing", bad, size, PutOptions{SHA256: sum}, Resume{}, rec)
	require.ErrorIs(t, err, ErrMismatch)
	code := s3code(err)
	t.Logf("refused part: %v", err)
	assert.Contains(t, []string{"XAmzContentSHA256Mismatch", "BadDigest"}, code, "refused by the server: %v", err)
	assert.Less(t, len(rec.partNumbers()), 2, "at most part 1 was stored before the lie: %v", rec.partNumbers())
	_, err = s.Stat(ctx, "clips/changing")
	assert.ErrorIs(t, err, ErrNotFound)

	// What the above relies on in minio-go v7.4.1: with DisableContentSha256
	// the part's Sha256Hex is sent as X-Amz-Content-Sha256 and checked by
	// the server; without it, on plain http, minio-go signs the body in
	// aws-chunked streaming mode and the Sha256Hex given is not sent at all.
	t.Run("minio-go sends the part digest only with DisableContentSha256", func(t *testing.T) {
		data := mustRead(t, src, 0, MinPartSize)
		wrong := sha([]byte("not these bytes"))
		id, err := s.core.NewMultipartUpload(ctx, "evidence", "clips/probe", s.putOptions(PutOptions{SHA256: sum}))
		require.NoError(t, err)
		defer s.abort(ctx, "clips/probe", id)

		_, err = s.core.PutObjectPart(ctx, "evidence", "clips/probe", id, 1, bytes.NewReader(data), MinPartSize,
			minio.PutObjectPartOptions{Sha256Hex: wrong, DisableContentSha256: true})
		assert.Equal(t, "XAmzContentSHA256Mismatch", s3code(err), "%v", err)

		_, err = s.core.PutObjectPart(ctx, "evidence", "clips/probe", id, 1, bytes.NewReader(data), MinPartSize,
			minio.PutObjectPartOptions{Sha256Hex: wrong})
		assert.NoError(t, err, "streaming signature: the wrong Sha256Hex was never sent")
	})

	// Wrong whole-object digest: every part is fine, the object is not.
	_, err = s.Upload(ctx, "clips/wrong", src, size, PutOptions{SHA256: sha([]byte("another clip"))}, Resume{}, nil)
	require.ErrorIs(t, err, ErrMismatch)
	assert.Contains(t, err.Error(), "declared")
	n, _ := versions(t, aws3, "evidence", "clips/wrong")
	assert.Zero(t, n)
	ups, err := aws3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("evidence"), Prefix: aws.String("clips/wrong")})
	require.NoError(t, err)
	assert.Empty(t, ups.Uploads, "the refused upload was aborted")
}

// TestS3Outage stops MinIO in the middle of an upload: the upload fails
// promptly with a retryable error, leaves no object, and resumes once the
// server is back.
func TestS3Outage(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	aws3 := srv.AWSClient()
	s := newS3(t, srv, "evidence", func(c *S3Config) {
		c.MaxRetries = 1
		c.Timeout = 2 * time.Second
	})
	const size = 3*MinPartSize + 1<<20
	src := newPattern(size, 3)
	sum := src.sum(t)
	opts := PutOptions{SHA256: sum, Mode: Compliance, RetainUntil: time.Now().Add(time.Hour)}

	// Down before the upload starts.
	srv.Stop()
	start := time.Now()
	_, err := s.Upload(ctx, "clips/outage", src, size, opts, Resume{}, &recorder{})
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Less(t, time.Since(start), 5*time.Second, "fails promptly")
	assert.ErrorIs(t, s.Verify(ctx, "clips/outage", size, sum, false), ErrUnavailable, "a failed check is not a mismatch")
	srv.Restart()

	// Down after the first part.
	rec := &recorder{}
	rec.onPart = func(p Part) error {
		if p.Number == 1 {
			srv.Stop()
		}
		return nil
	}
	start = time.Now()
	_, err = s.Upload(ctx, "clips/outage", src, size, opts, Resume{}, rec)
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Less(t, time.Since(start), 10*time.Second, "fails promptly")
	t.Logf("upload failed with %v", err)

	srv.Restart()
	_, err = s.Stat(ctx, "clips/outage")
	require.ErrorIs(t, err, ErrNotFound, "no partial object")
	n, _ := versions(t, aws3, "evidence", "clips/outage")
	assert.Zero(t, n)

	cnt := newCounter(src, MinPartSize)
	rec2 := &recorder{}
	_, err = s.Upload(ctx, "clips/outage", cnt, size, opts, rec.resume(), rec2)
	require.NoError(t, err)
	assert.Zero(t, cnt.read(1), "part 1 survived the outage and was not sent again")
	assert.Equal(t, []int{2, 3, 4}, rec2.partNumbers())
	require.NoError(t, s.Verify(ctx, "clips/outage", size, sum, true))
}

// TestS3Memory checks that memory does not grow with the object: a 64 MiB
// upload in 8 MiB parts must not hold even one part in the Go heap.
func TestS3Memory(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	const partSize = 8 << 20
	s := newS3(t, srv, "evidence", func(c *S3Config) { c.PartSize = partSize })
	const size = 64 << 20
	src := newPattern(size, 4)
	sum := src.sum(t)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var (
		mu   sync.Mutex
		peak uint64
	)
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			mu.Lock()
			peak = max(peak, m.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	_, err := s.Upload(ctx, "clips/big", src, size, PutOptions{SHA256: sum}, Resume{}, nil)
	close(done)
	<-sampled
	require.NoError(t, err)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	growth := int64(peak) - int64(before.HeapInuse)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("heap in use: %d MiB before, peak %d MiB during (growth %d KiB); allocated during upload: %d KiB",
		before.HeapInuse>>20, peak>>20, growth>>10, allocated>>10)
	assert.Less(t, growth, int64(3*partSize), "peak heap growth")
	assert.Less(t, allocated, uint64(3*partSize), "total allocated while uploading 64 MiB")
	require.NoError(t, s.Verify(ctx, "clips/big", size, sum, true))
}

func TestS3RateLimit(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	const rateBps = 4 << 20
	s := newS3(t, srv, "evidence", func(c *S3Config) { c.RateLimit = rateBps })
	const size = 2*MinPartSize + 2<<20 // 12 MiB: about 3 s at 4 MiB/s
	src := newPattern(size, 5)
	start := time.Now()
	_, err := s.Upload(ctx, "clips/slow", src, size, PutOptions{SHA256: src.sum(t)}, Resume{}, nil)
	require.NoError(t, err)
	elapsed := time.Since(start)
	t.Logf("%d MiB at a 4 MiB/s limit took %s", size>>20, elapsed)
	// The bucket starts full (one burst), so allow for it.
	assert.Greater(t, elapsed, time.Duration(float64(size-int64(rateBurst(rateBps)))/rateBps*float64(time.Second))-200*time.Millisecond)

	// A cancelled upload stops while waiting for the limiter.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = s.Upload(cctx, "clips/slow2", src, size, PutOptions{SHA256: src.sum(t)}, Resume{}, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
}

// BenchmarkUpload measures upload throughput to a local MinIO (MB/s in the
// output): hashing each part, then sending it.
func BenchmarkUpload(b *testing.B) {
	if testing.Short() {
		b.Skip("needs MinIO")
	}
	for _, partSize := range []int64{MinPartSize, DefaultPartSize} {
		b.Run(fmt.Sprintf("part=%dMiB", partSize>>20), func(b *testing.B) {
			srv := s3test.Start(b)
			s := newS3(b, srv, "bench", func(c *S3Config) { c.PartSize = partSize })
			const size = 64 << 20
			src := newPattern(size, 6)
			sum := src.sum(b)
			ctx := context.Background()
			b.SetBytes(size)
			b.ResetTimer()
			for i := range b.N {
				key := fmt.Sprintf("bench/%d", i)
				if _, err := s.Upload(ctx, key, src, size, PutOptions{SHA256: sum}, Resume{}, nil); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Delete(ctx, key, false); err != nil { // keep the temp disk small
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// givenDigests is a source that knows some parts' digests (PartDigests), as
// the evidence spool does for the parts of a clip that streamed in.
type givenDigests struct {
	*counter
	sums map[int]string // part number -> hex SHA-256
	err  error
	mu   sync.Mutex
	asks []int
}

func (g *givenDigests) PartSHA256(n int, off, length int64) (string, bool, error) {
	g.mu.Lock()
	g.asks = append(g.asks, n)
	g.mu.Unlock()
	if g.err != nil {
		return "", false, g.err
	}
	sum, ok := g.sums[n]
	return sum, ok, nil
}

// partSums is the SHA-256 of every part of src.
func partSums(t testing.TB, src io.ReaderAt, size, partSize int64) map[int]string {
	t.Helper()
	sums := map[int]string{}
	for n, off := 1, int64(0); off < size; n, off = n+1, off+partSize {
		sums[n] = sha(mustRead(t, src, off, min(partSize, size-off)))
	}
	return sums
}

// TestS3GivenPartDigests: parts whose digest the source gives are read only
// to be sent, and the server holds them to that digest; the whole object is
// hashed here only when some part is not given.
func TestS3GivenPartDigests(t *testing.T) {
	ctx := context.Background()
	s, aws3, src, sum := partsWorld(t, 11)
	const size = partsWorldSize
	all := partSums(t, src, size, MinPartSize)
	require.Len(t, all, 4)
	readOf := func(c *counter) (total int64) {
		for n := 1; n <= 4; n++ {
			total += c.read(n)
		}
		return total
	}

	t.Run("every part given: read once, to be sent", func(t *testing.T) {
		g := &givenDigests{counter: newCounter(src, MinPartSize), sums: all}
		rec := &recorder{}
		obj, err := s.Upload(ctx, "clips/given", g, size, PutOptions{SHA256: sum}, Resume{}, rec)
		require.NoError(t, err)
		assert.Equal(t, []int{1, 2, 3, 4}, g.asks)
		assert.Equal(t, int64(size), readOf(g.counter), "each byte read once: sent, not hashed")
		for _, p := range rec.parts {
			assert.Equal(t, all[p.Number], p.SHA256, "part %d records the given digest", p.Number)
		}
		got, n := readBack(t, aws3, "evidence", "clips/given")
		assert.Equal(t, sum, got)
		assert.Equal(t, int64(size), n)
		assert.Equal(t, sum, obj.SHA256)
	})

	t.Run("a source that differs from its given digests is refused by the server", func(t *testing.T) {
		// The digests are of src; the bytes are another pattern's from part 2 on.
		other := newPattern(size, 12)
		mixed := &spliced{a: src, b: other, at: MinPartSize}
		g := &givenDigests{counter: newCounter(mixed, MinPartSize), sums: all}
		_, err := s.Upload(ctx, "clips/given-lie", g, size, PutOptions{SHA256: sum}, Resume{}, &recorder{})
		require.ErrorIs(t, err, ErrMismatch)
		assert.Equal(t, "XAmzContentSHA256Mismatch", s3code(err), "%v", err)
		_, err = s.Stat(ctx, "clips/given-lie")
		assert.ErrorIs(t, err, ErrNotFound)
	})

	t.Run("some parts given: the whole object is hashed and checked", func(t *testing.T) {
		some := map[int]string{1: all[1], 3: all[3]}
		g := &givenDigests{counter: newCounter(src, MinPartSize), sums: some}
		_, err := s.Upload(ctx, "clips/given-some", g, size, PutOptions{SHA256: sum}, Resume{}, &recorder{})
		require.NoError(t, err)
		assert.Equal(t, int64(2*size), readOf(g.counter), "sent once and hashed once, given parts included")
		got, _ := readBack(t, aws3, "evidence", "clips/given-some")
		assert.Equal(t, sum, got)

		// The same with a wrong whole-object digest: the given parts are
		// right, so only the whole-object check can catch it.
		for _, first := range []map[int]string{{1: all[1], 2: all[2]}, {2: all[2], 3: all[3], 4: all[4]}} {
			g := &givenDigests{counter: newCounter(src, MinPartSize), sums: first}
			_, err = s.Upload(ctx, "clips/given-wrong", g, size, PutOptions{SHA256: sha([]byte("another clip"))}, Resume{}, &recorder{})
			require.ErrorIs(t, err, ErrMismatch)
			assert.Contains(t, err.Error(), "declared")
		}
		n, _ := versions(t, aws3, "evidence", "clips/given-wrong")
		assert.Zero(t, n)
	})

	t.Run("an error from the source stops the upload", func(t *testing.T) {
		g := &givenDigests{counter: newCounter(src, MinPartSize), err: errors.New("the clip stopped arriving")}
		_, err := s.Upload(ctx, "clips/given-err", g, size, PutOptions{SHA256: sum}, Resume{}, &recorder{})
		require.ErrorContains(t, err, "the clip stopped arriving")
		g = &givenDigests{counter: newCounter(src, MinPartSize), sums: map[int]string{1: "not a digest"}}
		_, err = s.Upload(ctx, "clips/given-err", g, size, PutOptions{SHA256: sum}, Resume{}, &recorder{})
		require.ErrorContains(t, err, "the source's digest of the part")
	})
}

// spliced reads a before byte at and b from there on.
type spliced struct {
	a, b io.ReaderAt
	at   int64
}

func (s *spliced) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.at {
		return s.b.ReadAt(p, off)
	}
	n, err := s.a.ReadAt(p[:min(int64(len(p)), s.at-off)], off)
	if err != nil || n == len(p) {
		return n, err
	}
	m, err := s.b.ReadAt(p[n:], off+int64(n))
	return n + m, err
}
