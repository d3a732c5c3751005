// Package governance puts footage under information governance: it is the
// only way to footage from Vigil's API and CLI, and it audits, then
// delegates to the evidence service. Every search, view, download, export,
// retention change, legal hold change, deletion and refused attempt is an
// audit record (governance/audit) naming who, in which role, what, when, why
// and from where, with the outcome.
//
// Decisions follow the role table in governance/access: the scope a role has
// for a permission (all footage, footage of incidents assigned to the
// person, or the person's own footage as a wearer) is checked here against
// the clip. Footage is handed out as a short-lived link (an S3 presigned URL,
// or a signed link served by Vigil when footage is kept in a local directory),
// so object-store credentials never leave the gateway.
//
// Releases to police need a request by an investigator and the approval of a
// different person with the IG role; only then can the evidence package
// (evidence/exhibit) be built.
package governance

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
)

// Config configures governance. Zero values take the defaults noted.
type Config struct {
	LinkTTL          time.Duration // how long a footage link works (5m)
	MinJustification int           // shortest justification accepted, in characters (10)
	SweepInterval    time.Duration // how often the retention sweeper runs (1h)
	// Organization, Contact and ContactEmail go into evidence packages'
	// bag-info.txt (Source-Organization, Contact-Name, Contact-Email).
	Organization, Contact, ContactEmail string
	// Location is the time zone reports show times in (time.Local).
	Location *time.Location
	Logger   *slog.Logger
	Now      func() time.Time
}

