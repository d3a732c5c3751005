package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/objstore"
)

// Seal is a parsed seal: the gateway's signed statement of the hashes of a
// range of records (see the package documentation for its text).
type Seal struct {
	// Origin names the log.
	Origin string
	// Count is the number of records sealed so far, this seal included.
	Count int64
	// Head is the hash of the last record in the range ("-" if the
	// database held no valid hash there).
	Head string
	// Time is when the gateway sealed.
	Time time.Time
	// First and Last are the range of seqs the seal covers.
	First, Last int64
	// Prev is the previous seal's Head, "" for the first seal.
	Prev string
	// Entries lists every record in the range, in seq order.
	Entries []SealEntry
	// Note is the signed note as stored.
	Note []byte
}

// SealEntry is one record as a seal saw it.
type SealEntry struct {
	Seq int64
	// Hash is the record's hash as stored ("-" if it was not a hash).
	Hash string
	// Content is the record's content hash (ContentHash), recomputed when
	// it was sealed.
	Content string
}

// SealKey is the object-store key of the seal whose last record is last:
// zero-padded so that keys sort in log order.
func SealKey(last int64) string { return fmt.Sprintf("%s%020d", sealPrefix, last) }

// sealPrefix is where seals live in the object store.
const sealPrefix = "audit/seals/"

// maxSealEntries bounds one seal (a few hundred kilobytes), so a backlog of
// unsealed records after a long outage is sealed in several notes rather
// than one that is slow to sign, store and read.
const maxSealEntries = 2000

// maxSealBytes bounds what Verify reads of one stored object.
const maxSealBytes = 4 << 20

// text returns the seal's note text.
func (s Seal) text() string {
	var b strings.Builder
	prev := s.Prev
	if prev == "" {
		prev = "-"
	}
	fmt.Fprintf(&b, "%s\ncount %d\nhead %s\ntime %s\nrange %d %d\nprev %s\n",
		s.Origin, s.Count, s.Head, formatTime(s.Time), s.First, s.Last, prev)
	for _, e := range s.Entries {
		fmt.Fprintf(&b, "%d %s %s\n", e.Seq, e.Hash, e.Content)
	}
	return b.String()
}

var decimalRE = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)

// parseDecimal reads a positive decimal number without sign or leading
// zeros: one number, one spelling, or two different notes could say the
// same thing.
func parseDecimal(what, s string) (int64, error) {
	if !decimalRE.MatchString(s) {
		return 0, fmt.Errorf("%s %q is not a positive decimal number without leading zeros", what, trim(s))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", what, trim(s), err)
	}
	return n, nil
}

