package audit

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/evidence/objstore"
)

// Report is the result of Verify.
type Report struct {
	// Records is the number of records in the local database.
	Records int
	// Seals is the number of valid seals the records were checked against.
	Seals int
	// Unsealed is the number of records after the last seal, protected by
	// the hash chain alone.
	Unsealed int
	// Unstored is the number of valid seals that exist only in the local
	// database (not yet uploaded, or no store configured).
	Unstored int
	// Problems are evidence that the trail was altered, or cannot be
	// checked, each naming the records (by seq) or seals concerned. An
	// empty list is the only good result.
	Problems []string
	// Warnings are weaknesses in the protection that are not evidence of
	// tampering: records not yet sealed, seals not yet stored, no store.
	Warnings []string
}

// OK reports whether Verify found no problem.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// String renders the report for a person: a summary line, then problems and
// warnings one per line.
func (r Report) String() string {
	var b strings.Builder
	verdict := "OK"
	switch n := len(r.Problems); {
	case n == 1:
		verdict = "1 PROBLEM"
	case n > 1:
		verdict = fmt.Sprintf("%d PROBLEMS", n)
	}
	fmt.Fprintf(&b, "audit trail: %s: %d records, %d seals, %d unsealed records, %d seals not in the store\n",
		verdict, r.Records, r.Seals, r.Unsealed, r.Unstored)
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "PROBLEM: %s\n", p)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

// Verify checks the whole trail and names what it finds:
//
//   - every seal's signature, its place in the chain of seals, and that the
//     local copy agrees with the stored one (the stored copy, under
//     COMPLIANCE retention, is the authority; a local seal missing from the
//     store, or a stored one missing locally, is reported);
//   - the local records against the seals, aligned by content hash, so an
//     edit, deletion, insertion or reordering is named by seq even when
//     the attacker recomputed every hash and renumbered the rows;
//   - the records after the last seal against the hash chain.
//
// It returns an error only when it could not read the database or the
// store; what it finds is in the Report. Verify reads the log in pages and
// keeps only a bounded window in memory, so it works on a log of any
// length.
func (l *Log) Verify(ctx context.Context) (Report, error) {
	v := &verifier{l: l, sealFlagged: map[int64]bool{}}
	if err := v.loadSlots(ctx); err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	v.E = &stream[eent]{next: v.nextSeal}
	v.L = &stream[lrow]{next: v.nextPage}
	if err := v.align(ctx); err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	v.finish()
	return v.rep, nil
}

// lrow is a local record as Verify needs it.
type lrow struct {
	seq        int64
	at         time.Time
	prev, hash string
	content    string // ContentHash of the row's fields
	hashOK     bool   // the stored hash is what the fields, seq and prev give
}

// eent is a record as a seal says it was.
type eent struct {
	seq           int64
	hash, content string
	prev          string // the previous record's hash when it was sealed
	unknown       bool   // no valid seal covers this seq
}

// stream is a lookahead buffer over records or seal entries, filled on
// demand so that Verify holds a window, not the whole log.
type stream[T any] struct {
	buf  []T
	pos  int
	done bool
	next func(ctx context.Context) ([]T, bool, error) // false: nothing after these
}

// fill loads until n items are available or the source is exhausted.
func (s *stream[T]) fill(ctx context.Context, n int) error {
	for !s.done && len(s.buf)-s.pos < n {
		items, more, err := s.next(ctx)
		if err != nil {
			return err
		}
		s.buf = append(s.buf, items...)
		s.done = !more
	}
	return nil
}

func (s *stream[T]) avail() int     { return len(s.buf) - s.pos }
func (s *stream[T]) at(i int) *T    { return &s.buf[s.pos+i] }
func (s *stream[T]) take(n int) []T { return slices.Clone(s.buf[s.pos : s.pos+n]) }

// drop consumes n items, compacting the buffer now and then.
func (s *stream[T]) drop(n int) {
	s.pos += n
	if s.pos > 4096 && 2*s.pos > len(s.buf) {
		s.buf = slices.Clone(s.buf[s.pos:])
		s.pos = 0
	}
}

// slot is one seal position (its last seq), known locally, in the store, or
// both.
type slot struct {
	last     int64
	local    bool
	storedMS sql.NullInt64 // when the local row says the store took it
	key      string        // the stored object's key, "" if not listed
}

