package bagit

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// payload is deterministic test content of n bytes.
func payload(seed byte, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

type entry struct {
	path string
	data []byte
}

// makeBag writes a bag with the given payload and tag files.
func makeBag(t testing.TB, name string, payloads, tags []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, name, t0)
	require.NoError(t, err)
	for _, p := range payloads {
		_, err := w.AddPayload(context.Background(), p.path, bytes.NewReader(p.data))
		require.NoError(t, err)
	}
	for _, tg := range tags {
		require.NoError(t, w.AddTag(tg.path, tg.data))
	}
	_, err = w.Finish([]Field{{"Source-Organization", "Test Trust"}, {"External-Identifier", "JS/1"}})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func sampleBag(t testing.TB) []byte {
	return makeBag(t, "bag-1",
		[]entry{{"cam-1/c0.mp4", payload(1, 3<<20)}, {"cam-1/c1.mp4", payload(2, 1000)}, {"cam-2/100% real.mp4", payload(3, 10)}},
		[]entry{{"notes/readme.txt", []byte("hello\n")}})
}

// files reads every entry of a zip.
func files(t testing.TB, z []byte) []entry {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	require.NoError(t, err)
	var out []entry
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		rc.Close()
		out = append(out, entry{f.Name, b})
	}
	return out
}

// rezip writes entries as a new zip (with correct CRCs), so tests tamper
// with content rather than with the zip's own checksums.
func rezip(t testing.TB, es []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range es {
		h := &zip.FileHeader{Name: e.path, Method: zip.Store}
		if strings.HasSuffix(e.path, "/") {
			h.SetMode(fs.ModeDir | 0o755)
		}
		w, err := zw.CreateHeader(h)
		require.NoError(t, err)
		_, err = w.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func validate(t testing.TB, z []byte) (Result, error) {
	t.Helper()
	b, err := Open(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		return Result{}, err
	}
	return b.Validate(context.Background(), nil)
}

func problemsOf(r Result) string {
	var s []string
	for _, p := range r.Problems {
		s = append(s, p.String())
	}
	return strings.Join(s, "\n")
}

func TestWriteRead(t *testing.T) {
	z := sampleBag(t)
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	require.NoError(t, err)
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		assert.Equal(t, zip.Store, f.Method, "%s is stored, not deflated", f.Name)
		assert.True(t, strings.HasPrefix(f.Name, "bag-1/"), "%s is under the bag directory", f.Name)
		assert.True(t, f.Modified.Equal(t0), "%s has the bag's time", f.Name)
	}
	assert.Equal(t, []string{
		"bag-1/bagit.txt",
		"bag-1/data/cam-1/c0.mp4", "bag-1/data/cam-1/c1.mp4", "bag-1/data/cam-2/100% real.mp4",
		"bag-1/notes/readme.txt",
		"bag-1/bag-info.txt", "bag-1/manifest-sha256.txt", "bag-1/manifest-sha512.txt",
		"bag-1/tagmanifest-sha256.txt",
	}, names)

	byName := map[string][]byte{}
	for _, e := range files(t, z) {
		byName[strings.TrimPrefix(e.path, "bag-1/")] = e.data
	}
	assert.Equal(t, Declaration, string(byName["bagit.txt"]))
	assert.Equal(t, "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", string(byName["bagit.txt"]))
	assert.Equal(t, "Source-Organization: Test Trust\nExternal-Identifier: JS/1\nPayload-Oxum: 3146738.3\n", string(byName["bag-info.txt"]))

	// Every payload file in every manifest, with the right digest, in
	// sha256sum format; the % is percent-encoded as RFC 8493 requires.
	for _, m := range []struct {
		file string
		sum  func([]byte) string
	}{
		{"manifest-sha256.txt", func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }},
		{"manifest-sha512.txt", func(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }},
	} {
		want := ""
		for _, p := range []string{"data/cam-1/c0.mp4", "data/cam-1/c1.mp4", "data/cam-2/100% real.mp4"} {
			want += m.sum(byName[p]) + "  " + strings.ReplaceAll(p, "%", "%25") + "\n"
		}
		assert.Equal(t, want, string(byName[m.file]), m.file)
	}
	tm, err := ParseManifest(byName["tagmanifest-sha256.txt"], SHA256)
	require.NoError(t, err)
	var listed []string
	for _, e := range tm {
		listed = append(listed, e.Path)
		s := sha256.Sum256(byName[e.Path])
		assert.Equal(t, hex.EncodeToString(s[:]), e.Digest, e.Path)
	}
	assert.Equal(t, []string{"bag-info.txt", "bagit.txt", "manifest-sha256.txt", "manifest-sha512.txt", "notes/readme.txt"}, listed)

	r, err := validate(t, z)
	require.NoError(t, err)
	assert.True(t, r.OK(), problemsOf(r))
	assert.Equal(t, "bag-1", r.Bag)
	assert.Equal(t, int64(3146738), r.PayloadOctets)
	assert.Equal(t, 3, r.PayloadFiles)
	assert.Empty(t, r.Unlisted)
	assert.Equal(t, []Field{{"Source-Organization", "Test Trust"}, {"External-Identifier", "JS/1"}, {"Payload-Oxum", "3146738.3"}}, r.Info)
	f, ok := r.File("data/cam-1/c1.mp4")
	require.True(t, ok)
	s := sha512.Sum512(payload(2, 1000))
	assert.Equal(t, hex.EncodeToString(s[:]), f.Digests[SHA512])
	assert.True(t, f.Payload)
	got, ok := r.Tag("notes/readme.txt")
	require.True(t, ok)
	assert.Equal(t, "hello\n", string(got))
	_, ok = r.Tag("data/cam-1/c1.mp4")
	assert.False(t, ok, "payload is never held in memory")
}

