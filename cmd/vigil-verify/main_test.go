package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // the ledger's database, as the gateway opens it

	"github.com/vigil-gw/vigil/evidence/exhibit"
	"github.com/vigil-gw/vigil/evidence/ledger"
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// makePackage builds a real evidence package from a real ledger and
// returns its path and the gateway's verifier key.
func makePackage(t *testing.T) (string, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	signer, _, err := ledger.LoadOrCreateKey(filepath.Join(dir, "ledger.key"), "vigil-site-a")
	require.NoError(t, err)
	vkey, err := ledger.VerifierKey(filepath.Join(dir, "ledger.key"))
	require.NoError(t, err)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "evidence.db"))
	require.NoError(t, err)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	l, err := ledger.Open(ctx, db, signer, "vigil.test/site-a/evidence")
	require.NoError(t, err)

	clips := map[string][]byte{}
	for i, id := range []string{"cam-1/c1.mp4", "cam-2/c2.mp4", "cam-9/secret.mp4"} {
		cam, clip, _ := strings.Cut(id, "/")
		b := bytes.Repeat([]byte(id), 2000+i)
		clips[id] = b
		sum := sha256.Sum256(b)
		start := t0.Add(time.Duration(i) * time.Hour)
		_, err := l.Append(ctx, ledger.Clip{Camera: cam, Clip: clip, Wearer: "Wearer " + cam, Site: "site-a",
			Start: start, End: start.Add(90 * time.Second), Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:]),
			Received: start.Add(2 * time.Minute), Ingest: ledger.IngestTUS})
		require.NoError(t, err)
	}
	cp, _, err := l.Checkpoint(ctx, t0.Add(4*time.Hour))
	require.NoError(t, err)

	p := exhibit.Package{
		SourceOrganization: "Example NHS Trust", ExhibitRef: "JS/1", CrimeRef: "42/12345/25",
		Officer: "DC Jo Smith", Force: "Example Police", RequestID: "REL-7",
		RequestedBy: "Priya", ApprovedBy: "Sam", Bagged: t0.Add(48 * time.Hour),
		Checkpoint: cp.Note, PublicKey: vkey, Signer: signer,
	}
	for _, id := range []string{"cam-1/c1.mp4", "cam-2/c2.mp4"} {
		cam, clip, _ := strings.Cut(id, "/")
		e, err := l.Get(ctx, cam, clip)
		require.NoError(t, err)
		proof, err := l.Prove(ctx, e.Index, cp.Size)
		require.NoError(t, err)
		b := clips[id]
		p.Clips = append(p.Clips, exhibit.Clip{
			Camera: cam, Clip: clip, Wearer: e.Wearer, Site: e.Site, Start: e.Start, End: e.End,
			Size: e.Size, SHA256: e.SHA256, Body: e.Body, Proof: proof,
			Open:       func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
			Continuity: []exhibit.Step{{At: e.Start, What: "captured", Who: cam}, {At: e.Received, What: "received", Who: "gateway"}},
		})
	}
	path := filepath.Join(dir, "REL-7.zip")
	out, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, exhibit.Build(ctx, out, p))
	require.NoError(t, out.Close())
	return path, vkey
}

func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// tamper rewrites one file of the package's zip.
func tamper(t *testing.T, path, name string, edit func([]byte) []byte) string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	require.NoError(t, err)
	defer zr.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		rc.Close()
		if strings.HasSuffix(f.Name, "/"+name) {
			b = edit(b)
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store})
		require.NoError(t, err)
		w.Write(b)
	}
	require.NoError(t, zw.Close())
	bad := filepath.Join(t.TempDir(), "tampered.zip")
	require.NoError(t, os.WriteFile(bad, buf.Bytes(), 0o644))
	return bad
}

