package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Dir is an object store in a local directory, for sites without S3. It
// enforces the same rules as an object-locked bucket (no delete while
// retained or held, retention only ever extended) against Vigil itself; it
// cannot stop someone with a shell on the gateway, which is why S3 with
// object locking is the recommended store for evidence.
//
// Layout under the root: data/KEY holds the object's bytes (read-only
// files), meta/KEY its sidecar JSON (digest, metadata, retention, legal
// hold), tmp/ files being written. Keeping sidecars in their own tree means
// no key can name a sidecar or collide with one, and nothing but objects is
// ever listed. A directory cannot be both an object and a prefix, so a key
// that is a proper prefix of another ("a" and "a/b") is refused; Vigil's
// keys have a fixed depth, so this does not arise in practice.
//
// All access goes through os.Root, so neither a key nor a symlink planted in
// the tree can reach outside it. Dir keeps no versions: an existing object
// that is retained or held cannot be overwritten (ErrLocked), except by the
// same bytes again, which is how a retried upload looks.
//
// A Dir is safe for concurrent use within one process; two processes must
// not share a root.
type Dir struct {
	root string
	// mu serialises the read-check-write of sidecars (retention, hold,
	// overwrite and delete decisions). Object bytes are written outside it.
	mu  sync.Mutex
	now func() time.Time
}

const (
	dataDir = "data"
	metaDir = "meta"
	tmpDir  = "tmp"
	// staleTemp is the age after which InitBucket removes a temp file as a
	// leftover of a crash; no write takes anywhere near this long.
	staleTemp = 24 * time.Hour
)

// sidecar is the JSON kept in meta/KEY.
type sidecar struct {
	Version     int               `json:"v"`
	SHA256      string            `json:"sha256"`
	Meta        map[string]string `json:"meta,omitempty"`
	ContentType string            `json:"content_type,omitempty"`
	Mode        Mode              `json:"mode,omitempty"`
	RetainUntil time.Time         `json:"retain_until,omitzero"`
	LegalHold   bool              `json:"legal_hold,omitempty"`
}

// NewDir returns a store rooted at root. It does not touch the filesystem;
// InitBucket creates the directories.
func NewDir(root string) (*Dir, error) {
	if root == "" {
		return nil, errors.New("objstore: directory store root is empty")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("objstore: directory store root: %w", err)
	}
	return &Dir{root: abs, now: time.Now}, nil
}

// InitBucket creates the store's directories (0700: footage is personal
// data) and removes temp files a crash left behind.
func (d *Dir) InitBucket(ctx context.Context) error {
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		return fmt.Errorf("objstore: init %s: %w", d.root, err)
	}
	root, err := os.OpenRoot(d.root)
	if err != nil {
		return fmt.Errorf("objstore: init %s: %w", d.root, err)
	}
	defer root.Close()
	created := false
	for _, sub := range []string{dataDir, metaDir, tmpDir} {
		err := root.Mkdir(sub, 0o700)
		if err == nil {
			created = true
		} else if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("objstore: init %s: %w", d.root, err)
		}
	}
	if created {
		if err := syncDir(root, "."); err != nil {
			return fmt.Errorf("objstore: init %s: %w", d.root, err)
		}
	}
	if err := d.CheckBucket(ctx); err != nil {
		return err
	}
	entries, err := fs.ReadDir(root.FS(), tmpDir)
	if err != nil {
		return fmt.Errorf("objstore: init %s: %w", d.root, err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && d.now().Sub(fi.ModTime()) > staleTemp {
			_ = root.Remove(path.Join(tmpDir, e.Name()))
		}
	}
	return nil
}

// CheckBucket checks that the store's directories exist.
func (d *Dir) CheckBucket(ctx context.Context) error {
	root, err := d.open()
	if err != nil {
		return err
	}
	defer root.Close()
	for _, sub := range []string{dataDir, metaDir, tmpDir} {
		fi, err := root.Lstat(sub)
		if err != nil || !fi.IsDir() {
			return fmt.Errorf("objstore: directory store %s is not initialised (no %s/): InitBucket creates it", d.root, sub)
		}
	}
	return nil
}

