package ledger

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// hasher is RFC 6962's SHA-256 tree hasher; every tree in this package uses it.
var hasher = rfc6962.DefaultHasher

// ranges builds compact Merkle ranges. compact.Range compares factories by
// pointer, so there is exactly one.
var ranges = &compact.RangeFactory{Hash: hasher.HashChildren}

// Proof is an RFC 6962 inclusion proof: the sibling hashes on the path from
// entry Index to the root of the tree of the first Size entries. It carries
// only digests of other entries, never their metadata, so it can be given to
// police without disclosing other wearers' footage.
type Proof struct {
	Index  uint64   `json:"index"`
	Size   uint64   `json:"size"`
	Hashes [][]byte `json:"hashes"`
}

// LeafHash returns the RFC 6962 leaf hash SHA-256(0x00 || body): an entry's
// hash, and its leaf in the Merkle tree.
func LeafHash(body []byte) []byte { return hasher.HashLeaf(body) }

// VerifyInclusion checks that body is entry p.Index of the log whose
// checkpoint is cp: the leaf hash of body, combined with p's hashes, must
// give cp.Root. cp should come from ParseCheckpoint, which checked its
// signature; this function trusts cp.
func VerifyInclusion(body []byte, p Proof, cp Checkpoint) error {
	if p.Size != cp.Size {
		return fmt.Errorf("ledger: verify inclusion of entry %d: proof is for tree size %d but the checkpoint is for size %d", p.Index, p.Size, cp.Size)
	}
	if err := proof.VerifyInclusion(hasher, p.Index, p.Size, LeafHash(body), p.Hashes, cp.Root); err != nil {
		return fmt.Errorf("ledger: verify inclusion of entry %d in tree size %d: %w", p.Index, p.Size, err)
	}
	return nil
}

// VerifyConsistency checks that the log signed in newer extends the log
// signed in older (no entry of older was changed, removed or reordered),
// given the consistency proof hashes from Ledger.Consistency. A verifier that
// pinned an earlier checkpoint uses it to accept a later one.
func VerifyConsistency(hashes [][]byte, older, newer Checkpoint) error {
	if err := proof.VerifyConsistency(hasher, older.Size, newer.Size, hashes, older.Root, newer.Root); err != nil {
		return fmt.Errorf("ledger: verify consistency of tree sizes %d and %d: %w", older.Size, newer.Size, err)
	}
	return nil
}

// GapError reports that the stored leaves are not contiguous, so no root or
// proof can be computed over them: rows were deleted or renumbered.
type GapError struct {
	// Missing is the first index with no entry.
	Missing uint64
}

func (e *GapError) Error() string {
	return fmt.Sprintf("entry %d is missing: run verify", e.Missing)
}

// streamLeaves calls fn with the stored leaf hash of each entry in
// [from, to), in index order, reading one row at a time: memory stays
// constant whatever the ledger's size. The covering index ledger_entries_leaf
// keeps the scan off the table's body pages.
func streamLeaves(ctx context.Context, q querier, from, to uint64, fn func(idx uint64, leaf []byte) error) error {
	if from >= to {
		return nil
	}
	rows, err := q.QueryContext(ctx,
		`SELECT idx, hash FROM ledger_entries INDEXED BY ledger_entries_leaf WHERE idx >= ? AND idx < ? ORDER BY idx`,
		int64(from), int64(to))
	if err != nil {
		return err
	}
	defer rows.Close()
	next := from
	for rows.Next() {
		var (
			idx  int64
			hash sql.RawBytes // only valid until Next; decodeHash copies
		)
		if err := rows.Scan(&idx, &hash); err != nil {
			return err
		}
		if uint64(idx) != next {
			return &GapError{Missing: next}
		}
		leaf, ok := decodeHash(hash)
		if !ok {
			return fmt.Errorf("entry %d: stored hash is not 64 lowercase hex digits: run verify", idx)
		}
		if err := fn(next, leaf); err != nil {
			return err
		}
		next++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if next != to {
		return &GapError{Missing: next}
	}
	return nil
}

// extend appends the stored leaves [r.End(), to) to r, reporting every
// completed subtree to visit (which may be nil).
func extend(ctx context.Context, q querier, r *compact.Range, to uint64, visit compact.VisitFn) error {
	return streamLeaves(ctx, q, r.End(), to, func(_ uint64, leaf []byte) error {
		return r.Append(leaf, visit)
	})
}

// rootOf returns the root of a compact range that starts at 0.
func rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return hasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

// checkSize rejects a tree size beyond the ledger.
func checkSize(ctx context.Context, q querier, sizes ...uint64) error {
	n, err := size(ctx, q)
	if err != nil {
		return err
	}
	for _, s := range sizes {
		if s > n {
			return fmt.Errorf("tree size %d is beyond the ledger's %d entries", s, n)
		}
	}
	return nil
}

// Root returns the Merkle root of the first size entries. Like proofs, it
// is assembled from the perfect subtrees covering [0, size), each computed
// by nodeHash, so memory stays O(log size).
func (l *Ledger) Root(ctx context.Context, size uint64) ([]byte, error) {
	if err := checkSize(ctx, l.db, size); err != nil {
		return nil, fmt.Errorf("ledger: root of size %d: %w", size, err)
	}
	if size == 0 {
		return hasher.EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := nodeHash(ctx, l.db, id)
		if err != nil {
			return nil, fmt.Errorf("ledger: root of size %d: %w", size, err)
		}
		hashes[i] = h
	}
	r, err := ranges.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("ledger: root of size %d: %w", size, err)
	}
	root, err := rootOf(r)
	if err != nil {
		return nil, fmt.Errorf("ledger: root of size %d: %w", size, err)
	}
	return root, nil
}

