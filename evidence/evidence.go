// Package evidence keeps body-worn-camera footage as evidence: it takes
// clips in (evidence/ingest), enters each in a hash-chained, Merkle-logged
// ledger (evidence/ledger) with signed checkpoints, uploads them to an
// object-locked store (evidence/objstore) under retention, verifies the
// stored copy before deleting the local one, and makes footage evidential
// with a legal hold when an incident needs it.
//
// Its state is one SQLite database (STATE/evidence.db) beside the alert
// path's bbolt file, so footage work never holds the alarm journal's writer,
// and the CLI can read it while the gateway runs.
package evidence

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger"
	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// Files and directories under the state directory.
const (
	DBFile     = "evidence.db"
	Dir        = "evidence"   // STATE/evidence
	KeyFile    = "ledger.key" // STATE/evidence/ledger.key
	uploadsDir = "uploads"    // tus uploads in progress
	clipsDir   = "clips"      // accepted clips waiting for the store
	quarDir    = "quarantine" // clips whose digest did not match
	objectsDir = "objects"    // the local object store when no S3 is set
	dockSpool  = "dock"       // dock copies in progress
)

// Categories of footage.
const (
	NonEvidential = "non_evidential"
	Evidential    = "evidential"
)

// Config configures the evidence service. Zero values take the defaults
// noted on each field.
type Config struct {
	State string // the gateway's state directory
	// S3 is the object-locked bucket; nil keeps objects in a local directory
	// under the state directory (not for production evidence).
	S3 *objstore.S3Config
	// Origin names this gateway's ledger in its checkpoints (default
	// "vigil/evidence").
	Origin              string
	CheckpointEvery     int           // entries between checkpoints (100)
	CheckpointInterval  time.Duration // at most this long between checkpoints of a grown ledger (10m)
	NonEvidential       time.Duration // retention of ordinary footage after capture (31 days)
	Evidential          time.Duration // retention of evidential footage after its incident is closed (6 years); a legal hold while it is open
	CheckpointRetention time.Duration // COMPLIANCE retention of checkpoints in the store (10 years)
	PreEvent            time.Duration // footage before an alert that becomes evidential (2m)
	PostEvent           time.Duration // footage after an alert's resolution that becomes evidential (10m)
	MaxClipSize         int64         // largest clip accepted (16 GiB)
	HighWater           float64       // fraction of the state disk in use above which non-evidential clips are refused (0.9)
	DockDir             string        // a dock's directory to ingest from ("" for none)
	UploadRetryMax      time.Duration // longest wait between upload attempts (5m)
	UploadBasePath      string        // tus endpoint path (/api/evidence/uploads/)
	Cameras             Cameras
	// Alert raises something a person must see (a digest mismatch, a full
	// spool, an unreachable store). kind is a short machine name.
	Alert  func(kind, site, text string)
	Logger *slog.Logger
	Now    func() time.Time
	// ClockUnsynchronised reports whether the gateway's clock is known not
	// to be synchronised to a time source right now; clips accepted while
	// it is are marked in their ledger entry. nil: never marked.
	ClockUnsynchronised func() bool
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Origin == "" {
		c.Origin = "vigil/evidence"
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 100
	}
	def(&c.CheckpointInterval, 10*time.Minute)
	def(&c.NonEvidential, 31*24*time.Hour)
	def(&c.Evidential, 6*365*24*time.Hour)
	def(&c.CheckpointRetention, 10*365*24*time.Hour)
	def(&c.PreEvent, 2*time.Minute)
	def(&c.PostEvent, 10*time.Minute)
	def(&c.UploadRetryMax, 5*time.Minute)
	if c.MaxClipSize == 0 {
		c.MaxClipSize = 16 << 30
	}
	if c.HighWater == 0 {
		c.HighWater = 0.9
	}
	if c.UploadBasePath == "" {
		c.UploadBasePath = "/api/evidence/uploads/"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Alert == nil {
		c.Alert = func(string, string, string) {}
	}
}

// Camera is what the evidence service needs to know about a camera.
type Camera struct{ ID, Site, Wearer string }

// Cameras is the device registry, as the evidence service sees it.
type Cameras interface {
	Camera(id string) (Camera, bool)
	CameraByToken(token string) (Camera, bool)
}

// Store is the object store, as the evidence service uses it: *objstore.S3
// or *objstore.Dir.
type Store interface {
	Upload(ctx context.Context, key string, r io.ReaderAt, size int64, opts objstore.PutOptions, resume objstore.Resume, p objstore.Progress) (objstore.Object, error)
	Verify(ctx context.Context, key string, size int64, sha256 string, deep bool) error
	Stat(ctx context.Context, key string) (objstore.Object, error)
	ExtendRetention(ctx context.Context, key string, mode objstore.Mode, until time.Time) error
	SetLegalHold(ctx context.Context, key string, on bool) error
	Delete(ctx context.Context, key string, bypassGovernance bool) error
	PutSmall(ctx context.Context, key string, data []byte, opts objstore.PutOptions) error
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) ([]objstore.Object, error)
	CheckBucket(ctx context.Context) error
	InitBucket(ctx context.Context) error
}