func TestRun(t *testing.T) {
	pkg, vkey := makePackage(t)
	keyFile := filepath.Join(t.TempDir(), "gateway.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte(vkey+"\r\n"), 0o644))

	t.Run("valid with key", func(t *testing.T) {
		code, out, errOut := runCLI("--pubkey", vkey, pkg)
		assert.Equal(t, 0, code, out+errOut)
		for _, want := range []string{
			"Evidence package:   vigil-REL-7 (" + pkg,
			"Exhibit:            JS/1",
			"Crime reference:    42/12345/25",
			"Requesting officer: DC Jo Smith, Example Police",
			"Gateway key:        " + vkey + " (the key given with --pubkey)",
			"Ledger checkpoint:  vigil.test/site-a/evidence, 3 entries, signed 2025-03-01T13:00:00.000Z",
			"Clips (2; times UTC):",
			"  1. data/cam-1/c1.mp4",
			"     camera cam-1, worn by Wearer cam-1, site site-a",
			"     recorded 2025-03-01T09:00:00.000Z to 2025-03-01T09:01:30.000Z (1m30s)",
			"     24000 bytes (23.4 KiB), SHA-256 ",
			"     ok: the original bytes recorded in the ledger, included in the signed checkpoint; 3 continuity steps",
			"cam-2/c2.mp4: captured, received, exported (3 steps, 2025-03-01T10:00:00.000Z to 2025-03-03T09:00:00.000Z)",
			"  ok  tagmanifest-sha256.txt.sig: signed by vigil-site-a",
			"  ok  the package's key (gateway.pub) is the key given independently",
			"RESULT: VALID: vigil-REL-7, 2 clip(s); every check passed with the key given.",
		} {
			assert.Contains(t, out, want)
		}
		assert.NotContains(t, out, "secret.mp4")
		assert.NotContains(t, out, "WARNING")
		assert.Empty(t, errOut, "no progress lines for a small package on a non-terminal")
	})

	t.Run("valid with key file, flags after the package", func(t *testing.T) {
		code, out, _ := runCLI(pkg, "--pubkey", keyFile)
		assert.Equal(t, 0, code)
		assert.Contains(t, out, "RESULT: VALID: vigil-REL-7")
	})

	t.Run("valid without key says so", func(t *testing.T) {
		code, out, _ := runCLI(pkg)
		assert.Equal(t, 0, code)
		assert.Contains(t, out, "(taken from the package: NOT independently checked)")
		assert.Contains(t, out, "WARNING: the gateway key was taken from the package itself")
		assert.Contains(t, out, "RESULT: VALID against the key inside the package")
	})

	t.Run("quiet", func(t *testing.T) {
		code, out, errOut := runCLI("--quiet", "--pubkey", vkey, pkg)
		assert.Equal(t, 0, code)
		assert.Equal(t, "RESULT: VALID: vigil-REL-7, 2 clip(s); every check passed with the key given.\n", out)
		assert.Empty(t, errOut)
	})

	t.Run("clip changed", func(t *testing.T) {
		bad := tamper(t, pkg, "data/cam-2/c2.mp4", func(b []byte) []byte { b[100] ^= 1; return b })
		code, out, _ := runCLI("--pubkey", vkey, bad)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "  PROBLEM: data/cam-2/c2.mp4: SHA-256 is ")
		assert.Contains(t, out, "  PROBLEM: data/cam-2/c2.mp4: the clip's SHA-256 is ")
		assert.Contains(t, out, "  2. data/cam-2/c2.mp4")
		assert.Contains(t, out, "     FAILED: see the problems below")
		assert.Contains(t, out, "  PROBLEM: data/cam-2/c2.mp4: SHA-512 is ")
		assert.Contains(t, out, "RESULT: NOT VALID: 3 problem(s) found")

		code, out, _ = runCLI("--quiet", bad)
		assert.Equal(t, 1, code)
		assert.True(t, strings.HasPrefix(out, "Problems (3):\n  PROBLEM: data/cam-2/c2.mp4: "), out)
	})

	t.Run("other key", func(t *testing.T) {
		_, other := makePackage(t)
		code, out, _ := runCLI("--pubkey", other, pkg)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "PROBLEM: gateway.pub: the package's key "+vkey+" is not the key given independently ("+other+")")
		assert.Contains(t, out, "PROBLEM: tagmanifest-sha256.txt.sig: not signed by the given key")
		assert.Contains(t, out, "(NOT the key given with --pubkey)")
	})

	t.Run("hostile text is escaped", func(t *testing.T) {
		bad := tamper(t, pkg, "bag-info.txt", func(b []byte) []byte {
			return bytes.Replace(b, []byte("JS/1"), []byte("JS/1\x1b[2J\x1b]0;pwned\x07"), 1)
		})
		code, out, _ := runCLI(bad)
		assert.Equal(t, 1, code)
		assert.NotContains(t, out, "\x1b")
		assert.Contains(t, out, `JS/1\u001b[2J\u001b]0;pwned\u0007`)
		assert.Contains(t, out, "PROBLEM: bag-info.txt: SHA-256 is ")
	})

	t.Run("path traversal", func(t *testing.T) {
		zr, err := zip.OpenReader(pkg)
		require.NoError(t, err)
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, f := range zr.File {
			require.NoError(t, zw.Copy(f))
		}
		zr.Close()
		w, _ := zw.Create("vigil-REL-7/../../evil.sh")
		w.Write([]byte("rm -rf ~"))
		zw.Close()
		bad := filepath.Join(t.TempDir(), "evil.zip")
		require.NoError(t, os.WriteFile(bad, buf.Bytes(), 0o644))
		code, out, _ := runCLI(bad)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, `PROBLEM: vigil-REL-7/../../evil.sh: unsafe zip entry name: path has a ".." element`)
	})

	t.Run("not a package", func(t *testing.T) {
		code, out, _ := runCLI(keyFile)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "PROBLEM: not a readable zip file")
	})

	t.Run("missing file", func(t *testing.T) {
		code, out, errOut := runCLI(filepath.Join(t.TempDir(), "nope.zip"))
		assert.Equal(t, 1, code)
		assert.Empty(t, out)
		assert.Contains(t, errOut, "vigil-verify: cannot open the package: ")
	})

	t.Run("directory", func(t *testing.T) {
		code, _, errOut := runCLI(t.TempDir())
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, "is not a file")
	})

	usageTests := []struct {
		name string
		args []string
		want string
	}{
		{"no args", nil, "give exactly one package file (got 0)"},
		{"two packages", []string{pkg, pkg}, "give exactly one package file (got 2)"},
		{"unknown flag", []string{"--network", pkg}, "flag provided but not defined: -network"},
		{"pubkey missing value", []string{pkg, "--pubkey"}, "flag needs an argument: -pubkey"},
		{"bad pubkey", []string{"--pubkey", "not-a-key", pkg}, `--pubkey: "not-a-key" is neither a verifier key (name+hash+key) nor a readable file`},
		{"pubkey file without key", []string{"--pubkey", pkg, pkg}, "--pubkey: file " + pkg + " does not hold a verifier key"},
	}
	for _, tt := range usageTests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(tt.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tt.want)
		})
	}
	t.Run("help", func(t *testing.T) {
		code, out, _ := runCLI("-h")
		assert.Equal(t, 0, code)
		assert.Contains(t, out, "usage: vigil-verify [--pubkey KEY_OR_FILE] [--quiet] PACKAGE.zip")
	})
}

