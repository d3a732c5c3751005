package ledger

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger/ledgertest"
)

// tamperFixture is a ledger of 12 entries alternating cam-1 (even indices,
// clips c0..c5) and cam-2 (odd indices, clips c0..c5), with checkpoints 1, 2
// and 3 at sizes 5, 10 and 12.
func tamperFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t)
	for i := 0; i < 12; i++ {
		_, err := f.l.Append(ctx, clipN([]string{"cam-1", "cam-2"}[i%2], i/2))
		require.NoError(t, err)
		if i+1 == 5 || i+1 == 10 || i+1 == 12 {
			_, ok, err := f.l.Checkpoint(ctx, t0.Add(time.Duration(i)*time.Hour))
			require.NoError(t, err)
			require.True(t, ok)
		}
	}
	return f
}

// rewrite re-encodes entry idx after mut. With consistent, every column
// (hash included) is updated to match, as a careful tamperer would;
// otherwise only the body changes. It returns the new hash.
func (f *fixture) rewrite(t *testing.T, idx uint64, consistent bool, mut func(c *Clip, prev *string)) string {
	t.Helper()
	e, err := f.l.At(context.Background(), idx)
	require.NoError(t, err)
	c, prev := e.Clip, e.Prev
	mut(&c, &prev)
	b, err := encodeBody(c, prev)
	require.NoError(t, err)
	h := hexHash(LeafHash(b))
	if !consistent {
		f.exec(t, `UPDATE ledger_entries SET body = ? WHERE idx = ?`, b, idx)
		return h
	}
	f.exec(t, `UPDATE ledger_entries SET camera = ?, clip = ?, wearer = ?, site = ?, start_ms = ?, end_ms = ?,
		size = ?, sha256 = ?, received_ms = ?, ingest = ?, prev = ?, hash = ?, body = ? WHERE idx = ?`,
		c.Camera, c.Clip, c.Wearer, c.Site, c.Start.UnixMilli(), c.End.UnixMilli(), c.Size, c.SHA256,
		c.Received.UnixMilli(), c.Ingest, prev, h, b, idx)
	return h
}

// rechain relinks every later entry of the camera after idx to a rewritten
// entry, so the camera's chain is intact again.
func (f *fixture) rechain(t *testing.T, camera string, idx uint64, hash string) {
	t.Helper()
	entries, err := f.l.List(context.Background(), Filter{Camera: camera})
	require.NoError(t, err)
	for _, e := range entries {
		if e.Index <= idx {
			continue
		}
		hash = f.rewrite(t, e.Index, true, func(_ *Clip, prev *string) { *prev = hash })
	}
}