// trim shortens a value quoted in an error, so a hostile object cannot fill
// a report.
func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// parseSealText parses a seal's note text strictly: every line in its place,
// and entries in increasing seq order inside the declared range.
func parseSealText(text string) (Seal, error) {
	if !strings.HasSuffix(text, "\n") {
		return Seal{}, errors.New("seal text does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 7 {
		return Seal{}, fmt.Errorf("seal has %d lines, want the 6 header lines and at least one record", len(lines))
	}
	var s Seal
	s.Origin = lines[0]
	if err := checkOrigin(s.Origin); err != nil {
		return Seal{}, err
	}
	field := func(i int, name string) (string, error) {
		v, ok := strings.CutPrefix(lines[i], name+" ")
		if !ok {
			return "", fmt.Errorf("seal line %d is %q, want %q", i+1, trim(lines[i]), name+" …")
		}
		return v, nil
	}
	v, err := field(1, "count")
	if err == nil {
		s.Count, err = parseDecimal("count", v)
	}
	if err != nil {
		return Seal{}, err
	}
	if s.Head, err = field(2, "head"); err != nil {
		return Seal{}, err
	}
	if !isHash(s.Head) && s.Head != "-" {
		return Seal{}, fmt.Errorf("seal head %q is not a hash", trim(s.Head))
	}
	if v, err = field(3, "time"); err != nil {
		return Seal{}, err
	}
	t, err := time.Parse(timeLayout, v)
	if err != nil || formatTime(t) != v {
		return Seal{}, fmt.Errorf("seal time %q is not a UTC time like 2006-01-02T15:04:05.000Z", trim(v))
	}
	s.Time = t.UTC()
	if v, err = field(4, "range"); err != nil {
		return Seal{}, err
	}
	a, b, _ := strings.Cut(v, " ")
	if s.First, err = parseDecimal("first seq", a); err != nil {
		return Seal{}, err
	}
	if s.Last, err = parseDecimal("last seq", b); err != nil {
		return Seal{}, err
	}
	if s.Last < s.First {
		return Seal{}, fmt.Errorf("seal range %d–%d ends before it starts", s.First, s.Last)
	}
	if s.Prev, err = field(5, "prev"); err != nil {
		return Seal{}, err
	}
	switch {
	case s.Prev == "-":
		s.Prev = ""
	case !isHash(s.Prev):
		return Seal{}, fmt.Errorf("seal prev %q is not a hash", trim(s.Prev))
	}
	s.Entries = make([]SealEntry, 0, len(lines)-6)
	for i, line := range lines[6:] {
		f := strings.Split(line, " ")
		if len(f) != 3 {
			return Seal{}, fmt.Errorf("seal line %d is %q, want \"<seq> <hash> <content hash>\"", i+7, trim(line))
		}
		seq, err := parseDecimal("seq", f[0])
		if err != nil {
			return Seal{}, fmt.Errorf("seal line %d: %w", i+7, err)
		}
		if seq < s.First || seq > s.Last || (i > 0 && seq <= s.Entries[i-1].Seq) {
			return Seal{}, fmt.Errorf("seal line %d: seq %d is out of order or outside the range %d–%d", i+7, seq, s.First, s.Last)
		}
		if !isHash(f[1]) && f[1] != "-" {
			return Seal{}, fmt.Errorf("seal line %d: hash %q is not a hash", i+7, trim(f[1]))
		}
		if !isHash(f[2]) {
			return Seal{}, fmt.Errorf("seal line %d: content hash %q is not a hash", i+7, trim(f[2]))
		}
		s.Entries = append(s.Entries, SealEntry{Seq: seq, Hash: f[1], Content: f[2]})
	}
	if s.Entries[len(s.Entries)-1].Hash != s.Head {
		return Seal{}, fmt.Errorf("seal head %s is not the hash of its last record %d", trim(s.Head), s.Entries[len(s.Entries)-1].Seq)
	}
	return s, nil
}

// ParseSeal checks the signature on a stored seal with v (the gateway's
// public key, which whoever verifies pins) and parses its text. Nothing in a
// seal means anything until this succeeds.
func ParseSeal(signed []byte, v note.Verifier) (Seal, error) {
	if v == nil {
		return Seal{}, errors.New("audit: parse seal: no verifier key")
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Seal{}, fmt.Errorf("not signed by the gateway's key %s+%08x (signed by another key, or not at all)", v.Name(), v.KeyHash())
		case errors.As(err, &invalid):
			return Seal{}, fmt.Errorf("its signature by %s does not match its text (altered after signing, or forged)", v.Name())
		default:
			return Seal{}, fmt.Errorf("not a signed note: %w", err)
		}
	}
	s, err := parseSealText(n.Text)
	if err != nil {
		return Seal{}, err
	}
	s.Note = signed
	return s, nil
}

// sealLocal seals every unsealed record into the local database, in notes
// of at most maxSealEntries records, and returns how many seals it made.
func (l *Log) sealLocal(ctx context.Context) (int, error) {
	if l.cfg.Signer == nil {
		return 0, ErrNoSigner
	}
	made := 0
	for {
		n, err := l.sealOnce(ctx)
		if err != nil {
			return made, err
		}
		if n == 0 {
			return made, nil
		}
		made++
	}
}

