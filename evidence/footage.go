package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger"
	"github.com/vigil-gw/vigil/evidence/objstore"
)

// Footage opens a clip's original bytes: the stored object once uploaded,
// the local copy while it waits for the store. Callers decide who may see
// it (governance); this package only serves the bytes.
func (s *Service) Footage(ctx context.Context, camera, clip string) (io.ReadCloser, error) {
	for range 2 {
		var state, key, path string
		err := s.db.QueryRowContext(ctx, `SELECT state, object_key, spool_path FROM clips WHERE camera=? AND clip=?`, camera, clip).Scan(&state, &key, &path)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, camera, clip)
		}
		if err != nil {
			return nil, fmt.Errorf("evidence: footage %s/%s: %w", camera, clip, err)
		}
		switch state {
		case stateDeleted:
			return nil, fmt.Errorf("%w: %s/%s", ErrDeleted, camera, clip)
		case stateUploaded:
			return s.store.Open(ctx, key)
		}
		f, err := os.Open(path)
		if err == nil {
			return f, nil
		}
		// Uploaded and removed between the query and the open: look again.
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("evidence: footage %s/%s: %w", camera, clip, err)
		}
	}
	return nil, fmt.Errorf("evidence: footage %s/%s: the local copy vanished", camera, clip)
}

// presigner is a store that can hand out time-limited URLs (S3; not the
// local directory store).
type presigner interface {
	Presign(ctx context.Context, key string, expiry time.Duration) (string, error)
}

// Link returns a URL from which an uploaded clip can be fetched for ttl,
// without the store's credentials. It fails with objstore.ErrNoPresign when
// the store cannot presign or the clip is still on the gateway.
func (s *Service) Link(ctx context.Context, camera, clip string, ttl time.Duration) (string, error) {
	c, err := s.Get(ctx, camera, clip)
	if err != nil {
		return "", err
	}
	if c.Deleted() {
		return "", fmt.Errorf("%w: %s/%s", ErrDeleted, camera, clip)
	}
	p, ok := s.store.(presigner)
	if !ok || c.State != stateUploaded {
		return "", fmt.Errorf("evidence: link %s/%s: %w", camera, clip, objstore.ErrNoPresign)
	}
	return p.Presign(ctx, c.ObjectKey, ttl)
}

// Keys returns the gateway's signing key and its verifier. The same key
// signs ledger checkpoints, audit seals and evidence packages, so police and
// IG officers pin one key per gateway.
func (s *Service) Keys() (note.Signer, note.Verifier) { return s.signer, s.verifier }

// Proven is one clip's ledger entry and its inclusion proof.
type Proven struct {
	Entry ledger.Entry
	Proof ledger.Proof
}

// Prove returns a signed checkpoint covering every given clip (signing a new
// one if the latest does not reach them) and each clip's inclusion proof in
// it, for an evidence package.
func (s *Service) Prove(ctx context.Context, clips []ClipRef) (ledger.Checkpoint, []Proven, error) {
	entries := make([]ledger.Entry, len(clips))
	var need uint64
	for i, c := range clips {
		e, err := s.ledger.Get(ctx, c.Camera, c.Clip)
		if err != nil {
			return ledger.Checkpoint{}, nil, fmt.Errorf("evidence: prove %s/%s: %w", c.Camera, c.Clip, err)
		}
		entries[i], need = e, max(need, e.Index+1)
	}
	cp, ok, err := s.ledger.Latest(ctx)
	if err != nil {
		return cp, nil, fmt.Errorf("evidence: prove: %w", err)
	}
	if !ok || cp.Size < need {
		if cp, _, err = s.ledger.Checkpoint(ctx, s.cfg.Now()); err != nil {
			return cp, nil, fmt.Errorf("evidence: prove: sign a checkpoint: %w", err)
		}
		s.Wake() // the uploader stores the new checkpoint
	}
	out := make([]Proven, len(entries))
	for i, e := range entries {
		p, err := s.ledger.Prove(ctx, e.Index, cp.Size)
		if err != nil {
			return cp, nil, fmt.Errorf("evidence: prove %s/%s: %w", e.Camera, e.Clip.Clip, err)
		}
		out[i] = Proven{Entry: e, Proof: p}
	}
	return cp, out, nil
}
