package exhibit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence/ledger"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// patternReader yields n bytes of a fixed pattern without holding them.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	for i := range p {
		x := uint64(r.off + int64(i))
		p[i] = byte(x ^ x>>8 ^ x>>16)
	}
	r.off += int64(len(p))
	return len(p), nil
}

func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// TestLargeClipStreams builds and verifies a package holding a 96 MiB clip
// and checks that neither allocates memory in proportion to it: the clip
// is copied and hashed through one buffer on the way in and on the way out.
func TestLargeClipStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and hashes 96 MiB")
	}
	const size = 96 << 20
	ctx := context.Background()
	dir := t.TempDir()
	signer, _, err := ledger.LoadOrCreateKey(filepath.Join(dir, "k"), "vigil-big")
	require.NoError(t, err)
	vkey, err := ledger.VerifierKey(filepath.Join(dir, "k"))
	require.NoError(t, err)
	db, err := sqlitedb.Open(filepath.Join(dir, "e.db"))
	require.NoError(t, err)
	defer db.Close()
	l, err := ledger.Open(ctx, db, signer, testOrigin)
	require.NoError(t, err)

	h := sha256.New()
	_, err = io.Copy(h, &patternReader{n: size})
	require.NoError(t, err)
	e, err := l.Append(ctx, ledger.Clip{Camera: "cam-big", Clip: "long.mp4", Wearer: "W", Site: "S",
		Start: t0, End: t0.Add(time.Hour), Size: size, SHA256: hex.EncodeToString(h.Sum(nil)), Received: t0.Add(2 * time.Hour), Ingest: ledger.IngestDock})
	require.NoError(t, err)
	cp, _, err := l.Checkpoint(ctx, t0.Add(3*time.Hour))
	require.NoError(t, err)
	proof, err := l.Prove(ctx, e.Index, cp.Size)
	require.NoError(t, err)
	p := Package{
		SourceOrganization: "T", ExhibitRef: "X/1", CrimeRef: "C", Officer: "O", Force: "F", RequestID: "R1",
		RequestedBy: "A", ApprovedBy: "B", Bagged: t0.Add(4 * time.Hour), Checkpoint: cp.Note, PublicKey: vkey, Signer: signer,
		Clips: []Clip{{Camera: e.Camera, Clip: e.Clip.Clip, Wearer: e.Wearer, Site: e.Site, Start: e.Start, End: e.End,
			Size: e.Size, SHA256: e.SHA256, Body: e.Body, Proof: proof,
			Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(&patternReader{n: size}), nil }}},
	}

	zipPath := filepath.Join(dir, "big.zip")
	out, err := os.Create(zipPath)
	require.NoError(t, err)
	before := allocated()
	require.NoError(t, Build(ctx, out, p))
	built := allocated() - before
	require.NoError(t, out.Close())
	assert.Less(t, built, uint64(16<<20), "Build allocated %d bytes for a %d-byte clip", built, size)

	in, err := os.Open(zipPath)
	require.NoError(t, err)
	defer in.Close()
	st, err := in.Stat()
	require.NoError(t, err)
	before = allocated()
	r, err := Verify(ctx, in, st.Size(), Options{PubKey: vkey})
	verified := allocated() - before
	require.NoError(t, err)
	require.True(t, r.OK(), problems(r))
	assert.Equal(t, int64(size), r.Clips[0].Size)
	assert.Less(t, verified, uint64(16<<20), "Verify allocated %d bytes for a %d-byte clip", verified, size)
	t.Logf("allocated: Build %d KiB, Verify %d KiB for a %d MiB clip", built>>10, verified>>10, size>>20)
}
