package app

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	_ "time/tzdata" // working hours in the configured zone even where the OS has no zoneinfo

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/governance"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
	"github.com/vigil-gw/vigil/governance/report"
)

// openGovernance opens the audit trail (sealed with the gateway's key into
// the evidence store) and the governance service over the evidence service;
// opts (cfg.Governance.ReportOptions) give reports their time zone.
func openGovernance(ctx context.Context, cfg Config, opts report.Options, db *sql.DB, accounts *access.Store, ev *evidence.Service, log *slog.Logger) (*audit.Log, *governance.Service, error) {
	signer, verifier := ev.Keys()
	g := cfg.Governance
	// The audit trail is named after the ledger, whose origin is fixed when
	// the gateway first runs, so the CLI (which may not know the gateway id)
	// and a renamed gateway keep sealing the same trail.
	origin := strings.TrimSuffix(ev.Ledger().Origin(), "/evidence") + "/audit"
	al, err := audit.Open(ctx, db, audit.Config{Signer: signer, Verifier: verifier, Origin: origin,
		SealEvery: g.AuditSealEvery, SealInterval: g.AuditSealInterval, Store: ev.Store(), Logger: log})
	if err != nil {
		return nil, nil, err
	}
	svc, err := governance.New(ctx, db, ev, accounts, al, governance.Config{LinkTTL: g.LinkTTL, MinJustification: g.MinJustification,
		SweepInterval: g.SweepInterval, Organization: g.Organization, Contact: g.Contact, ContactEmail: g.ContactEmail,
		Location: opts.Location, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return al, svc, nil
}

// ReportOptions turns working hours, days, zone and the bulk threshold into
// the audit report's options.
func (g GovernanceConfig) ReportOptions() (report.Options, error) {
	var o report.Options
	loc, err := time.LoadLocation(g.Timezone)
	if err != nil {
		return o, fmt.Errorf("timezone %q: %w", g.Timezone, err)
	}
	from, to, ok := strings.Cut(g.WorkingHours, "-")
	start, err1 := time.Parse("15:04", strings.TrimSpace(from))
	end, err2 := time.Parse("15:04", strings.TrimSpace(to))
	if !ok || err1 != nil || err2 != nil || !end.After(start) {
		return o, fmt.Errorf("working_hours %q: expected HH:MM-HH:MM, start before end", g.WorkingHours)
	}
	days := map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
		"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}
	for _, d := range g.WorkingDays {
		wd, ok := days[strings.ToLower(d)]
		if !ok {
			return o, fmt.Errorf("working_days: %q is not one of mon tue wed thu fri sat sun", d)
		}
		o.WorkDays = append(o.WorkDays, wd)
	}
	midnight := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	o.WorkStart, o.WorkEnd, o.Location, o.BulkClips = start.Sub(midnight), end.Sub(midnight), loc, g.BulkClips
	return o, nil
}

// Governance is what the CLI's governance commands work with: the evidence
// service, users, the audit trail and the governance service, opened on the
// state directory a running gateway also uses (SQLite lets both write).
type Governance struct {
	*governance.Service
	Evidence      *evidence.Service
	Accounts      *access.Store
	Audit         *audit.Log
	ReportOptions report.Options
	db            *sql.DB
}

// OpenGovernance opens the governance side of a state directory for the CLI.
func OpenGovernance(ctx context.Context, cfg Config, stderr io.Writer) (*Governance, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ecfg, err := EvidenceServiceConfig(cfg, OpenRegistry(cfg.State))
	if err != nil {
		return nil, err
	}
	ecfg.Logger = log
	ev, err := evidence.Open(ctx, ecfg)
	if err != nil {
		return nil, err
	}
	db, accounts, err := openAccessDB(ctx, cfg.State, log)
	if err != nil {
		ev.Close()
		return nil, err
	}
	g := &Governance{Evidence: ev, Accounts: accounts, db: db}
	if g.ReportOptions, err = cfg.Governance.ReportOptions(); err != nil {
		g.Close()
		return nil, err
	}
	if g.Audit, g.Service, err = openGovernance(ctx, cfg, g.ReportOptions, db, accounts, ev, log); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Close releases the databases.
func (g *Governance) Close() error {
	g.db.Close()
	return g.Evidence.Close()
}
