package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DockConfig configures ingest from a directory a camera dock fills.
type DockConfig struct {
	Dir   string // where the dock puts clip files and their sidecars
	Spool string // the state disk: clips are copied here before they count
	Sink  Sink
	// Every is how often the directory is scanned (default 2 s).
	Every  time.Duration
	Logger *slog.Logger
	Now    func() time.Time
	// Rejected is called once per sidecar that cannot be ingested, with why.
	Rejected func(sidecar string, err error)
}

// Dock ingests clips that a dock presents as files: for each clip a file
// and, written last, a sidecar "NAME.json" with its metadata
// ({"camera","clip","sha256","size","start","end"}; the clip file is the
// sidecar's name without ".json", or the clip id). The clip is copied into
// the spool, hashed on the way, fsynced, and handed to the Sink; then both
// files are removed from the dock. A sidecar that cannot be ingested is
// renamed NAME.json.rejected with a NAME.json.reason beside it, so it is
// reported once and nothing else is held up.
type Dock struct {
	cfg DockConfig
	log *slog.Logger
}

// NewDock returns a dock ingester.
func NewDock(cfg DockConfig) (*Dock, error) {
	if cfg.Sink == nil || cfg.Dir == "" || cfg.Spool == "" {
		return nil, errors.New("ingest: dock needs Dir, Spool and Sink")
	}
	if cfg.Every == 0 {
		cfg.Every = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{cfg.Dir, cfg.Spool} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("ingest: dock %s: %w", d, err)
		}
	}
	return &Dock{cfg: cfg, log: cfg.Logger.With("component", "dock", "dir", cfg.Dir)}, nil
}

// Run scans the directory until ctx ends.
func (d *Dock) Run(ctx context.Context) error {
	tick := time.NewTicker(d.cfg.Every)
	defer tick.Stop()
	for {
		d.Scan(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Scan ingests every complete clip in the directory now.
func (d *Dock) Scan(ctx context.Context) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		d.log.Error("dock directory unreadable", "err", err)
		return
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		if err := d.one(ctx, name); err != nil {
			if errors.Is(err, ErrFull) || errors.Is(err, context.Canceled) {
				continue // try again later; nothing is wrong with the clip
			}
			d.reject(name, err)
		}
	}
}

func (d *Dock) one(ctx context.Context, sidecar string) error {
	b, err := os.ReadFile(filepath.Join(d.cfg.Dir, sidecar))
	if err != nil {
		return err
	}
	m, err := ParseSidecar(b)
	if err != nil {
		return err
	}
	clipName := strings.TrimSuffix(sidecar, ".json")
	clipPath := filepath.Join(d.cfg.Dir, clipName)
	if _, err := os.Stat(clipPath); errors.Is(err, os.ErrNotExist) {
		clipName = m.Clip
		clipPath = filepath.Join(d.cfg.Dir, m.Clip) // ledger.ValidClipID (in Check) keeps this inside the dir
	}
	if err := d.cfg.Sink.Admit(ctx, m); err != nil {
		if errors.Is(err, ErrDuplicate) {
			d.log.Info("dock clip already received; removing the dock copy", "camera", m.Camera, "clip", m.Clip)
			d.remove(sidecar, clipName)
			return nil
		}
		return err
	}
	spooled, digest, err := d.copy(clipPath, m)
	if err != nil {
		return err
	}
	err = d.cfg.Sink.Accept(ctx, Spooled{Meta: m, Path: spooled, Digest: digest, Ingest: "dock", Received: d.cfg.Now().UTC()})
	switch {
	case err == nil, errors.Is(err, ErrDuplicate):
		d.remove(sidecar, clipName)
		return nil
	case errors.Is(err, ErrMismatch):
		d.remove(sidecar, clipName) // the sink quarantined its copy
		return nil
	default:
		os.Remove(spooled)
		return err
	}
}

// copy streams the clip into the spool, hashing it, and fsyncs the copy.
func (d *Dock) copy(src string, m Meta) (string, string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", "", fmt.Errorf("ingest: dock clip %s: %w", filepath.Base(src), err)
	}
	defer in.Close()
	out, err := os.CreateTemp(d.cfg.Spool, "dock-*.part")
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != m.Size {
		err = &MetaError{Field: "size", Problem: fmt.Sprintf("sidecar says %d bytes, the file has %d", m.Size, n)}
	}
	if err != nil {
		os.Remove(out.Name())
		return "", "", err
	}
	return out.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

func (d *Dock) remove(sidecar, clip string) {
	// The sidecar goes first: without it the clip file is never looked at again.
	os.Remove(filepath.Join(d.cfg.Dir, sidecar))
	os.Remove(filepath.Join(d.cfg.Dir, clip))
}

func (d *Dock) reject(sidecar string, err error) {
	p := filepath.Join(d.cfg.Dir, sidecar)
	if rerr := os.Rename(p, p+".rejected"); rerr != nil {
		d.log.Error("could not set aside a rejected dock sidecar", "sidecar", sidecar, "err", rerr)
		return
	}
	os.WriteFile(p+".reason", []byte(err.Error()+"\n"), 0o640)
	d.log.Warn("dock clip rejected", "sidecar", sidecar, "err", err)
	if d.cfg.Rejected != nil {
		d.cfg.Rejected(sidecar, err)
	}
}
