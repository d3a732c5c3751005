// Package objstore is where evidence lives once it has left the gateway's
// spool: an S3 bucket with object locking (MinIO, AWS S3, Ceph, through
// minio-go), or a local directory that enforces the same retention and
// legal-hold rules when no S3 store is configured.
//
// The two stores, *S3 and *Dir, have the same method set; consumers declare
// the small interface they need. Both keep Vigil's own SHA-256 of the whole
// object in its user metadata ("sha256"), because S3's checksums of multipart
// objects are composite (a hash of part hashes) and cannot be compared with
// the digest the camera declared.
//
// # Integrity of uploads
//
// S3 uploads are multipart with a fixed part size. Each part is read twice
// from the caller's io.ReaderAt: once to compute its SHA-256, then again to
// send it with that digest in X-Amz-Content-Sha256, which the request
// signature covers. The server recomputes it over the bytes it received and
// refuses the part if it differs, so what is stored is what was hashed, part
// by part, whatever happens in between. (A signed payload digest is the
// integrity check S3 takes in place of Content-MD5 for parts, object lock or
// not; MD5 would cost a pass slower than SHA-256 and check nothing more. A
// single PUT still sends Content-MD5, which S3 wants with object-lock
// headers.) Memory stays bounded by a small read buffer: no part is ever held
// in memory. When one call hashes the whole object (a single PUT, or a
// multipart upload that reuses no parts) the bytes are also checked against
// the caller's whole-object digest before the object is completed.
//
// A caller that already knows a part's SHA-256, computed from the bytes as
// they first arrived, offers it through PartDigests: the part is then read
// only to be sent, and the server's check against that digest proves the
// stored part is the arrived bytes, which is what the whole-object check
// proves for parts hashed here.
//
// An upload can be resumed after a crash: the caller persists the upload id
// (Progress.Started) and every completed part (Progress.PartDone) before the
// upload continues, and passes them back as a Resume. Parts the server still
// lists with the same number, size and ETag are not read or sent again.
//
// # Locking
//
// Retention (GOVERNANCE or COMPLIANCE until a date) and legal hold are set
// when the object is created, so there is no moment in which a stored clip is
// unprotected. Retention can be extended, never shortened; a COMPLIANCE
// object cannot be deleted by anyone before its date, a GOVERNANCE one only
// with an explicit bypass, and a held object not at all.
package objstore

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
)

// Mode is an S3 object-lock retention mode.
type Mode string

// Retention modes, as S3 spells them.
const (
	// Governance retention can be lifted or shortened by a user with the
	// bypass permission who asks for it explicitly: used for footage kept
	// by policy rather than for a case.
	Governance Mode = "GOVERNANCE"
	// Compliance retention cannot be shortened or lifted by anyone, the
	// store's administrators included, until the date has passed.
	Compliance Mode = "COMPLIANCE"
)

// strength orders modes so that a change never weakens protection.
func (m Mode) strength() int {
	switch m {
	case Compliance:
		return 2
	case Governance:
		return 1
	}
	return 0
}

// Sentinel errors. They are wrapped with the operation and key; test with
// errors.Is.
var (
	// ErrNotFound: the object (or the version asked for) does not exist.
	ErrNotFound = errors.New("objstore: not found")
	// ErrLocked: retention or a legal hold refused a delete or overwrite.
	ErrLocked = errors.New("objstore: object is locked (retention or legal hold)")
	// ErrMismatch: the stored object is not what the caller expected.
	ErrMismatch = errors.New("objstore: stored object does not match")
	// ErrNoLocking: the bucket exists but object locking is not enabled on
	// it, so evidence put there could be deleted at will.
	ErrNoLocking = errors.New("objstore: bucket has no object locking")
	// ErrNoPresign: the store cannot hand out URLs (a local directory).
	ErrNoPresign = errors.New("objstore: presigned URLs are not supported by a directory store")
	// ErrUnavailable: the store could not be reached or answered with a
	// transient failure (network error, timeout, 5xx, throttling, a digest
	// refused in transit). The operation may be retried later; an
	// interrupted Upload resumes from its recorded parts.
	ErrUnavailable = errors.New("objstore: store unavailable")
)

