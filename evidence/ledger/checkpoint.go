package ledger

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a signed statement of the log's size and Merkle root at a
// time. Once a checkpoint has left the gateway (to the object store under
// compliance lock, or to a police exhibit), no entry it covers can change
// without the change showing.
type Checkpoint struct {
	// Origin names the log (first line of the note).
	Origin string
	// Size is the number of entries covered.
	Size uint64
	// Root is the 32-byte RFC 6962 root of the first Size entries.
	Root []byte
	// Time is when the gateway signed it (the "time" extension line);
	// zero if the note has none.
	Time time.Time
	// Note is the signed note text: the checkpoint body, a blank line and
	// the signature lines. This is what to store and hand out.
	Note []byte
}

// timeExt starts the checkpoint extension line that carries the signing time.
const timeExt = "time "

var sizeRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,19})$`)

// formatCheckpoint writes the note text of a checkpoint (see doc.go).
func formatCheckpoint(origin string, size uint64, root []byte, t time.Time) string {
	return fmt.Sprintf("%s\n%d\n%s\n%s%s\n", origin, size, base64.StdEncoding.EncodeToString(root), timeExt, t.UTC().Format(timeLayout))
}

// parseCheckpointText parses a checkpoint body: origin, size and root lines,
// then optional non-empty extension lines, of which the first "time " line
// gives the time. It is strict about the three mandatory lines (no leading
// zeros, canonical base64, 32-byte root) because two spellings of one
// checkpoint would be two different signed statements.
func parseCheckpointText(text string) (Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, errors.New("checkpoint body does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("checkpoint body has %d lines, want at least 3 (origin, size, root)", len(lines))
	}
	var cp Checkpoint
	cp.Origin = lines[0]
	if err := checkOrigin(cp.Origin); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %w", err)
	}
	if !sizeRE.MatchString(lines[1]) {
		return Checkpoint{}, fmt.Errorf("checkpoint size %q is not a decimal number without leading zeros", clipTrim(lines[1]))
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint size %q: %w", clipTrim(lines[1]), err)
	}
	cp.Size = n
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != hasher.Size() || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return Checkpoint{}, fmt.Errorf("checkpoint root %q is not the base64 of a %d-byte hash", clipTrim(lines[2]), hasher.Size())
	}
	cp.Root = root
	for _, ext := range lines[3:] {
		if ext == "" {
			return Checkpoint{}, errors.New("checkpoint has an empty extension line")
		}
		if s, ok := strings.CutPrefix(ext, timeExt); ok && cp.Time.IsZero() {
			t, err := time.Parse(timeLayout, s)
			if err != nil || t.UTC().Format(timeLayout) != s {
				return Checkpoint{}, fmt.Errorf("checkpoint time %q is not a UTC time like 2006-01-02T15:04:05.000Z", clipTrim(s))
			}
			cp.Time = t.UTC()
		}
	}
	return cp, nil
}

// ParseCheckpoint checks the signature on a signed checkpoint note with v
// (the gateway's verifier key, which the party checking pins) and parses its
// body. Further signatures by keys other than v's (witness cosignatures) are
// allowed and ignored. It is the first step of any offline verification:
// nothing in a checkpoint means anything until this succeeds.
func ParseCheckpoint(signedNote []byte, v note.Verifier) (Checkpoint, error) {
	if v == nil {
		return Checkpoint{}, errors.New("ledger: parse checkpoint: no verifier key")
	}
	cp, err := openCheckpoint(signedNote, v)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("ledger: parse checkpoint: %w", err)
	}
	return cp, nil
}

// openCheckpoint is ParseCheckpoint without the package prefix on errors,
// so Verify can put the reason in a sentence.
func openCheckpoint(signedNote []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(signedNote, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, describeNoteError(err, v)
	}
	cp, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	cp.Note = bytes.Clone(signedNote)
	return cp, nil
}

// describeNoteError turns note.Open's errors into words about what the
// reader should conclude.
func describeNoteError(err error, v note.Verifier) error {
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return fmt.Errorf("not signed by key %s (%08x): signed by another key or not at all: %w", v.Name(), v.KeyHash(), err)
	case errors.As(err, &invalid):
		return fmt.Errorf("signature by %s does not match the text: the note was altered after signing: %w", v.Name(), err)
	default:
		return fmt.Errorf("not a signed note: %w", err)
	}
}

// noteText returns the text part of a signed note without checking any
// signature, for reading back checkpoints the ledger itself stored.
func noteText(signed []byte) (string, error) {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return "", errors.New("not a signed note: no signature block")
	}
	return string(signed[:i+1]), nil
}

// storedCheckpoint is one ledger_checkpoints row.
type storedCheckpoint struct {
	seq  int64
	cp   Checkpoint
	tree []byte
}

// scanCheckpoint reads (seq, note, tree) and parses the note's text. The
// note, not the size and root columns, is the truth: only it is signed.
func scanCheckpoint(s scanner) (storedCheckpoint, error) {
	var sc storedCheckpoint
	if err := s.Scan(&sc.seq, &sc.cp.Note, &sc.tree); err != nil {
		return storedCheckpoint{}, err
	}
	text, err := noteText(sc.cp.Note)
	if err == nil {
		var cp Checkpoint
		cp, err = parseCheckpointText(text)
		cp.Note = sc.cp.Note
		sc.cp = cp
	}
	if err != nil {
		return storedCheckpoint{}, fmt.Errorf("checkpoint %d is corrupt (run verify): %w: %w", sc.seq, errCorruptCheckpoint, err)
	}
	return sc, nil
}

// errCorruptCheckpoint marks a stored checkpoint whose note does not parse,
// so Open can tell it from a failure to read: a tampered checkpoint must not
// stop the ledger from opening, or nobody could run Verify to find it.
var errCorruptCheckpoint = errors.New("unreadable note")

func lastCheckpoint(ctx context.Context, q querier) (storedCheckpoint, bool, error) {
	sc, err := scanCheckpoint(q.QueryRowContext(ctx,
		`SELECT seq, note, tree FROM ledger_checkpoints ORDER BY seq DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return storedCheckpoint{}, false, nil
	}
	if err != nil {
		return storedCheckpoint{}, false, err
	}
	return sc, true, nil
}