// Prove returns the RFC 6962 inclusion proof of entry index in the tree of
// the first size entries (normally the size of a signed checkpoint). It
// computes each of the O(log size) subtree hashes the proof names from the
// stored leaf hashes, using the subtree cache where Checkpoint has filled
// it, so a proof on a ledger of millions of entries reads a few thousand
// rows and holds O(log size) hashes.
func (l *Ledger) Prove(ctx context.Context, index, size uint64) (Proof, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return Proof{}, fmt.Errorf("ledger: prove %d in size %d: %w", index, size, err)
	}
	hashes, err := l.nodeHashes(ctx, nodes, size)
	if err != nil {
		return Proof{}, fmt.Errorf("ledger: prove %d in size %d: %w", index, size, err)
	}
	return Proof{Index: index, Size: size, Hashes: hashes}, nil
}

// Consistency returns the RFC 6962 consistency proof that the tree of the
// first size2 entries extends the tree of the first size1 entries; check it
// with VerifyConsistency or proof.VerifyConsistency. It is computed like
// Prove's proofs.
func (l *Ledger) Consistency(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("ledger: consistency %d to %d: %w", size1, size2, err)
	}
	hashes, err := l.nodeHashes(ctx, nodes, size2)
	if err != nil {
		return nil, fmt.Errorf("ledger: consistency %d to %d: %w", size1, size2, err)
	}
	return hashes, nil
}

// nodeHashes computes the proof described by nodes over the tree of the
// first size entries. Every node a proof names is the root of a perfect
// subtree, computed on its own by nodeHash; a proof has O(log size) of them.
func (l *Ledger) nodeHashes(ctx context.Context, nodes proof.Nodes, size uint64) ([][]byte, error) {
	if err := checkSize(ctx, l.db, size); err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := nodeHash(ctx, l.db, id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// subtreeHeight is the height of the cached subtrees in ledger_subtrees: row
// k holds the root of the perfect subtree over entries [256k, 256k+256).
// The cache turns a proof from a pass over every leaf into O(log n) small
// queries (at most 255 leaves plus n/256 subtree rows in all). Checkpoint
// fills it from the leaves it streams anyway, so Append never pays for it.
// It is only a cache: a missing row falls back to the leaves, and a wrong
// one makes proofs fail to verify, never pass, and Verify reports it.
const subtreeHeight = 8

// nodeHash computes the hash of the perfect subtree id: from cached
// subtrees when it is at least that tall and they are all present, else
// from its leaves.
func nodeHash(ctx context.Context, q querier, id compact.NodeID) ([]byte, error) {
	begin, end := id.Coverage()
	if id.Level >= subtreeHeight {
		h, ok, err := nodeFromSubtrees(ctx, q, begin>>subtreeHeight, end>>subtreeHeight)
		if err != nil || ok {
			return h, err
		}
	}
	r := ranges.NewEmptyRange(begin)
	if err := extend(ctx, q, r, end, nil); err != nil {
		return nil, err
	}
	return perfectRoot(r)
}

// nodeFromSubtrees combines the cached subtrees [first, last); ok is false
// if any is missing or malformed.
func nodeFromSubtrees(ctx context.Context, q querier, first, last uint64) ([]byte, bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT idx, hash FROM ledger_subtrees WHERE idx >= ? AND idx < ? ORDER BY idx`,
		int64(first), int64(last))
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	r := ranges.NewEmptyRange(first)
	for rows.Next() {
		var (
			idx  int64
			hash []byte
		)
		if err := rows.Scan(&idx, &hash); err != nil {
			return nil, false, err
		}
		if uint64(idx) != r.End() || len(hash) != hasher.Size() {
			return nil, false, rows.Close()
		}
		if err := r.Append(hash, nil); err != nil {
			return nil, false, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if r.End() != last {
		return nil, false, nil
	}
	h, err := perfectRoot(r)
	return h, err == nil, err
}

// perfectRoot returns the root of a compact range that covers exactly one
// perfect subtree.
func perfectRoot(r *compact.Range) ([]byte, error) {
	hs := r.Hashes()
	if len(hs) != 1 {
		return nil, fmt.Errorf("internal error: range [%d, %d) is not one subtree", r.Begin(), r.End())
	}
	return hs[0], nil
}

// subtreeCollector gathers the cacheable subtrees a compact range completes.
type subtreeCollector struct {
	idx    []int64
	hashes [][]byte
}

func (c *subtreeCollector) visit(id compact.NodeID, h []byte) {
	if id.Level == subtreeHeight {
		c.idx = append(c.idx, int64(id.Index))
		c.hashes = append(c.hashes, h)
	}
}

// store writes the collected subtrees. REPLACE, because a row computed from
// the stored leaves now is better than whatever a row says.
func (c *subtreeCollector) store(ctx context.Context, tx *sql.Tx) error {
	for i, idx := range c.idx {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO ledger_subtrees (idx, hash) VALUES (?, ?)`, idx, c.hashes[i]); err != nil {
			return err
		}
	}
	return nil
}
