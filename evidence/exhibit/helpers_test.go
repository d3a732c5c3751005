package exhibit

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

const testOrigin = "vigil.test/site-a/evidence"

// t0 is the fixed start of test time.
var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// content is deterministic pseudo-random clip bytes.
func content(seed string, n int) []byte {
	sum := sha256.Sum256([]byte(seed))
	x := uint64(sum[0]) | uint64(sum[1])<<8 | uint64(sum[2])<<16 | 1
	b := make([]byte, n)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// testClip is one clip appended to the test ledger.
type testClip struct {
	camera, clip, wearer string
	size                 int
	export               bool
}

// The test ledger: two exported cameras and wearers, interleaved with
// clips of other wearers (one on a shared camera) that must not leak.
var testClips = []testClip{
	{"cam-alpha", "alpha-0001.mp4", "Alice Carer", 200 << 10, true},
	{"cam-zulu", "zulu-secret-0001.mp4", "Zed Otherwearer", 5000, false},
	{"cam-bravo", "bravo-0001.mp4", "Bob Nurse", 3<<20 + 123, true},
	{"cam-alpha", "alpha-private-0002.mp4", "Carol Sharedcam", 7000, false},
	{"cam-alpha", "alpha-0003.mp4", "Alice Carer", 1234, true},
	{"cam-zulu", "zulu-secret-0002.mp4", "Zed Otherwearer", 900, false},
}

// fixture is a real ledger on a temporary SQLite database with a key made
// by ledger.LoadOrCreateKey, and the Package for its exported clips.
type fixture struct {
	l      *ledger.Ledger
	signer note.Signer
	vkey   string
	bytes  map[string][]byte // camera/clip → content
	pkg    Package
}

func newFixture(t testing.TB, keyName string) *fixture {
	t.Helper()
	return newSizedFixture(t, keyName, 1<<30)
}

// newSizedFixture is newFixture with every clip cut to at most maxSize
// bytes, for fuzzing.
func newSizedFixture(t testing.TB, keyName string, maxSize int) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "ledger.key")
	signer, _, err := ledger.LoadOrCreateKey(keyPath, keyName)
	require.NoError(t, err)
	vkey, err := ledger.VerifierKey(keyPath)
	require.NoError(t, err)
	db, err := sqlitedb.Open(filepath.Join(dir, "evidence.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	l, err := ledger.Open(ctx, db, signer, testOrigin)
	require.NoError(t, err)

	f := &fixture{l: l, signer: signer, vkey: vkey, bytes: map[string][]byte{}}
	for i, tc := range testClips {
		b := content(tc.camera+"/"+tc.clip, min(tc.size, maxSize))
		f.bytes[tc.camera+"/"+tc.clip] = b
		sum := sha256.Sum256(b)
		start := t0.Add(time.Duration(i) * 10 * time.Minute)
		ingest := ledger.IngestTUS
		if tc.camera == "cam-bravo" {
			ingest = ledger.IngestDock
		}
		_, err := l.Append(ctx, ledger.Clip{
			Camera: tc.camera, Clip: tc.clip, Wearer: tc.wearer, Site: "Ward 7 <North> & \"Annexe\"",
			Start: start, End: start.Add(5*time.Minute + 1500*time.Millisecond),
			Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:]),
			Received: start.Add(6 * time.Minute), Ingest: ingest,
		})
		require.NoError(t, err)
	}
	cp, made, err := l.Checkpoint(ctx, t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.True(t, made)

	f.pkg = Package{
		SourceOrganization: "Example Community NHS Trust",
		ContactName:        "Information Governance Office",
		ContactEmail:       "ig@example.nhs.uk",
		ExhibitRef:         "JS/1",
		CrimeRef:           "42/12345/25",
		Officer:            "DC 1234 Jo Smith",
		Force:              "Example Constabulary",
		Incident:           "INC-2025-0042",
		RequestID:          "REL-2025-0007",
		RequestedBy:        "Priya Patel (IG)",
		ApprovedBy:         "Sam Jones (IG lead)",
		Bagged:             t0.Add(72 * time.Hour),
		Checkpoint:         cp.Note,
		PublicKey:          vkey,
		Signer:             signer,
	}
	for _, tc := range testClips {
		if !tc.export {
			continue
		}
		e, err := l.Get(ctx, tc.camera, tc.clip)
		require.NoError(t, err)
		p, err := l.Prove(ctx, e.Index, cp.Size)
		require.NoError(t, err)
		b := f.bytes[tc.camera+"/"+tc.clip]
		f.pkg.Clips = append(f.pkg.Clips, Clip{
			Camera: e.Camera, Clip: e.Clip.Clip, Wearer: e.Wearer, Site: e.Site,
			Start: e.Start, End: e.End, Size: e.Size, SHA256: e.SHA256,
			Body: e.Body, Proof: p,
			Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
			Continuity: []Step{
				{At: e.Start, What: "captured", Who: e.Camera, Role: "body-worn camera", Detail: "worn by " + e.Wearer},
				{At: e.Received, What: "received", Who: "vigil gateway", Role: "system", Detail: "via " + e.Ingest},
				{At: e.Received.Add(time.Second), What: "verified", Who: "vigil gateway", Role: "system", Detail: "SHA-256 matched the camera's declared digest"},
				{At: e.Received.Add(time.Minute), What: "uploaded", Who: "vigil gateway", Role: "system", Detail: "s3://evidence/clips/" + e.Camera + "/" + e.Clip.Clip},
				{At: t0.Add(24 * time.Hour), What: "accessed", Who: "Priya Patel", Role: "ig", Why: "review for police request 42/12345/25"},
				{At: t0.Add(25 * time.Hour), What: "accessed", Who: "Sam Jones", Role: "ig", Why: "approval of release"},
				{At: t0.Add(26 * time.Hour), What: "retention changed", Who: "Sam Jones", Role: "ig", Why: "evidential: police investigation", Detail: "legal hold"},
			},
		})
	}
	return f
}