// Latest returns the most recent checkpoint; false if none was made yet.
func (l *Ledger) Latest(ctx context.Context) (Checkpoint, bool, error) {
	sc, ok, err := lastCheckpoint(ctx, l.db)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: latest checkpoint: %w", err)
	}
	return sc.cp, ok, nil
}

// Checkpoints returns every stored checkpoint, oldest first, so that an
// auditor can check each against the entries and each against the next.
func (l *Ledger) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	return l.checkpoints(ctx, `SELECT seq, note, tree FROM ledger_checkpoints ORDER BY seq`)
}

// CheckpointsAfter returns the checkpoints of more than size entries,
// oldest first: what a caller that has shipped every checkpoint up to size
// still has to ship, without reading the whole history each time.
func (l *Ledger) CheckpointsAfter(ctx context.Context, size uint64) ([]Checkpoint, error) {
	return l.checkpoints(ctx, `SELECT seq, note, tree FROM ledger_checkpoints WHERE size > ? ORDER BY seq`, int64(size))
}

func (l *Ledger) checkpoints(ctx context.Context, query string, args ...any) ([]Checkpoint, error) {
	rows, err := l.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		sc, err := scanCheckpoint(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger: checkpoints: %w", err)
		}
		out = append(out, sc.cp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: checkpoints: %w", err)
	}
	return out, nil
}

