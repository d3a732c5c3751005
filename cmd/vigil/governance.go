package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/governance"
)

// The governance commands act as a person, who is identified by an API
// token (VIGIL_TOKEN, or --token-file) exactly as over the API: the same
// roles decide, and the audit trail records them with "cli" as the address.

// govFlags are the flags every governance command shares.
type govFlags struct {
	common
	tokenFile, s3 string
}

func (g *govFlags) add(fs *flag.FlagSet) {
	g.common.add(fs)
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding your API token (default: the VIGIL_TOKEN environment variable)")
	fs.StringVar(&g.s3, "s3", "", "object-locked bucket as http(s)://host:port/bucket (default: the config's, else the local directory store)")
}

// open opens governance on the state directory and authenticates the caller
// (unless anonymous is allowed and no token is given).
func (g *govFlags) open(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer, anonymous bool) (*app.Governance, governance.Who, error) {
	cfg, err := g.parse(fs, args)
	if err != nil {
		return nil, governance.Who{}, err
	}
	if g.s3 != "" {
		cfg.Evidence.S3 = g.s3
	}
	secret, err := readToken(g.tokenFile)
	if err != nil {
		return nil, governance.Who{}, err
	}
	if secret == "" && !anonymous {
		return nil, governance.Who{}, errNoToken
	}
	gv, err := app.OpenGovernance(ctx, cfg, stderr)
	if err != nil {
		return nil, governance.Who{}, err
	}
	who := governance.Who{From: "cli"}
	if secret != "" {
		if who.Principal, err = gv.Accounts.Authenticate(ctx, secret); err != nil {
			gv.Close()
			return nil, who, fmt.Errorf("your token: %w", err)
		}
	}
	return gv, who, nil
}

// errNoToken is the answer to a command that needs to know who is asking.
var errNoToken = errors.New("who are you? give your API token in VIGIL_TOKEN or --token-file (vigil user token NAME makes one)")

// readToken returns the caller's API token from file, else from VIGIL_TOKEN;
// "" when neither has one.
func readToken(file string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv("VIGIL_TOKEN")), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// withName takes a leading positional argument ("release approve R1 …").
func withName(cmd, what string, args []string) (string, []string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", args, fmt.Errorf("%s: %s comes first", cmd, what)
	}
	return args[0], args[1:], nil
}

// outFile opens --out, or returns stdout.
func outFile(path string, stdout io.Writer) (io.Writer, func() error, error) {
	if path == "" || path == "-" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return f, func() error {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}, nil
}

// auditCmd runs `vigil audit verify|report`.
func auditCmd(sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil audit "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var g govFlags
	g.add(fs)
	ctx := context.Background()
	switch sub {
	case "verify":
		gv, _, err := g.open(ctx, fs, args, stderr, true)
		if err != nil {
			return err
		}
		defer gv.Close()
		rep, err := gv.VerifyAudit(ctx)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, rep.String())
		if !rep.OK() {
			return fmt.Errorf("audit verify: %d problems", len(rep.Problems))
		}
		return nil
	case "report":
		from := fs.String("from", "", "start (RFC 3339 or YYYY-MM-DD; default 30 days ago)")
		to := fs.String("to", "", "end (RFC 3339 or YYYY-MM-DD; default now)")
		format := fs.String("format", "text", "text, csv, html or json")
		user := fs.String("user", "", "only this person's actions")
		clip := fs.String("clip", "", "only this clip (CAMERA:CLIP)")
		incident := fs.String("incident", "", "only this incident")
		out := fs.String("out", "", "write to this file (default stdout)")
		gv, who, err := g.open(ctx, fs, args, stderr, false)
		if err != nil {
			return err
		}
		defer gv.Close()
		q := governance.ReportQuery{User: *user, Incident: *incident, Options: gv.ReportOptions}
		if *clip != "" {
			if q.Camera, q.Clip, err = app.SplitClipID(*clip); err != nil {
				return err
			}
		}
		now := time.Now()
		if q.From, err = dayOrTime("from", *from, now.AddDate(0, 0, -30)); err != nil {
			return err
		}
		if q.To, err = dayOrTime("to", *to, now); err != nil {
			return err
		}
		rep, err := gv.AuditReport(ctx, who, q)
		if err != nil {
			return err
		}
		return render(*out, stdout, *format, rep, map[string]func(io.Writer) error{"text": rep.Text, "csv": rep.CSV, "html": rep.HTML})
	}
	return fmt.Errorf("audit: unknown command %q (verify, report)", sub)
}

// dayOrTime parses an RFC 3339 time or a date (midnight UTC); "" gives def.
func dayOrTime(name, v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return optTime(name, v)
}

