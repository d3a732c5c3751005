package ledger

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger/ledgertest"
)

func TestCheckpointOnlyWhenGrown(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)

	cp, ok, err := f.l.Checkpoint(ctx, t0)
	require.NoError(t, err)
	assert.False(t, ok, "an empty ledger has nothing to sign")
	assert.Zero(t, cp.Size)
	_, ok, err = f.l.Latest(ctx)
	require.NoError(t, err)
	assert.False(t, ok)

	f.appendAlternating(t, 3, "cam-1", "cam-2")
	first, ok, err := f.l.Checkpoint(ctx, t0.Add(time.Minute+1234*time.Microsecond))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, uint64(3), first.Size)
	assert.Equal(t, testOrigin, first.Origin)
	assert.Equal(t, t0.Add(time.Minute+time.Millisecond), first.Time, "time truncated to the millisecond")
	root, err := f.l.Root(ctx, 3)
	require.NoError(t, err)
	assert.Equal(t, root, first.Root)

	again, ok, err := f.l.Checkpoint(ctx, t0.Add(2*time.Minute))
	require.NoError(t, err)
	assert.False(t, ok, "not grown: no new checkpoint")
	assert.Equal(t, first, again, "the latest checkpoint is returned")

	f.appendAlternating(t, 2, "cam-3")
	second, ok, err := f.l.Checkpoint(ctx, t0.Add(3*time.Minute))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, uint64(5), second.Size)

	latest, ok, err := f.l.Latest(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, second, latest)
	all, err := f.l.Checkpoints(ctx)
	require.NoError(t, err)
	assert.Equal(t, []Checkpoint{first, second}, all)

	// The signed roots are consistent with each other.
	hashes, err := f.l.Consistency(ctx, first.Size, second.Size)
	require.NoError(t, err)
	assert.NoError(t, VerifyConsistency(hashes, first, second))

	want := fmt.Sprintf("%s\n5\n%s\ntime 2025-03-01T09:03:00.000Z\n\n— vigil-test ", testOrigin, base64.StdEncoding.EncodeToString(second.Root))
	assert.True(t, strings.HasPrefix(string(second.Note), want), "%s", second.Note)
}

func TestCheckpointSignature(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.appendAlternating(t, 4, "cam-1")
	cp, ok, err := f.l.Checkpoint(ctx, t0)
	require.NoError(t, err)
	require.True(t, ok)

	got, err := ParseCheckpoint(cp.Note, f.v)
	require.NoError(t, err)
	assert.Equal(t, cp, got)

	_, _, otherV := ledgertest.SeededKey(t, "vigil-test", 8) // same name, another key
	_, err = ParseCheckpoint(cp.Note, otherV)
	assert.ErrorContains(t, err, "ledger: parse checkpoint: not signed by key vigil-test")

	_, _, stranger := ledgertest.SeededKey(t, "someone-else", 7)
	_, err = ParseCheckpoint(cp.Note, stranger)
	assert.ErrorContains(t, err, "not signed by key someone-else")

	_, err = ParseCheckpoint(cp.Note, nil)
	assert.EqualError(t, err, "ledger: parse checkpoint: no verifier key")

	// Verify with the wrong key names each checkpoint.
	rep, err := f.l.Verify(ctx, otherV)
	require.NoError(t, err)
	require.Len(t, rep.Problems, 1, problemsText(rep))
	assert.Contains(t, rep.Problems[0].What, "checkpoint 1: not signed by key vigil-test")
	assert.Equal(t, int64(-1), rep.Problems[0].Index)

	// A witness cosignature by an unknown key does not hurt.
	_, witness, _ := ledgertest.SeededKey(t, "witness", 9)
	n, err := note.Open(cp.Note, note.VerifierList(f.v))
	require.NoError(t, err)
	cosigned, err := note.Sign(n, f.signer, witness)
	require.NoError(t, err)
	got, err = ParseCheckpoint(cosigned, f.v)
	require.NoError(t, err)
	assert.Equal(t, cp.Root, got.Root)
}

