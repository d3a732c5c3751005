package ledger

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// Report is the outcome of Verify: how much was checked and every problem
// found. An empty Problems list is the only good result.
type Report struct {
	// Entries and Checkpoints count the rows examined.
	Entries, Checkpoints int
	// Problems lists entry problems in index order, then problems with
	// checkpoints and the subtree cache.
	Problems []Problem
}

// OK reports whether Verify found nothing wrong.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Problem is one thing Verify found wrong, worded for the IG officer who has
// to act on it.
type Problem struct {
	// Index is the entry concerned, or -1 when the problem is not about one
	// entry (a checkpoint).
	Index int64
	// Camera and Clip name the entry's clip when known.
	Camera, Clip string
	// What is a complete sentence: where, what is wrong and what it means,
	// e.g. "entry 7 (cam-1/c8): body does not match its stored hash: the
	// row was edited".
	What string
}

// String returns What, so a Problem prints as its sentence.
func (p Problem) String() string { return p.What }

// Verify re-derives the ledger from its stored entry bodies and checks
// everything a tamperer with write access to the database could have
// changed:
//
//   - every entry: its body is canonical and valid, gives its stored hash,
//     and agrees with its query columns; indices run from 0 without gaps;
//   - every camera's chain: each entry names the hash of the camera's
//     previous entry, and the first names none;
//   - every checkpoint: its signature verifies with v, its row agrees with
//     its note, the checkpoints are numbered without gaps, grow, and go
//     forward in time, and the root recomputed from the bodies at its size
//     is the root it signed;
//   - the caches proofs are built from (stored hashes, cached subtrees,
//     each checkpoint's stored tree state) agree with the entries.
//
// Every problem found is reported, not just the first. The error is only
// for failing to read the database. Verify reads every row once (and once
// more to explain broken chains) in memory proportional to the number of
// cameras, checkpoints and cached subtrees (one per 256 entries), not to
// the number of entries.
//
// What Verify cannot see from the database alone: entries appended after
// the newest checkpoint that were removed from the end of a camera's chain,
// or forged at the end of the log with a correct chain. Checkpoints shipped
// off the gateway close that window; compare the newest stored checkpoint
// with the newest one shipped.
func (l *Ledger) Verify(ctx context.Context, v note.Verifier) (Report, error) {
	if v == nil {
		return Report{}, errors.New("ledger: verify: no verifier key")
	}
	vr := &verifier{l: l, v: v, cams: make(map[string]chainLink)}
	if err := vr.loadCheckpoints(ctx); err != nil {
		return Report{}, fmt.Errorf("ledger: verify: checkpoints: %w", err)
	}
	if err := vr.loadSubtrees(ctx); err != nil {
		return Report{}, fmt.Errorf("ledger: verify: subtrees: %w", err)
	}
	if err := vr.scanEntries(ctx); err != nil {
		return Report{}, fmt.Errorf("ledger: verify: entries: %w", err)
	}
	if err := vr.explainBreaks(ctx); err != nil {
		return Report{}, fmt.Errorf("ledger: verify: chains: %w", err)
	}
	vr.checkRoots()
	slices.SortStableFunc(vr.entryProblems, func(a, b Problem) int {
		switch {
		case a.Index < b.Index:
			return -1
		case a.Index > b.Index:
			return 1
		}
		return 0
	})
	rep := Report{
		Entries:     vr.entries,
		Checkpoints: len(vr.cps),
		Problems:    append(vr.entryProblems, vr.cpProblems...),
	}
	return rep, nil
}

// verifier holds the state of one Verify run.
type verifier struct {
	l *Ledger
	v note.Verifier

	cps     []*vcheckpoint
	entries int

	// Tree state: leaves are appended while indices are contiguous; after
	// the first gap no later root can be recomputed.
	tree     *compact.Range
	firstGap int64 // -1 while contiguous

	// storedTree is the tree of the stored hash columns, which is what
	// proofs and the subtree cache are built from; subtrees holds the cached
	// subtree rows not yet compared with it.
	storedTree   *compact.Range
	storedBroken bool
	subtrees     map[int64][]byte

	cams   map[string]chainLink
	breaks []chainBreak

	entryProblems, cpProblems []Problem
}