// sealOnce makes one seal of up to maxSealEntries unsealed records in one
// IMMEDIATE transaction, so two processes never seal the same range, and
// returns how many records it sealed.
func (l *Log) sealOnce(ctx context.Context) (int, error) {
	var sealed int
	err := l.writeTx(ctx, func(c *sql.Conn) error {
		var lastSealed, count int64
		var prevHead string
		var raw []byte
		err := c.QueryRowContext(ctx, `SELECT last, note FROM audit_seals ORDER BY last DESC LIMIT 1`).Scan(&lastSealed, &raw)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("last seal: %w", err)
		default:
			prev, err := ParseSeal(raw, l.cfg.Verifier)
			if err != nil {
				// Someone edited the local seals. Refusing to seal would
				// leave every later record unprotected, so carry on from
				// what the database says; Verify names the damage, and a
				// wrong prev or count in this seal only adds to it.
				l.log.Error("the last local seal does not verify; sealing on; run audit verify", "last", lastSealed, "err", err)
				prev.Count, prev.Head = lastSealed, ""
				err := c.QueryRowContext(ctx, `SELECT hash FROM audit_records WHERE seq = ?`, lastSealed).Scan(&prev.Head)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("last sealed record: %w", err)
				}
			}
			count, prevHead = prev.Count, prev.Head
			if !isHash(prevHead) {
				prevHead = ""
			}
		}
		rows, err := c.QueryContext(ctx, `SELECT `+recordColumns+` FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?`,
			lastSealed, maxSealEntries)
		if err != nil {
			return fmt.Errorf("unsealed records: %w", err)
		}
		var recs []Record
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("unsealed records: %w", err)
			}
			recs = append(recs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("unsealed records: %w", err)
		}
		if len(recs) == 0 {
			return nil
		}
		s := Seal{Origin: l.cfg.Origin, Count: count + int64(len(recs)), Time: l.cfg.Now().UTC().Truncate(time.Millisecond),
			First: lastSealed + 1, Last: recs[len(recs)-1].Seq, Prev: prevHead}
		// The seal records what the database holds, even if it is
		// damaged: refusing would leave every later record unsealed,
		// and sealing the damage keeps it visible for good.
		prev, want := prevHead, lastSealed+1
		for _, r := range recs {
			h := r.Hash
			if !isHash(h) {
				h = "-"
			}
			if r.Seq != want || r.Prev != prev || r.ComputeHash() != r.Hash {
				l.log.Error("sealing over a broken chain: the database was edited; run audit verify", "seq", r.Seq)
			}
			s.Entries = append(s.Entries, SealEntry{Seq: r.Seq, Hash: h, Content: ContentHash(r)})
			prev, want = r.Hash, r.Seq+1
		}
		s.Head = s.Entries[len(s.Entries)-1].Hash
		signed, err := note.Sign(&note.Note{Text: s.text()}, l.cfg.Signer)
		if err != nil {
			return fmt.Errorf("sign seal %d–%d: %w", s.First, s.Last, err)
		}
		if _, err := c.ExecContext(ctx, `INSERT INTO audit_seals (last, first, at_ms, note) VALUES (?, ?, ?, ?)`,
			s.Last, s.First, s.Time.UnixMilli(), signed); err != nil {
			return fmt.Errorf("insert seal %d–%d: %w", s.First, s.Last, err)
		}
		sealed = len(recs)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("audit: seal: %w", err)
	}
	if sealed > 0 {
		l.log.Info("sealed", "records", sealed)
	}
	return sealed, nil
}

// push stores every local seal the store does not have yet, oldest first,
// and returns the first error. Each put is COMPLIANCE-retained from the
// moment it exists, so there is no window in which a stored seal could be
// replaced.
func (l *Log) push(ctx context.Context) error {
	if l.cfg.Store == nil {
		return nil
	}
	l.pushMu.Lock()
	defer l.pushMu.Unlock()
	type pending struct {
		last, first, atMS int64
		note              []byte
	}
	rows, err := l.db.QueryContext(ctx, `SELECT last, first, at_ms, note FROM audit_seals WHERE stored_ms IS NULL ORDER BY last`)
	if err != nil {
		return fmt.Errorf("audit: store seals: %w", err)
	}
	var todo []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.last, &p.first, &p.atMS, &p.note); err != nil {
			rows.Close()
			return fmt.Errorf("audit: store seals: %w", err)
		}
		todo = append(todo, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: store seals: %w", err)
	}
	for _, p := range todo {
		if l.refused[p.last] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		now := l.cfg.Now()
		until := time.UnixMilli(p.atMS).Add(l.cfg.Retention)
		if !until.After(now) {
			// A seal that waited longer than the retention period (a
			// store unreachable for years) still gets the full period.
			until = now.Add(l.cfg.Retention)
		}
		key := SealKey(p.last)
		err := l.cfg.Store.PutSmall(ctx, key, p.note, objstore.PutOptions{
			Mode: objstore.Compliance, RetainUntil: until, ContentType: "text/plain; charset=utf-8",
			Meta: map[string]string{"audit-first": strconv.FormatInt(p.first, 10), "audit-last": strconv.FormatInt(p.last, 10)},
		})
		if errors.Is(err, objstore.ErrLocked) {
			// Another object holds the key: the local seals were
			// rewritten, or this is not the store of this log.
			l.refused[p.last] = true
			l.log.Error("the store holds a different seal under this key; run audit verify", "key", key)
			continue
		}
		if err != nil {
			return fmt.Errorf("audit: store seal %s: %w", key, err)
		}
		if _, err := l.db.ExecContext(ctx, `UPDATE audit_seals SET stored_ms = ? WHERE last = ?`, l.cfg.Now().UnixMilli(), p.last); err != nil {
			return fmt.Errorf("audit: store seal %s: mark stored: %w", key, err)
		}
	}
	return nil
}