// Service is the evidence path of one gateway.
type Service struct {
	cfg      Config
	db       *sql.DB
	ledger   *ledger.Ledger
	signer   note.Signer
	verifier note.Verifier
	store    Store
	log      *slog.Logger
	dir      string

	wake chan struct{}

	mu        sync.Mutex
	storeErr  error     // last upload error, nil when the store answers
	storeDown time.Time // when uploads started failing
	alerted   map[string]time.Time

	// Clips uploaded while they arrive (stream.go).
	smu            sync.Mutex
	streams        map[string]*stream // by tus upload id
	streamCtx      context.Context    // Run's, once the start-up sweep is done; nil: clips do not stream
	runningStreams int
	streamWG       sync.WaitGroup
	lastSweep      time.Time // Run's goroutine only
}

// Open opens (creating on first use) the evidence state under cfg.State:
// the database, the ledger key, the spool directories and the store
// client. It does not contact the store: Run does, and keeps retrying.
func Open(ctx context.Context, cfg Config) (_ *Service, err error) {
	cfg.defaults()
	dir := filepath.Join(cfg.State, Dir)
	for _, d := range []string{dir, filepath.Join(dir, clipsDir), filepath.Join(dir, quarDir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
	}
	// The ledger's name is fixed when its key is made: every checkpoint and
	// every verifier key police hold carry it, so a later change of
	// gateway_id (or a CLI run before the first `vigil run`) must not
	// rename it.
	keyPath := filepath.Join(dir, KeyFile)
	if vk, err := ledger.VerifierKey(keyPath); err == nil {
		cfg.Origin, _, _ = strings.Cut(vk, "+")
	}
	signer, verifier, err := ledger.LoadOrCreateKey(keyPath, keyName(cfg.Origin))
	if err != nil {
		return nil, fmt.Errorf("evidence: ledger key: %w", err)
	}
	db, err := sqlitedb.Open(filepath.Join(cfg.State, DBFile))
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	// The schema version before anything else: a database from a newer
	// vigil is refused before this build writes to it.
	if err := sqlitedb.Migrate(ctx, db, dbSchema(), cfg.Logger); err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	if _, err := db.ExecContext(ctx, schema+retentionSchema+earlySchema); err != nil {
		return nil, fmt.Errorf("evidence: create tables: %w", err)
	}
	l, err := ledger.Open(ctx, db, signer, cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	var st Store
	if cfg.S3 != nil {
		if st, err = objstore.NewS3(*cfg.S3); err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
	} else {
		d, err := objstore.NewDir(filepath.Join(dir, objectsDir))
		if err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
		// The local store is part of the state directory: make it now.
		if err := d.InitBucket(ctx); err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
		st = d
	}
	s := &Service{cfg: cfg, db: db, ledger: l, signer: signer, verifier: verifier, store: st, dir: dir,
		log: cfg.Logger.With("component", "evidence"), wake: make(chan struct{}, 1), alerted: map[string]time.Time{}, streams: map[string]*stream{}}
	if err := s.reconcile(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// keyName is the signer name in checkpoints: the origin without characters
// a note key name cannot hold.
func keyName(origin string) string {
	b := []byte(origin)
	for i, c := range b {
		if c <= ' ' || c == '+' || c > '~' {
			b[i] = '-'
		}
	}
	return string(b)
}

// Close releases the database.
func (s *Service) Close() error { return s.db.Close() }

// Store returns the object store (for `vigil evidence init-bucket`).
func (s *Service) Store() Store { return s.store }

// Ledger returns the ledger (for proofs and exports).
func (s *Service) Ledger() *ledger.Ledger { return s.ledger }

// PublicKey is the ledger's note verifier key, for whoever checks checkpoints.
func (s *Service) PublicKey() (string, error) {
	return ledger.VerifierKey(filepath.Join(s.dir, KeyFile))
}

// Wake makes the uploader look at its queue now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

const schema = `
CREATE TABLE IF NOT EXISTS clips (
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	idx INTEGER NOT NULL,
	site TEXT NOT NULL,
	wearer TEXT NOT NULL,
	start_ms INTEGER NOT NULL,
	end_ms INTEGER NOT NULL,
	size INTEGER NOT NULL,
	sha256 TEXT NOT NULL,
	ingest TEXT NOT NULL,
	received_ms INTEGER NOT NULL,
	object_key TEXT NOT NULL,
	spool_path TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL,
	category TEXT NOT NULL,
	retain_until_ms INTEGER NOT NULL,
	legal_hold INTEGER NOT NULL DEFAULT 0,
	store_retain_until_ms INTEGER NOT NULL DEFAULT 0,
	store_legal_hold INTEGER NOT NULL DEFAULT 0,
	upload_id TEXT NOT NULL DEFAULT '',
	version_id TEXT NOT NULL DEFAULT '',
	attempts INTEGER NOT NULL DEFAULT 0,
	next_attempt_ms INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	uploaded_ms INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (camera, clip)
);
CREATE INDEX IF NOT EXISTS clips_state ON clips(state, category, received_ms);
CREATE INDEX IF NOT EXISTS clips_time ON clips(camera, start_ms, end_ms);
CREATE TABLE IF NOT EXISTS upload_parts (
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	upload_id TEXT NOT NULL,
	number INTEGER NOT NULL,
	size INTEGER NOT NULL,
	etag TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	PRIMARY KEY (camera, clip, number)
);
CREATE TABLE IF NOT EXISTS windows (
	incident TEXT NOT NULL,
	camera TEXT NOT NULL,
	from_ms INTEGER NOT NULL,
	to_ms INTEGER,
	created_ms INTEGER NOT NULL,
	PRIMARY KEY (incident, camera)
);
CREATE TABLE IF NOT EXISTS clip_incidents (
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	incident TEXT NOT NULL,
	linked_ms INTEGER NOT NULL,
	PRIMARY KEY (camera, clip, incident)
);
CREATE TABLE IF NOT EXISTS quarantine (
	id INTEGER PRIMARY KEY,
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	declared TEXT NOT NULL,
	actual TEXT NOT NULL,
	size INTEGER NOT NULL,
	path TEXT NOT NULL,
	at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS announced (
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	size INTEGER NOT NULL,
	start_ms INTEGER NOT NULL,
	end_ms INTEGER NOT NULL,
	at_ms INTEGER NOT NULL,
	PRIMARY KEY (camera, clip)
);
CREATE TABLE IF NOT EXISTS checkpoint_objects (
	size INTEGER PRIMARY KEY,
	key TEXT NOT NULL,
	uploaded_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS custody (
	id INTEGER PRIMARY KEY,
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	at_ms INTEGER NOT NULL,
	what TEXT NOT NULL,
	detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS custody_clip ON custody(camera, clip, id);
`

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// custody records one step in a clip's chain of custody.
func custody(ctx context.Context, q execer, camera, clip string, at time.Time, what, detail string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO custody(camera, clip, at_ms, what, detail) VALUES(?,?,?,?,?)`, camera, clip, ms(at), what, detail)
	return err
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// alert raises an alert of a kind at most once per hour (per key), so a
// persistent problem is seen but does not flood the console.
func (s *Service) alert(key, kind, site, text string) {
	s.mu.Lock()
	last, seen := s.alerted[key]
	now := s.cfg.Now()
	if seen && now.Sub(last) < time.Hour {
		s.mu.Unlock()
		return
	}
	s.alerted[key] = now
	s.mu.Unlock()
	s.log.Warn("evidence alert", "kind", kind, "text", text)
	s.cfg.Alert(kind, site, text)
}
