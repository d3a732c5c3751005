package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/gateway/app"
)

// evidenceCmd runs `vigil evidence SUB`. The commands open the same
// evidence database as a running gateway (SQLite allows readers alongside
// it) and the same store, so what they report is what the gateway holds.
func evidenceCmd(sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil evidence "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	s3 := fs.String("s3", "", "object-locked bucket as http(s)://host:port/bucket (default: the config's, else the local directory store)")
	var camera, from, to, incident *string
	var deep *bool
	switch sub {
	case "ls":
		camera = fs.String("camera", "", "only this camera's clips")
		from = fs.String("from", "", "clips ending at or after this time (RFC 3339)")
		to = fs.String("to", "", "clips starting at or before this time (RFC 3339)")
		incident = fs.String("incident", "", "only clips linked to this incident (alert id)")
	case "verify":
		deep = fs.Bool("deep", false, "re-read every stored object and re-hash it")
	case "init-bucket", "pubkey", "status":
	default:
		return fmt.Errorf("evidence: unknown command %q (init-bucket, pubkey, ls, verify, status)", sub)
	}
	cfg, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if *s3 != "" {
		cfg.Evidence.S3 = *s3
	}
	ecfg, err := app.EvidenceServiceConfig(cfg, app.OpenRegistry(cfg.State))
	if err != nil {
		return err
	}
	ctx := context.Background()
	svc, err := evidence.Open(ctx, ecfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	switch sub {
	case "init-bucket":
		if err := svc.Store().InitBucket(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "evidence store ready: object locking is on")
		return nil
	case "pubkey":
		k, err := svc.PublicKey()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, k)
		return nil
	case "status":
		return evidenceStatus(ctx, svc, stdout)
	case "ls":
		f := evidence.Filter{Camera: *camera, Incident: *incident}
		if f.From, err = optTime("from", *from); err != nil {
			return err
		}
		if f.To, err = optTime("to", *to); err != nil {
			return err
		}
		return evidenceList(ctx, svc, f, stdout)
	case "verify":
		r, err := svc.Verify(ctx, *deep)
		if err != nil {
			return err
		}
		what := "ledger, checkpoints and stored objects (size and recorded digest)"
		if r.Deep {
			what = "ledger, checkpoints and every stored object re-hashed"
		}
		fmt.Fprintf(stdout, "checked %s: %d entries, %d checkpoints, %d clips in the store, %d on local disk\n", what, r.Entries, r.Checkpoints, r.Stored, r.Local)
		for _, p := range r.Problems {
			fmt.Fprintln(stdout, "PROBLEM:", p)
		}
		if !r.OK() {
			return fmt.Errorf("evidence verify: %d problem(s) found", len(r.Problems))
		}
		fmt.Fprintln(stdout, "OK")
		return nil
	}
	return nil
}

func optTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, fmt.Errorf("--%s: %q is not an RFC 3339 time (e.g. 2026-11-21T10:00:00Z)", name, v)
	}
	return t, nil
}

func evidenceStatus(ctx context.Context, svc *evidence.Service, stdout io.Writer) error {
	st, err := svc.Status(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "clips\t%d (%d evidential)\n", st.Clips, st.Evidential)
	fmt.Fprintf(tw, "backlog\t%d clips, %d bytes waiting for the store\n", st.Backlog, st.BacklogBytes)
	oldest := "none"
	if !st.OldestQueued.IsZero() {
		oldest = fmt.Sprintf("%s (%s ago)", st.OldestQueued.Format(time.RFC3339), time.Since(st.OldestQueued).Round(time.Second))
	}
	fmt.Fprintf(tw, "oldest unuploaded\t%s\n", oldest)
	cp := "none yet"
	if !st.LastCheckpoint.IsZero() {
		cp = fmt.Sprintf("size %d at %s", st.CheckpointSize, st.LastCheckpoint.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "ledger\t%d entries; last checkpoint %s; %d checkpoint(s) not yet stored\n", st.LedgerSize, cp, st.UnstoredCheckpoints)
	fmt.Fprintf(tw, "quarantined\t%d\n", st.Quarantined)
	fmt.Fprintf(tw, "announced, not received\t%d\n", st.Announced)
	if st.StoreError != "" {
		fmt.Fprintf(tw, "store\tfailing: %s\n", st.StoreError)
	}
	return tw.Flush()
}

func evidenceList(ctx context.Context, svc *evidence.Service, f evidence.Filter, stdout io.Writer) error {
	clips, err := svc.List(ctx, f)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tCAMERA\tCLIP\tSTART\tEND\tBYTES\tSHA256\tSTATE\tCATEGORY\tHOLD\tRETAIN UNTIL\tINCIDENTS")
	for _, c := range clips {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%v\t%s\t%s\n", c.Index, c.Camera, c.Clip, c.Start.Format(time.RFC3339), c.End.Format(time.RFC3339),
			c.Size, c.SHA256[:16], c.State, c.Category, c.LegalHold, c.RetainUntil.Format("2006-01-02"), strings.Join(c.Incidents, ","))
	}
	return tw.Flush()
}