// PutOptions describe an object being stored.
type PutOptions struct {
	// SHA256 is the lowercase hex SHA-256 of the whole object, kept in
	// user metadata as "sha256". Required by Upload; PutSmall computes it
	// when empty.
	SHA256 string
	// Meta is more user metadata. Keys are lowercase a-z, 0-9 and '-';
	// values printable ASCII. "sha256" is reserved.
	Meta map[string]string
	// ContentType defaults to application/octet-stream.
	ContentType string
	// Mode and RetainUntil set retention at creation; both or neither.
	// RetainUntil is rounded up to a whole second (the precision S3 keeps),
	// so rounding never shortens it.
	Mode        Mode
	RetainUntil time.Time
	// LegalHold puts the object under legal hold at creation.
	LegalHold bool
}

// Object describes a stored object. Upload returns what was asked for (plus
// the version id); Stat returns what the store holds, including retention
// the bucket applied by default. List fills only Key, Size and LastModified.
type Object struct {
	Key          string
	VersionID    string // "" for a directory store
	Size         int64
	SHA256       string
	Meta         map[string]string // user metadata other than sha256
	Mode         Mode
	RetainUntil  time.Time
	LegalHold    bool
	LastModified time.Time
}

// Part is one completed part of a multipart upload, as the caller persists
// it to resume later.
type Part struct {
	Number int
	Size   int64
	ETag   string
	SHA256 string // hex SHA-256 of the part's bytes, as sent and verified
}

// Resume is what the caller persisted from a previous attempt of the same
// upload (same key and same bytes). The zero value starts a new upload.
type Resume struct {
	UploadID string
	Parts    []Part
}

// Progress receives the state of a multipart upload so the caller can
// persist it (in its own database) before the upload goes on: Started before
// the first part is sent, PartDone after the server has accepted a part and
// before the next one starts. An error from either stops the upload, which
// can then be resumed from what was persisted. A nil Progress is allowed.
type Progress interface {
	Started(uploadID string) error
	PartDone(p Part) error
}

// Gate may be implemented by the Progress given to Upload, for an upload
// whose source is still arriving: parts may be sent as their bytes become
// readable, but the object must not exist until something else has happened
// (for evidence: the clip's ledger entry). Upload calls Ready after every
// byte was read, hashed and sent, and makes the object visible
// (CompleteMultipartUpload, or the directory store's rename) only if Ready
// returns nil. An error from Ready fails the upload without aborting it, so
// it can be resumed or aborted by the caller. With a Gate, S3 uploads even a
// one-part object as a multipart upload: a single PUT cannot be held back.
type Gate interface {
	Ready(ctx context.Context) error
}

// PartDigests may be implemented by the io.ReaderAt given to S3's Upload
// when the caller knows the SHA-256 of some parts from the bytes as they
// first arrived (evidence: a camera's upload, hashed as it streamed into the
// spool). PartSHA256 is asked before part n (from 1), length bytes at off,
// is read; it may wait, as ReadAt may, for those bytes to arrive. ok false
// means the caller does not know it: the part is hashed here. An error stops
// the upload.
//
// A digest given this way is sent as the part's X-Amz-Content-Sha256 and
// checked by the server against the bytes read from the source, so a source
// that differs from what arrived is refused (ErrMismatch) as if hashed here.
// When every part's digest is given, the object is not hashed whole here:
// the caller checked the arrived bytes against the whole-object digest. When
// only some are, the whole object is hashed and checked as if none were.
type PartDigests interface {
	PartSHA256(n int, off, length int64) (sha256hex string, ok bool, err error)
}

// PendingUpload is a multipart upload the store holds that was neither
// completed nor aborted.
type PendingUpload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

const (
	maxKeyLen     = 1024 // S3's limit, in bytes
	maxSegmentLen = 255  // a file name on the directory store
	maxMetaBytes  = 2048 // S3's limit on user metadata, keys plus values
	hashBufSize   = 256 << 10
)

// validKey refuses keys that could escape a directory store, name the same
// object two ways, or not round-trip through S3 and HTTP: empty, too long,
// leading '/', empty or "."/".." segments, "..", backslashes, and anything
// but printable ASCII.
func validKey(key string) error {
	switch {
	case key == "":
		return errors.New("key is empty")
	case len(key) > maxKeyLen:
		return fmt.Errorf("key is %d bytes long, the limit is %d", len(key), maxKeyLen)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("key %q starts with '/'", key)
	case strings.Contains(key, ".."):
		return fmt.Errorf("key %q contains \"..\"", key)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("key %q has byte 0x%02x at %d: only printable ASCII is allowed", key, c, i)
		}
		if c == '\\' {
			return fmt.Errorf("key %q contains a backslash", key)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("key %q has an empty path segment", key)
		case seg == ".":
			return fmt.Errorf("key %q has a \".\" path segment", key)
		case len(seg) > maxSegmentLen:
			return fmt.Errorf("key %q has a path segment longer than %d bytes", key, maxSegmentLen)
		}
	}
	return nil
}

