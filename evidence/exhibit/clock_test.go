package exhibit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence/ledger"
)

// TestClockUnsynchronisedClip checks that a clip whose ledger entry says the
// gateway's clock was unsynchronised verifies like any other, and that the
// package says, wherever it gives the received time, that it may be wrong.
func TestClockUnsynchronisedClip(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "vigil-site-a")
	b := content("marked", 4096)
	sum := sha256.Sum256(b)
	start := t0.Add(3 * time.Hour)
	e, err := f.l.Append(ctx, ledger.Clip{Camera: "cam-alpha", Clip: "alpha-0009.mp4", Wearer: "Alice Carer", Site: "Ward 7",
		Start: start, End: start.Add(time.Minute), Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:]),
		Received: start.Add(2 * time.Minute), Ingest: ledger.IngestTUS, ClockUnsynchronised: true})
	require.NoError(t, err)
	cp, made, err := f.l.Checkpoint(ctx, t0.Add(4*time.Hour))
	require.NoError(t, err)
	require.True(t, made)
	p, err := f.l.Prove(ctx, e.Index, cp.Size)
	require.NoError(t, err)
	f.pkg.Checkpoint = cp.Note
	f.pkg.Clips = []Clip{{Camera: e.Camera, Clip: e.Clip.Clip, Wearer: e.Wearer, Site: e.Site, Start: e.Start, End: e.End,
		Size: e.Size, SHA256: e.SHA256, Body: e.Body, Proof: p,
		Open:       func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		Continuity: []Step{{At: e.Received, What: "received", Who: "vigil gateway", Role: "system"}}}}

	z := f.build(t)
	r := verify(t, z, Options{PubKey: f.vkey})
	require.True(t, r.OK(), problems(r))
	require.Len(t, r.Clips, 1)
	assert.True(t, r.Clips[0].ClockUnsynchronised)

	files := unpack(t, z)
	const note = "the gateway's clock was not synchronised to a time source: this time may be wrong"
	continuity := string(files.data["continuity/cam-alpha/alpha-0009.mp4.txt"])
	require.NotEmpty(t, continuity, "files: %v", files.order)
	assert.Contains(t, continuity, note)
}