// Tuning of the alignment.
const (
	// pageSize is how many records one query reads.
	pageSize = 1000
	// resyncRun is how many consecutive records must agree before Verify
	// considers the local log realigned with the seals: one shared
	// content hash could be a moved record rather than the way back.
	resyncRun = 3
	// minWindow and maxWindow bound how far Verify looks ahead for the
	// realignment after a difference; past maxWindow it stops aligning.
	minWindow = 64
	maxWindow = 1 << 18
	// tailSearch is how far from its seq Verify looks for the seq an
	// unsealed record was written at, to tell reordering from editing.
	tailSearch = 16
)

// verifier holds the state of one Verify.
type verifier struct {
	l   *Log
	rep Report

	E *stream[eent]
	L *stream[lrow]

	// The seals, read one at a time as the alignment needs them.
	slots         []slot
	si            int
	prevLast      int64  // last seq of the last believed seal
	prevCount     int64  // its count
	prevHead      string // its head
	lastSealTime  time.Time
	sealProblems  []string
	sealFlagged   map[int64]bool // altered before sealing: reported on the seal
	unstored      []int64        // last seqs of believed seals only local
	unstoredFirst int64

	// The local records, read a page at a time.
	afterPage    int64
	startedPages bool

	// Where the walk is.
	lastLocalSeq  int64  // the last local row accounted for
	lastLocalHash string // and its stored hash
	lastExpSeq    int64  // the last sealed record accounted for
	shift         *shiftRun
	prevFlagged   bool // the previous unsealed row was already reported
	tailStarted   bool
	tailFirst     int64
	tailLast      int64

	// Findings, rendered by finish.
	finds     []finding
	deleted   []item
	inserted  []item
	tailMoved []item
}

// item is a record named in a finding: seq where the seals put it (to last,
// for a range of deleted records), now where it is in the database, after
// the sealed record it follows, content its content hash ("" for a range).
// atEnd marks records deleted from the end of the log.
type item struct {
	seq, last, now, after int64
	content               string
	atEnd                 bool
}

// finding is one problem about records, sorted by seq when rendered.
type finding struct {
	seq int64
	msg string
}

func (v *verifier) problem(seq int64, format string, args ...any) {
	v.finds = append(v.finds, finding{seq: seq, msg: fmt.Sprintf(format, args...)})
}

func (v *verifier) sealProblem(format string, args ...any) {
	v.sealProblems = append(v.sealProblems, fmt.Sprintf(format, args...))
}

