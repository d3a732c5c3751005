package ledger

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/testonly"
)

// Reference RFC 6962 section 2.1 implementation, written from the RFC's
// recursive definitions so the streaming code is checked against something
// that shares none of its structure.

func refLargestPow2Below(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

func refNode(l, r []byte) []byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

// refMTH is MTH(D[n]) over leaf hashes.
func refMTH(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		return leaves[0]
	}
	k := refLargestPow2Below(len(leaves))
	return refNode(refMTH(leaves[:k]), refMTH(leaves[k:]))
}

// refPath is PATH(m, D[n]).
func refPath(m int, leaves [][]byte) [][]byte {
	if len(leaves) <= 1 {
		return nil
	}
	k := refLargestPow2Below(len(leaves))
	if m < k {
		return append(refPath(m, leaves[:k]), refMTH(leaves[k:]))
	}
	return append(refPath(m-k, leaves[k:]), refMTH(leaves[:k]))
}

// refSubproof is SUBPROOF(m, D[n], b).
func refSubproof(m int, leaves [][]byte, b bool) [][]byte {
	n := len(leaves)
	if m == n {
		if b {
			return nil
		}
		return [][]byte{refMTH(leaves)}
	}
	k := refLargestPow2Below(n)
	if m <= k {
		return append(refSubproof(m, leaves[:k], b), refMTH(leaves[k:]))
	}
	return append(refSubproof(m-k, leaves[k:], false), refMTH(leaves[:k]))
}

func refConsistency(m int, leaves [][]byte) [][]byte {
	if m == 0 || m == len(leaves) {
		return nil
	}
	return refSubproof(m, leaves, true)
}

func nonNil(h [][]byte) [][]byte {
	if h == nil {
		return [][]byte{}
	}
	return h
}

// merkleFixture appends n entries across three cameras and returns their
// bodies and leaf hashes, plus the testonly tree over the same leaves.
func merkleFixture(t *testing.T, n int) (*fixture, []Entry, [][]byte, *testonly.Tree) {
	t.Helper()
	f := newFixture(t)
	entries := f.appendAlternating(t, n, "cam-1", "cam-2", "cam-3")
	tree := testonly.New(hasher)
	var leaves [][]byte
	for _, e := range entries {
		leaves = append(leaves, LeafHash(e.Body))
		tree.AppendData(e.Body)
	}
	return f, entries, leaves, tree
}

func TestRoots(t *testing.T) {
	ctx := context.Background()
	f, _, leaves, tree := merkleFixture(t, 33)
	for size := 0; size <= len(leaves); size++ {
		root, err := f.l.Root(ctx, uint64(size))
		require.NoError(t, err)
		assert.Equal(t, refMTH(leaves[:size]), root, "size %d vs the RFC definition", size)
		assert.Equal(t, tree.HashAt(uint64(size)), root, "size %d vs testonly", size)
	}
	_, err := f.l.Root(ctx, 34)
	assert.ErrorContains(t, err, "tree size 34 is beyond the ledger's 33 entries")
}

func TestInclusionProofs(t *testing.T) {
	ctx := context.Background()
	f, entries, leaves, tree := merkleFixture(t, 40)
	for _, size := range []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40} {
		cp := Checkpoint{Size: size, Root: refMTH(leaves[:size])}
		for index := uint64(0); index < size; index++ {
			p, err := f.l.Prove(ctx, index, size)
			require.NoError(t, err, "index %d size %d", index, size)
			assert.Equal(t, Proof{Index: index, Size: size, Hashes: p.Hashes}, p)

			want, err := tree.InclusionProof(index, size)
			require.NoError(t, err)
			assert.Equal(t, want, p.Hashes, "index %d size %d vs testonly", index, size)
			assert.Equal(t, nonNil(refPath(int(index), leaves[:size])), p.Hashes, "index %d size %d vs the RFC definition", index, size)

			assert.NoError(t, VerifyInclusion(entries[index].Body, p, cp), "index %d size %d", index, size)
		}
	}
}