// Checkpoint signs and stores a checkpoint of the current log if it grew
// since the last checkpoint, and reports whether it made one; otherwise it
// returns the latest checkpoint (or none, on an empty ledger) and false.
// When to call it (every N entries, every T minutes) is the caller's
// policy; shipping the note off the gateway is what makes it protect
// anything.
//
// The new root is computed by extending the compact range stored with the
// previous checkpoint, after checking that range against the previous signed
// root, so the cost is the entries appended since, and the gateway never
// signs a log that does not extend what it signed before: if the stored
// entries no longer give the previous root, Checkpoint refuses with an error
// and Verify says what changed.
func (l *Ledger) Checkpoint(ctx context.Context, now time.Time) (Checkpoint, bool, error) {
	if l.signer == nil {
		return Checkpoint{}, false, errors.New("ledger: checkpoint: no signing key (ledger opened read-only)")
	}
	t := now.UTC().Truncate(time.Millisecond)
	if t.Before(minTime) || t.After(maxTime) {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint: time %s is outside the years 1970-9999", now.UTC().Format(time.RFC3339))
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint: %w", err)
	}
	defer tx.Rollback() // a no-op after Commit

	last, hasLast, err := lastCheckpoint(ctx, tx)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint: %w", err)
	}
	n, err := size(ctx, tx)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint: %w", err)
	}
	switch {
	case hasLast && n == last.cp.Size:
		return last.cp, false, nil
	case hasLast && n < last.cp.Size:
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint: the ledger holds %d entries but checkpoint %d covers %d: entries were deleted; run verify", n, last.seq, last.cp.Size)
	case !hasLast && n == 0:
		return Checkpoint{}, false, nil
	}
	if hasLast && last.cp.Origin != l.origin {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint: checkpoint %d is for origin %q, not %q", last.seq, last.cp.Origin, l.origin)
	}

	r := ranges.NewEmptyRange(0)
	if hasLast {
		if r, err = restoreRange(ctx, tx, last); err != nil {
			return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint: %w", err)
		}
	}
	var subtrees subtreeCollector
	if err := extend(ctx, tx, r, n, subtrees.visit); err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint of size %d: %w", n, err)
	}
	root, err := rootOf(r)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint of size %d: %w", n, err)
	}
	signed, err := note.Sign(&note.Note{Text: formatCheckpoint(l.origin, n, root, t)}, l.signer)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint of size %d: sign: %w", n, err)
	}
	seq := last.seq + 1
	_, err = tx.ExecContext(ctx,
		`INSERT INTO ledger_checkpoints (seq, size, root, time_ms, note, tree) VALUES (?, ?, ?, ?, ?, ?)`,
		seq, int64(n), root, t.UnixMilli(), signed, bytes.Join(r.Hashes(), nil))
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint of size %d: insert: %w", n, err)
	}
	if err := subtrees.store(ctx, tx); err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint of size %d: cache subtrees: %w", n, err)
	}
	// Committed before the caller ships the note anywhere, so a checkpoint
	// that exists outside the gateway always exists inside it too.
	if err := tx.Commit(); err != nil {
		return Checkpoint{}, false, fmt.Errorf("ledger: checkpoint of size %d: commit: %w", n, err)
	}
	return Checkpoint{Origin: l.origin, Size: n, Root: root, Time: t, Note: signed}, true, nil
}

// restoreRange returns the compact range of the tree the checkpoint sc
// signed. The stored range is used when it gives the signed root (the
// usual, cheap case); otherwise the range is rebuilt from the leaves, and if
// they do not give the signed root either, the log was rewritten.
func restoreRange(ctx context.Context, q querier, sc storedCheckpoint) (*compact.Range, error) {
	if hashes, ok := splitTree(sc.tree, sc.cp.Size); ok {
		if r, err := ranges.NewRange(0, sc.cp.Size, hashes); err == nil {
			if root, err := rootOf(r); err == nil && bytes.Equal(root, sc.cp.Root) {
				return r, nil
			}
		}
	}
	r := ranges.NewEmptyRange(0)
	if err := extend(ctx, q, r, sc.cp.Size, nil); err != nil {
		return nil, fmt.Errorf("rebuilding the tree of checkpoint %d (size %d): %w", sc.seq, sc.cp.Size, err)
	}
	root, err := rootOf(r)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(root, sc.cp.Root) {
		return nil, fmt.Errorf("the stored entries no longer give the root signed in checkpoint %d (size %d): the log was rewritten; run verify", sc.seq, sc.cp.Size)
	}
	return r, nil
}

// splitTree cuts a stored compact range into its hashes, checking that it
// has as many as a range [0, size) must.
func splitTree(tree []byte, size uint64) ([][]byte, bool) {
	hs := hasher.Size()
	if len(tree)%hs != 0 || len(tree)/hs != compact.RangeSize(0, size) {
		return nil, false
	}
	out := make([][]byte, 0, len(tree)/hs)
	for i := 0; i < len(tree); i += hs {
		out = append(out, bytes.Clone(tree[i:i+hs]))
	}
	return out, true
}