// loadSlots lists the seals the store and the database hold. The store is
// listed first: a seal is always written locally before it is uploaded, so
// a seal made while Verify runs can look unstored but never missing
// locally.
func (v *verifier) loadSlots(ctx context.Context) error {
	bySeq := map[int64]*slot{}
	get := func(last int64) *slot {
		s, ok := bySeq[last]
		if !ok {
			s = &slot{last: last}
			bySeq[last] = s
		}
		return s
	}
	if st := v.l.cfg.Store; st != nil {
		objs, err := st.List(ctx, sealPrefix)
		if err != nil {
			return fmt.Errorf("list stored seals: %w", err)
		}
		for _, o := range objs {
			rest := strings.TrimPrefix(o.Key, sealPrefix)
			last, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || len(rest) != 20 || last <= 0 || SealKey(last) != o.Key {
				v.sealProblem("object %q in the seal area of the store is not a seal the gateway wrote (unexpected key)", trim(o.Key))
				continue
			}
			get(last).key = o.Key
		}
	}
	rows, err := v.l.db.QueryContext(ctx, `SELECT last, stored_ms FROM audit_seals ORDER BY last`)
	if err != nil {
		return fmt.Errorf("list local seals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var last int64
		var stored sql.NullInt64
		if err := rows.Scan(&last, &stored); err != nil {
			return fmt.Errorf("list local seals: %w", err)
		}
		s := get(last)
		s.local, s.storedMS = true, stored
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list local seals: %w", err)
	}
	for _, s := range bySeq {
		v.slots = append(v.slots, *s)
	}
	slices.SortFunc(v.slots, func(a, b slot) int { return cmp.Compare(a.last, b.last) })
	return nil
}

// rangeOf names a seal by its range for messages.
func rangeOf(first, last int64) string {
	if first == last {
		return fmt.Sprintf("record %d", first)
	}
	return fmt.Sprintf("records %d–%d", first, last)
}

// loadSlot returns the seal to believe for one slot: the stored copy if it
// verifies, else the local copy if it verifies, else none (ok false). It
// reports every disagreement on the way.
func (v *verifier) loadSlot(ctx context.Context, sl slot) (Seal, bool, error) {
	var local Seal
	var localRaw []byte
	var localErr error
	if sl.local {
		if err := v.l.db.QueryRowContext(ctx, `SELECT note FROM audit_seals WHERE last = ?`, sl.last).Scan(&localRaw); err != nil {
			return Seal{}, false, fmt.Errorf("read local seal %d: %w", sl.last, err)
		}
		local, localErr = ParseSeal(localRaw, v.l.cfg.Verifier)
		if localErr == nil && local.Last != sl.last {
			localErr = fmt.Errorf("it says it covers %s, but its row is for record %d", rangeOf(local.First, local.Last), sl.last)
		}
	}
	st := v.l.cfg.Store
	key := sl.key
	if st != nil && key == "" && sl.storedMS.Valid {
		// The local row says the store took it but the listing does not
		// show it: ask for the object itself before calling it missing.
		key = SealKey(sl.last)
	}
	if st != nil && key != "" {
		data, err := readStored(ctx, st, key)
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			key = ""
		case err != nil:
			return Seal{}, false, fmt.Errorf("read stored seal %s: %w", key, err)
		default:
			stored, err := ParseSeal(data, v.l.cfg.Verifier)
			if err == nil && stored.Last != sl.last {
				err = fmt.Errorf("it says it covers %s, which is not what that key holds", rangeOf(stored.First, stored.Last))
			}
			if err != nil {
				v.sealProblem("stored seal %s (up to record %d) is not valid: %v; it is ignored", key, sl.last, err)
				break
			}
			switch {
			case !sl.local:
				v.sealProblem("the seal of %s is in the store but missing from the local database: the audit_seals table was edited", rangeOf(stored.First, stored.Last))
			case localErr != nil || !bytes.Equal(localRaw, data):
				v.sealProblem("the local copy of the seal of %s differs from the stored copy: the audit_seals table was edited; the stored copy is used", rangeOf(stored.First, stored.Last))
			}
			return stored, true, nil
		}
	}
	if !sl.local {
		return Seal{}, false, nil
	}
	if localErr != nil {
		v.sealProblem("local seal up to record %d is not valid: %v; it is ignored", sl.last, localErr)
		return Seal{}, false, nil
	}
	switch {
	case st == nil:
		v.noteUnstored(local)
	case key == "" && sl.storedMS.Valid:
		v.sealProblem("the seal of %s is recorded as stored on %s, but the store does not have it", rangeOf(local.First, local.Last),
			formatTime(time.UnixMilli(sl.storedMS.Int64)))
	case key == "":
		v.noteUnstored(local)
	}
	return local, true, nil
}

func (v *verifier) noteUnstored(s Seal) {
	if len(v.unstored) == 0 {
		v.unstoredFirst = s.First
	}
	v.unstored = append(v.unstored, s.Last)
	v.rep.Unstored++
}

// nextSeal feeds the entries of the next believable seal to the aligner,
// after checking that it continues the previous one and is consistent in
// itself.
func (v *verifier) nextSeal(ctx context.Context) ([]eent, bool, error) {
	for v.si < len(v.slots) {
		sl := v.slots[v.si]
		v.si++
		s, ok, err := v.loadSlot(ctx, sl)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			continue
		}
		name := rangeOf(s.First, s.Last)
		if s.Origin != v.l.cfg.Origin {
			v.sealProblem("the seal of %s is for origin %q, not this log's %q", name, s.Origin, v.l.cfg.Origin)
		}
		if s.First <= v.prevLast {
			v.sealProblem("the seal of %s overlaps the seal ending at record %d: two seals for the same records; it is ignored", name, v.prevLast)
			continue
		}
		var out []eent
		if s.First > v.prevLast+1 {
			// Nothing believable covers the gap: align it blindly.
			v.sealProblem("no valid seal covers %s: their seal is missing or invalid, so they cannot be checked", rangeOf(v.prevLast+1, s.First-1))
			for seq := v.prevLast + 1; seq < s.First; seq++ {
				out = append(out, eent{seq: seq, unknown: true})
			}
		} else {
			if s.Prev != v.prevHead {
				v.sealProblem("the seal of %s does not continue the previous seal: its prev is %s, the previous head %s", name, orDash(s.Prev), orDash(v.prevHead))
			}
			if s.Count != v.prevCount+int64(len(s.Entries)) {
				v.sealProblem("the seal of %s counts %d records, but the seals before it and its own list make %d", name, s.Count, v.prevCount+int64(len(s.Entries)))
			}
		}
		prev, want := s.Prev, s.First
		for _, e := range s.Entries {
			if e.Seq != want {
				v.sealProblem("the seal of %s was made while %s were missing from the database (deleted before sealing)", name, rangeOf(want, e.Seq-1))
			}
			if e.Hash == "-" || RecordHash(e.Seq, prev, e.Content) != e.Hash {
				v.sealFlagged[e.Seq] = true
				v.sealProblem("the seal of %s was made over a broken chain at record %d: the record had been altered before it was sealed", name, e.Seq)
			}
			out = append(out, eent{seq: e.Seq, hash: e.Hash, content: e.Content, prev: prev})
			prev, want = e.Hash, e.Seq+1
		}
		v.prevLast, v.prevHead, v.prevCount, v.lastSealTime = s.Last, s.Head, s.Count, s.Time
		v.rep.Seals++
		return out, true, nil
	}
	return nil, false, nil
}