// Seal seals any unsealed records now and stores every seal the store does
// not have yet. The gateway calls it before an export that must include the
// latest records, and Run calls it on shutdown.
func (l *Log) Seal(ctx context.Context) error {
	if _, err := l.sealLocal(ctx); err != nil {
		return err
	}
	return l.push(ctx)
}

// sealDue returns when the unsealed records must be sealed by (the oldest
// one's time plus SealInterval), and false if there are none.
func (l *Log) sealDue(ctx context.Context) (time.Time, bool, error) {
	var ms int64
	err := l.db.QueryRowContext(ctx, `SELECT at_ms FROM audit_records
		WHERE seq > (SELECT COALESCE(MAX(last), 0) FROM audit_seals) ORDER BY seq LIMIT 1`).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("audit: oldest unsealed record: %w", err)
	}
	return time.UnixMilli(ms).Add(l.cfg.SealInterval), true, nil
}

// Backoff bounds for Run's retries, and how often it looks for work other
// processes left (records appended or seals made by the command line).
const (
	minBackoff   = time.Second
	maxBackoff   = 5 * time.Minute
	pollInterval = time.Minute
	// shutdownTimeout bounds the last seal when Run's context ends.
	shutdownTimeout = 10 * time.Second
)

// Run seals by interval and uploads unstored seals, retrying failures with
// capped exponential backoff and jitter, until ctx ends; then it seals once
// more with a short fresh context, so a clean shutdown leaves nothing
// unsealed, and returns that seal's error, if any.
func (l *Log) Run(ctx context.Context) error {
	var (
		backoff time.Duration
		retryAt time.Time // zero: no failure pending
		lastErr string
	)
	fail := func(err error) {
		if backoff == 0 {
			backoff = minBackoff
		} else {
			backoff = min(2*backoff, maxBackoff)
		}
		// ±20% jitter, so gateways that lost the same store do not come
		// back in step.
		d := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		retryAt = l.cfg.Now().Add(d)
		if err.Error() != lastErr {
			lastErr = err.Error()
			l.log.Warn("audit sealing or upload failed; retrying with backoff", "err", err, "retry_in", d)
		}
	}
	for {
		now := l.cfg.Now()
		wait := pollInterval
		if retryAt.IsZero() || !now.Before(retryAt) {
			err := l.step(ctx, now)
			if err != nil && ctx.Err() == nil {
				fail(err)
			} else if err == nil {
				if lastErr != "" {
					l.log.Info("audit sealing and upload recovered")
				}
				backoff, retryAt, lastErr = 0, time.Time{}, ""
			}
		}
		if !retryAt.IsZero() {
			wait = min(wait, retryAt.Sub(now))
		} else if l.cfg.Signer != nil {
			if due, ok, err := l.sealDue(ctx); err == nil && ok {
				wait = min(wait, max(due.Sub(l.cfg.Now()), 0))
			}
		}
		select {
		case <-ctx.Done():
			return l.shutdown(ctx)
		case <-l.kick:
		case <-l.after(wait):
		}
	}
}

// step does one round of Run's work: seal if the oldest unsealed record is
// SealInterval old, then upload what is unstored.
func (l *Log) step(ctx context.Context, now time.Time) error {
	if l.cfg.Signer != nil {
		due, ok, err := l.sealDue(ctx)
		if err != nil {
			return err
		}
		if ok && !now.Before(due) {
			if _, err := l.sealLocal(ctx); err != nil {
				return err
			}
		}
	}
	return l.push(ctx)
}

// shutdown seals what is left when Run's context has ended. The local seal
// is what matters: an upload that fails now happens on the next start.
func (l *Log) shutdown(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if l.cfg.Signer != nil {
		if _, err := l.sealLocal(sctx); err != nil {
			return err
		}
	}
	if err := l.push(sctx); err != nil {
		l.log.Warn("seals not uploaded at shutdown; they will be on the next start", "err", err)
	}
	return nil
}

// readStored reads one stored object, bounded by maxSealBytes.
func readStored(ctx context.Context, st SealStore, key string) ([]byte, error) {
	rc, err := st.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxSealBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSealBytes {
		return nil, fmt.Errorf("object is larger than %d bytes: not a seal", maxSealBytes)
	}
	return data, nil
}
