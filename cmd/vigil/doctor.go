package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/doctor"
)

// doctorCmd is `vigil doctor [--config FILE] [--state DIR] [--json]`. It
// exits 0 when no check failed (warnings allowed), 1 when one did or the
// configuration is unusable, 2 on a usage error.
func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	asJSON := fs.Bool("json", false, `print one JSON object: {"ok": bool, "checks": [{"name", "status", "summary", "advice", "details"}]}`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vigil doctor: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := c.load()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, "vigil doctor:", oneLine(err))
		return 1
	}
	r := doctor.Run(context.Background(), cfg, doctor.Options{})
	if *asJSON {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil || !r.OK {
		return 1
	}
	return 0
}

// startupChecks runs the checks of this machine before the gateway opens
// its state. A finding that would lose alarms (a state directory it cannot
// write or another gateway holds, a disk that cannot fsync) stops the start
// with the finding's summary and advice; other failures are logged as
// errors and warnings as warnings, once each.
//
// The checks of other machines (broker, receivers, webhooks, store) can
// only warn, so they do not hold up the start: the function returned runs
// them, to be called once the gateway is up.
func startupChecks(cfg app.Config, log *slog.Logger) (network func(context.Context), err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err // checks of a configuration vigil refuses would only add noise
	}
	// A short fsync sample: enough to find a disk that fails or is grossly
	// slow without delaying the return of a restarted gateway.
	// The lock wait is app.New's: a gateway that has just been stopped may
	// take a moment to let go of the state.
	r := doctor.Run(context.Background(), cfg, doctor.Options{Checks: doctor.Local, Create: true,
		FsyncSamples: 10, FsyncBudget: 500 * time.Millisecond, LockWait: 2 * time.Second, Timeout: 5 * time.Second})
	for _, f := range r.Checks {
		if f.RefusesStart() {
			return nil, fmt.Errorf("%s: %s: %s", f.Name, f.Summary, f.Advice)
		}
	}
	logFindings(log, r)
	return func(ctx context.Context) {
		r := doctor.Run(ctx, cfg, doctor.Options{Checks: doctor.Network, ConnectOnly: true})
		if ctx.Err() == nil { // not cut short by shutdown
			logFindings(log, r)
		}
	}, nil
}

func logFindings(log *slog.Logger, r doctor.Report) {
	for _, f := range r.Checks {
		level := slog.LevelWarn
		switch f.Status {
		case doctor.OK:
			continue
		case doctor.Fail:
			level = slog.LevelError
		}
		log.Log(context.Background(), level, "doctor: "+f.Summary, "check", f.Name, "advice", f.Advice)
	}
}