func TestParseCheckpointText(t *testing.T) {
	root := base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name    string
		text    string
		want    Checkpoint
		wantErr string
	}{
		{"plain C2SP body", "o\n5\n" + root + "\n", Checkpoint{Origin: "o", Size: 5, Root: make([]byte, 32)}, ""},
		{"with time", "o\n5\n" + root + "\ntime 2025-03-01T09:00:00.000Z\n", Checkpoint{Origin: "o", Size: 5, Root: make([]byte, 32), Time: t0}, ""},
		{"other extensions ignored", "o\n0\n" + root + "\nfoo bar\ntime 2025-03-01T09:00:00.000Z\nbaz\n", Checkpoint{Origin: "o", Size: 0, Root: make([]byte, 32), Time: t0}, ""},
		{"no final newline", "o\n5\n" + root, Checkpoint{}, "does not end with a newline"},
		{"two lines", "o\n5\n", Checkpoint{}, "has 2 lines"},
		{"empty origin", "\n5\n" + root + "\n", Checkpoint{}, "origin"},
		{"leading zero", "o\n05\n" + root + "\n", Checkpoint{}, `size "05" is not a decimal`},
		{"negative size", "o\n-5\n" + root + "\n", Checkpoint{}, `size "-5"`},
		{"size overflow", "o\n99999999999999999999\n" + root + "\n", Checkpoint{}, "value out of range"},
		{"short root", "o\n5\nAAAA\n", Checkpoint{}, "is not the base64 of a 32-byte hash"},
		{"unpadded root", "o\n5\n" + strings.TrimRight(root, "=") + "\n", Checkpoint{}, "is not the base64"},
		{"empty extension", "o\n5\n" + root + "\n\n", Checkpoint{}, "empty extension line"},
		{"bad time", "o\n5\n" + root + "\ntime yesterday\n", Checkpoint{}, `time "yesterday"`},
		{"non-UTC time", "o\n5\n" + root + "\ntime 2025-03-01T10:00:00.000+01:00\n", Checkpoint{}, "is not a UTC time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCheckpointText(tt.text)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestCheckpointReadOnly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.appendAlternating(t, 2, "cam-1")
	_, _, err := f.l.Checkpoint(ctx, t0)
	require.NoError(t, err)

	ro, err := Open(ctx, f.db, nil, testOrigin)
	require.NoError(t, err)
	_, _, err = ro.Checkpoint(ctx, t0)
	assert.EqualError(t, err, "ledger: checkpoint: no signing key (ledger opened read-only)")
	rep, err := ro.Verify(ctx, f.v)
	require.NoError(t, err)
	assert.True(t, rep.OK(), problemsText(rep))
	assert.Equal(t, 2, rep.Entries)
	assert.Equal(t, 1, rep.Checkpoints)

	_, _, err = f.l.Checkpoint(ctx, time.Time{})
	assert.ErrorContains(t, err, "is outside the years 1970-9999")
}

// TestCheckpointRefusesRewrittenLog: the gateway never signs a log that
// does not extend what it signed before.
func TestCheckpointRefusesRewrittenLog(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	entries := f.appendAlternating(t, 4, "cam-1")
	_, _, err := f.l.Checkpoint(ctx, t0)
	require.NoError(t, err)
	f.appendAlternating(t, 1, "cam-2")

	// Rewrite entry 1 consistently (body and hash) and spoil the stored
	// tree, so the checkpoint has to fall back to the leaves.
	c := entries[1].Clip
	c.Size = 7
	b, err := encodeBody(c, entries[1].Prev)
	require.NoError(t, err)
	f.exec(t, `UPDATE ledger_entries SET body = ?, hash = ?, size = 7 WHERE idx = 1`, b, hexHash(LeafHash(b)))
	f.exec(t, `UPDATE ledger_checkpoints SET tree = x'00'`)

	_, _, err = f.l.Checkpoint(ctx, t0.Add(time.Minute))
	assert.EqualError(t, err, "ledger: checkpoint: the stored entries no longer give the root signed in checkpoint 1 (size 4): the log was rewritten; run verify")
	cps, err := f.l.Checkpoints(ctx)
	require.NoError(t, err)
	assert.Len(t, cps, 1, "nothing was signed")
}

// TestCheckpointRebuildsCorruptTree: a damaged stored tree alone does not
// stop checkpoints when the entries still give the signed root.
func TestCheckpointRebuildsCorruptTree(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.appendAlternating(t, 5, "cam-1")
	_, _, err := f.l.Checkpoint(ctx, t0)
	require.NoError(t, err)
	f.exec(t, `UPDATE ledger_checkpoints SET tree = zeroblob(64)`)
	f.appendAlternating(t, 3, "cam-2")
	cp, ok, err := f.l.Checkpoint(ctx, t0.Add(time.Minute))
	require.NoError(t, err)
	require.True(t, ok)
	root, err := f.l.Root(ctx, 8)
	require.NoError(t, err)
	assert.Equal(t, root, cp.Root)

	rep, err := f.l.Verify(ctx, f.v)
	require.NoError(t, err)
	require.Len(t, rep.Problems, 1, problemsText(rep))
	assert.Equal(t, "checkpoint 1 (size 5): its stored tree state, from which the next checkpoint is built, was altered: the row was edited", rep.Problems[0].What)
}

func TestCheckpointRefusesGap(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.appendAlternating(t, 5, "cam-1")
	f.exec(t, `DELETE FROM ledger_entries WHERE idx = 3`)
	_, _, err := f.l.Checkpoint(ctx, t0)
	assert.EqualError(t, err, "ledger: checkpoint of size 5: entry 3 is missing: run verify")
}

// FuzzParseCheckpoint feeds signed notes and their corruptions to
// ParseCheckpoint and the body parser: neither may panic, and whatever
// parses must be a well-formed checkpoint.
func FuzzParseCheckpoint(f *testing.F) {
	_, signer, v := ledgertest.SeededKey(f, "vigil-test", 7)
	root := base64.StdEncoding.EncodeToString(make([]byte, 32))
	valid, err := note.Sign(&note.Note{Text: "vigil.test/fuzz\n12\n" + root + "\ntime 2025-03-01T09:00:00.000Z\n"}, signer)
	require.NoError(f, err)
	f.Add(valid)
	f.Add([]byte(strings.Replace(string(valid), "\n12\n", "\n13\n", 1)))  // body edited
	f.Add(valid[:len(valid)-10])                                          // truncated signature
	f.Add([]byte(strings.SplitAfter(string(valid), "\n\n")[0]))           // signature removed
	f.Add([]byte(strings.Replace(string(valid), "time ", "time x", 1)))   // bad extension
	f.Add([]byte(strings.Replace(string(valid), "\n12\n", "\n012\n", 1))) // non-canonical size
	f.Add([]byte("o\n1\n" + root + "\n\n— vigil-test AAAAAAAA\n"))        // short signature
	f.Add([]byte("\n\n"))
	f.Add([]byte{})
	f.Add([]byte("o\n1\n" + root + "\n\x00\n\n— x y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if cp, err := ParseCheckpoint(data, v); err == nil {
			require.Len(t, cp.Root, 32)
			require.Equal(t, data, cp.Note)
			require.NotEmpty(t, cp.Origin)
		}
		if cp, err := parseCheckpointText(string(data)); err == nil {
			require.Len(t, cp.Root, 32)
			lines := strings.Split(string(data), "\n")
			require.Equal(t, fmt.Sprint(cp.Size), lines[1])
		}
	})
}