// insertEntry inserts a forged, internally valid row.
func (f *fixture) insertEntry(t *testing.T, idx int64, c Clip, prev string) {
	t.Helper()
	b, err := encodeBody(c, prev)
	require.NoError(t, err)
	f.exec(t, `INSERT INTO ledger_entries
		(idx, camera, clip, wearer, site, start_ms, end_ms, size, sha256, received_ms, ingest, prev, hash, body)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		idx, c.Camera, c.Clip, c.Wearer, c.Site, c.Start.UnixMilli(), c.End.UnixMilli(), c.Size,
		c.SHA256, c.Received.UnixMilli(), c.Ingest, prev, hexHash(LeafHash(b)), b)
}

// resign replaces checkpoint seq with one signed by signer over the stored
// entries, as someone holding the key could.
func (f *fixture) resign(t *testing.T, seq int64, size uint64, signer note.Signer) {
	t.Helper()
	ctx := context.Background()
	r := ranges.NewEmptyRange(0)
	require.NoError(t, extend(ctx, f.db, r, size, nil))
	root, err := rootOf(r)
	require.NoError(t, err)
	tm := t0.Add(time.Duration(size-1) * time.Hour) // as tamperFixture dates them
	signed, err := note.Sign(&note.Note{Text: formatCheckpoint(testOrigin, size, root, tm)}, signer)
	require.NoError(t, err)
	f.exec(t, `UPDATE ledger_checkpoints SET size = ?, root = ?, time_ms = ?, note = ?, tree = ? WHERE seq = ?`,
		size, root, tm.UnixMilli(), signed, bytes.Join(r.Hashes(), nil), seq)
}

func (f *fixture) hashAt(t *testing.T, idx uint64) string {
	t.Helper()
	e, err := f.l.At(context.Background(), idx)
	require.NoError(t, err)
	return e.Hash
}

func TestVerifyClean(t *testing.T) {
	f := tamperFixture(t)
	rep, err := f.l.Verify(context.Background(), f.v)
	require.NoError(t, err)
	assert.True(t, rep.OK(), problemsText(rep))
	assert.Equal(t, Report{Entries: 12, Checkpoints: 3}, rep)

	_, err = f.l.Verify(context.Background(), nil)
	assert.EqualError(t, err, "ledger: verify: no verifier key")
}

type wantProblem struct {
	index        int64
	camera, clip string
	what         string // exact sentence, or a prefix ending in "…"
}

func TestVerifyTamper(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, f *fixture)
		want   []wantProblem
	}{
		{
			name: "UPDATE a body",
			tamper: func(t *testing.T, f *fixture) {
				f.rewrite(t, 6, false, func(c *Clip, _ *string) { c.Size = 7 })
			},
			want: []wantProblem{
				{6, "cam-1", "c3", "entry 6 (cam-1/c3): body does not match its stored hash …"},
				{6, "cam-1", "c3", "entry 6 (cam-1/c3): column size is 1003 but the body says 7: the row was edited (the body is the record)"},
				{-1, "", "", "checkpoint 2 (size 10): root does not match the entries: the log was rewritten after it was signed"},
				{-1, "", "", "checkpoint 3 (size 12): root does not match the entries: the log was rewritten after it was signed"},
			},
		},
		{
			name: "UPDATE a body and every column to match",
			tamper: func(t *testing.T, f *fixture) {
				f.rewrite(t, 6, true, func(c *Clip, _ *string) { c.SHA256 = strings.Repeat("0", 64) })
			},
			want: []wantProblem{
				{8, "cam-1", "c4", "cam-1: entry 8 (cam-1/c4) names … as previous but the previous cam-1 entry is entry 6 (cam-1/c3, …): an entry is missing or reordered"},
				{-1, "", "", "checkpoint 2 (size 10): root does not match …"},
				{-1, "", "", "checkpoint 3 (size 12): root does not match …"},
			},
		},
		{
			name:   "UPDATE the size column only",
			tamper: func(t *testing.T, f *fixture) { f.exec(t, `UPDATE ledger_entries SET size = 99 WHERE idx = 3`) },
			want: []wantProblem{
				{3, "cam-2", "c1", "entry 3 (cam-2/c1): column size is 99 but the body says 1001: the row was edited (the body is the record)"},
			},
		},
		{
			name: "UPDATE a column to another type",
			tamper: func(t *testing.T, f *fixture) {
				f.exec(t, `UPDATE ledger_entries SET received_ms = 'yesterday' WHERE idx = 2`)
			},
			want: []wantProblem{
				{2, "cam-1", "c1", `entry 2 (cam-1/c1): column received_ms is "yesterday" but the body says 1740820560000: the row was edited (the body is the record)`},
			},
		},
		{
			name: "UPDATE the wearer column: the problem does not echo personal data",
			tamper: func(t *testing.T, f *fixture) {
				f.exec(t, `UPDATE ledger_entries SET wearer = 'Jane Doe' WHERE idx = 5`)
			},
			want: []wantProblem{
				{5, "cam-2", "c2", "entry 5 (cam-2/c2): column wearer differs from the body: the row was edited (the body is the record)"},
			},
		},
		{
			name: "UPDATE a body to garbage",
			tamper: func(t *testing.T, f *fixture) {
				f.exec(t, `UPDATE ledger_entries SET body = '{"camera":"cam-2"}' WHERE idx = 11`)
			},
			want: []wantProblem{
				{11, "cam-2", "c5", "entry 11 (cam-2/c5): body does not match its stored hash …"},
				{11, "cam-2", "c5", `entry 11 (cam-2/c5): body is not a valid ledger entry (ledger: parse body: start time "" is not a UTC time …`},
				{-1, "", "", "checkpoint 3 (size 12): root does not match …"},
			},
		},
		{
			name:   "DELETE a row",
			tamper: func(t *testing.T, f *fixture) { f.exec(t, `DELETE FROM ledger_entries WHERE idx = 4`) },
			want: []wantProblem{
				{4, "", "", "entry 4 is missing (the ledger goes from entry 3 to 5): the row was deleted"},
				{6, "cam-1", "c3", "cam-1: entry 6 (cam-1/c3) names … as previous but the previous cam-1 entry is entry 2 (cam-1/c1, …): an entry is missing or reordered"},
				{-1, "", "", "checkpoint 1 (size 5): root cannot be recomputed because entry 4 is missing: the log was altered after it was signed"},
				{-1, "", "", "checkpoint 2 (size 10): root cannot be recomputed because entry 4 is missing: …"},
				{-1, "", "", "checkpoint 3 (size 12): root cannot be recomputed because entry 4 is missing: …"},
			},
		},
		{
			name:   "DELETE several rows",
			tamper: func(t *testing.T, f *fixture) { f.exec(t, `DELETE FROM ledger_entries WHERE idx IN (6, 7, 8)`) },
			want: []wantProblem{
				{6, "", "", "entries 6 to 8 are missing (the ledger goes from entry 5 to 9): rows were deleted"},
				{9, "cam-2", "c4", "cam-2: entry 9 (cam-2/c4) names … as previous but the previous cam-2 entry is entry 5 (cam-2/c2, …): an entry is missing or reordered"},
				{10, "cam-1", "c5", "cam-1: entry 10 (cam-1/c5) names … as previous but the previous cam-1 entry is entry 4 (cam-1/c2, …): an entry is missing or reordered"},
				{-1, "", "", "checkpoint 2 (size 10): root cannot be recomputed because entry 6 is missing: …"},
				{-1, "", "", "checkpoint 3 (size 12): root cannot be recomputed because entry 6 is missing: …"},
			},
		},
		{
			name:   "DELETE the newest row",
			tamper: func(t *testing.T, f *fixture) { f.exec(t, `DELETE FROM ledger_entries WHERE idx = 11`) },
			want: []wantProblem{
				{-1, "", "", "checkpoint 3 (size 12) covers 12 entries but the ledger holds only 11: entries were deleted from the end of the log"},
			},
		},
		{
			name: "INSERT a forged row in the middle",
			tamper: func(t *testing.T, f *fixture) {
				prev := f.hashAt(t, 4) // cam-1's entry before index 6
				// Make room at index 6 (two steps: SQLite checks the key per row).
				f.exec(t, `UPDATE ledger_entries SET idx = idx + 1000 WHERE idx >= 6`)
				f.exec(t, `UPDATE ledger_entries SET idx = idx - 999 WHERE idx >= 1000`)
				c := clipN("cam-1", 99)
				c.Clip = "forged"
				f.insertEntry(t, 6, c, prev)
			},
			want: []wantProblem{
				{7, "cam-1", "c3", "cam-1: entry 7 (cam-1/c3) names entry 4 (cam-1/c2) as previous but the previous cam-1 entry is entry 6 (cam-1/forged, …): entries were inserted or reordered between them"},
				{-1, "", "", "checkpoint 2 (size 10): root does not match …"},
				{-1, "", "", "checkpoint 3 (size 12): root does not match …"},
			},
		},
		{
			name: "INSERT a forged row at the end that restarts a chain",
			tamper: func(t *testing.T, f *fixture) {
				c := clipN("cam-1", 99)
				c.Clip = "forged"
				f.insertEntry(t, 12, c, "")
			},
			want: []wantProblem{
				{12, "cam-1", "forged", "cam-1: entry 12 (cam-1/forged) claims to be the camera's first entry but entry 10 (cam-1/c5, …) comes before it: the entry was inserted or the chain restarted"},
			},
		},
		{
			name: "INSERT a forged row with a negative index",
			tamper: func(t *testing.T, f *fixture) {
				c := clipN("cam-3", 0)
				f.insertEntry(t, -1, c, "")
			},
			want: []wantProblem{
				{-1, "cam-3", "c0", "entry -1 (cam-3/c0): negative index: the row was inserted outside the ledger"},
			},
		},
		{
			name: "swap two rows' indices (same camera)",
			tamper: func(t *testing.T, f *fixture) {
				f.exec(t, `UPDATE ledger_entries SET idx = 100 WHERE idx = 2`)
				f.exec(t, `UPDATE ledger_entries SET idx = 2 WHERE idx = 4`)
				f.exec(t, `UPDATE ledger_entries SET idx = 4 WHERE idx = 100`)
			},
			want: []wantProblem{
				{2, "cam-1", "c2", "cam-1: entry 2 (cam-1/c2) names entry 4 (cam-1/c1), which comes after it, as previous: entries were reordered"},
				{4, "cam-1", "c1", "cam-1: entry 4 (cam-1/c1) names entry 0 (cam-1/c0) as previous but the previous cam-1 entry is entry 2 (cam-1/c2, …): entries were inserted or reordered between them"},
				{6, "cam-1", "c3", "cam-1: entry 6 (cam-1/c3) names entry 2 (cam-1/c2) as previous but the previous cam-1 entry is entry 4 (cam-1/c1, …): entries were inserted or reordered between them"},
				{-1, "", "", "checkpoint 1 (size 5): root does not match …"},
				{-1, "", "", "checkpoint 2 (size 10): root does not match …"},
				{-1, "", "", "checkpoint 3 (size 12): root does not match …"},
			},
		},
		{
			name: "swap two rows' indices (different cameras): only the tree shows it",
			tamper: func(t *testing.T, f *fixture) {
				f.exec(t, `UPDATE ledger_entries SET idx = 100 WHERE idx = 2`)
				f.exec(t, `UPDATE ledger_entries SET idx = 2 WHERE idx = 3`)
				f.exec(t, `UPDATE ledger_entries SET idx = 3 WHERE idx = 100`)
			},
			want: []wantProblem{
				{-1, "", "", "checkpoint 1 (size 5): root does not match …"},
				{-1, "", "", "checkpoint 2 (size 10): root does not match …"},
				{-1, "", "", "checkpoint 3 (size 12): root does not match …"},
			},
		},
		{
			name: "rewrite a camera's chain end to end: only the tree shows it",
			tamper: func(t *testing.T, f *fixture) {
				h := f.rewrite(t, 6, true, func(c *Clip, _ *string) { c.End = c.End.Add(time.Hour) })
				f.rechain(t, "cam-1", 6, h)
			},
			want: []wantProblem{
				{-1, "", "", "checkpoint 2 (size 10): root does not match …"},
				{-1, "", "", "checkpoint 3 (size 12): root does not match …"},
			},
		},
		{
			name: "rewrite the log and re-sign later checkpoints with the gateway key",
			tamper: func(t *testing.T, f *fixture) {
				h := f.rewrite(t, 1, true, func(c *Clip, _ *string) { c.Size = 1 })
				f.rechain(t, "cam-2", 1, h)
				f.resign(t, 2, 10, f.signer)
				f.resign(t, 3, 12, f.signer)
			},
			want: []wantProblem{
				{-1, "", "", "checkpoint 1 (size 5): root does not match the entries: the log was rewritten after it was signed"},
				{-1, "", "", "checkpoint 2 (size 10) is not consistent with checkpoint 1 (size 5): it signed a log whose first 5 entries differ from those checkpoint 1 (size 5) signed: the log was rewritten between the two signings"},
			},
		},
		{
			name: "edit a checkpoint's note",
			tamper: func(t *testing.T, f *fixture) {
				var n []byte
				require.NoError(t, f.db.QueryRow(`SELECT note FROM ledger_checkpoints WHERE seq = 2`).Scan(&n))
				n = bytes.Replace(n, []byte("\n10\n"), []byte("\n11\n"), 1)
				f.exec(t, `UPDATE ledger_checkpoints SET note = ?, size = 11 WHERE seq = 2`, n)
			},
			want: []wantProblem{
				{-1, "", "", "checkpoint 2: signature by vigil-test does not match the text: the note was altered after signing: …"},
			},
		},
		{
			name: "replace a checkpoint with one signed by another key",
			tamper: func(t *testing.T, f *fixture) {
				_, other, _ := ledgertest.SeededKey(t, "vigil-test", 99)
				f.resign(t, 2, 10, other)
			},
			want: []wantProblem{
				{-1, "", "", "checkpoint 2: not signed by key vigil-test (…"},
			},
		},
		{
			name: "UPDATE a checkpoint's root column",
			tamper: func(t *testing.T, f *fixture) {
				f.exec(t, `UPDATE ledger_checkpoints SET root = zeroblob(32) WHERE seq = 2`)
			},
			want: []wantProblem{
				{-1, "", "", "checkpoint 2 (size 10): column root is 000000000000… but the signed note says …: the row was edited"},
			},
		},
		{
			name:   "DELETE a checkpoint",
			tamper: func(t *testing.T, f *fixture) { f.exec(t, `DELETE FROM ledger_checkpoints WHERE seq = 2`) },
			want: []wantProblem{
				{-1, "", "", "checkpoint 2 is missing (checkpoint 3 follows 1): it was deleted"},
			},
		},
		{
			name: "copy a checkpoint over a later one",
			tamper: func(t *testing.T, f *fixture) {
				f.exec(t, `UPDATE ledger_checkpoints SET (size, root, time_ms, note, tree) =
					(SELECT size, root, time_ms, note, tree FROM ledger_checkpoints WHERE seq = 1) WHERE seq = 3`)
			},
			want: []wantProblem{
				{-1, "", "", "checkpoint 3 (size 5) is smaller than checkpoint 2 (size 10): a log can only grow, so entries were removed and the smaller log signed"},
				{-1, "", "", "checkpoint 3 (size 5) is dated 2025-03-01T13:00:00.000Z, before checkpoint 2 (size 10) (2025-03-01T18:00:00.000Z): the gateway clock went back or the checkpoints were reordered"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tamperFixture(t)
			tt.tamper(t, f)
			rep, err := f.l.Verify(context.Background(), f.v)
			require.NoError(t, err)
			assert.False(t, rep.OK())
			for _, w := range tt.want {
				assert.True(t, hasProblem(rep, w), "missing problem [%d %s/%s] %s\ngot:\n%s", w.index, w.camera, w.clip, w.what, problemsText(rep))
			}
			assert.Len(t, rep.Problems, len(tt.want), "got:\n%s", problemsText(rep))
		})
	}
}

func hasProblem(rep Report, w wantProblem) bool {
	for _, p := range rep.Problems {
		if p.Index != w.index || p.Camera != w.camera || p.Clip != w.clip {
			continue
		}
		if matchWhat(p.What, w.what) {
			return true
		}
	}
	return false
}

// matchWhat compares a sentence with a pattern in which "…" stands for any
// text (the pattern's own "…" characters after a hash prefix included).
func matchWhat(got, pattern string) bool {
	parts := strings.Split(pattern, "…")
	if !strings.HasPrefix(got, parts[0]) {
		return false
	}
	rest := got[len(parts[0]):]
	for i, part := range parts[1:] {
		last := i == len(parts)-2
		if last && part == "" {
			return true
		}
		j := strings.Index(rest, part)
		if last {
			return j >= 0 && strings.HasSuffix(rest, part)
		}
		if j < 0 {
			return false
		}
		rest = rest[j+len(part):]
	}
	return rest == ""
}

func TestMatchWhat(t *testing.T) {
	assert.True(t, matchWhat("abc", "abc"))
	assert.False(t, matchWhat("abcd", "abc"))
	assert.True(t, matchWhat("abc 12ab… def", "abc … def"))
	assert.True(t, matchWhat("abc xyz", "abc …"))
	assert.False(t, matchWhat("abd xyz", "abc …"))
}