func orDash(h string) string {
	if h == "" {
		return "-"
	}
	return h
}

// nextPage reads the next page of local records in seq order.
func (v *verifier) nextPage(ctx context.Context) ([]lrow, bool, error) {
	q := `SELECT ` + recordColumns + ` FROM audit_records ORDER BY seq LIMIT ?`
	args := []any{pageSize}
	if v.startedPages {
		q = `SELECT ` + recordColumns + ` FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?`
		args = []any{v.afterPage, pageSize}
	}
	v.startedPages = true
	rows, err := v.l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("read records: %w", err)
	}
	defer rows.Close()
	var out []lrow
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, false, fmt.Errorf("read records: %w", err)
		}
		c := ContentHash(r)
		out = append(out, lrow{seq: r.Seq, at: r.At, prev: r.Prev, hash: r.Hash, content: c,
			hashOK: RecordHash(r.Seq, r.Prev, c) == r.Hash})
		v.afterPage = r.Seq
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read records: %w", err)
	}
	v.rep.Records += len(out)
	return out, len(out) == pageSize, nil
}

// consumeL records that the local row r has been accounted for, so that the
// next unsealed row is checked against it.
func (v *verifier) consumeL(r lrow) {
	v.lastLocalSeq, v.lastLocalHash = r.seq, r.hash
}

// align walks the seals and the local records side by side.
func (v *verifier) align(ctx context.Context) error {
	for {
		if err := v.E.fill(ctx, 1); err != nil {
			return err
		}
		if err := v.L.fill(ctx, 1); err != nil {
			return err
		}
		if v.E.avail() == 0 {
			break
		}
		if v.L.avail() == 0 {
			return v.truncated(ctx)
		}
		e, r := *v.E.at(0), *v.L.at(0)
		switch {
		case e.unknown:
			v.chainRow(r, "not covered by a valid seal", false)
			v.E.drop(1)
			v.L.drop(1)
			v.lastExpSeq = e.seq
			continue
		case e.content == r.content:
			v.anchor(e, r)
			v.E.drop(1)
			v.L.drop(1)
			continue
		}
		v.endShift()
		a, b, kind, err := v.resync(ctx)
		if err != nil {
			return err
		}
		switch kind {
		case resyncFound:
			v.region(v.E.take(a), v.L.take(b))
			v.E.drop(a)
			v.L.drop(b)
		case resyncEndE:
			// The seals end inside the window with nothing to realign
			// on: the end of the sealed range was changed. What follows
			// in the database is partly damage, partly unsealed tail.
			n := v.E.avail()
			last := *v.E.at(n - 1)
			t := v.tailStart(last)
			v.region(v.E.take(n), v.L.take(t))
			v.E.drop(n)
			v.L.drop(t)
		case resyncEndL:
			n := min(v.E.avail(), v.L.avail())
			m := v.L.avail()
			v.region(v.E.take(n), v.L.take(m))
			v.E.drop(n)
			v.L.drop(m)
		default:
			v.problem(e.seq, "from record %d on, the database no longer matches the seals and no realignment was found within %d records; the records after it were not compared with the seals", e.seq, maxWindow)
			for {
				v.E.drop(v.E.avail())
				if err := v.E.fill(ctx, 1); err != nil {
					return err
				}
				if v.E.avail() == 0 {
					break
				}
			}
		}
	}
	v.endShift()
	// Whatever is left is the unsealed tail, protected by the chain only.
	for {
		if err := v.L.fill(ctx, 1); err != nil {
			return err
		}
		if v.L.avail() == 0 {
			return nil
		}
		n := v.L.avail()
		for i := range n {
			v.tailRow(*v.L.at(i))
		}
		v.L.drop(n)
	}
}