// vcheckpoint is a stored checkpoint as Verify sees it.
type vcheckpoint struct {
	seq   int64
	label string     // "checkpoint 3 (size 40)"
	cp    Checkpoint // from the note, when usable
	tree  []byte     // the stored compact range

	// usable: the signature verified and the body parsed, so Size and Root
	// are what the gateway signed.
	usable bool
	// computed is the root recomputed from the bodies (nil if it could not
	// be); matched reports computed == cp.Root.
	computed []byte
	matched  bool
	treeSeen bool
}

// chainLink is the last entry seen of a camera.
type chainLink struct {
	idx    int64
	clip   string
	hash   string // recomputed from the body
	stored string // the stored hash column, when it differs from hash
}

// chainBreak is an entry whose prev does not name its camera's previous
// entry; explainBreaks works out what happened.
type chainBreak struct {
	idx          int64
	camera, clip string
	prev         string
	last         chainLink
	hasLast      bool
}

func (vr *verifier) entryProblem(idx int64, camera, clip, format string, args ...any) {
	vr.entryProblems = append(vr.entryProblems, Problem{Index: idx, Camera: camera, Clip: clip, What: fmt.Sprintf(format, args...)})
}

func (vr *verifier) cpProblem(format string, args ...any) {
	vr.cpProblems = append(vr.cpProblems, Problem{Index: -1, What: fmt.Sprintf(format, args...)})
}

