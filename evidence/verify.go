package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/vigil-gw/vigil/evidence/ledger"
	"github.com/vigil-gw/vigil/evidence/objstore"
)

// Report is the result of Verify: empty Problems means everything checked
// is as the ledger says.
type Report struct {
	Deep        bool
	Entries     int // ledger entries checked
	Checkpoints int
	Stored      int // clips checked in the store
	Local       int // clips checked on the local disk (not yet uploaded)
	Deleted     int // clips deleted under the retention policy (their entries stay)
	Problems    []string
}

// OK reports whether nothing was found wrong.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks the ledger (hash chains, Merkle roots, checkpoint
// signatures), that every clip's record agrees with its ledger entry, that
// the store holds every uploaded clip with the right size and digest (deep:
// re-reading and re-hashing every object), that nothing is stored that the
// ledger does not know, and that every checkpoint is in the store. Each
// problem names the clip or object.
func (s *Service) Verify(ctx context.Context, deep bool) (Report, error) {
	r := Report{Deep: deep}
	lr, err := s.ledger.Verify(ctx, s.verifier)
	if err != nil {
		return r, fmt.Errorf("evidence: verify ledger: %w", err)
	}
	r.Entries, r.Checkpoints = lr.Entries, lr.Checkpoints
	for _, p := range lr.Problems {
		r.Problems = append(r.Problems, "ledger: "+p.What)
	}
	// Entry by entry: a corrupt one is already in the ledger's report and
	// must not stop the rest from being checked.
	size, err := s.ledger.Size(ctx)
	if err != nil {
		return r, err
	}
	byKey := map[string]ledger.Entry{}
	for i := range size {
		if e, err := s.ledger.At(ctx, i); err == nil {
			byKey[e.Camera+"/"+e.Clip.Clip] = e
		}
	}
	clips, err := s.List(ctx, Filter{})
	if err != nil {
		return r, err
	}
	known := map[string]bool{}
	for _, c := range clips {
		name := c.Camera + "/" + c.Clip
		known[c.ObjectKey] = true
		e, ok := byKey[name]
		delete(byKey, name)
		if !ok {
			r.Problems = append(r.Problems, fmt.Sprintf("clip %s: recorded but not in the ledger", name))
			continue
		}
		if e.SHA256 != c.SHA256 || e.Size != c.Size || uint64(c.Index) != e.Index {
			r.Problems = append(r.Problems, fmt.Sprintf("clip %s: its record (sha256 %s, %d bytes, entry %d) disagrees with ledger entry %d (sha256 %s, %d bytes): the record was edited",
				name, short(c.SHA256), c.Size, c.Index, e.Index, short(e.SHA256), e.Size))
		}
		// The ledger's digest is the truth the objects are checked against.
		switch c.State {
		case stateDeleted:
			r.Deleted++
			if p := s.verifyDeleted(ctx, c); p != "" {
				r.Problems = append(r.Problems, fmt.Sprintf("clip %s: %s", name, p))
			}
		case stateUploaded:
			r.Stored++
			if err := s.store.Verify(ctx, c.ObjectKey, e.Size, e.SHA256, deep); err != nil {
				what := "altered"
				if errors.Is(err, objstore.ErrNotFound) {
					what = "missing"
				}
				r.Problems = append(r.Problems, fmt.Sprintf("clip %s: object %s %s: %v", name, c.ObjectKey, what, err))
			}
		default:
			r.Local++
			if err := s.verifyLocal(ctx, c, e, deep); err != nil {
				r.Problems = append(r.Problems, fmt.Sprintf("clip %s: local copy: %v", name, err))
			}
		}
	}
	for name, e := range byKey {
		r.Problems = append(r.Problems, fmt.Sprintf("clip %s: ledger entry %d has no clip record: the record was deleted", name, e.Index))
	}
	objs, err := s.store.List(ctx, "clips/")
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("store: cannot list clips: %v", err))
	}
	for _, o := range objs {
		if !known[o.Key] {
			r.Problems = append(r.Problems, fmt.Sprintf("object %s: stored but not in the ledger (extra object)", o.Key))
		}
	}
	r.Problems = append(r.Problems, s.verifyCheckpointObjects(ctx, deep)...)
	sort.Strings(r.Problems)
	return r, nil
}