// truncated handles a log that ends before the seals do: every sealed
// record after its end was deleted. The first records are kept one by one,
// so that one of them found elsewhere is reported as moved; the rest, which
// can be millions, as one range.
func (v *verifier) truncated(ctx context.Context) error {
	v.endShift()
	for {
		for i := range v.E.avail() {
			e := v.E.at(i)
			switch n := len(v.deleted); {
			case e.unknown:
			case n < maxWindow:
				v.deleted = append(v.deleted, item{seq: e.seq, last: e.seq, content: e.content, atEnd: true})
			default:
				v.deleted[n-1].last, v.deleted[n-1].content = e.seq, ""
			}
		}
		v.E.drop(v.E.avail())
		if err := v.E.fill(ctx, 1); err != nil {
			return err
		}
		if v.E.avail() == 0 {
			return nil
		}
	}
}

// anchor checks a local row whose content matches the sealed record it is
// aligned with: its seq, hash and link must be the sealed ones too.
func (v *verifier) anchor(e eent, r lrow) {
	defer func() { v.consumeL(r); v.lastExpSeq = e.seq }()
	if r.seq == e.seq && r.hash == e.hash && r.prev == e.prev && r.hashOK {
		v.endShift()
		return
	}
	if v.sealFlagged[e.seq] && r.seq == e.seq && r.hash == e.hash && r.prev == e.prev {
		v.endShift() // reported on the seal already
		return
	}
	var kind string
	switch {
	case r.seq != e.seq && r.hashOK && r.hash != e.hash:
		kind = "renumbered and rehashed"
	case r.seq != e.seq:
		kind = "renumbered"
	case r.hashOK:
		kind = "rehashed"
	default:
		kind = "relinked"
	}
	off := r.seq - e.seq
	if s := v.shift; s != nil && s.kind == kind && s.offset == off && s.last+1 == e.seq {
		s.last = e.seq
		return
	}
	v.endShift()
	v.shift = &shiftRun{first: e.seq, last: e.seq, offset: off, kind: kind}
}

// shiftRun is a run of sealed records found with their content intact but
// their seq, hash or link changed: the trace of an attacker covering up a
// change nearby.
type shiftRun struct {
	first, last, offset int64
	kind                string
}

// endShift reports the current shift run, if any.
func (v *verifier) endShift() {
	s := v.shift
	if s == nil {
		return
	}
	v.shift = nil
	name := rangeOf(s.first, s.last)
	now := rangeOf(s.first+s.offset, s.last+s.offset)
	switch s.kind {
	case "renumbered and rehashed":
		v.problem(s.first, "%s renumbered (now %s) and their hashes recomputed: they no longer match the seals (the chain was rewritten to hide a change)", name, now)
	case "renumbered":
		v.problem(s.first, "%s renumbered (now %s): they no longer match the seals", name, now)
	case "rehashed":
		v.problem(s.first, "%s: content intact but hashes recomputed, so they no longer match the seals (the chain was rewritten to hide a change)", name)
	default:
		v.problem(s.first, "%s: the stored hash or link was altered: it matches neither the content nor the seals", name)
	}
}

// Resync outcomes.
const (
	resyncFound = iota
	resyncEndE
	resyncEndL
	resyncGiveUp
)