func TestWriterSums(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, "b", t0)
	require.NoError(t, err)
	data := payload(9, 2<<20+17)
	s, err := w.AddPayload(context.Background(), "x", bytes.NewReader(data))
	require.NoError(t, err)
	h256, h512 := sha256.Sum256(data), sha512.Sum512(data)
	assert.Equal(t, Sums{Size: int64(len(data)), SHA256: hex.EncodeToString(h256[:]), SHA512: hex.EncodeToString(h512[:])}, s)
}

func TestWriterRefuses(t *testing.T) {
	ctx := context.Background()
	_, err := NewWriter(io.Discard, "../x", t0)
	assert.ErrorContains(t, err, `bag name ../x: path has a ".." element`)
	_, err = NewWriter(io.Discard, "a/b", t0)
	assert.ErrorContains(t, err, "one directory name")

	tests := []struct {
		name string
		do   func(w *Writer) error
		want string
	}{
		{"dotdot", func(w *Writer) error { _, err := w.AddPayload(ctx, "../x", strings.NewReader("")); return err }, `payload path ../x: path has a ".." element`},
		{"absolute", func(w *Writer) error { _, err := w.AddPayload(ctx, "/x", strings.NewReader("")); return err }, "absolute path"},
		{"backslash", func(w *Writer) error { _, err := w.AddPayload(ctx, `a\b`, strings.NewReader("")); return err }, "backslash"},
		{"colon", func(w *Writer) error { _, err := w.AddPayload(ctx, "c:x", strings.NewReader("")); return err }, "colon"},
		{"newline", func(w *Writer) error { _, err := w.AddPayload(ctx, "a\nb", strings.NewReader("")); return err }, "control character U+000A"},
		{"empty element", func(w *Writer) error { _, err := w.AddPayload(ctx, "a//b", strings.NewReader("")); return err }, "empty element"},
		{"duplicate", func(w *Writer) error {
			w.AddPayload(ctx, "a", strings.NewReader(""))
			_, err := w.AddPayload(ctx, "a", strings.NewReader(""))
			return err
		}, "data/a is already in the bag"},
		{"case collision", func(w *Writer) error {
			w.AddPayload(ctx, "Clip", strings.NewReader(""))
			_, err := w.AddPayload(ctx, "clip", strings.NewReader(""))
			return err
		}, "data/clip differs only in letter case from data/Clip"},
		{"file and directory", func(w *Writer) error {
			w.AddPayload(ctx, "a", strings.NewReader(""))
			_, err := w.AddPayload(ctx, "a/b", strings.NewReader(""))
			return err
		}, "would need data/a, already a file, to be a directory"},
		{"directory and file", func(w *Writer) error {
			w.AddPayload(ctx, "a/b", strings.NewReader(""))
			_, err := w.AddPayload(ctx, "a", strings.NewReader(""))
			return err
		}, "data/a is already a directory"},
		{"tag in data", func(w *Writer) error { return w.AddTag("data/x", nil) }, "data/ holds the payload"},
		{"reserved tag", func(w *Writer) error { return w.AddTag("manifest-md5.txt", nil) }, "reserved by BagIt"},
		{"reserved bagit.txt", func(w *Writer) error { return w.AddTag("bagit.txt", nil) }, "reserved by BagIt"},
		{"unlisted before finish", func(w *Writer) error { return w.AddUnlisted("x.sig", nil) }, "AddUnlisted before Finish"},
		{"oxum given", func(w *Writer) error { _, err := w.Finish([]Field{{"Payload-Oxum", "1.1"}}); return err }, "Payload-Oxum is computed by the Writer"},
		{"value newline", func(w *Writer) error {
			_, err := w.Finish([]Field{{"External-Identifier", "a\nForged: yes"}})
			return err
		}, "External-Identifier: contains the control character U+000A"},
		{"label colon", func(w *Writer) error { _, err := w.Finish([]Field{{"A:B", "x"}}); return err }, "contains a colon"},
		{"close before finish", func(w *Writer) error { return w.Close() }, "Close before Finish"},
		{"read error", func(w *Writer) error {
			_, err := w.AddPayload(ctx, "a", io.MultiReader(strings.NewReader("abc"), errReader{}))
			return err
		}, "bagit: add data/a: read: disk on fire"},
		{"cancelled", func(w *Writer) error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			_, err := w.AddPayload(c, "a", strings.NewReader("abc"))
			return err
		}, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWriter(io.Discard, "b", t0)
			require.NoError(t, err)
			assert.ErrorContains(t, tt.do(w), tt.want)
		})
	}

	t.Run("sticky", func(t *testing.T) {
		w, err := NewWriter(io.Discard, "b", t0)
		require.NoError(t, err)
		_, err = w.AddPayload(ctx, "a", errReader{})
		require.Error(t, err)
		_, err2 := w.AddPayload(ctx, "b", strings.NewReader("x"))
		assert.Equal(t, err, err2, "a failed writer stays failed")
		_, err3 := w.Finish(nil)
		assert.Equal(t, err, err3)
	})
	t.Run("after finish", func(t *testing.T) {
		w, err := NewWriter(io.Discard, "b", t0)
		require.NoError(t, err)
		_, err = w.Finish(nil)
		require.NoError(t, err)
		_, err = w.AddPayload(ctx, "a", strings.NewReader("x"))
		assert.ErrorContains(t, err, "after Finish")
		assert.ErrorContains(t, w.AddTag("t", nil), "after Finish")
		assert.ErrorContains(t, w.AddUnlisted(TagManifestSHA256, nil), "reserved")
		require.NoError(t, w.AddUnlisted("sig.txt", nil))
		assert.ErrorContains(t, w.AddUnlisted("sig.txt", nil), "already in the bag")
		_, err = w.Finish(nil)
		assert.ErrorContains(t, err, "twice")
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// TestValidateFindsTampering changes one thing at a time and checks that
// Validate names it.
func TestValidateFindsTampering(t *testing.T) {
	orig := files(t, sampleBag(t))
	edit := func(path string, f func([]byte) []byte) []entry {
		var out []entry
		for _, e := range orig {
			if e.path == "bag-1/"+path {
				e.data = f(bytes.Clone(e.data))
			}
			out = append(out, e)
		}
		return out
	}
	without := func(path string) []entry {
		var out []entry
		for _, e := range orig {
			if e.path != "bag-1/"+path {
				out = append(out, e)
			}
		}
		return out
	}
	with := func(es ...entry) []entry { return append(append([]entry(nil), orig...), es...) }
	var noManifest []entry
	for _, e := range orig {
		if !strings.Contains(e.path, "/manifest-") {
			noManifest = append(noManifest, e)
		}
	}

	tests := []struct {
		name  string
		files []entry
		want  []string
	}{
		{"payload byte changed", edit("data/cam-1/c0.mp4", func(b []byte) []byte { b[1<<20] ^= 1; return b }),
			[]string{"data/cam-1/c0.mp4: SHA-256 is ", "but manifest-sha256.txt (line 1) says", "data/cam-1/c0.mp4: SHA-512 is "}},
		{"payload added", with(entry{"bag-1/data/cam-1/extra.mp4", []byte("x")}),
			[]string{"data/cam-1/extra.mp4: payload file not listed in manifest-sha256.txt", "data/cam-1/extra.mp4: payload file not listed in manifest-sha512.txt", "Payload-Oxum says 3146738 bytes in 3 files but the payload is 3146739 bytes in 4 files"}},
		{"payload removed", without("data/cam-1/c1.mp4"),
			[]string{"data/cam-1/c1.mp4: listed in manifest-sha256.txt (line 2) but not in the bag: the payload file was removed"}},
		{"manifest line edited", edit("manifest-sha256.txt", func(b []byte) []byte { b[0] = 'f'; b[1] = 'f'; b[2] = 'f'; return b }),
			[]string{"data/cam-1/c0.mp4: SHA-256 is", "manifest-sha256.txt: SHA-256 is ", "but tagmanifest-sha256.txt (line 3) says"}},
		{"tag file edited", edit("notes/readme.txt", func(b []byte) []byte { return append(b, '!') }),
			[]string{"notes/readme.txt: SHA-256 is "}},
		{"tag file removed", without("notes/readme.txt"),
			[]string{"notes/readme.txt: listed in tagmanifest-sha256.txt (line 5) but not in the bag: the tag file was removed"}},
		{"manifest removed", without("manifest-sha512.txt"),
			[]string{"manifest-sha512.txt: listed in tagmanifest-sha256.txt (line 4) but not in the bag"}},
		{"every manifest removed", noManifest,
			[]string{"no manifest-sha256.txt or manifest-sha512.txt: the payload cannot be checked"}},
		{"bad manifest line", edit("manifest-sha256.txt", func(b []byte) []byte { return append(b, "zz data/x\n"...) }),
			[]string{`manifest-sha256.txt: line 4: digest zz is not hexadecimal`}},
		{"unsafe manifest path", edit("manifest-sha256.txt", func(b []byte) []byte { return append(b, strings.Repeat("a", 64)+"  data/../../etc/passwd\n"...) }),
			[]string{`manifest-sha256.txt: line 4: path data/../../etc/passwd: path has a ".." element`}},
		{"oxum edited", edit("bag-info.txt", func(b []byte) []byte { return bytes.Replace(b, []byte("3146738.3"), []byte("3146738.2"), 1) }),
			[]string{"bag-info.txt: Payload-Oxum says 3146738 bytes in 2 files but the payload is 3146738 bytes in 3 files"}},
		{"fetch.txt", with(entry{"bag-1/fetch.txt", []byte("http://x 1 data/y\n")}),
			[]string{"fetch.txt: the bag lists files to be fetched"}},
		{"md5 manifest", with(entry{"bag-1/manifest-md5.txt", []byte("")}),
			[]string{`manifest-md5.txt: algorithm "md5" is not supported`}},
		{"tag manifest lists payload", edit("tagmanifest-sha256.txt", func(b []byte) []byte {
			return append(b, strings.Repeat("a", 64)+"  data/cam-1/c1.mp4\n"...)
		}), []string{"tagmanifest-sha256.txt: line 6 lists data/cam-1/c1.mp4, a payload file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := validate(t, rezip(t, tt.files))
			require.NoError(t, err)
			require.False(t, r.OK(), "tampering went unnoticed")
			got := problemsOf(r)
			for _, w := range tt.want {
				assert.Contains(t, got, w)
			}
		})
	}
}

func TestUnlisted(t *testing.T) {
	es := append(files(t, sampleBag(t)), entry{"bag-1/extra.txt", []byte("x")})
	r, err := validate(t, rezip(t, es))
	require.NoError(t, err)
	assert.True(t, r.OK(), "RFC 8493 allows tag files outside the tag manifest: %s", problemsOf(r))
	assert.Equal(t, []string{"extra.txt"}, r.Unlisted)
}

func TestCRCMismatch(t *testing.T) {
	z := sampleBag(t)
	content := payload(2, 1000)
	i := bytes.Index(z, content[:64])
	require.Positive(t, i)
	z[i+500] ^= 0x80 // change a stored byte without fixing the zip's CRC
	r, err := validate(t, z)
	require.NoError(t, err)
	got := problemsOf(r)
	assert.Contains(t, got, "data/cam-1/c1.mp4: the zip entry's CRC-32 does not match its bytes: the file was changed inside the zip")
	assert.Contains(t, got, "data/cam-1/c1.mp4: SHA-256 is")
}

// TestOpenRefuses covers the archive-level tricks, each named by entry.
func TestOpenRefuses(t *testing.T) {
	good := files(t, sampleBag(t))
	with := func(es ...entry) []byte { return rezip(t, append(append([]entry(nil), good...), es...)) }
	symlink := func() []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, e := range good {
			w, _ := zw.Create(e.path)
			w.Write(e.data)
		}
		h := &zip.FileHeader{Name: "bag-1/data/link", Method: zip.Store}
		h.SetMode(fs.ModeSymlink | 0o777)
		w, _ := zw.CreateHeader(h)
		w.Write([]byte("/etc/passwd"))
		zw.Close()
		return buf.Bytes()
	}
	encrypted := func() []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, e := range good {
			w, _ := zw.Create(e.path)
			w.Write(e.data)
		}
		h := &zip.FileHeader{Name: "bag-1/data/enc", Method: zip.Store, Flags: 0x1}
		w, _ := zw.CreateHeader(h)
		w.Write([]byte("secret"))
		zw.Close()
		return buf.Bytes()
	}
	tests := []struct {
		name string
		zip  []byte
		want string
	}{
		{"dotdot", with(entry{"bag-1/../evil.txt", []byte("x")}), `bag-1/../evil.txt: unsafe zip entry name: path has a ".." element`},
		{"dotdot inside", with(entry{"bag-1/data/../../evil", []byte("x")}), `bag-1/data/../../evil: unsafe zip entry name: path has a ".." element`},
		{"absolute", with(entry{"/etc/cron.d/evil", []byte("x")}), "/etc/cron.d/evil: unsafe zip entry name: absolute path"},
		{"backslash", with(entry{`bag-1/data\..\..\evil`, []byte("x")}), `bag-1/data\..\..\evil: unsafe zip entry name: path contains a backslash`},
		{"drive", with(entry{"C:/evil", []byte("x")}), "C:/evil: unsafe zip entry name: path contains a colon"},
		{"dot", with(entry{"bag-1/./data/x", []byte("x")}), `bag-1/./data/x: unsafe zip entry name: path has a "." element`},
		{"outside", with(entry{"other/x", []byte("x")}), "other/x: zip entry is outside the bag directory bag-1/"},
		{"top level", with(entry{"x.txt", []byte("x")}), "x.txt: zip entry is outside the bag directory bag-1/"},
		{"duplicate", with(entry{"bag-1/data/cam-1/c1.mp4", []byte("x")}), "data/cam-1/c1.mp4: zip holds two entries with this name"},
		{"case duplicate", with(entry{"bag-1/data/CAM-1/c1.mp4", []byte("x")}), "data/CAM-1/c1.mp4: name differs only in letter case from data/cam-1/c1.mp4"},
		{"file is directory", with(entry{"bag-1/data/cam-1/c1.mp4/x", []byte("x")}), "data/cam-1/c1.mp4: name is both a file and a directory"},
		{"symlink", symlink(), "data/link: zip entry is a symbolic link"},
		{"encrypted", encrypted(), "data/enc: zip entry is encrypted"},
		{"control char", with(entry{"bag-1/data/a\x1b[2Jb", []byte("x")}), `"bag-1/data/a\x1b[2Jb": unsafe zip entry name: path contains the control character U+001B`},
		{"no bagit.txt", rezip(t, good[1:]), "no bagit.txt in a top-level directory"},
		{"two bags", with(entry{"bag-2/bagit.txt", []byte(Declaration)}), "more than one bagit.txt"},
		{"bagit.txt wrong", rezip(t, append([]entry{{"bag-1/bagit.txt", []byte("BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8\n")}}, good[1:]...)), `bagit.txt: must be exactly "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"`},
		{"bagit.txt extra line", rezip(t, append([]entry{{"bag-1/bagit.txt", []byte(Declaration + "X: y\n")}}, good[1:]...)), "bagit.txt: must be exactly"},
		{"not a zip", []byte("this is not a zip file at all"), "not a readable zip file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(bytes.NewReader(tt.zip), int64(len(tt.zip)))
			var inv *InvalidError
			require.ErrorAs(t, err, &inv)
			var got []string
			for _, p := range inv.Problems {
				got = append(got, p.String())
			}
			assert.Contains(t, strings.Join(got, "\n"), tt.want)
		})
	}
	t.Run("CRLF bagit.txt is accepted", func(t *testing.T) {
		z := rezip(t, append([]entry{{"bag-1/bagit.txt", []byte(strings.ReplaceAll(Declaration, "\n", "\r\n"))}}, good[1:]...))
		_, err := Open(bytes.NewReader(z), int64(len(z)))
		require.NoError(t, err)
	})
	t.Run("directory entries are accepted", func(t *testing.T) {
		z := with(entry{"bag-1/", nil}, entry{"bag-1/data/", nil}, entry{"bag-1/data/cam-1/", nil})
		r, err := validate(t, z)
		require.NoError(t, err)
		assert.True(t, r.OK(), problemsOf(r))
	})
}