func (d *Dir) open() (*os.Root, error) {
	root, err := os.OpenRoot(d.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("objstore: directory store %s does not exist: InitBucket creates it", d.root)
		}
		return nil, fmt.Errorf("objstore: directory store: %w", err)
	}
	return root, nil
}

// Upload copies size bytes from r into the store, hashing them on the way;
// if the digest differs from opts.SHA256 nothing is stored (ErrMismatch).
// The bytes go to a temp file that is fsynced and renamed into place. Resume
// and Progress are not used: a local copy is restarted from the beginning.
// A Progress that is a Gate holds the rename back until it is Ready.
func (d *Dir) Upload(ctx context.Context, key string, r io.ReaderAt, size int64, opts PutOptions, _ Resume, p Progress) (Object, error) {
	opts, err := checkUpload(key, size, opts)
	if err != nil {
		return Object{}, err
	}
	g, _ := p.(Gate)
	return d.put(ctx, "upload", key, r, size, opts, g)
}

// PutSmall stores data like Upload; the digest is computed when
// opts.SHA256 is empty.
func (d *Dir) PutSmall(ctx context.Context, key string, data []byte, opts PutOptions) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("objstore: put: %w", err)
	}
	opts, err := checkPut(opts, false)
	if err != nil {
		return fmt.Errorf("objstore: put %s: %w", key, err)
	}
	_, err = d.put(ctx, "put", key, bytes.NewReader(data), int64(len(data)), opts, nil)
	return err
}

func (d *Dir) put(ctx context.Context, op, key string, r io.ReaderAt, size int64, opts PutOptions, gate Gate) (Object, error) {
	if !opts.RetainUntil.IsZero() && !opts.RetainUntil.After(d.now()) {
		return Object{}, fmt.Errorf("objstore: %s %s: the retain-until date %s is not in the future", op, key, opts.RetainUntil.Format(time.RFC3339))
	}
	root, err := d.open()
	if err != nil {
		return Object{}, err
	}
	defer root.Close()

	// Copy outside the lock: it takes as long as the object is big.
	tmp, sum, err := spool(ctx, root, r, size)
	if err != nil {
		return Object{}, fmt.Errorf("objstore: %s %s: %w", op, key, err)
	}
	defer root.Remove(tmp) // fails harmlessly once renamed into place
	if opts.SHA256 == "" {
		opts.SHA256 = sum
	} else if opts.SHA256 != sum {
		return Object{}, fmt.Errorf("objstore: %s %s: %w: the data's sha256 is %s, the caller declared %s", op, key, ErrMismatch, sum, opts.SHA256)
	}
	if gate != nil {
		if err := gate.Ready(ctx); err != nil {
			return Object{}, fmt.Errorf("objstore: %s %s: held back: %w", op, key, err)
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	cur, sc, err := d.load(root, key)
	switch {
	case err == nil && lockReason(cur, false, d.now()) != "":
		if cur.Size != size || cur.SHA256 != sum {
			return Object{}, fmt.Errorf("objstore: %s %s: %w: an object with other content exists and is %s; a directory store keeps no versions",
				op, key, ErrLocked, lockReason(cur, false, d.now()))
		}
		// The same bytes again (a retry after a crash): keep the object
		// and add whatever protection this request asks for.
		if opts.Mode != "" {
			sc.Mode, sc.RetainUntil, _, _ = retentionChange(cur.Mode, cur.RetainUntil, opts.Mode, opts.RetainUntil, d.now())
		}
		sc.LegalHold = cur.LegalHold || opts.LegalHold
		if err := writeSidecar(root, key, sc); err != nil {
			return Object{}, fmt.Errorf("objstore: %s %s: %w", op, key, err)
		}
		return d.stat(root, key)
	case err != nil && !errors.Is(err, ErrNotFound):
		return Object{}, err
	}

	if err := mkdirs(root, path.Dir(path.Join(dataDir, key))); err != nil {
		return Object{}, fmt.Errorf("objstore: %s %s: %w", op, key, err)
	}
	if fi, err := root.Lstat(path.Join(dataDir, key)); err == nil && fi.IsDir() {
		return Object{}, fmt.Errorf("objstore: %s %s: the key is a prefix of other objects, which a directory store cannot hold", op, key)
	}
	// The sidecar goes first: the object's retention and hold must be in
	// place no later than the object itself, so a crash in between leaves
	// at worst a sidecar without an object (ignored), never an object
	// without its protection.
	sc = sidecar{Version: 1, SHA256: sum, Meta: opts.Meta, ContentType: opts.ContentType,
		Mode: opts.Mode, RetainUntil: opts.RetainUntil, LegalHold: opts.LegalHold}
	if err := writeSidecar(root, key, sc); err != nil {
		return Object{}, fmt.Errorf("objstore: %s %s: %w", op, key, err)
	}
	dst := path.Join(dataDir, key)
	if err := root.Rename(tmp, dst); err != nil {
		return Object{}, fmt.Errorf("objstore: %s %s: %w", op, key, err)
	}
	// The rename is durable only once the directory entry is.
	if err := syncDir(root, path.Dir(dst)); err != nil {
		return Object{}, fmt.Errorf("objstore: %s %s: %w", op, key, err)
	}
	return d.stat(root, key)
}

// spool copies size bytes from r into a new fsynced file under tmp/,
// returning its name and SHA-256.
func spool(ctx context.Context, root *os.Root, r io.ReaderAt, size int64) (name, sum string, err error) {
	f, tmp, err := createTemp(root, 0o400)
	if err != nil {
		return "", "", err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			root.Remove(tmp)
		}
	}()
	h := sha256.New()
	src := io.NewSectionReader(r, 0, size)
	buf := make([]byte, hashBufSize)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", "", err
		}
		k, rerr := src.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			if _, err := f.Write(buf[:k]); err != nil {
				return "", "", err
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", "", fmt.Errorf("reading source at byte %d: %w", n, rerr)
		}
	}
	if n != size {
		return "", "", fmt.Errorf("source ended at byte %d, %d bytes short of the declared size", n, size-n)
	}
	// The data must be on disk before the rename makes it visible, or a
	// power cut could leave a complete-looking object of zeros.
	if err := f.Sync(); err != nil {
		return "", "", err
	}
	err = f.Close()
	f = nil
	if err != nil {
		return "", "", err
	}
	return tmp, hex.EncodeToString(h.Sum(nil)), nil
}