// build makes the package's zip.
func (f *fixture) build(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, Build(context.Background(), &buf, f.pkg))
	return buf.Bytes()
}

func verify(t testing.TB, z []byte, o Options) Report {
	t.Helper()
	r, err := Verify(context.Background(), bytes.NewReader(z), int64(len(z)), o)
	require.NoError(t, err)
	return r
}

// bagFiles is an unpacked package: bag-relative path → bytes, plus the
// order of the zip.
type bagFiles struct {
	bag   string
	order []string
	data  map[string][]byte
}

func unpack(t testing.TB, z []byte) *bagFiles {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	require.NoError(t, err)
	b := &bagFiles{data: map[string][]byte{}}
	for _, f := range zr.File {
		bag, rest, ok := strings.Cut(f.Name, "/")
		require.True(t, ok)
		b.bag = bag
		rc, err := f.Open()
		require.NoError(t, err)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		rc.Close()
		b.order = append(b.order, rest)
		b.data[rest] = data
	}
	return b
}

func (b *bagFiles) set(path string, data []byte) {
	if _, ok := b.data[path]; !ok {
		b.order = append(b.order, path)
	}
	b.data[path] = data
}

func (b *bagFiles) remove(path string) {
	delete(b.data, path)
	for i, p := range b.order {
		if p == path {
			b.order = append(b.order[:i], b.order[i+1:]...)
			return
		}
	}
}

// pack zips the files again, with correct zip CRCs, and any raw extra
// entries (full zip names).
func (b *bagFiles) pack(t testing.TB, extra ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, p := range b.order {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: b.bag + "/" + p, Method: zip.Store})
		require.NoError(t, err)
		_, err = w.Write(b.data[p])
		require.NoError(t, err)
	}
	for _, e := range extra {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e[0], Method: zip.Store})
		require.NoError(t, err)
		_, err = w.Write([]byte(e[1]))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// rehash recomputes the manifests and the tag manifest, as an attacker
// without the gateway key would after changing a file.
func (b *bagFiles) rehash() {
	m256, m512 := map[string]string{}, map[string]string{}
	octets, count := 0, 0
	for _, p := range b.order {
		if strings.HasPrefix(p, "data/") {
			s256, s512 := sha256.Sum256(b.data[p]), sha512.Sum512(b.data[p])
			m256[p], m512[p] = hex.EncodeToString(s256[:]), hex.EncodeToString(s512[:])
			octets += len(b.data[p])
			count++
		}
	}
	b.data["manifest-sha256.txt"] = manifestOf(m256)
	b.data["manifest-sha512.txt"] = manifestOf(m512)
	info := string(b.data["bag-info.txt"])
	i := strings.Index(info, "Payload-Oxum: ")
	b.data["bag-info.txt"] = []byte(info[:i] + fmt.Sprintf("Payload-Oxum: %d.%d\n", octets, count))
	tags := map[string]string{}
	for _, p := range b.order {
		if !strings.HasPrefix(p, "data/") && p != "tagmanifest-sha256.txt" && p != SignatureFile {
			s := sha256.Sum256(b.data[p])
			tags[p] = hex.EncodeToString(s[:])
		}
	}
	b.data["tagmanifest-sha256.txt"] = manifestOf(tags)
}

// resign signs the tag manifest with signer, as an attacker with a key of
// their own would.
func (b *bagFiles) resign(t testing.TB, signer note.Signer) {
	t.Helper()
	s := sha256.Sum256(b.data["tagmanifest-sha256.txt"])
	sig, err := note.Sign(&note.Note{Text: signedText(b.bag, hex.EncodeToString(s[:]))}, signer)
	require.NoError(t, err)
	b.data[SignatureFile] = sig
}

func manifestOf(m map[string]string) []byte {
	var paths []string
	for p := range m {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var s strings.Builder
	for _, p := range paths {
		s.WriteString(m[p] + "  " + p + "\n")
	}
	return []byte(s.String())
}

// newKey makes another gateway key, as an attacker would.
func newKey(t testing.TB, name string) (note.Signer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k")
	s, _, err := ledger.LoadOrCreateKey(path, name)
	require.NoError(t, err)
	v, err := ledger.VerifierKey(path)
	require.NoError(t, err)
	return s, v
}

func problems(r Report) string { return strings.Join(r.Problems, "\n") }

func mustVerifier(t testing.TB, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	require.NoError(t, err)
	return v
}

func mustSign(t testing.TB, text string, s note.Signer) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: text}, s)
	require.NoError(t, err)
	return b
}