// failingReaderAt fails every read that touches byte bad: a disk error,
// not a bad bag.
type failingReaderAt struct {
	r   io.ReaderAt
	bad int64
}

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off <= f.bad && f.bad < off+int64(len(p)) {
		return 0, errors.New("I/O error on the USB stick")
	}
	return f.r.ReadAt(p, off)
}

func TestIOErrorsAreErrors(t *testing.T) {
	z := sampleBag(t)
	// Inside the big payload: Open succeeds, Validate cannot read.
	b, err := Open(failingReaderAt{bytes.NewReader(z), 2 << 20}, int64(len(z)))
	require.NoError(t, err)
	_, err = b.Validate(context.Background(), nil)
	assert.ErrorContains(t, err, "I/O error on the USB stick")

	// In the central directory, at the end: Open cannot read.
	_, err = Open(failingReaderAt{bytes.NewReader(z), int64(len(z)) - 30}, int64(len(z)))
	assert.ErrorContains(t, err, "I/O error on the USB stick")
	var inv *InvalidError
	assert.False(t, errors.As(err, &inv), "an I/O error is not a finding about the bag")
}

func TestValidateProgressAndCancel(t *testing.T) {
	z := sampleBag(t)
	b, err := Open(bytes.NewReader(z), int64(len(z)))
	require.NoError(t, err)
	var calls [][2]int64
	r, err := b.Validate(context.Background(), func(done, total int64) { calls = append(calls, [2]int64{done, total}) })
	require.NoError(t, err)
	require.True(t, r.OK())
	require.GreaterOrEqual(t, len(calls), 3, "a 3 MiB payload reports at least once a MiB")
	for i := 1; i < len(calls); i++ {
		assert.GreaterOrEqual(t, calls[i][0], calls[i-1][0], "done never goes back")
	}
	last := calls[len(calls)-1]
	assert.Equal(t, last[1], last[0], "the last call reports completion")
	var sum int64
	for _, f := range r.Files {
		sum += f.Size
	}
	assert.Equal(t, sum, last[0])

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = b.Validate(ctx, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

// manifestCase is a ParseManifest table case; FuzzParseManifest is seeded
// from them.
type manifestCase struct {
	name    string
	in      string
	want    []ManifestEntry
	wantErr string
}

func manifestCases() []manifestCase {
	h := strings.Repeat("ab", 32)
	H := strings.ToUpper(h)
	return []manifestCase{
		{"empty", "", nil, ""},
		{"one", h + "  data/a\n", []ManifestEntry{{h, "data/a", 1}}, ""},
		{"single space, no final newline", h + " data/a", []ManifestEntry{{h, "data/a", 1}}, ""},
		{"tab", h + "\tdata/a\n", []ManifestEntry{{h, "data/a", 1}}, ""},
		{"uppercase hex", H + "  data/a\n", []ManifestEntry{{h, "data/a", 1}}, ""},
		{"CRLF", h + "  data/a\r\n" + h + "  data/b\r\n", []ManifestEntry{{h, "data/a", 1}, {h, "data/b", 2}}, ""},
		{"CR", h + "  data/a\r" + h + "  data/b\r", []ManifestEntry{{h, "data/a", 1}, {h, "data/b", 2}}, ""},
		{"space in name", h + "  data/my clip.mp4\n", []ManifestEntry{{h, "data/my clip.mp4", 1}}, ""},
		{"percent", h + "  data/100%25\n", []ManifestEntry{{h, "data/100%", 1}}, ""},
		{"percent other", h + "  data/%41\n", []ManifestEntry{{h, "data/%41", 1}}, ""},
		{"blank line", h + "  data/a\n\n" + h + "  data/b\n", []ManifestEntry{{h, "data/a", 1}, {h, "data/b", 3}}, "line 2: blank line"},
		{"no path", h + "\n", nil, "line 1: no path after the digest"},
		{"no path, trailing space", h + "  \n", nil, "line 1: no path after the digest"},
		{"leading space", " " + h + "  data/a\n", nil, "line 1: line starts with whitespace"},
		{"not hex", strings.Repeat("g", 64) + "  data/a\n", nil, "line 1: digest " + strings.Repeat("g", 64) + " is not hexadecimal"},
		{"short", "abcd  data/a\n", nil, "line 1: digest has 4 hex digits, sha256 has 64"},
		{"dotdot", h + "  data/../x\n", nil, `line 1: path data/../x: path has a ".." element`},
		{"encoded newline", h + "  data/a%0Ab\n", nil, "line 1: path \"data/a\\nb\": path contains the control character U+000A"},
		{"absolute", h + "  /etc/passwd\n", nil, "line 1: path /etc/passwd: absolute path"},
		{"duplicate", h + "  data/a\n" + h + "  data/a\n", []ManifestEntry{{h, "data/a", 1}}, "line 2: data/a is listed again (first on line 1)"},
		{"invalid utf8", h + "  data/\xff\n", nil, "line 1: not valid UTF-8"},
	}
}

func TestParseManifest(t *testing.T) {
	for _, tt := range manifestCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseManifest([]byte(tt.in), SHA256)
			assert.Equal(t, tt.want, got)
			if tt.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.wantErr)
			}
		})
	}
}

func TestParseInfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Field
		wantErr string
	}{
		{"simple", "A: 1\nB-C: two words\n", []Field{{"A", "1"}, {"B-C", "two words"}}, ""},
		{"continuation", "A: one\n  two\n\tthree\nB: x\n", []Field{{"A", "one two three"}, {"B", "x"}}, ""},
		{"colon in value", "Contact-Email: a@b\nNote: a: b\n", []Field{{"Contact-Email", "a@b"}, {"Note", "a: b"}}, ""},
		{"repeated", "A: 1\nA: 2\n", []Field{{"A", "1"}, {"A", "2"}}, ""},
		{"empty value", "A:\n", []Field{{"A", ""}}, ""},
		{"no colon", "A 1\n", nil, "line 1: no colon after a label"},
		{"leading continuation", " x\n", nil, "line 1: continuation line before any label"},
		{"label space", "A : 1\n", nil, `line 1: label "A " starts or ends with whitespace`},
		{"empty label", ": 1\n", nil, "line 1: empty label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseInfo([]byte(tt.in))
			assert.Equal(t, tt.want, got)
			if tt.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.wantErr)
			}
		})
	}
	assert.Equal(t, []string{"1", "2"}, Lookup([]Field{{"a", "1"}, {"B", "x"}, {"A", "2"}}, "A"))
}

func TestPathEncoding(t *testing.T) {
	for _, p := range []string{"a", "100%", "%25", "a%0Ab", "%", "%2", "x%zz"} {
		assert.Equal(t, p, decodePath(encodePath(p)), p)
	}
	assert.Equal(t, "a\r\nb%", decodePath("a%0d%0Ab%25"))
}

func TestQuotePath(t *testing.T) {
	assert.Equal(t, "data/cam-1/c0", QuotePath("data/cam-1/c0"))
	assert.Equal(t, `"data/a b"`, QuotePath("data/a b"))
	assert.Equal(t, `"data/\u202egnp.exe"`, QuotePath("data/\u202egnp.exe"))
	assert.Equal(t, `"a\nPROBLEM: forged"`, QuotePath("a\nPROBLEM: forged"))
	assert.Equal(t, `"\xff"`, QuotePath("\xff"))
}