func TestInclusionAgainstSignedCheckpoints(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	var entries []Entry
	var cps []Checkpoint
	for i := range 23 {
		e, err := f.l.Append(ctx, clipN([]string{"cam-1", "cam-2"}[i%2], i))
		require.NoError(t, err)
		entries = append(entries, e)
		if i%7 == 6 || i == 22 {
			cp, ok, err := f.l.Checkpoint(ctx, t0.Add(time.Duration(i)*time.Minute))
			require.NoError(t, err)
			require.True(t, ok)
			cps = append(cps, cp)
		}
	}
	for _, stored := range cps {
		// Offline: only the signed note, the verifier, the body and the proof.
		cp, err := ParseCheckpoint(stored.Note, f.v)
		require.NoError(t, err)
		for i := uint64(0); i < cp.Size; i++ {
			p, err := f.l.Prove(ctx, i, cp.Size)
			require.NoError(t, err)
			assert.NoError(t, VerifyInclusion(entries[i].Body, p, cp))
		}
	}

	last := cps[len(cps)-1]
	p, err := f.l.Prove(ctx, 3, last.Size)
	require.NoError(t, err)
	t.Run("another body fails", func(t *testing.T) {
		err := VerifyInclusion(entries[4].Body, p, last)
		assert.ErrorContains(t, err, "ledger: verify inclusion of entry 3 in tree size 23")
	})
	t.Run("an edited body fails", func(t *testing.T) {
		b := append([]byte(nil), entries[3].Body...)
		b[len(b)-3] ^= 1
		assert.Error(t, VerifyInclusion(b, p, last))
	})
	t.Run("a proof for another size fails", func(t *testing.T) {
		err := VerifyInclusion(entries[3].Body, p, cps[0])
		assert.EqualError(t, err, "ledger: verify inclusion of entry 3: proof is for tree size 23 but the checkpoint is for size 7")
	})
	t.Run("a tampered proof fails", func(t *testing.T) {
		bad := Proof{Index: p.Index, Size: p.Size, Hashes: append([][]byte(nil), p.Hashes...)}
		bad.Hashes[0] = make([]byte, 32)
		assert.Error(t, VerifyInclusion(entries[3].Body, bad, last))
	})
}

func TestConsistencyProofs(t *testing.T) {
	ctx := context.Background()
	f, _, leaves, tree := merkleFixture(t, 20)
	for size2 := uint64(0); size2 <= 20; size2++ {
		for size1 := uint64(0); size1 <= size2; size1++ {
			hashes, err := f.l.Consistency(ctx, size1, size2)
			require.NoError(t, err, "%d to %d", size1, size2)
			want, err := tree.ConsistencyProof(size1, size2)
			require.NoError(t, err)
			assert.Equal(t, len(want), len(hashes), "%d to %d", size1, size2)
			if len(want) > 0 {
				assert.Equal(t, want, hashes, "%d to %d vs testonly", size1, size2)
			}
			ref := refConsistency(int(size1), leaves[:size2])
			assert.Equal(t, len(ref), len(hashes))
			if len(ref) > 0 {
				assert.Equal(t, ref, hashes, "%d to %d vs the RFC definition", size1, size2)
			}
			root1, root2 := refMTH(leaves[:size1]), refMTH(leaves[:size2])
			assert.NoError(t, proof.VerifyConsistency(hasher, size1, size2, hashes, root1, root2), "%d to %d", size1, size2)
			assert.NoError(t, VerifyConsistency(hashes, Checkpoint{Size: size1, Root: root1}, Checkpoint{Size: size2, Root: root2}))
			if size1 > 0 && size1 < size2 {
				other := refMTH(append(append([][]byte(nil), leaves[1:size1]...), leaves[0]))
				if size1 == 1 {
					other = make([]byte, 32)
				}
				assert.Error(t, VerifyConsistency(hashes, Checkpoint{Size: size1, Root: other}, Checkpoint{Size: size2, Root: root2}),
					"%d to %d with a different old root", size1, size2)
			}
		}
	}
}

func TestProofErrors(t *testing.T) {
	ctx := context.Background()
	f, _, _, _ := merkleFixture(t, 5)
	tests := []struct {
		name        string
		run         func() error
		wantMessage string
	}{
		{"index not below size", func() error { _, err := f.l.Prove(ctx, 5, 5); return err }, "ledger: prove 5 in size 5: index 5 out of bounds for tree size 5"},
		{"size beyond the ledger", func() error { _, err := f.l.Prove(ctx, 0, 6); return err }, "ledger: prove 0 in size 6: tree size 6 is beyond the ledger's 5 entries"},
		{"consistency sizes reversed", func() error { _, err := f.l.Consistency(ctx, 4, 3); return err }, "ledger: consistency 4 to 3: tree size 4 > 3"},
		{"consistency beyond the ledger", func() error { _, err := f.l.Consistency(ctx, 1, 9); return err }, "ledger: consistency 1 to 9: tree size 9 is beyond the ledger's 5 entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.EqualError(t, tt.run(), tt.wantMessage)
		})
	}

	t.Run("a missing row stops proofs instead of giving a wrong one", func(t *testing.T) {
		f.exec(t, `DELETE FROM ledger_entries WHERE idx = 2`)
		_, err := f.l.Prove(ctx, 0, 5)
		var gap *GapError
		require.ErrorAs(t, err, &gap)
		assert.Equal(t, uint64(2), gap.Missing)
		assert.EqualError(t, err, "ledger: prove 0 in size 5: entry 2 is missing: run verify")
	})
}