// resync finds the nearest point after a difference where the local log and
// the seals agree again for resyncRun records: the smallest a+b such that
// sealed entry a and local row b start a matching run. It widens its window
// until it finds one, a stream ends, or maxWindow is reached.
func (v *verifier) resync(ctx context.Context) (a, b, kind int, err error) {
	for w := minWindow; ; w *= 2 {
		if err := v.E.fill(ctx, w+resyncRun); err != nil {
			return 0, 0, 0, err
		}
		if err := v.L.fill(ctx, w+resyncRun); err != nil {
			return 0, 0, 0, err
		}
		ne, nl := min(v.E.avail(), w), min(v.L.avail(), w)
		pos := make(map[string][]int, nl)
		for j := range nl {
			c := v.L.at(j).content
			pos[c] = append(pos[c], j)
		}
		best := -1
		for i := 0; i < ne && (best < 0 || i < best); i++ {
			e := v.E.at(i)
			if e.unknown {
				continue
			}
			for _, j := range pos[e.content] {
				if best >= 0 && i+j >= best {
					break
				}
				if v.runMatches(i, j) {
					best, a, b = i+j, i, j
					break
				}
			}
		}
		if best >= 0 {
			return a, b, resyncFound, nil
		}
		eEnds, lEnds := v.E.done && v.E.avail() <= w, v.L.done && v.L.avail() <= w
		if (eEnds && lEnds) || w >= maxWindow {
			switch {
			case eEnds:
				return 0, 0, resyncEndE, nil
			case lEnds:
				return 0, 0, resyncEndL, nil
			default:
				return 0, 0, resyncGiveUp, nil
			}
		}
	}
}

// runMatches reports whether sealed entry i and local row j begin a run of
// resyncRun agreeing records (or agree up to the end of either).
func (v *verifier) runMatches(i, j int) bool {
	for t := 1; t < resyncRun; t++ {
		if i+t >= v.E.avail() || j+t >= v.L.avail() {
			return true
		}
		if e := v.E.at(i + t); !e.unknown && e.content != v.L.at(j+t).content {
			return false
		}
	}
	return true
}

// tailStart decides where, after the damaged end of the sealed range, the
// unsealed records begin: at the first row linked to the last sealed hash,
// else at the first row appended after the last seal, else nowhere in the
// window.
func (v *verifier) tailStart(last eent) int {
	n := min(v.L.avail(), maxWindow)
	if isHash(last.hash) {
		for j := range n {
			if v.L.at(j).prev == last.hash {
				return j
			}
		}
	}
	for j := range n {
		if v.L.at(j).at.After(v.lastSealTime) {
			return j
		}
	}
	return n
}

// region names what happened between two points where the local log agrees
// with the seals: sealed records Er against local rows Lr.
func (v *verifier) region(Er []eent, Lr []lrow) {
	before := v.lastExpSeq
	// Match local rows to sealed records by content hash.
	idx := map[string][]int{}
	for i, e := range Er {
		if !e.unknown {
			idx[e.content] = append(idx[e.content], i)
		}
	}
	match := make([]int, len(Lr))
	for j, r := range Lr {
		match[j] = -1
		if l := idx[r.content]; len(l) > 0 {
			match[j], idx[r.content] = l[0], l[1:]
		}
	}
	used := make([]bool, len(Er))
	for _, i := range match {
		if i >= 0 {
			used[i] = true
		}
	}
	// The longest run of matches in sealed order stays put; the other
	// matches were moved.
	keep := lis(match)

	localAt := map[int64]int{} // local seq → index in Lr
	for j, r := range Lr {
		localAt[r.seq] = j
	}
	for j, i := range match {
		if i < 0 || keep[j] {
			continue
		}
		x, p := Er[i].seq, Lr[j].seq
		if k, ok := localAt[x]; ok && match[k] >= 0 && Er[match[k]].seq == p && keep[k] {
			v.problem(min(x, p), "records %d and %d reordered: each is where the seals put the other", min(x, p), max(x, p))
			continue
		}
		v.problem(x, "record %d moved: it is now at seq %d, out of its sealed order (reordered)", x, p)
	}

	// Between kept matches, unmatched sealed records and unmatched local
	// rows are edits when they pair up, deletions or insertions when not.
	ePtr := 0
	var gap []int
	flush := func(upTo int) {
		var es []int
		for i := ePtr; i < upTo; i++ {
			if !used[i] && !Er[i].unknown {
				es = append(es, i)
			}
		}
		n := min(len(es), len(gap))
		for k := range n {
			x, p := Er[es[k]].seq, Lr[gap[k]].seq
			if x == p {
				v.problem(x, "record %d edited: its content differs from the sealed copy", x)
			} else {
				v.problem(x, "record %d edited: its content differs from the sealed copy (it is now at seq %d)", x, p)
			}
		}
		for _, i := range es[n:] {
			v.deleted = append(v.deleted, item{seq: Er[i].seq, last: Er[i].seq, content: Er[i].content})
		}
		after := before
		if len(es) > 0 {
			after = Er[es[len(es)-1]].seq
		}
		for _, j := range gap[n:] {
			v.inserted = append(v.inserted, item{now: Lr[j].seq, after: after, content: Lr[j].content})
		}
		gap = gap[:0]
	}
	for j, i := range match {
		switch {
		case i >= 0 && keep[j]:
			flush(i)
			ePtr, before = i+1, Er[i].seq
		case i < 0:
			gap = append(gap, j)
		}
	}
	flush(len(Er))
	if len(Lr) > 0 {
		v.consumeL(Lr[len(Lr)-1])
	}
	if len(Er) > 0 {
		v.lastExpSeq = Er[len(Er)-1].seq
	}
}

