package bagit

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Declaration is the exact content of bagit.txt in every bag this package
// writes and the only content Open accepts (with LF or CRLF line endings).
const Declaration = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"

// Names of the tag files whose meaning RFC 8493 fixes; the Writer makes all
// of them but fetch.txt, which no bag here may have.
const (
	BagItFile         = "bagit.txt"
	InfoFile          = "bag-info.txt"
	FetchFile         = "fetch.txt"
	ManifestSHA256    = "manifest-sha256.txt"
	ManifestSHA512    = "manifest-sha512.txt"
	TagManifestSHA256 = "tagmanifest-sha256.txt"
	payloadDir        = "data/"
	manifestPrefix    = "manifest-"
	tagManifestPref   = "tagmanifest-"
)

// copyBuffer is the size of the buffer payload bytes are copied through:
// large enough that hashing and zip writes run at disk speed, small enough
// for a Raspberry Pi.
const copyBuffer = 1 << 20

// Sums are the size and digests of one payload file, computed while it was
// copied into the bag.
type Sums struct {
	// Size is the number of bytes copied.
	Size int64
	// SHA256 and SHA512 are lowercase hex digests of those bytes.
	SHA256, SHA512 string
}

// Writer writes one bag into a zip stream. Add the payload with AddPayload
// and tag files with AddTag, then call Finish, which writes the manifests,
// bag-info.txt and the tag manifest; AddUnlisted may then add files the tag
// manifest cannot list (a signature over it); Close ends the zip.
//
// A Writer is not safe for concurrent use. After any error the bag is
// incomplete and every later call returns that error; the caller must
// discard what was written.
type Writer struct {
	zw       *zip.Writer
	name     string
	modified time.Time

	payload256 map[string]string // payload path → SHA-256
	payload512 map[string]string // payload path → SHA-512
	tags       map[string]string // tag file path → SHA-256
	used       map[string]string // lower-cased path → path, to refuse collisions
	dirs       map[string]bool   // lower-cased directories implied by used
	octets     int64

	buf      []byte
	finished bool
	err      error
}

// NewWriter starts a bag called name (the zip's one top-level directory)
// on w and writes its bagit.txt. Every zip entry carries modified as its
// time, so the same inputs give the same bytes.
func NewWriter(w io.Writer, name string, modified time.Time) (*Writer, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("bagit: bag name %s: %w", display(name), err)
	}
	bw := &Writer{
		zw:         zip.NewWriter(w),
		name:       name,
		modified:   modified,
		payload256: map[string]string{},
		payload512: map[string]string{},
		tags:       map[string]string{},
		used:       map[string]string{},
		dirs:       map[string]bool{},
	}
	// bagit.txt goes first so that a person listing the zip sees at once
	// what it is.
	if err := bw.writeTag(BagItFile, []byte(Declaration)); err != nil {
		return nil, err
	}
	return bw, nil
}

// Name returns the bag's name.
func (w *Writer) Name() string { return w.name }

// claim reserves a bag path, refusing one already used, also in another
// letter case: such names collide when the zip is extracted on Windows or
// macOS, and one file would silently replace the other.
func (w *Writer) claim(p string) error {
	key := strings.ToLower(p)
	if prev, ok := w.used[key]; ok {
		if prev == p {
			return fmt.Errorf("bagit: %s is already in the bag", display(p))
		}
		return fmt.Errorf("bagit: %s differs only in letter case from %s, already in the bag", display(p), display(prev))
	}
	// A file cannot also be a directory, in either order.
	if w.dirs[key] {
		return fmt.Errorf("bagit: %s is already a directory in the bag", display(p))
	}
	for i := strings.LastIndexByte(key, '/'); i > 0; i = strings.LastIndexByte(key[:i], '/') {
		if prev, ok := w.used[key[:i]]; ok {
			return fmt.Errorf("bagit: %s would need %s, already a file, to be a directory", display(p), display(prev))
		}
	}
	for i := strings.LastIndexByte(key, '/'); i > 0; i = strings.LastIndexByte(key[:i], '/') {
		w.dirs[key[:i]] = true
	}
	w.used[key] = p
	return nil
}