func TestProgress(t *testing.T) {
	now := t0
	clock := func() time.Time { now = now.Add(time.Second); return now }

	t.Run("terminal bar", func(t *testing.T) {
		var b bytes.Buffer
		p := &progress{w: &b, tty: true, now: clock}
		for done := int64(0); done <= 1000; done += 100 {
			p.update(done, 1000)
			p.update(done, 1000) // same percentage: no redraw
		}
		p.finish()
		s := b.String()
		assert.Equal(t, 11, strings.Count(s, "\rverifying ["), s)
		assert.Contains(t, s, "\rverifying [###############...............]  50%  500 B of 1000 B ")
		assert.Contains(t, s, "\rverifying [##############################] 100%")
		assert.True(t, strings.HasSuffix(s, "\r"+strings.Repeat(" ", 79)+"\r"), "the bar is cleared")
	})
	t.Run("terminal bar is throttled", func(t *testing.T) {
		var b bytes.Buffer
		frozen := func() time.Time { return t0 }
		p := &progress{w: &b, tty: true, now: frozen}
		for done := int64(0); done <= 100; done++ {
			p.update(done, 100)
		}
		s := b.String()
		assert.Equal(t, 2, strings.Count(s, "\rverifying ["), "first draw and the end only, within 100ms: %q", s)
		assert.Contains(t, s, "100%")
	})
	t.Run("log lines for large packages", func(t *testing.T) {
		var b bytes.Buffer
		p := &progress{w: &b, now: clock}
		const total = 1 << 30
		for done := int64(0); done <= total; done += 1 << 20 {
			p.update(done, total)
		}
		p.finish()
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		require.Len(t, lines, 10)
		assert.Equal(t, "verifying: 10% (103.0 MiB of 1.0 GiB)", lines[0])
		assert.Equal(t, "verifying: 100% (1.0 GiB of 1.0 GiB)", lines[9])
	})
	t.Run("nothing for small packages", func(t *testing.T) {
		var b bytes.Buffer
		p := &progress{w: &b, now: clock}
		p.update(50, 100)
		p.update(100, 100)
		p.finish()
		assert.Empty(t, b.String())
	})
	var nilBar *progress
	nilBar.finish() // quiet mode has no bar
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3<<20 + 1<<19: "3.5 MiB", 5 << 40: "5.0 TiB"} {
		assert.Equal(t, want, humanBytes(n), fmt.Sprint(n))
	}
}

// TestImports keeps the verifier independent of the gateway: it is handed
// to the police and must not carry (or need) anything else.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	require.NoError(t, err)
	for _, dep := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(dep, "github.com/vigil-gw/vigil/")
		if !ok {
			continue
		}
		assert.Contains(t, []string{"cmd/vigil-verify", "cmd/internal/buildinfo", "evidence/exhibit", "evidence/bagit", "evidence/ledger"}, rest, "vigil-verify must not import %s", dep)
	}
	for _, forbidden := range []string{"modernc.org/sqlite", "github.com/minio/minio-go/v7", "net/http"} {
		assert.NotContains(t, strings.Fields(string(out)), forbidden, "vigil-verify works offline with no database")
	}
}
