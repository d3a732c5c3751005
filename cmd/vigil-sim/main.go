// Command vigil-sim simulates Vigil's lone-worker devices against a real
// broker and gateway: one duress button pressed from the command line, or a
// fleet of them with faults, for demos, soak tests and benchmarks.
//
// Usage:
//
//	vigil-sim button [flags]   one button: press once and wait for the gateway, or heartbeat until stopped
//	vigil-sim fleet [flags]    many buttons with random presses and fault modes
//	vigil-sim arc [flags]      a demo DC-09 alarm receiver that prints what it accepts
//	vigil-sim serial [flags]   a radio receiver relaying pendants onto a serial line
//	vigil-sim camera [flags]   a body-worn camera: records clips, announces them and uploads them with tus
//
// Run a subcommand with -h for its flags.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-gw/vigil/devices"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
)

func main() { os.Exit(run()) }

// run wires the process to runArgs: arguments, standard streams and a context
// that ends on SIGINT or SIGTERM.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runArgs(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the simulation ran and failed (timeout, broker refused, …)
	exitUsage   = 2 // the command line is wrong
)

// usageError marks a command-line mistake, reported with exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usageText = `usage: vigil-sim <command> [flags]

commands:
  button   one simulated duress button: --duress presses once and waits for the
           gateway's confirmation; without it, heartbeats until interrupted
  fleet    many simulated buttons with random presses and fault modes
  arc      a demonstration alarm receiving centre: a DC-09 receiver that prints
           and acknowledges every alarm
  serial   a radio receiver relaying pendants onto a serial line (or a pty it
           creates) in the serial frame protocol, with fault modes
  camera   a simulated body-worn camera: records clips, announces them on MQTT
           and uploads them to the gateway with tus, with fault modes