func (w *Writer) header(p string) *zip.FileHeader {
	h := &zip.FileHeader{Name: w.name + "/" + p, Method: zip.Store, Modified: w.modified}
	h.SetMode(0o644)
	return h
}

// AddPayload copies r into the bag as data/<path> and returns its size and
// digests. The bytes pass through once: into the zip (stored, so they are
// the original bytes at a fixed offset in the file) and into SHA-256 and
// SHA-512 together, so memory stays at one copy buffer whatever the size.
// ctx is checked between buffers.
func (w *Writer) AddPayload(ctx context.Context, path string, r io.Reader) (Sums, error) {
	if w.err != nil {
		return Sums{}, w.err
	}
	if w.finished {
		return Sums{}, errors.New("bagit: add payload after Finish")
	}
	if err := checkPath(path); err != nil {
		return Sums{}, fmt.Errorf("bagit: payload path %s: %w", display(path), err)
	}
	full := payloadDir + path
	if err := w.claim(full); err != nil {
		return Sums{}, err
	}
	zf, err := w.zw.CreateHeader(w.header(full))
	if err != nil {
		return Sums{}, w.fail(fmt.Errorf("bagit: add %s: %w", full, err))
	}
	if w.buf == nil {
		w.buf = make([]byte, copyBuffer)
	}
	h256, h512 := sha256.New(), sha512.New()
	dst := io.MultiWriter(zf, h256, h512)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return Sums{}, w.fail(fmt.Errorf("bagit: add %s: %w", full, err))
		}
		m, rerr := r.Read(w.buf)
		if m > 0 {
			if _, werr := dst.Write(w.buf[:m]); werr != nil {
				return Sums{}, w.fail(fmt.Errorf("bagit: add %s: write: %w", full, werr))
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return Sums{}, w.fail(fmt.Errorf("bagit: add %s: read: %w", full, rerr))
		}
	}
	s := Sums{Size: n, SHA256: hex.EncodeToString(h256.Sum(nil)), SHA512: hex.EncodeToString(h512.Sum(nil))}
	w.payload256[full], w.payload512[full] = s.SHA256, s.SHA512
	w.octets += n
	return s, nil
}

// AddTag adds a tag file at path (relative to the bag directory, outside
// data/, not one of the files the Writer makes). The tag manifest will list
// it.
func (w *Writer) AddTag(path string, content []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.finished {
		return errors.New("bagit: AddTag after Finish (use AddUnlisted)")
	}
	if err := checkTagPath(path); err != nil {
		return err
	}
	return w.writeTag(path, content)
}

// AddUnlisted adds a tag file after Finish, which the tag manifest does not
// list. It exists for a detached signature over the tag manifest, which the
// tag manifest cannot list without the signature covering itself.
func (w *Writer) AddUnlisted(path string, content []byte) error {
	if w.err != nil {
		return w.err
	}
	if !w.finished {
		return errors.New("bagit: AddUnlisted before Finish (use AddTag)")
	}
	if err := checkTagPath(path); err != nil {
		return err
	}
	if err := w.claim(path); err != nil {
		return err
	}
	return w.put(path, content)
}

func checkTagPath(path string) error {
	if err := checkPath(path); err != nil {
		return fmt.Errorf("bagit: tag file %s: %w", display(path), err)
	}
	if strings.HasPrefix(path, payloadDir) || path == "data" {
		return fmt.Errorf("bagit: tag file %s: data/ holds the payload (use AddPayload)", display(path))
	}
	if isReserved(path) {
		return fmt.Errorf("bagit: tag file %s: the name is reserved by BagIt", display(path))
	}
	return nil
}