// validPrefix accepts "" or a prefix of keys: it may end in '/' or in the
// middle of a segment, so it is valid if some key could start with it.
func validPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return validKey(prefix + "x")
}

// checkUpload checks an Upload's key, size and options for either store and
// returns the options normalised (see checkPut).
func checkUpload(key string, size int64, opts PutOptions) (PutOptions, error) {
	if err := validKey(key); err != nil {
		return opts, fmt.Errorf("objstore: upload: %w", err)
	}
	if size < 0 {
		return opts, fmt.Errorf("objstore: upload %s: size %d is negative", key, size)
	}
	opts, err := checkPut(opts, true)
	if err != nil {
		return opts, fmt.Errorf("objstore: upload %s: %w", key, err)
	}
	return opts, nil
}

// checkPut validates opts and returns them normalised: digest lowercased,
// retention date rounded up to the second and in UTC, metadata copied.
// requireDigest is set by Upload, which cannot compute the digest of a
// multipart object without reading it all an extra time.
func checkPut(opts PutOptions, requireDigest bool) (PutOptions, error) {
	out := opts
	out.SHA256 = strings.ToLower(opts.SHA256)
	if out.SHA256 != "" || requireDigest {
		if err := validSHA256(out.SHA256); err != nil {
			return out, fmt.Errorf("SHA256: %w", err)
		}
	}
	switch opts.Mode {
	case "", Governance, Compliance:
	default:
		return out, fmt.Errorf("retention mode %q: want %s or %s", opts.Mode, Governance, Compliance)
	}
	if (opts.Mode == "") != opts.RetainUntil.IsZero() {
		return out, errors.New("retention needs both a mode and a retain-until date")
	}
	if !opts.RetainUntil.IsZero() {
		out.RetainUntil = ceilSecond(opts.RetainUntil)
	}
	if opts.ContentType != "" && !printable(opts.ContentType) {
		return out, fmt.Errorf("content type %q is not printable ASCII", opts.ContentType)
	}
	n := len("sha256") + len(out.SHA256)
	out.Meta = make(map[string]string, len(opts.Meta))
	for k, v := range opts.Meta {
		if err := validMetaKey(k); err != nil {
			return out, err
		}
		if !printable(v) || strings.TrimSpace(v) != v {
			return out, fmt.Errorf("metadata %q: value must be printable ASCII without leading or trailing spaces", k)
		}
		n += len(k) + len(v)
		out.Meta[k] = v
	}
	if n > maxMetaBytes {
		return out, fmt.Errorf("metadata is %d bytes, the limit is %d", n, maxMetaBytes)
	}
	return out, nil
}

func validMetaKey(k string) error {
	if k == "" || len(k) > 128 {
		return fmt.Errorf("metadata key %q: want 1-128 characters", k)
	}
	if k == "sha256" {
		return errors.New(`metadata key "sha256" is reserved: set PutOptions.SHA256`)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("metadata key %q: only a-z, 0-9 and '-' are allowed", k)
		}
	}
	return nil
}