// sarCmd runs `vigil sar --wearer W`.
func sarCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil sar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var g govFlags
	g.add(fs)
	wearer := fs.String("wearer", "", "the wearer (as in vigil device add --wearer) the subject access request is about")
	format := fs.String("format", "text", "text, html or json")
	out := fs.String("out", "", "write to this file (default stdout)")
	ctx := context.Background()
	gv, who, err := g.open(ctx, fs, args, stderr, false)
	if err != nil {
		return err
	}
	defer gv.Close()
	if *wearer == "" {
		return errors.New("sar: --wearer is required")
	}
	sar, err := gv.SubjectAccess(ctx, who, *wearer)
	if err != nil {
		return err
	}
	return render(*out, stdout, *format, sar, map[string]func(io.Writer) error{"text": sar.Text, "html": sar.HTML})
}

// render writes a report to --out (or stdout) in the format asked for:
// one of the report's own renderings, or JSON of v.
func render(out string, stdout io.Writer, format string, v any, formats map[string]func(io.Writer) error) error {
	write, ok := formats[format]
	if format == "json" {
		write, ok = func(w io.Writer) error { return jsonOut(w, v) }, true
	}
	if !ok {
		names := slices.Sorted(maps.Keys(formats))
		return fmt.Errorf("--format %q: %s or json", format, strings.Join(names, ", "))
	}
	w, done, err := outFile(out, stdout)
	if err != nil {
		return err
	}
	return errors.Join(write(w), done())
}

// releaseCmd runs `vigil release request|approve|refuse|list`.
func releaseCmd(sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil release "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var g govFlags
	g.add(fs)
	ctx := context.Background()
	switch sub {
	case "request":
		var req governance.ReleaseRequest
		fs.StringVar(&req.Incident, "incident", "", "the incident (alert id) whose footage is requested")
		fs.StringVar(&req.CrimeRef, "crime-ref", "", "the police crime reference number")
		fs.StringVar(&req.Officer, "officer", "", "the requesting officer (name and collar number)")
		fs.StringVar(&req.Force, "force", "", "the police force")
		fs.StringVar(&req.ExhibitRef, "exhibit", "", "the exhibit reference the package will carry")
		fs.StringVar(&req.Why, "why", "", "why the release is needed")
		gv, who, err := g.open(ctx, fs, args, stderr, false)
		if err != nil {
			return err
		}
		defer gv.Close()
		rel, err := gv.RequestRelease(ctx, who, req)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "release request %s for incident %s recorded; an IG officer other than you must approve it\n", rel.ID, rel.Incident)
		return nil
	case "approve", "refuse":
		id, rest, err := withName("release "+sub, "the request ID", args)
		if err != nil {
			return err
		}
		reason := fs.String("reason", "", "the reason for the decision (recorded)")
		gv, who, err := g.open(ctx, fs, rest, stderr, false)
		if err != nil {
			return err
		}
		defer gv.Close()
		rel, err := gv.Decide(ctx, who, id, sub == "approve", *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "release request %s %s by %s\n", rel.ID, rel.State, rel.DecidedBy)
		return nil
	case "list":
		gv, who, err := g.open(ctx, fs, args, stderr, false)
		if err != nil {
			return err
		}
		defer gv.Close()
		list, err := gv.Releases(ctx, who)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tINCIDENT\tCRIME REF\tEXHIBIT\tFORCE\tSTATE\tREQUESTED BY\tDECIDED BY\tEXPORTS")
		for _, r := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.ID, r.Incident, r.CrimeRef, r.ExhibitRef, r.Force, r.State, r.RequestedBy, r.DecidedBy, r.Exports)
		}
		return tw.Flush()
	}
	return fmt.Errorf("release: unknown command %q (request, approve, refuse, list)", sub)
}

// exportCmd runs `vigil evidence export --request ID --out FILE.zip`.
func exportCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil evidence export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var g govFlags
	g.add(fs)
	id := fs.String("request", "", "the approved release request")
	out := fs.String("out", "", "the package file to write (.zip)")
	ctx := context.Background()
	gv, who, err := g.open(ctx, fs, args, stderr, false)
	if err != nil {
		return err
	}
	defer gv.Close()
	if *id == "" || *out == "" {
		return errors.New("evidence export: --request ID and --out FILE.zip are required")
	}
	// Write beside the target and rename when complete, so a half-built
	// package never carries the final name.
	tmp := *out + ".partial"
	w, done, err := outFile(tmp, stdout)
	if err != nil {
		return err
	}
	rel, err := gv.Export(ctx, who, *id, w)
	if err = errors.Join(err, done()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (exhibit %s, sha256 %s); check it with: vigil-verify --pubkey \"$(vigil evidence pubkey)\" %s\n",
		*out, rel.ExhibitRef, rel.ExportSHA256, filepath.Base(*out))
	return nil
}