// largeFixture bulk-loads n entries and returns the testonly tree over
// their stored leaf hashes.
func largeFixture(t *testing.T, n int) (*fixture, *testonly.Tree) {
	t.Helper()
	f := newFixture(t)
	bulkLoad(t, f.db, n, 7)
	tree := testonly.New(hasher)
	rows, err := f.db.Query(`SELECT hash FROM ledger_entries ORDER BY idx`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var h []byte
		require.NoError(t, rows.Scan(&h))
		leaf, ok := decodeHash(h)
		require.True(t, ok)
		tree.Append(leaf)
	}
	require.NoError(t, rows.Err())
	return f, tree
}

func subtreeRows(t *testing.T, f *fixture) []int64 {
	t.Helper()
	rows, err := f.db.Query(`SELECT idx FROM ledger_subtrees ORDER BY idx`)
	require.NoError(t, err)
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var k int64
		require.NoError(t, rows.Scan(&k))
		out = append(out, k)
	}
	require.NoError(t, rows.Err())
	return out
}

// TestSubtreeCache checks proofs, roots and consistency proofs on a ledger
// large enough to use the 256-entry subtree cache, with the cache full,
// partly filled, missing and wrong.
func TestSubtreeCache(t *testing.T) {
	ctx := context.Background()
	const n = 1100
	f, tree := largeFixture(t, n)

	// Checkpoints at 700 and 1100 fill subtrees 0-1 and then 2-3 (the one
	// straddling 700 is completed from the stored range plus new leaves).
	f.exec(t, `CREATE TEMP TABLE hold AS SELECT * FROM ledger_entries WHERE idx >= 700`)
	f.exec(t, `DELETE FROM ledger_entries WHERE idx >= 700`)
	_, ok, err := f.l.Checkpoint(ctx, t0)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, []int64{0, 1}, subtreeRows(t, f))
	f.exec(t, `INSERT INTO ledger_entries SELECT * FROM hold`)
	cp, ok, err := f.l.Checkpoint(ctx, t0.Add(time.Hour))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, []int64{0, 1, 2, 3}, subtreeRows(t, f))
	assert.Equal(t, tree.HashAt(n), cp.Root)

	sizes := []uint64{1, 255, 256, 257, 511, 512, 513, 700, 1023, 1024, 1025, 1100}
	check := func(t *testing.T) {
		for _, size := range sizes {
			root, err := f.l.Root(ctx, size)
			require.NoError(t, err)
			require.Equal(t, tree.HashAt(size), root, "root of size %d", size)
			for _, index := range []uint64{0, 1, 100, 255, 256, 300, 511, 512, 699, 700, 1023, 1024, 1099} {
				if index >= size {
					continue
				}
				p, err := f.l.Prove(ctx, index, size)
				require.NoError(t, err)
				want, err := tree.InclusionProof(index, size)
				require.NoError(t, err)
				require.Equal(t, want, p.Hashes, "inclusion of %d in size %d", index, size)
			}
			for _, size1 := range []uint64{1, 256, 300, 512, 700} {
				if size1 > size {
					continue
				}
				got, err := f.l.Consistency(ctx, size1, size)
				require.NoError(t, err)
				want, err := tree.ConsistencyProof(size1, size)
				require.NoError(t, err)
				require.Equal(t, len(want), len(got))
				for i := range want {
					require.Equal(t, want[i], got[i], "consistency %d to %d", size1, size)
				}
			}
		}
	}
	t.Run("cache full", check)

	rep, err := f.l.Verify(ctx, f.v)
	require.NoError(t, err)
	assert.True(t, rep.OK(), problemsText(rep))

	t.Run("cache row missing: falls back to the leaves", func(t *testing.T) {
		f.exec(t, `DELETE FROM ledger_subtrees WHERE idx = 1`)
		check(t)
		rep, err := f.l.Verify(ctx, f.v)
		require.NoError(t, err)
		assert.True(t, rep.OK(), problemsText(rep))
	})

	t.Run("cache row wrong: proofs fail to verify, Verify names it", func(t *testing.T) {
		f.exec(t, `UPDATE ledger_subtrees SET hash = zeroblob(32) WHERE idx = 2`)
		p, err := f.l.Prove(ctx, 5, n)
		require.NoError(t, err)
		e, err := f.l.At(ctx, 5)
		require.NoError(t, err)
		assert.Error(t, VerifyInclusion(e.Body, p, cp))

		f.exec(t, `INSERT INTO ledger_subtrees (idx, hash) VALUES (9, zeroblob(32))`)
		rep, err := f.l.Verify(ctx, f.v)
		require.NoError(t, err)
		assert.Equal(t, []Problem{
			{Index: -1, What: "cached subtree 2 (entries 512 to 767) does not match their stored hashes: the row was edited, and inclusion proofs over these entries would fail to verify"},
			{Index: -1, What: "cached subtree 9 covers entries the ledger does not hold (it holds 1100): the row was inserted"},
		}, rep.Problems)
	})
}
