package ledger

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger/ledgertest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const goldenPath = "testdata/golden.json"

// golden is a self-contained test vector: fixed clips, times and key seed,
// so bodies, hashes, roots, notes and proofs are stable. A verifier written
// in another language can check itself against it.
type golden struct {
	Comment     string             `json:"comment"`
	Origin      string             `json:"origin"`
	SignerKey   string             `json:"signer_key"` // test key from a fixed seed: never use it for anything else
	VerifierKey string             `json:"verifier_key"`
	Entries     []goldenEntry      `json:"entries"`
	Checkpoints []goldenCheckpoint `json:"checkpoints"`
	Inclusion   []Proof            `json:"inclusion"` // every entry in the last checkpoint
	Consistency goldenConsistency  `json:"consistency"`
}

type goldenEntry struct {
	Index uint64 `json:"index"`
	Clip  Clip   `json:"clip"`
	Prev  string `json:"prev"`
	Hash  string `json:"hash"`
	Body  string `json:"body"`
}

type goldenCheckpoint struct {
	Size uint64    `json:"size"`
	Root []byte    `json:"root"`
	Time time.Time `json:"time"`
	Note string    `json:"note"`
}

type goldenConsistency struct {
	Size1  uint64   `json:"size1"`
	Size2  uint64   `json:"size2"`
	Hashes [][]byte `json:"hashes"`
}

// buildGolden makes the vector from its fixed inputs.
func buildGolden(t *testing.T) golden {
	ctx := context.Background()
	skey, signer, v := ledgertest.SeededKey(t, "vigil-golden", 0x42)
	const origin = "vigil.example/golden/evidence"
	l, err := Open(ctx, openDB(t), signer, origin)
	require.NoError(t, err)

	g := golden{
		Comment:   "Vigil evidence ledger test vector; see evidence/ledger/doc.go. Regenerate with: go test ./evidence/ledger/ -run TestGolden -update",
		Origin:    origin,
		SignerKey: skey,
	}
	g.VerifierKey, err = verifierKey(skey)
	require.NoError(t, err)
	require.Equal(t, v.KeyHash(), mustVerifier(t, g.VerifierKey).KeyHash())

	clips := []Clip{clipN("cam-1", 0), clipN("cam-2", 0), clipN("cam-1", 1), clipN("cam-1", 2), clipN("cam-2", 1)}
	clips[1].Wearer = `O'Brien "Bee" \ Zoë <3`
	clips[3].Ingest = IngestDock
	var cps []Checkpoint
	for i, c := range clips {
		e, err := l.Append(ctx, c)
		require.NoError(t, err)
		g.Entries = append(g.Entries, goldenEntry{Index: e.Index, Clip: e.Clip, Prev: e.Prev, Hash: e.Hash, Body: string(e.Body)})
		if i == 2 || i == 4 {
			cp, ok, err := l.Checkpoint(ctx, t0.Add(time.Duration(i)*time.Hour))
			require.NoError(t, err)
			require.True(t, ok)
			cps = append(cps, cp)
			g.Checkpoints = append(g.Checkpoints, goldenCheckpoint{Size: cp.Size, Root: cp.Root, Time: cp.Time, Note: string(cp.Note)})
		}
	}
	last := cps[len(cps)-1]
	for i := range last.Size {
		p, err := l.Prove(ctx, i, last.Size)
		require.NoError(t, err)
		g.Inclusion = append(g.Inclusion, p)
	}
	hashes, err := l.Consistency(ctx, cps[0].Size, last.Size)
	require.NoError(t, err)
	g.Consistency = goldenConsistency{Size1: cps[0].Size, Size2: last.Size, Hashes: hashes}
	return g
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	require.NoError(t, err)
	return v
}

func TestGolden(t *testing.T) {
	got := buildGolden(t)
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(goldenPath), 0o755))
		require.NoError(t, os.WriteFile(goldenPath, append(b, '\n'), 0o644))
		t.Logf("wrote %s", goldenPath)
	}
	b, err := os.ReadFile(goldenPath)
	require.NoError(t, err, "run with -update to create it")
	var want golden
	require.NoError(t, json.Unmarshal(b, &want))
	assert.Equal(t, want, got, "the ledger's output changed: if on purpose, every stored hash changed too")
}

// TestGoldenOffline verifies the vector using only the file and the
// offline API, as the police-side verifier will.
func TestGoldenOffline(t *testing.T) {
	b, err := os.ReadFile(goldenPath)
	require.NoError(t, err)
	var g golden
	require.NoError(t, json.Unmarshal(b, &g))
	v := mustVerifier(t, g.VerifierKey)

	last := map[string]string{}
	for _, e := range g.Entries {
		assert.Equal(t, e.Hash, hexHash(LeafHash([]byte(e.Body))), "entry %d hash", e.Index)
		c, prev, err := ParseBody([]byte(e.Body))
		require.NoError(t, err)
		assert.Equal(t, e.Clip, c)
		assert.Equal(t, e.Prev, prev)
		assert.Equal(t, last[c.Camera], prev, "entry %d chain", e.Index)
		last[c.Camera] = e.Hash
		again, err := CanonicalBody(e.Clip, e.Prev)
		require.NoError(t, err)
		assert.Equal(t, e.Body, string(again), "entry %d body recomputed from its metadata", e.Index)
	}

	var cps []Checkpoint
	for _, gc := range g.Checkpoints {
		cp, err := ParseCheckpoint([]byte(gc.Note), v)
		require.NoError(t, err)
		assert.Equal(t, g.Origin, cp.Origin)
		assert.Equal(t, gc.Size, cp.Size)
		assert.Equal(t, gc.Root, cp.Root)
		assert.True(t, gc.Time.Equal(cp.Time))
		cps = append(cps, cp)
	}
	final := cps[len(cps)-1]
	require.Len(t, g.Inclusion, int(final.Size))
	for _, p := range g.Inclusion {
		assert.NoError(t, VerifyInclusion([]byte(g.Entries[p.Index].Body), p, final))
	}
	assert.NoError(t, VerifyConsistency(g.Consistency.Hashes, cps[0], final))
}