func (s *Service) verifyLocal(ctx context.Context, c Clip, e ledger.Entry, deep bool) error {
	var path string
	if err := s.db.QueryRowContext(ctx, `SELECT spool_path FROM clips WHERE camera=? AND clip=?`, c.Camera, c.Clip).Scan(&path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("missing: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != e.Size {
		return fmt.Errorf("altered: %d bytes, the ledger says %d", fi.Size(), e.Size)
	}
	if !deep {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return fmt.Errorf("altered: sha256 %s, the ledger says %s", short(got), short(e.SHA256))
	}
	return nil
}

// verifyCheckpointObjects checks that each checkpoint recorded as stored is
// in the store (deep: byte for byte), and that every checkpoint the store
// holds verifies with the gateway key and matches the ledger as it is now.
// The stored checkpoints are under COMPLIANCE retention, out of reach of
// whoever administers the gateway: they catch a ledger rolled back or
// rewritten together with its local checkpoint table.
func (s *Service) verifyCheckpointObjects(ctx context.Context, deep bool) []string {
	cps, err := s.ledger.Checkpoints(ctx)
	if err != nil {
		return []string{fmt.Sprintf("ledger: cannot read checkpoints: %v", err)}
	}
	var probs []string
	objs, err := s.store.List(ctx, "checkpoints/")
	if err != nil {
		probs = append(probs, fmt.Sprintf("store: cannot list checkpoints: %v", err))
	}
	size, _ := s.ledger.Size(ctx)
	for _, o := range objs {
		probs = append(probs, s.checkStoredCheckpoint(ctx, o.Key, size)...)
	}
	for _, cp := range cps {
		var n int
		if s.db.QueryRowContext(ctx, `SELECT count(*) FROM checkpoint_objects WHERE size=?`, cp.Size).Scan(&n) != nil || n == 0 {
			continue // not uploaded yet: Status counts these
		}
		key := CheckpointKey(cp.Size)
		if !deep {
			if _, err := s.store.Stat(ctx, key); err != nil {
				probs = append(probs, fmt.Sprintf("checkpoint %d: object %s: %v", cp.Size, key, err))
			}
			continue
		}
		if err := s.store.Verify(ctx, key, int64(len(cp.Note)), digestOf(cp.Note), true); err != nil {
			probs = append(probs, fmt.Sprintf("checkpoint %d: object %s: %v", cp.Size, key, err))
		}
	}
	return probs
}

func (s *Service) checkStoredCheckpoint(ctx context.Context, key string, size uint64) []string {
	rc, err := s.store.Open(ctx, key)
	if err != nil {
		return []string{fmt.Sprintf("checkpoint object %s: %v", key, err)}
	}
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	rc.Close()
	if err != nil {
		return []string{fmt.Sprintf("checkpoint object %s: %v", key, err)}
	}
	cp, err := ledger.ParseCheckpoint(b, s.verifier)
	if err != nil {
		return []string{fmt.Sprintf("checkpoint object %s: does not verify with the gateway key: %v", key, err)}
	}
	if cp.Size > size {
		return []string{fmt.Sprintf("checkpoint object %s: signed a ledger of %d entries but the ledger now has %d: entries were removed", key, cp.Size, size)}
	}
	root, err := s.ledger.Root(ctx, cp.Size)
	if err != nil {
		return []string{fmt.Sprintf("checkpoint object %s: cannot compute the ledger root at %d: %v", key, cp.Size, err)}
	}
	if !bytes.Equal(root, cp.Root) {
		return []string{fmt.Sprintf("checkpoint object %s: the ledger's first %d entries no longer have the root it signed: the ledger was rewritten", key, cp.Size)}
	}
	return nil
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

// verifyDeleted checks that a clip recorded as deleted was deleted by the
// sweeper, when its retention had passed, and is gone from the store: a
// record marked deleted to hide footage, or footage "deleted" early, shows.
func (s *Service) verifyDeleted(ctx context.Context, c Clip) string {
	var at int64
	var policy string
	if err := s.db.QueryRowContext(ctx, `SELECT at_ms, policy FROM deletions WHERE camera=? AND clip=?`, c.Camera, c.Clip).Scan(&at, &policy); err != nil {
		return "marked deleted but no deletion was recorded by the retention sweeper"
	}
	if fromMS(at).Before(c.RetainUntil) {
		return fmt.Sprintf("deleted on %s, before its retention ended (%s)", fromMS(at).Format(time.RFC3339), c.RetainUntil.Format(time.RFC3339))
	}
	if _, err := s.store.Stat(ctx, c.ObjectKey); err == nil {
		return fmt.Sprintf("recorded as deleted (%s) but object %s is still stored", policy, c.ObjectKey)
	}
	return ""
}