func (c *Config) defaults() {
	if c.LinkTTL == 0 {
		c.LinkTTL = 5 * time.Minute
	}
	if c.MinJustification == 0 {
		c.MinJustification = 10
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Hour
	}
	if c.Organization == "" {
		c.Organization = "Vigil gateway"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Location == nil {
		c.Location = time.Local
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Service is governance over one gateway's footage.
type Service struct {
	cfg     Config
	db      *sql.DB
	ev      *evidence.Service
	users   *access.Store
	audit   *audit.Log
	log     *slog.Logger
	linkKey []byte // signs local footage links; new each start, so links die with the process
}

const schema = `
CREATE TABLE IF NOT EXISTS gov_assignments (
	incident TEXT NOT NULL,
	user TEXT NOT NULL,
	by TEXT NOT NULL,
	at_ms INTEGER NOT NULL,
	PRIMARY KEY (incident, user)
);
CREATE TABLE IF NOT EXISTS gov_releases (
	id INTEGER PRIMARY KEY,
	incident TEXT NOT NULL,
	crime_ref TEXT NOT NULL,
	officer TEXT NOT NULL,
	force TEXT NOT NULL,
	exhibit_ref TEXT NOT NULL,
	why TEXT NOT NULL,
	requested_by TEXT NOT NULL,
	requested_ms INTEGER NOT NULL,
	state TEXT NOT NULL,
	decided_by TEXT NOT NULL DEFAULT '',
	decided_ms INTEGER NOT NULL DEFAULT 0,
	decision TEXT NOT NULL DEFAULT '',
	exports INTEGER NOT NULL DEFAULT 0,
	exported_ms INTEGER NOT NULL DEFAULT 0,
	export_sha256 TEXT NOT NULL DEFAULT ''
);
`

// New returns governance over ev, with users and the audit trail, keeping
// its own records (assignments, release requests) in db (the governance
// database, shared with users and the audit trail).
func New(ctx context.Context, db *sql.DB, ev *evidence.Service, users *access.Store, log *audit.Log, cfg Config) (*Service, error) {
	cfg.defaults()
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("governance: create tables: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("governance: %w", err)
	}
	return &Service{cfg: cfg, db: db, ev: ev, users: users, audit: log, log: cfg.Logger.With("component", "governance"), linkKey: key}, nil
}

// Refused is a request governance turned down: the caller's role or scope
// does not allow it, or it lacks what the rules require (a justification, an
// incident). Every refusal is audited.
type Refused struct {
	Forbidden bool // the role or scope does not allow it (403); otherwise the request was incomplete (400)
	Reason    string
}

func (r *Refused) Error() string { return "governance: refused: " + r.Reason }

// ErrNotFound is returned for a release request that does not exist.
var ErrNotFound = errors.New("governance: not found")

// Who is the person making a request and where from: the client address for
// the API, "cli" for the command line.
type Who struct {
	access.Principal
	From string
}

// System is Vigil itself, for what it does without a person (making footage
// evidential on a duress, sweeping expired footage).
var System = Who{Principal: access.Principal{Name: audit.SystemActor, Role: audit.RoleSystem}}

// record appends an audit record for who; a failure to audit fails the
// request, because an unaudited access must not happen.
func (s *Service) record(ctx context.Context, who Who, r audit.Record) error {
	r.Actor, r.Role, r.From = who.Name, string(who.Role), who.From
	if r.Outcome == "" {
		r.Outcome = audit.OutcomeOK
	}
	if _, err := s.audit.Append(ctx, r); err != nil {
		s.log.Error("could not write an audit record; the request is refused", "action", r.Action, "err", err)
		return fmt.Errorf("governance: audit: %w", err)
	}
	return nil
}

// refuse audits a refusal and returns it as the error.
func (s *Service) refuse(ctx context.Context, who Who, r audit.Record, forbidden bool, format string, args ...any) error {
	reason := fmt.Sprintf(format, args...)
	r.Outcome, r.Detail = audit.OutcomeRefused, reason
	if err := s.record(ctx, who, r); err != nil {
		return err
	}
	s.log.Info("request refused", "user", who.Name, "role", who.Role, "action", r.Action, "reason", reason)
	return &Refused{Forbidden: forbidden, Reason: reason}
}

// scope returns the caller's scope for p, refusing (audited) when the role
// has none.
func (s *Service) scope(ctx context.Context, who Who, p access.Permission, r audit.Record) (access.Scope, error) {
	sc := who.Role.Scope(p)
	if sc == access.ScopeNone {
		return sc, s.refuse(ctx, who, r, true, "role %s may not %s", roleName(who.Role), strings.ReplaceAll(string(p), "_", " "))
	}
	return sc, nil
}

func roleName(r access.Role) string {
	if r == "" {
		return "(none)"
	}
	return string(r)
}

// needWhy refuses (audited) a request whose justification, or reason, is
// shorter than MinJustification characters.
func (s *Service) needWhy(ctx context.Context, who Who, r audit.Record, why, what string) error {
	if utf8.RuneCountInString(strings.TrimSpace(why)) >= s.cfg.MinJustification {
		return nil
	}
	return s.refuse(ctx, who, r, false, "a %s of at least %d characters is required", what, s.cfg.MinJustification)
}

// needAssigned refuses (audited) a caller whose scope is only the incidents
// assigned to them, when incident is not one of those.
func (s *Service) needAssigned(ctx context.Context, who Who, r audit.Record, sc access.Scope, incident string) error {
	if sc != access.ScopeAssigned {
		return nil
	}
	ok, err := s.assigned(ctx, incident, who.Name)
	if err != nil {
		return err
	}
	if !ok {
		return s.refuse(ctx, who, r, true, "incident %s is not assigned to %s", incident, who.Name)
	}
	return nil
}

// assigned reports whether an incident is assigned to a user.
func (s *Service) assigned(ctx context.Context, incident, user string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM gov_assignments WHERE incident=? AND user=?`, incident, user).Scan(&n)
	return n > 0, err
}

// Assign gives an investigator an incident's footage to work on.
func (s *Service) Assign(ctx context.Context, who Who, incident, user, why string) error {
	r := audit.Record{Action: audit.ActionIncidentAssign, Incident: incident, Why: why}
	if _, err := s.scope(ctx, who, access.AssignIncidents, r); err != nil {
		return err
	}
	if incident == "" {
		return s.refuse(ctx, who, r, false, "the incident id is required")
	}
	u, err := s.users.User(ctx, user)
	if err != nil || u.Role != access.Investigator {
		return s.refuse(ctx, who, r, false, "%q is not an investigator", user)
	}
	if err := s.needWhy(ctx, who, r, why, "justification"); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO gov_assignments(incident, user, by, at_ms) VALUES(?,?,?,?) ON CONFLICT DO NOTHING`,
		incident, user, who.Name, s.cfg.Now().UnixMilli()); err != nil {
		return fmt.Errorf("governance: assign: %w", err)
	}
	r.Detail = "assigned to " + user
	return s.record(ctx, who, r)
}

// Assignments returns the users an incident is assigned to.
func (s *Service) Assignments(ctx context.Context, incident string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT user FROM gov_assignments WHERE incident=? ORDER BY user`, incident)
	if err != nil {
		return nil, err
	}
	return sqlitedb.Strings(rows)
}

// Run sweeps expired footage every SweepInterval until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("retention sweep failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