func validSHA256(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("%q is not 64 hex digits", s)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("%q is not hex", s)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ceilSecond rounds t up to a whole second in UTC. S3 keeps retain-until
// dates to the second; rounding down would shorten what the caller asked for.
func ceilSecond(t time.Time) time.Time {
	t = t.UTC()
	if tr := t.Truncate(time.Second); !tr.Equal(t) {
		return tr.Add(time.Second)
	}
	return t
}

// retentionChange works out what ExtendRetention must write, given the
// current retention and the one asked for, so that protection only grows:
// the date is the later of the two and the mode the stronger. change is false
// when the current retention already covers the request. upgrade reports a
// live GOVERNANCE retention becoming COMPLIANCE, which S3 treats as a change
// of mode and allows only with the governance bypass.
func retentionChange(curMode Mode, curUntil time.Time, mode Mode, until, now time.Time) (newMode Mode, newUntil time.Time, upgrade, change bool) {
	until = ceilSecond(until)
	if curMode == "" || !curUntil.After(now) {
		// No live retention: anything may be set.
		return mode, until, false, true
	}
	newMode, newUntil = curMode, curUntil
	if mode.strength() > curMode.strength() {
		newMode = mode
	}
	if until.After(curUntil) {
		newUntil = until
	}
	change = newMode != curMode || newUntil.After(curUntil)
	upgrade = curMode == Governance && newMode == Compliance
	return newMode, newUntil, upgrade, change
}

// lockReason says why o cannot be deleted now, or returns "" if it can.
func lockReason(o Object, bypassGovernance bool, now time.Time) string {
	switch {
	case o.LegalHold:
		return "under legal hold"
	case o.Mode == Compliance && o.RetainUntil.After(now):
		return "COMPLIANCE retention until " + o.RetainUntil.Format(time.RFC3339)
	case o.Mode == Governance && o.RetainUntil.After(now) && !bypassGovernance:
		return "GOVERNANCE retention until " + o.RetainUntil.Format(time.RFC3339) + " (no bypass)"
	}
	return ""
}

// digests reads n bytes at off from r and returns their MD5 (base64, as
// Content-MD5 wants it) and SHA-256 (hex). It reads through a caller-owned
// buffer so hashing a part costs no allocation, and checks ctx between reads
// so a cancelled upload stops promptly even on a slow disk.
// Extra hashes (the whole object's) are fed the same bytes.
func digests(ctx context.Context, r io.ReaderAt, off, n int64, buf []byte, extra ...hash.Hash) (md5b64, sha256hex string, err error) {
	m, s := md5.New(), sha256.New()
	if err := hashSection(ctx, r, off, n, buf, append(extra, m, s)...); err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), hex.EncodeToString(s.Sum(nil)), nil
}

// partSHA256 is digests without the MD5, for parts: their signed
// X-Amz-Content-Sha256 is the check the server makes.
func partSHA256(ctx context.Context, r io.ReaderAt, off, n int64, buf []byte, extra ...hash.Hash) (string, error) {
	s := sha256.New()
	if err := hashSection(ctx, r, off, n, buf, append(extra, s)...); err != nil {
		return "", err
	}
	return hex.EncodeToString(s.Sum(nil)), nil
}

// hashSection feeds n bytes at off from r into the hashes.
func hashSection(ctx context.Context, r io.ReaderAt, off, n int64, buf []byte, hs ...hash.Hash) error {
	sr := io.NewSectionReader(r, off, n)
	var done int64
	for done < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := sr.Read(buf)
		for _, h := range hs {
			h.Write(buf[:k])
		}
		done += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading source at byte %d: %w", off+done, err)
		}
	}
	if done != n {
		return fmt.Errorf("source ended at byte %d, %d bytes short of the declared size", off+done, n-done)
	}
	return nil
}

// verifyStat compares what the store says about an object with what the
// caller expects: size, then the recorded whole-object digest.
func verifyStat(o Object, size int64, sha256hex string) error {
	if o.Size != size {
		return fmt.Errorf("objstore: verify %s: %w: size is %d bytes, want %d", o.Key, ErrMismatch, o.Size, size)
	}
	if o.SHA256 == "" {
		return fmt.Errorf("objstore: verify %s: %w: no sha256 recorded in its metadata", o.Key, ErrMismatch)
	}
	if !strings.EqualFold(o.SHA256, sha256hex) {
		return fmt.Errorf("objstore: verify %s: %w: recorded sha256 is %s, want %s", o.Key, ErrMismatch, o.SHA256, strings.ToLower(sha256hex))
	}
	return nil
}

// verifyContent hashes the stored bytes as they stream in; memory use does
// not depend on the object's size.
func verifyContent(ctx context.Context, key string, r io.Reader, size int64, sha256hex string) error {
	h := sha256.New()
	buf := make([]byte, hashBufSize)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("objstore: verify %s: %w", key, err)
		}
		k, err := r.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("objstore: verify %s: reading content: %w", key, err)
		}
	}
	if n != size {
		return fmt.Errorf("objstore: verify %s: %w: content is %d bytes, want %d", key, ErrMismatch, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, sha256hex) {
		return fmt.Errorf("objstore: verify %s: %w: content sha256 is %s, want %s", key, ErrMismatch, got, strings.ToLower(sha256hex))
	}
	return nil
}