// isReserved reports whether path is a file whose meaning RFC 8493 fixes
// (bagit.txt, bag-info.txt, fetch.txt, manifests, tag manifests).
func isReserved(path string) bool {
	switch path {
	case BagItFile, InfoFile, FetchFile:
		return true
	}
	return isManifest(path, manifestPrefix) || isManifest(path, tagManifestPref)
}

// isManifest reports whether path is a top-level "<prefix><alg>.txt".
func isManifest(path, prefix string) bool {
	alg, ok := manifestAlg(path, prefix)
	return ok && alg != ""
}

// manifestAlg returns the algorithm named by a top-level manifest file name.
func manifestAlg(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || strings.Contains(rest, "/") {
		return "", false
	}
	alg, ok := strings.CutSuffix(rest, ".txt")
	return alg, ok
}

// writeTag writes a tag file the tag manifest will list.
func (w *Writer) writeTag(path string, content []byte) error {
	if err := w.claim(path); err != nil {
		return err
	}
	if err := w.put(path, content); err != nil {
		return err
	}
	sum := sha256.Sum256(content)
	w.tags[path] = hex.EncodeToString(sum[:])
	return nil
}

func (w *Writer) put(path string, content []byte) error {
	zf, err := w.zw.CreateHeader(w.header(path))
	if err != nil {
		return w.fail(fmt.Errorf("bagit: add %s: %w", path, err))
	}
	if _, err := zf.Write(content); err != nil {
		return w.fail(fmt.Errorf("bagit: add %s: %w", path, err))
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// Finish writes bag-info.txt (info in the given order, then Payload-Oxum,
// which the Writer computes and the caller must not give), manifest-sha256.txt,
// manifest-sha512.txt and, last, tagmanifest-sha256.txt over every tag file so
// far. It returns the tag manifest's bytes, for the caller to sign.
//
// Every value must be one line: a value with a line break is refused rather
// than folded, so that what a person reads in bag-info.txt is exactly what
// was given.
func (w *Writer) Finish(info []Field) ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.finished {
		return nil, errors.New("bagit: Finish called twice")
	}
	var b strings.Builder
	for _, f := range info {
		if err := checkLabel(f.Label); err != nil {
			return nil, fmt.Errorf("bagit: bag-info: %w", err)
		}
		if err := checkText(f.Value); err != nil {
			return nil, fmt.Errorf("bagit: bag-info: %s: %w", f.Label, err)
		}
		if strings.EqualFold(f.Label, "Payload-Oxum") {
			return nil, errors.New("bagit: bag-info: Payload-Oxum is computed by the Writer")
		}
		b.WriteString(f.Label + ": " + f.Value + "\n")
	}
	b.WriteString("Payload-Oxum: " + strconv.FormatInt(w.octets, 10) + "." + strconv.Itoa(len(w.payload256)) + "\n")
	if err := w.writeTag(InfoFile, []byte(b.String())); err != nil {
		return nil, err
	}
	if err := w.writeTag(ManifestSHA256, formatManifest(w.payload256)); err != nil {
		return nil, err
	}
	if err := w.writeTag(ManifestSHA512, formatManifest(w.payload512)); err != nil {
		return nil, err
	}
	tm := formatManifest(w.tags)
	if err := w.claim(TagManifestSHA256); err != nil {
		return nil, err
	}
	if err := w.put(TagManifestSHA256, tm); err != nil {
		return nil, err
	}
	w.finished = true
	return tm, nil
}

// Close writes the zip's central directory. It does not close the
// underlying writer. Closing before Finish is an error: the bag would have
// no manifests.
func (w *Writer) Close() error {
	cerr := w.zw.Close()
	if w.err != nil {
		return w.err
	}
	if !w.finished {
		return errors.New("bagit: Close before Finish: the bag is incomplete")
	}
	if cerr != nil {
		return w.fail(fmt.Errorf("bagit: close zip: %w", cerr))
	}
	return nil
}