// lis returns which positions of seq (values -1 are skipped) belong to one
// longest strictly increasing subsequence.
func lis(seq []int) []bool {
	var tails []int // index into seq of the smallest tail of each length
	parent := make([]int, len(seq))
	for j, x := range seq {
		parent[j] = -1
		if x < 0 {
			continue
		}
		k, _ := slices.BinarySearchFunc(tails, x, func(t, x int) int { return cmp.Compare(seq[t], x) })
		if k > 0 {
			parent[j] = tails[k-1]
		}
		if k == len(tails) {
			tails = append(tails, j)
		} else {
			tails[k] = j
		}
	}
	keep := make([]bool, len(seq))
	if len(tails) > 0 {
		for j := tails[len(tails)-1]; j >= 0; j = parent[j] {
			keep[j] = true
		}
	}
	return keep
}

// tailRow checks an unsealed row against the chain.
func (v *verifier) tailRow(r lrow) {
	if !v.tailStarted {
		v.tailStarted, v.tailFirst = true, r.seq
	}
	v.tailLast = r.seq
	v.rep.Unsealed++
	v.chainRow(r, "not yet sealed", r.seq == v.tailFirst)
}

// chainRow checks a row that no seal vouches for against the one before it:
// the seq must follow on, the stored hash must match the fields, and prev
// must be the previous row's hash. The first unsealed row may instead
// follow the last seal, when the damage before it is reported already.
func (v *verifier) chainRow(r lrow, label string, first bool) {
	defer v.consumeL(r)
	seqOK := r.seq == v.lastLocalSeq+1 || (first && r.seq == v.prevLast+1)
	linkOK := r.prev == v.lastLocalHash || (first && r.prev == v.prevHead && v.prevHead != "")
	flagged := false
	if !seqOK && r.seq > v.lastLocalSeq+1 {
		v.problem(v.lastLocalSeq+1, "%s deleted (%s): the seqs jump from %d to %d", rangeOf(v.lastLocalSeq+1, r.seq-1), label, v.lastLocalSeq, r.seq)
		flagged = true
	}
	switch {
	case !r.hashOK:
		if q := writtenAs(r); q != 0 {
			v.tailMoved = append(v.tailMoved, item{seq: q, now: r.seq})
		} else {
			v.problem(r.seq, "record %d (%s) edited or forged: its content does not match its hash", r.seq, label)
		}
		flagged = true
	case !linkOK && !flagged && !v.prevFlagged:
		v.problem(r.seq, "record %d (%s) does not link to record %d before it: a record was deleted, inserted or replaced there", r.seq, label, v.lastLocalSeq)
		flagged = true
	}
	v.prevFlagged = flagged
}

// writtenAs returns the seq, near r's, at which r's hash was computed, or 0:
// a row that carries a valid hash for another position was moved there.
func writtenAs(r lrow) int64 {
	for d := int64(1); d <= tailSearch; d++ {
		for _, q := range [2]int64{r.seq - d, r.seq + d} {
			if q >= 1 && RecordHash(q, r.prev, r.content) == r.hash {
				return q
			}
		}
	}
	return 0
}