func createTemp(root *os.Root, perm os.FileMode) (*os.File, string, error) {
	for range 10 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		name := path.Join(tmpDir, hex.EncodeToString(b[:]))
		// A file created read-only can still be written through the
		// descriptor that created it.
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", errors.New("cannot create a temp file")
}

// writeSidecar replaces meta/KEY atomically: temp file, fsync, rename, fsync
// of the directory.
func writeSidecar(root *os.Root, key string, sc sidecar) error {
	data, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	dst := path.Join(metaDir, key)
	if err := mkdirs(root, path.Dir(dst)); err != nil {
		return err
	}
	if fi, err := root.Lstat(dst); err == nil && fi.IsDir() {
		return errors.New("the key is a prefix of other objects, which a directory store cannot hold")
	}
	f, name, err := createTemp(root, 0o400)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(name, dst)
	}
	if err != nil {
		root.Remove(name)
		return err
	}
	return syncDir(root, path.Dir(dst))
}

// mkdirs creates dir and its missing parents, then fsyncs the parent of
// every directory it created so the new entries survive a power cut. A path
// element that exists as a file is refused: it is an object, and so cannot
// also be a prefix.
func mkdirs(root *os.Root, dir string) error {
	var parents []string
	elems := strings.Split(dir, "/")
	for i := range elems {
		p := path.Join(elems[:i+1]...)
		err := root.Mkdir(p, 0o700)
		switch {
		case err == nil:
			parents = append(parents, path.Dir(p))
		case errors.Is(err, fs.ErrExist):
			fi, serr := root.Lstat(p)
			if serr != nil {
				return serr
			}
			if !fi.IsDir() {
				_, rel, _ := strings.Cut(p, "/")
				return fmt.Errorf("%q is an object, so it cannot also be a prefix of one", rel)
			}
		default:
			return err
		}
	}
	for _, p := range slices.Compact(parents) {
		if err := syncDir(root, p); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(root *os.Root, dir string) error {
	f, err := root.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// notExist reports whether err means the path is not there, including a
// path through a file ("a/b" when "a" is an object).
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// stat reads an object's file and sidecar.
func (d *Dir) stat(root *os.Root, key string) (Object, error) {
	o, _, err := d.load(root, key)
	return o, err
}

// load reads an object's file and sidecar, returning the sidecar too so
// that a change of retention or hold rewrites it whole. A data file without a
// sidecar (put there by hand) is reported without digest or protection, so
// Verify flags it; a sidecar that cannot be read is an error, never
// "unprotected".
func (d *Dir) load(root *os.Root, key string) (Object, sidecar, error) {
	var sc sidecar
	fi, err := root.Lstat(path.Join(dataDir, key))
	if notExist(err) || err == nil && !fi.Mode().IsRegular() {
		return Object{}, sc, fmt.Errorf("objstore: stat %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Object{}, sc, fmt.Errorf("objstore: stat %s: %w", key, err)
	}
	o := Object{Key: key, Size: fi.Size(), LastModified: fi.ModTime().UTC(), Meta: map[string]string{}}
	data, err := root.ReadFile(path.Join(metaDir, key))
	if notExist(err) {
		return o, sidecar{Version: 1}, nil
	}
	if err != nil {
		return Object{}, sc, fmt.Errorf("objstore: stat %s: sidecar: %w", key, err)
	}
	if err := json.Unmarshal(data, &sc); err != nil {
		return Object{}, sc, fmt.Errorf("objstore: stat %s: sidecar is corrupt: %w", key, err)
	}
	o.SHA256, o.Mode, o.RetainUntil, o.LegalHold = sc.SHA256, sc.Mode, sc.RetainUntil, sc.LegalHold
	for k, v := range sc.Meta {
		o.Meta[k] = v
	}
	return o, sc, nil
}

// Stat returns the object's size, digest, metadata, retention and hold, or
// ErrNotFound.
func (d *Dir) Stat(ctx context.Context, key string) (Object, error) {
	if err := validKey(key); err != nil {
		return Object{}, fmt.Errorf("objstore: stat: %w", err)
	}
	root, err := d.open()
	if err != nil {
		return Object{}, err
	}
	defer root.Close()
	return d.stat(root, key)
}

// Open returns the object's content. The caller closes it.
func (d *Dir) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := validKey(key); err != nil {
		return nil, fmt.Errorf("objstore: open: %w", err)
	}
	root, err := d.open()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(path.Join(dataDir, key))
	if notExist(err) {
		return nil, fmt.Errorf("objstore: open %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: open %s: %w", key, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("objstore: open %s: %w", key, ErrNotFound)
	}
	return f, nil
}

// Verify checks size and recorded digest and, with deep, re-hashes the
// content; a difference is ErrMismatch.
func (d *Dir) Verify(ctx context.Context, key string, size int64, sha256hex string, deep bool) error {
	if err := validSHA256(strings.ToLower(sha256hex)); err != nil {
		return fmt.Errorf("objstore: verify %s: expected digest: %w", key, err)
	}
	o, err := d.Stat(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("objstore: verify %s: %w: the object is missing (%w)", key, ErrMismatch, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if err := verifyStat(o, size, sha256hex); err != nil || !deep {
		return err
	}
	rc, err := d.Open(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return verifyContent(ctx, key, rc, size, sha256hex)
}

// locked runs f with the store open and its write lock held, for the
// operations that read and rewrite one object's protection (or remove it).
// op names the operation in the error for an invalid key.
func (d *Dir) locked(op, key string, f func(root *os.Root) error) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("objstore: %s: %w", op, err)
	}
	root, err := d.open()
	if err != nil {
		return err
	}
	defer root.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	return f(root)
}

// ExtendRetention raises the object's retention to at least mode until the
// date, with the same never-weaken rules as S3.
func (d *Dir) ExtendRetention(ctx context.Context, key string, mode Mode, until time.Time) error {
	return d.locked("extend retention", key, func(root *os.Root) error {
		if mode != Governance && mode != Compliance || until.IsZero() {
			return fmt.Errorf("objstore: extend retention %s: want mode %s or %s and a date", key, Governance, Compliance)
		}
		o, sc, err := d.load(root, key)
		if err != nil {
			return err
		}
		now := d.now()
		newMode, newUntil, _, change := retentionChange(o.Mode, o.RetainUntil, mode, until, now)
		if !change {
			return nil
		}
		if !newUntil.After(now) {
			return fmt.Errorf("objstore: extend retention %s: the date %s is not in the future", key, newUntil.Format(time.RFC3339))
		}
		sc.Mode, sc.RetainUntil = newMode, newUntil
		if err := writeSidecar(root, key, sc); err != nil {
			return fmt.Errorf("objstore: extend retention %s: %w", key, err)
		}
		return nil
	})
}

// SetLegalHold turns the object's legal hold on or off.
func (d *Dir) SetLegalHold(ctx context.Context, key string, on bool) error {
	return d.locked("legal hold", key, func(root *os.Root) error {
		o, sc, err := d.load(root, key)
		if err != nil {
			return err
		}
		if o.LegalHold == on {
			return nil
		}
		sc.LegalHold = on
		if err := writeSidecar(root, key, sc); err != nil {
			return fmt.Errorf("objstore: legal hold %s: %w", key, err)
		}
		return nil
	})
}

// Delete removes the object unless it is under legal hold, under
// COMPLIANCE retention, or under GOVERNANCE retention without
// bypassGovernance (ErrLocked).
func (d *Dir) Delete(ctx context.Context, key string, bypassGovernance bool) error {
	return d.locked("delete", key, func(root *os.Root) error {
		o, err := d.stat(root, key)
		if err != nil {
			return err
		}
		if why := lockReason(o, bypassGovernance, d.now()); why != "" {
			return fmt.Errorf("objstore: delete %s: %w: %s", key, ErrLocked, why)
		}
		// Data first: once it is gone the object is gone, and a sidecar left
		// by a crash here is ignored (and replaced by the next upload).
		dst := path.Join(dataDir, key)
		if err := root.Remove(dst); err != nil {
			return fmt.Errorf("objstore: delete %s: %w", key, err)
		}
		if err := syncDir(root, path.Dir(dst)); err != nil {
			return fmt.Errorf("objstore: delete %s: %w", key, err)
		}
		if err := root.Remove(path.Join(metaDir, key)); err != nil && !notExist(err) {
			return fmt.Errorf("objstore: delete %s: sidecar: %w", key, err)
		}
		return nil
	})
}

// List returns the objects whose keys start with prefix, in key order, with
// Key, Size and LastModified filled in.
func (d *Dir) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := validPrefix(prefix); err != nil {
		return nil, fmt.Errorf("objstore: list: %w", err)
	}
	root, err := d.open()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	// Walk only the deepest directory the prefix names completely.
	start := dataDir
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = path.Join(dataDir, prefix[:i])
	}
	var out []Object
	err = fs.WalkDir(root.FS(), start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == start && notExist(err) {
				return fs.SkipAll
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		key := strings.TrimPrefix(p, dataDir+"/")
		if e.IsDir() {
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if notExist(err) { // deleted while listing
				return nil
			}
			return err
		}
		out = append(out, Object{Key: key, Size: fi.Size(), LastModified: fi.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: list %s: %w", prefix, err)
	}
	slices.SortFunc(out, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Presign is not available for a directory store (ErrNoPresign): the API
// serves its objects itself.
func (d *Dir) Presign(ctx context.Context, key string, expiry time.Duration) (string, error) {
	return "", fmt.Errorf("objstore: presign %s: %w", key, ErrNoPresign)
}