// incidentCmd runs `vigil incident assign|close`.
func incidentCmd(sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil incident "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var g govFlags
	g.add(fs)
	id, rest, err := withName("incident "+sub, "the incident ID", args)
	if err != nil {
		return err
	}
	why := fs.String("why", "", "the justification (recorded)")
	var user *string
	switch sub {
	case "assign":
		user = fs.String("user", "", "the investigator to assign")
	case "close":
	default:
		return fmt.Errorf("incident: unknown command %q (assign, close)", sub)
	}
	ctx := context.Background()
	gv, who, err := g.open(ctx, fs, rest, stderr, false)
	if err != nil {
		return err
	}
	defer gv.Close()
	if sub == "assign" {
		if err := gv.Assign(ctx, who, id, *user, *why); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "incident %s assigned to %s\n", id, *user)
		return nil
	}
	refs, err := gv.CloseIncident(ctx, who, id, *why)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "incident %s closed: %d clips keep the evidential period from now, without its legal hold\n", id, len(refs))
	return nil
}

// clipCmd runs `vigil clip ls|access|hold|unhold|retain`.
func clipCmd(sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil clip "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var g govFlags
	g.add(fs)
	ctx := context.Background()
	if sub == "ls" {
		var q governance.Search
		fs.StringVar(&q.Wearer, "wearer", "", "only this wearer's clips")
		fs.StringVar(&q.Camera, "camera", "", "only this camera's clips")
		fs.StringVar(&q.Incident, "incident", "", "only clips of this incident")
		gv, who, err := g.open(ctx, fs, args, stderr, false)
		if err != nil {
			return err
		}
		defer gv.Close()
		clips, err := gv.Clips(ctx, who, q)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tWEARER\tSTART\tBYTES\tCATEGORY\tHOLD\tRETAIN UNTIL\tINCIDENTS\tSTATE")
		for _, c := range clips {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%v\t%s\t%s\t%s\n", app.ClipID(c.Camera, c.Clip), c.Wearer, c.Start.Format(time.RFC3339), c.Size,
				c.Category, c.LegalHold, c.RetainUntil.Format(time.DateOnly), strings.Join(c.Incidents, ","), c.State)
		}
		return tw.Flush()
	}
	id, rest, err := withName("clip "+sub, "the clip CAMERA:CLIP", args)
	if err != nil {
		return err
	}
	camera, clip, err := app.SplitClipID(id)
	if err != nil {
		return err
	}
	why := fs.String("why", "", "the justification (recorded)")
	incident := fs.String("incident", "", "the incident the clip is linked to (required when it is)")
	var until, purpose *string
	switch sub {
	case "access":
		purpose = fs.String("purpose", governance.View, "view or download")
	case "retain":
		until = fs.String("until", "", "keep the clip at least until this date (YYYY-MM-DD or RFC 3339)")
	case "hold", "unhold":
	default:
		return fmt.Errorf("clip: unknown command %q (ls, access, hold, unhold, retain)", sub)
	}
	gv, who, err := g.open(ctx, fs, rest, stderr, false)
	if err != nil {
		return err
	}
	defer gv.Close()
	c := governance.Change{Camera: camera, Clip: clip, Incident: *incident, Why: *why}
	switch sub {
	case "access":
		gr, err := gv.Access(ctx, who, governance.AccessRequest{Camera: camera, Clip: clip, Why: *why, Incident: *incident, Purpose: *purpose})
		if err != nil {
			return err
		}
		if strings.HasPrefix(gr.URL, "/") {
			fmt.Fprintln(stderr, "footage is in the local directory store: links work only through a running gateway's API (POST /api/clips/ID/access)")
		}
		fmt.Fprintf(stderr, "link valid until %s:\n", gr.Expires.Format(time.RFC3339))
		fmt.Fprintln(stdout, gr.URL)
		return nil
	case "hold":
		err = gv.SetLegalHold(ctx, who, c)
	case "unhold":
		err = gv.LiftLegalHold(ctx, who, c)
	case "retain":
		var t time.Time
		if t, err = dayOrTime("until", *until, time.Time{}); err != nil {
			return err
		}
		if t.IsZero() {
			return errors.New("clip retain: --until is required")
		}
		err = gv.ExtendRetention(ctx, who, c, t)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: done\n", id)
	return nil
}

// jsonOut writes v as indented JSON.
func jsonOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