// finish turns the collected findings into the report's problems and
// warnings.
func (v *verifier) finish() {
	// A record deleted in one place and inserted in another was moved.
	for i := 0; i < len(v.deleted); i++ {
		d := v.deleted[i]
		if d.content == "" {
			continue
		}
		k := slices.IndexFunc(v.inserted, func(x item) bool { return x.content == d.content })
		if k < 0 {
			continue
		}
		v.problem(d.seq, "record %d moved: it is now at seq %d, after record %d (reordered)", d.seq, v.inserted[k].now, v.inserted[k].after)
		v.inserted = slices.Delete(v.inserted, k, k+1)
		v.deleted = slices.Delete(v.deleted, i, i+1)
		i--
	}
	slices.SortStableFunc(v.deleted, func(a, b item) int { return cmp.Compare(a.seq, b.seq) })
	for i := 0; i < len(v.deleted); {
		j := i + 1
		for j < len(v.deleted) && v.deleted[j].seq == v.deleted[j-1].last+1 && v.deleted[j].atEnd == v.deleted[i].atEnd {
			j++
		}
		first, last := v.deleted[i].seq, v.deleted[j-1].last
		switch {
		case !v.deleted[i].atEnd:
			v.problem(first, "%s deleted: sealed, but missing from the database", rangeOf(first, last))
		case v.lastLocalSeq == 0:
			v.problem(first, "%s deleted: the log is empty, but the seals cover up to record %d", rangeOf(first, last), v.prevLast)
		default:
			v.problem(first, "%s deleted: the log ends at record %d, but the seals cover up to record %d", rangeOf(first, last), v.lastLocalSeq, v.prevLast)
		}
		i = j
	}
	for i := 0; i < len(v.inserted); {
		j := i + 1
		for j < len(v.inserted) && v.inserted[j].after == v.inserted[i].after && v.inserted[j].now == v.inserted[j-1].now+1 {
			j++
		}
		where := fmt.Sprintf("after record %d", v.inserted[i].after)
		if v.inserted[i].after == 0 {
			where = "at the start of the log"
		}
		if j-i == 1 {
			v.problem(v.inserted[i].after, "a record that is in no seal was inserted %s (it is now seq %d)", where, v.inserted[i].now)
		} else {
			v.problem(v.inserted[i].after, "%d records that are in no seal were inserted %s (now seqs %d–%d)", j-i, where, v.inserted[i].now, v.inserted[j-1].now)
		}
		i = j
	}
	// Unsealed rows carrying another position's hash: swaps, then runs.
	moved := v.tailMoved
	for i := 0; i < len(moved); i++ {
		m := moved[i]
		k := slices.IndexFunc(moved, func(x item) bool { return x.now == m.seq && x.seq == m.now })
		if k > i {
			v.problem(min(m.now, m.seq), "records %d and %d (unsealed) reordered: each carries the hash of the other's position", min(m.now, m.seq), max(m.now, m.seq))
			moved = slices.Delete(moved, k, k+1)
			moved = slices.Delete(moved, i, i+1)
			i--
		}
	}
	for i := 0; i < len(moved); {
		j := i + 1
		off := moved[i].seq - moved[i].now
		for j < len(moved) && moved[j].now == moved[j-1].now+1 && moved[j].seq-moved[j].now == off {
			j++
		}
		if j-i == 1 {
			v.problem(moved[i].now, "the record at seq %d (unsealed) was written as record %d: moved or renumbered", moved[i].now, moved[i].seq)
		} else {
			v.problem(moved[i].now, "the records at seqs %d–%d (unsealed) were written as records %d–%d: renumbered after a record before them was deleted or inserted",
				moved[i].now, moved[j-1].now, moved[i].seq, moved[j-1].seq)
		}
		i = j
	}

	slices.SortStableFunc(v.finds, func(a, b finding) int { return cmp.Compare(a.seq, b.seq) })
	for _, f := range v.finds {
		v.rep.Problems = append(v.rep.Problems, f.msg)
	}
	v.rep.Problems = append(v.rep.Problems, v.sealProblems...)

	if v.l.cfg.Store == nil && v.rep.Seals > 0 {
		v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf(
			"no seal store is configured: the %d seals are kept only in this database, which anyone who can write to it can rewrite; configure an object store with object locking", v.rep.Seals))
	} else if len(v.unstored) > 0 {
		v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf(
			"%d seals (%s) are not yet in the store: the gateway uploads them with backoff; until then they can be rewritten locally",
			len(v.unstored), rangeOf(v.unstoredFirst, v.unstored[len(v.unstored)-1])))
	}
	if v.l.cfg.Store == nil && v.rep.Seals == 0 && v.rep.Records > 0 {
		v.rep.Warnings = append(v.rep.Warnings, "no seal store is configured and nothing is sealed")
	}
	if v.rep.Unsealed > 0 {
		v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf(
			"%d records (%s) are not yet sealed: only the hash chain protects them, which cannot show records removed from the end",
			v.rep.Unsealed, rangeOf(v.tailFirst, v.tailLast)))
	}
}