// loadCheckpoints reads every checkpoint, verifies its signature and
// compares its row with its note, then checks the sequence as a whole.
func (vr *verifier) loadCheckpoints(ctx context.Context) error {
	rows, err := vr.l.db.QueryContext(ctx, `SELECT seq, size, root, time_ms, note, tree FROM ledger_checkpoints ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq                       int64
			sizeCol, rootCol, timeCol any
			noteCol, treeCol          any
		)
		if err := rows.Scan(&seq, &sizeCol, &rootCol, &timeCol, &noteCol, &treeCol); err != nil {
			return err
		}
		vc := &vcheckpoint{seq: seq, label: fmt.Sprintf("checkpoint %d", seq), tree: asBytes(treeCol)}
		vr.cps = append(vr.cps, vc)
		cp, err := openCheckpoint(asBytes(noteCol), vr.v)
		if err != nil {
			vr.cpProblem("%s: %v", vc.label, err)
			continue
		}
		vc.cp, vc.usable = cp, true
		vc.label = fmt.Sprintf("checkpoint %d (size %d)", seq, cp.Size)
		if cp.Origin != vr.l.origin {
			vr.cpProblem("%s: signed for origin %q, not this ledger's %q: it belongs to another log or the origin was reconfigured", vc.label, cp.Origin, vr.l.origin)
		}
		if n, ok := asInt(sizeCol); !ok || n < 0 || uint64(n) != cp.Size {
			vr.cpProblem("%s: column size is %s but the signed note says %d: the row was edited", vc.label, describe(sizeCol), cp.Size)
		}
		if !bytes.Equal(asBytes(rootCol), cp.Root) {
			vr.cpProblem("%s: column root is %s but the signed note says %s: the row was edited", vc.label, describeHash(rootCol), short(hex.EncodeToString(cp.Root)))
		}
		if !cp.Time.IsZero() {
			if ms, ok := asInt(timeCol); !ok || ms != cp.Time.UnixMilli() {
				vr.cpProblem("%s: column time_ms is %s but the signed note says %s: the row was edited", vc.label, describe(timeCol), cp.Time.Format(timeLayout))
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}

	next := int64(1)
	var prev *vcheckpoint
	for _, vc := range vr.cps {
		switch {
		case vc.seq < 1:
			vr.cpProblem("%s: sequence number %d was never issued by the ledger (they start at 1): the row was inserted", vc.label, vc.seq)
		case vc.seq == next+1:
			vr.cpProblem("checkpoint %d is missing (checkpoint %d follows %d): it was deleted", next, vc.seq, next-1)
		case vc.seq > next:
			vr.cpProblem("checkpoints %d to %d are missing (checkpoint %d follows %d): they were deleted", next, vc.seq-1, vc.seq, next-1)
		}
		if vc.seq >= next {
			next = vc.seq + 1
		}
		if !vc.usable {
			continue
		}
		if prev != nil {
			switch {
			case vc.cp.Size < prev.cp.Size:
				vr.cpProblem("%s is smaller than %s: a log can only grow, so entries were removed and the smaller log signed", vc.label, prev.label)
			case vc.cp.Size == prev.cp.Size && !bytes.Equal(vc.cp.Root, prev.cp.Root):
				vr.cpProblem("%s and %s sign the same size with different roots: two different logs were signed", prev.label, vc.label)
			case vc.cp.Size == prev.cp.Size:
				vr.cpProblem("%s repeats %s: the ledger only signs a grown log, so the row was copied or inserted", vc.label, prev.label)
			}
			if !vc.cp.Time.IsZero() && vc.cp.Time.Before(prev.cp.Time) {
				vr.cpProblem("%s is dated %s, before %s (%s): the gateway clock went back or the checkpoints were reordered", vc.label, vc.cp.Time.Format(timeLayout), prev.label, prev.cp.Time.Format(timeLayout))
			}
		}
		prev = vc
	}
	return nil
}

// loadSubtrees reads the subtree cache (one row per 256 entries).
func (vr *verifier) loadSubtrees(ctx context.Context) error {
	vr.subtrees = make(map[int64][]byte)
	rows, err := vr.l.db.QueryContext(ctx, `SELECT idx, hash FROM ledger_subtrees`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			idx  int64
			hash any
		)
		if err := rows.Scan(&idx, &hash); err != nil {
			return err
		}
		vr.subtrees[idx] = asBytes(hash)
	}
	return rows.Err()
}

// visitStored compares each completed 256-entry subtree of the stored
// hashes with its cached row.
func (vr *verifier) visitStored(id compact.NodeID, h []byte) {
	if id.Level != subtreeHeight {
		return
	}
	k := int64(id.Index)
	cached, ok := vr.subtrees[k]
	if !ok {
		return
	}
	delete(vr.subtrees, k)
	if !bytes.Equal(cached, h) {
		begin, end := id.Coverage()
		vr.cpProblem("cached subtree %d (entries %d to %d) does not match their stored hashes: the row was edited, and inclusion proofs over these entries would fail to verify", k, begin, end-1)
	}
}

// checkLeftoverSubtrees reports cached subtrees over entries that do not
// exist.
func (vr *verifier) checkLeftoverSubtrees() {
	if vr.storedBroken || vr.firstGap >= 0 {
		return // the stored tree stopped early: the rest cannot be judged
	}
	keys := make([]int64, 0, len(vr.subtrees))
	for k := range vr.subtrees {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vr.cpProblem("cached subtree %d covers entries the ledger does not hold (it holds %d): the row was inserted", k, vr.storedTree.End())
	}
}

// entryRow is one ledger_entries row with every column but the index read
// as whatever type it holds, so a column edited to the wrong type is
// reported instead of stopping the scan.
type entryRow struct {
	idx                                      int64
	camera, clip, wearer, site               any
	startMs, endMs, size, sha256, receivedMs any
	ingest, prev, hash, body                 any
}

// scanEntries is the main pass over all entries in index order.
func (vr *verifier) scanEntries(ctx context.Context) error {
	vr.tree = ranges.NewEmptyRange(0)
	vr.storedTree = ranges.NewEmptyRange(0)
	vr.firstGap = -1
	vr.atSize() // checkpoints of size 0
	rows, err := vr.l.db.QueryContext(ctx, `SELECT idx, camera, clip, wearer, site, start_ms, end_ms, size,
		sha256, received_ms, ingest, prev, hash, body FROM ledger_entries ORDER BY idx`)
	if err != nil {
		return err
	}
	defer rows.Close()
	next := int64(0)
	for rows.Next() {
		var r entryRow
		if err := rows.Scan(&r.idx, &r.camera, &r.clip, &r.wearer, &r.site, &r.startMs, &r.endMs, &r.size,
			&r.sha256, &r.receivedMs, &r.ingest, &r.prev, &r.hash, &r.body); err != nil {
			return err
		}
		vr.entries++
		inTree := false
		switch {
		case r.idx < next: // only a negative index sorts before 0
			cam, clip := asString(r.camera), asString(r.clip)
			vr.entryProblem(r.idx, cam, clip, "entry %d (%s/%s): negative index: the row was inserted outside the ledger", r.idx, cam, clip)
		case r.idx > next:
			if r.idx == next+1 {
				vr.entryProblem(next, "", "", "entry %d is missing (the ledger goes from entry %d to %d): the row was deleted", next, next-1, r.idx)
			} else {
				vr.entryProblem(next, "", "", "entries %d to %d are missing (the ledger goes from entry %d to %d): rows were deleted", next, r.idx-1, next-1, r.idx)
			}
			if vr.firstGap < 0 {
				vr.firstGap = next
			}
			next = r.idx + 1
		default:
			inTree = vr.firstGap < 0
			next = r.idx + 1
		}
		vr.checkEntry(r, inTree)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	vr.checkLeftoverSubtrees()
	return nil
}

// checkEntry checks one row: body, hash, columns, chain, and feeds the tree.
func (vr *verifier) checkEntry(r entryRow, inTree bool) {
	b := asBytes(r.body)
	leaf := LeafHash(b)
	h := hex.EncodeToString(leaf)
	stored := asString(r.hash)
	c, prev, perr := ParseBody(b)
	camera, clip := c.Camera, c.Clip
	if perr != nil {
		camera, clip = asString(r.camera), asString(r.clip)
	}
	name := fmt.Sprintf("entry %d (%s/%s)", r.idx, camera, clip)

	if stored != h {
		vr.entryProblem(r.idx, camera, clip, "%s: body does not match its stored hash %s (the body hashes to %s): the row was edited", name, short(stored), short(h))
	}
	if perr != nil {
		if errors.Is(perr, errNotCanonical) {
			vr.entryProblem(r.idx, camera, clip, "%s: body is not in canonical form, so its hash cannot be reproduced from its metadata: the row was edited", name)
		} else {
			vr.entryProblem(r.idx, camera, clip, "%s: body is not a valid ledger entry (%v): the row was edited", name, perr)
		}
	} else {
		vr.checkColumns(r, name, c, prev)
	}

	if inTree {
		// The recomputed leaf, not the stored hash: the body is the record.
		if err := vr.tree.Append(leaf, nil); err == nil {
			vr.atSize()
		}
		if sl, ok := decodeHash([]byte(stored)); ok && !vr.storedBroken {
			vr.storedBroken = vr.storedTree.Append(sl, vr.visitStored) != nil
		} else {
			vr.storedBroken = true
		}
	}

	link := chainLink{idx: r.idx, clip: clip, hash: h}
	if stored != h && hexRE.MatchString(stored) {
		link.stored = stored
	}
	if perr != nil {
		// The chain cannot be followed through an unreadable body; carry on
		// from its stored hash so the next entry is judged on its own link.
		if camera != "" {
			vr.cams[camera] = link
		}
		return
	}
	last, hasLast := vr.cams[camera]
	ok := prev == ""
	if hasLast {
		// An entry whose body alone was edited keeps its stored hash, which
		// the next entry still names; that edit is reported on the entry
		// itself, so the link is accepted here rather than reported twice.
		ok = prev == last.hash || (last.stored != "" && prev == last.stored)
	}
	if !ok {
		vr.breaks = append(vr.breaks, chainBreak{idx: r.idx, camera: camera, clip: clip, prev: prev, last: last, hasLast: hasLast})
	}
	vr.cams[camera] = link
}

// checkColumns compares the query columns with the body they copy.
func (vr *verifier) checkColumns(r entryRow, name string, c Clip, prev string) {
	cols := []struct {
		col     string
		got     any
		want    any
		private bool // personal data: name the column, not the values
	}{
		{"camera", r.camera, c.Camera, false},
		{"clip", r.clip, c.Clip, false},
		{"wearer", r.wearer, c.Wearer, true},
		{"site", r.site, c.Site, true},
		{"start_ms", r.startMs, c.Start.UnixMilli(), false},
		{"end_ms", r.endMs, c.End.UnixMilli(), false},
		{"size", r.size, c.Size, false},
		{"sha256", r.sha256, c.SHA256, false},
		{"received_ms", r.receivedMs, c.Received.UnixMilli(), false},
		{"ingest", r.ingest, c.Ingest, false},
		{"prev", r.prev, prev, false},
	}
	for _, col := range cols {
		if sameValue(col.got, col.want) {
			continue
		}
		if col.private {
			vr.entryProblem(r.idx, c.Camera, c.Clip, "%s: column %s differs from the body: the row was edited (the body is the record)", name, col.col)
			continue
		}
		vr.entryProblem(r.idx, c.Camera, c.Clip, "%s: column %s is %s but the body says %s: the row was edited (the body is the record)", name, col.col, describe(col.got), describe(col.want))
	}
}

// atSize records the recomputed root and compact range for every usable
// checkpoint whose size the tree has just reached.
func (vr *verifier) atSize() {
	n := vr.tree.End()
	var root []byte
	for _, vc := range vr.cps {
		if !vc.usable || vc.cp.Size != n || vc.treeSeen {
			continue
		}
		vc.treeSeen = true
		if root == nil {
			var err error
			if root, err = rootOf(vr.tree); err != nil {
				continue
			}
		}
		vc.computed = root
		vc.matched = bytes.Equal(root, vc.cp.Root)
		if vc.matched && !bytes.Equal(vc.tree, bytes.Join(vr.tree.Hashes(), nil)) {
			vr.cpProblem("%s: its stored tree state, from which the next checkpoint is built, was altered: the row was edited", vc.label)
		}
	}
}

// checkRoots reports checkpoints whose signed root the entries no longer
// give, and pairs of checkpoints that cannot both have been made from one
// growing log.
func (vr *verifier) checkRoots() {
	have := int64(vr.tree.End())
	for _, vc := range vr.cps {
		if !vc.usable {
			continue
		}
		switch {
		case vc.computed != nil && !vc.matched:
			vr.cpProblem("%s: root does not match the entries: the log was rewritten after it was signed", vc.label)
		case vc.computed == nil && vr.firstGap >= 0 && vc.cp.Size > uint64(vr.firstGap):
			vr.cpProblem("%s: root cannot be recomputed because entry %d is missing: the log was altered after it was signed", vc.label, vr.firstGap)
		case vc.computed == nil:
			vr.cpProblem("%s covers %d entries but the ledger holds only %d: entries were deleted from the end of the log", vc.label, vc.cp.Size, have)
		}
	}
	// Consistency of successive checkpoints. A consistency proof computed
	// from the stored entries verifies against two signed roots exactly when
	// both roots match the entries, so it adds one finding to the per-root
	// checks: an earlier root that no longer matches followed by a later one
	// that does means the rewrite happened between the two signings and the
	// later checkpoint signed the rewritten log.
	var prev *vcheckpoint
	for _, vc := range vr.cps {
		if !vc.usable {
			continue
		}
		if prev != nil && vc.cp.Size > prev.cp.Size && !prev.matched && vc.matched {
			vr.cpProblem("%s is not consistent with %s: it signed a log whose first %d entries differ from those %s signed: the log was rewritten between the two signings",
				vc.label, prev.label, prev.cp.Size, prev.label)
		}
		prev = vc
	}
}

// explainBreaks turns each chain break into a sentence, finding the entry
// each broken link names with one more pass over the bodies (only when
// there are breaks; memory is proportional to their number).
func (vr *verifier) explainBreaks(ctx context.Context) error {
	if len(vr.breaks) == 0 {
		return nil
	}
	type loc struct {
		idx          int64
		camera, clip string
		edited       bool // named by its stored hash; its body was edited
	}
	found := make(map[string]loc)
	for _, b := range vr.breaks {
		if b.prev != "" {
			found[b.prev] = loc{idx: -1}
		}
	}
	rows, err := vr.l.db.QueryContext(ctx, `SELECT idx, camera, clip, hash, body FROM ledger_entries ORDER BY idx`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			idx                    int64
			camCol, clipCol, hashC any
			bodyCol                any
		)
		if err := rows.Scan(&idx, &camCol, &clipCol, &hashC, &bodyCol); err != nil {
			return err
		}
		b := asBytes(bodyCol)
		h := hex.EncodeToString(LeafHash(b))
		stored := asString(hashC)
		l := loc{idx: idx, camera: asString(camCol), clip: asString(clipCol)}
		if c, _, err := ParseBody(b); err == nil {
			l.camera, l.clip = c.Camera, c.Clip
		}
		if f, ok := found[h]; ok && f.idx < 0 {
			found[h] = l
		} else if f, ok := found[stored]; ok && f.idx < 0 && stored != h {
			l.edited = true
			found[stored] = l
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}

	for _, b := range vr.breaks {
		entry := fmt.Sprintf("entry %d (%s/%s)", b.idx, b.camera, b.clip)
		lastName := ""
		if b.hasLast {
			lastName = fmt.Sprintf("entry %d (%s/%s, %s)", b.last.idx, b.camera, b.last.clip, short(b.last.hash))
		}
		f, ok := found[b.prev]
		ok = ok && f.idx >= 0
		var what string
		switch {
		case b.prev == "":
			what = fmt.Sprintf("%s: %s claims to be the camera's first entry but %s comes before it: the entry was inserted or the chain restarted", b.camera, entry, lastName)
		case !ok && b.hasLast:
			what = fmt.Sprintf("%s: %s names %s as previous but the previous %s entry is %s: an entry is missing or reordered", b.camera, entry, short(b.prev), b.camera, lastName)
		case !ok:
			what = fmt.Sprintf("%s: %s is the first %s entry in the ledger but names %s as previous: the camera's earlier entries are missing", b.camera, entry, b.camera, short(b.prev))
		case f.camera != b.camera:
			what = fmt.Sprintf("%s: %s names entry %d (%s/%s) of another camera as previous: the entry was forged or its camera changed", b.camera, entry, f.idx, f.camera, f.clip)
		case f.idx > b.idx:
			what = fmt.Sprintf("%s: %s names entry %d (%s/%s), which comes after it, as previous: entries were reordered", b.camera, entry, f.idx, f.camera, f.clip)
		case b.hasLast:
			what = fmt.Sprintf("%s: %s names entry %d (%s/%s) as previous but the previous %s entry is %s: entries were inserted or reordered between them", b.camera, entry, f.idx, f.camera, f.clip, b.camera, lastName)
		default:
			what = fmt.Sprintf("%s: %s names entry %d (%s/%s) as previous, which was not seen as a %s entry before it: entries were reordered", b.camera, entry, f.idx, f.camera, f.clip, b.camera)
		}
		if ok && f.edited {
			what += fmt.Sprintf(" (entry %d is named by its original hash; its body was edited since)", f.idx)
		}
		vr.entryProblem(b.idx, b.camera, b.clip, "%s", what)
	}
	return nil
}

// Column value helpers: SQLite columns hold whatever was written into them,
// so Verify reads them as any and compares types as well as values.

func asBytes(v any) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	}
	return nil
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

func asInt(v any) (int64, bool) {
	x, ok := v.(int64)
	return x, ok
}

func sameValue(got, want any) bool {
	switch w := want.(type) {
	case string:
		switch g := got.(type) {
		case string:
			return g == w
		case []byte:
			return string(g) == w
		}
	case int64:
		g, ok := got.(int64)
		return ok && g == w
	}
	return false
}

// describe renders a column value for a sentence.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return fmt.Sprintf("%d", x)
	case string:
		return fmt.Sprintf("%q", clipTrim(x))
	case []byte:
		return fmt.Sprintf("%q", clipTrim(string(x)))
	case time.Time:
		return x.UTC().Format(timeLayout)
	}
	return fmt.Sprintf("%v", v)
}

func describeHash(v any) string {
	b := asBytes(v)
	if b == nil {
		return describe(v)
	}
	return short(hex.EncodeToString(b))
}