Run "vigil-sim <command> -h" for the flags of a command.
`

// runArgs runs one subcommand and returns the process exit code. Errors are
// reported on stderr as one line.
func runArgs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "button":
		err = runButton(ctx, rest, stdout, stderr)
	case "fleet":
		err = runFleet(ctx, rest, stdout, stderr)
	case "arc":
		err = runARC(ctx, rest, stdout, stderr)
	case "serial":
		err = runSerial(ctx, rest, stdout, stderr)
	case "camera":
		err = runCamera(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "vigil-sim: unknown command %q (want button, fleet or arc; see vigil-sim help)\n", cmd)
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "vigil-sim %s: %s (see vigil-sim %s -h)\n", cmd, oneLine(err.Error()), cmd)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "vigil-sim %s: %s\n", cmd, oneLine(err.Error()))
		return exitFailure
	}
}

// oneLine keeps an error message on one line of the terminal.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// parseFlags parses args with fs, printing the flag list to stdout only when
// asked for (-h); mistakes come back as a usageError for a one-line report.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, synopsis string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "usage: vigil-sim %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
		return err
	case err != nil:
		return usageError{err.Error()}
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// connFlags are the broker settings every subcommand shares.
type connFlags struct {
	broker, username, password, passwordFile, caFile string
	verbose                                          bool
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL, tcp://host:port or ssl://host:port")
	fs.StringVar(&c.username, "username", "", "broker user name")
	fs.StringVar(&c.password, "password", "", "broker password (visible in the process list: prefer --password-file)")
	fs.StringVar(&c.passwordFile, "password-file", "", "file holding the broker password")
	fs.StringVar(&c.caFile, "ca", "", "PEM file of the CA that signed the broker's certificate (ssl:// only; default: system roots)")
	fs.BoolVar(&c.verbose, "verbose", false, "log connection and protocol details to stderr")
}

// resolve reads the password file and CA, if given.
func (c *connFlags) resolve() (password string, tlsConfig *tls.Config, err error) {
	password = c.password
	if c.passwordFile != "" {
		if c.password != "" {
			return "", nil, usageError{"--password and --password-file are mutually exclusive"}
		}
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return "", nil, fmt.Errorf("read password file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if c.caFile != "" {
		if !strings.HasPrefix(c.broker, "ssl://") {
			return "", nil, usageError{"--ca needs an ssl:// broker URL"}
		}
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return "", nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return "", nil, fmt.Errorf("CA file %s holds no PEM certificate", c.caFile)
		}
		tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return password, tlsConfig, nil
}

// logger logs to stderr: warnings (or errors only, for fleets, whose
// thousand buttons would repeat each other) unless --verbose.
func (c *connFlags) logger(stderr io.Writer, quiet slog.Level) *slog.Logger {
	level := quiet
	if c.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

func runButton(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("button", flag.ContinueOnError)
	var conn connFlags
	conn.register(fs)
	site := fs.String("site", "demo", "site id")
	device := fs.String("device", "btn-1", "device id")
	duress := fs.Bool("duress", false, "press once, wait for the gateway's alert_received and exit")
	cancel := fs.Bool("cancel", false, "send duress_cancel (after the duress, with --duress) and exit once the broker has it")
	heartbeat := fs.Duration("heartbeat", firmwaresim.DefaultHeartbeat, "heartbeat interval when neither --duress nor --cancel is given")
	lat := fs.Float64("lat", 0, "latitude reported with each event (0 with --lon 0: no location)")
	lon := fs.Float64("lon", 0, "longitude reported with each event")
	acc := fs.Float64("acc", 10, "location accuracy in metres")
	place := fs.String("place", "", "on-site location text reported with each event (\"Ward 7, bay 3\")")
	report := fs.String("report", "", "record an incident that needed no alarm: verbal or physical; exit once the broker has it")
	battery := fs.Int("battery", 100, "battery percentage reported with each event (0: not reported)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait to connect and, with --duress, for the confirmation")
	seqFile := fs.String("seq-file", "", "file recording the last sequence number, so restarts continue after it (default: start at the current Unix time in ms)")
	skew := fs.Duration("clock-skew", 0, "offset added to the button's clock for event timestamps")
	amber := fs.Duration("amber", 0, "start an amber (timed visit) session of this length, wait for the gateway's pre-alert when it runs out, and exit without checking in")
	note := fs.String("note", "", "with --amber: where the wearer is going and why")
	checkin := fs.Bool("checkin", false, "with --amber: check in when the pre-alert arrives (or, alone, end a running session)")
	if err := parseFlags(fs, args, stdout, "button [flags]"); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usageError{fmt.Sprintf("--timeout %s must be positive", *timeout)}
	}
	if *amber < 0 || (*amber > 0 && *amber < time.Second) {
		return usageError{fmt.Sprintf("--amber %s must be at least 1s", *amber)}
	}
	if *report != "" && *report != devices.ReportVerbal && *report != devices.ReportPhysical {
		return usageError{fmt.Sprintf("--report %q must be verbal or physical", *report)}
	}
	password, tlsConfig, err := conn.resolve()
	if err != nil {
		return err
	}
	b, err := firmwaresim.NewButton(firmwaresim.ButtonConfig{
		Broker: conn.broker, Username: conn.username, Password: password, TLS: tlsConfig,
		Site: *site, Device: *device,
		Lat: *lat, Lon: *lon, AccM: *acc, Place: *place, Battery: *battery,
		Heartbeat: *heartbeat, ClockSkew: *skew, SeqFile: *seqFile,
		Logger: conn.logger(stderr, slog.LevelWarn),
	})
	if err != nil {
		return usageError{strings.TrimPrefix(err.Error(), "firmwaresim: ")}
	}

	// One deadline covers connecting and, for a press, the confirmation: it
	// is the wearer's wait. An amber session waits for its own length too.
	opCtx, stop := context.WithTimeout(ctx, *timeout+*amber)
	defer stop()
	if err := b.Connect(opCtx); err != nil {
		return explain(ctx, err, fmt.Sprintf("could not connect to %s within %s", conn.broker, *timeout))
	}
	defer b.Close()

	if *duress {
		p, err := b.Duress(opCtx)
		if err != nil {
			return err
		}
		c, err := b.WaitConfirmation(opCtx, p.Seq)
		if err != nil {
			return explain(ctx, err, fmt.Sprintf("duress %s seq %d not confirmed within %s: is the gateway running and subscribed?", *device, p.Seq, *timeout))
		}
		fmt.Fprintf(stdout, "duress %s seq %d confirmed: alert %s in %s\n", *device, p.Seq, c.Alert, c.RoundTrip.Round(100*time.Microsecond))
	}
	if *cancel {
		p, err := b.Cancel(opCtx)
		if err != nil {
			return err
		}
		if err := b.Flush(opCtx); err != nil {
			return explain(ctx, err, fmt.Sprintf("duress_cancel %s seq %d not acknowledged by the broker within %s", *device, p.Seq, *timeout))
		}
		fmt.Fprintf(stdout, "duress_cancel %s seq %d delivered\n", *device, p.Seq)
	}
	if *amber > 0 {
		p, err := b.AmberStart(opCtx, *amber, *note)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "amber %s seq %d: %s session started (%q); waiting for it to run out\n", *device, p.Seq, *amber, *note)
		c, err := b.WaitCommand(opCtx, "amber_prealert")
		if err != nil {
			return explain(ctx, err, fmt.Sprintf("no pre-alert within %s of the session's end: is the gateway running?", *timeout))
		}
		fmt.Fprintf(stdout, "pre-alert received (%s): the wearer is asked to check in\n", c.Cmd)
	}
	if *checkin {
		p, err := b.CheckIn(opCtx)
		if err != nil {
			return err
		}
		if err := b.Flush(opCtx); err != nil {
			return explain(ctx, err, fmt.Sprintf("check-in %s seq %d not acknowledged by the broker within %s", *device, p.Seq, *timeout))
		}
		fmt.Fprintf(stdout, "checked in: %s seq %d\n", *device, p.Seq)
	} else if *amber > 0 {
		fmt.Fprintln(stdout, "not checking in: the gateway raises 'failed to check in' after its grace period")
	}
	if *report != "" {
		p, err := b.Report(opCtx, *report)
		if err != nil {
			return err
		}
		if err := b.Flush(opCtx); err != nil {
			return explain(ctx, err, fmt.Sprintf("report %s seq %d not acknowledged by the broker within %s", *device, p.Seq, *timeout))
		}
		fmt.Fprintf(stdout, "report (%s) %s seq %d delivered\n", *report, *device, p.Seq)
	}
	if *duress || *cancel || *amber > 0 || *checkin || *report != "" {
		return nil
	}

	fmt.Fprintf(stdout, "%s on site %s connected to %s; heartbeat every %s until interrupted\n", *device, *site, conn.broker, *heartbeat)
	if err := b.Run(ctx); err != nil {
		return err
	}
	// Give the last heartbeat a moment to reach the broker before closing.
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelFlush()
	_ = b.Flush(flushCtx)
	fmt.Fprintf(stdout, "%s stopped: %s\n", *device, b.Stats())
	return nil
}

// explain turns a deadline into a message a person can act on, and an
// interrupt into "interrupted"; other errors pass unchanged.
func explain(parent context.Context, err error, onTimeout string) error {
	switch {
	case parent.Err() != nil:
		return errors.New("interrupted")
	case errors.Is(err, context.DeadlineExceeded):
		if _, last, ok := strings.Cut(err.Error(), "(last attempt: "); ok {
			return fmt.Errorf("%s (last attempt: %s", onTimeout, last)
		}
		return errors.New(onTimeout)
	}
	return err
}

func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	var conn connFlags
	conn.register(fs)
	site := fs.String("site", "demo", "site id")
	buttons := fs.Int("buttons", 100, "number of buttons (btn-0001, btn-0002, …)")
	heartbeat := fs.Duration("heartbeat", firmwaresim.DefaultHeartbeat, "heartbeat interval of each button")
	duressRate := fs.Float64("duress-rate", 0, "duress presses per second across the fleet (Poisson)")
	malformed := fs.Float64("malformed-rate", 0, "fraction of publishes replaced by a malformed payload")
	duplicate := fs.Float64("duplicate-rate", 0, "fraction of events published twice with the same seq and id")
	skew := fs.Duration("clock-skew", 0, "offset added to the clocks of --skew-fraction of the buttons")
	skewFraction := fs.Float64("skew-fraction", 1, "fraction of buttons with a skewed clock")
	lat := fs.Float64("lat", 0, "latitude the buttons are scattered around (0 with --lon 0: no location)")
	lon := fs.Float64("lon", 0, "longitude the buttons are scattered around")
	duration := fs.Duration("duration", 0, "how long to run (0: until interrupted)")
	statsEvery := fs.Duration("stats-interval", 10*time.Second, "how often to print a stats line")
	concurrency := fs.Int("connect-concurrency", firmwaresim.DefaultConnectConcurrency, "simultaneous connection handshakes")
	seed := fs.Uint64("seed", 0, "random seed, for a reproducible run (0: random)")
	if err := parseFlags(fs, args, stdout, "fleet [flags]"); err != nil {
		return err
	}
	if *duration < 0 || *statsEvery <= 0 {
		return usageError{"--duration must not be negative and --stats-interval must be positive"}
	}
	password, tlsConfig, err := conn.resolve()
	if err != nil {
		return err
	}
	f, err := firmwaresim.NewFleet(firmwaresim.FleetConfig{
		Broker: conn.broker, Username: conn.username, Password: password, TLS: tlsConfig,
		Site: *site, Buttons: *buttons, Lat: *lat, Lon: *lon,
		Heartbeat: *heartbeat, DuressRate: *duressRate,
		Faults:    firmwaresim.Faults{MalformedRate: *malformed, DuplicateRate: *duplicate},
		ClockSkew: *skew, SkewFraction: *skewFraction,
		ConnectConcurrency: *concurrency, Seed: *seed,
		Logger: conn.logger(stderr, slog.LevelError),
	})
	if err != nil {
		return usageError{strings.TrimPrefix(err.Error(), "firmwaresim: ")}
	}

	runCtx := ctx
	if *duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	fmt.Fprintf(stdout, "fleet of %d buttons on site %s via %s\n", *buttons, *site, conn.broker)

	tick := time.NewTicker(*statsEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			fmt.Fprintf(stdout, "%6s %s\n", time.Since(start).Round(time.Second), f.Stats())
		case err := <-done:
			if err != nil {
				return err
			}
			s := f.Stats()
			elapsed := time.Since(start)
			fmt.Fprintf(stdout, "summary after %s: %s; %.1f messages/s\n",
				elapsed.Round(time.Millisecond), s, float64(s.Messages())/elapsed.Seconds())
			return nil
		}
	}
}
