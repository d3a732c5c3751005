// Command vigil is the Vigil edge gateway: `vigil run` starts it, `vigil
// device add|list` manages the device registry. Every subcommand takes
// --state DIR and --config FILE and exits non-zero with a one-line reason when
// it fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vigil-gw/vigil/cmd/internal/buildinfo"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/app"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage: vigil <command> [flags]

commands:
  run                     start the gateway (embedded broker, ./var, http 127.0.0.1:8080 by default)
  device add ID --kind button|camera --site SITE --wearer NAME [--camera CAMERA_ID] [--serial-key-file F] [--token-file F]
  device list
  user add NAME --role ROLE [--wearer W] [--password-file F | --token]
                          a person: ROLE is operator, supervisor, investigator, ig_officer, admin or wearer
                          (wearer needs --wearer, the device wearer name); the password is the first line of F
                          or of stdin (no prompt); --token prints an API token once instead of a password
  user list
  user disable NAME | user enable NAME   a disabled user cannot log in or use their tokens
  user passwd NAME [--password-file F]
  user token NAME         another API token for NAME, printed once
  token create --role ROLE --name NAME   an API token, printed once (creates user NAME if absent)
  token list
  token revoke ID
  serial list             the serial ports found (USB VID:PID for serial.vidpid)
  doctor [--json]         check the state disk, clock, broker, receivers, webhooks, store and certificates
                          (exit 0 ok or warnings, 1 a check failed, 2 usage); vigil run runs the local ones at start
  evidence init-bucket    create the object-locked bucket (or check an existing one has locking)
  evidence pubkey         the ledger's public key, for whoever verifies checkpoints and packages
  evidence ls [--camera C --from T --to T --incident ID]
  evidence verify [--deep]   check ledger chains and checkpoints; --deep re-hashes every stored object
  evidence status         upload backlog, oldest unuploaded clip, last checkpoint
  evidence export --request ID --out FILE.zip   the police package of an approved release (BagIt; check with vigil-verify)
  (every evidence command also takes --s3 URL like vigil run)

governance commands act as you: give your API token in VIGIL_TOKEN or --token-file
  clip ls [--wearer W --camera C --incident ID]       the clips you may see
  clip access CAMERA:CLIP --why TEXT [--incident ID] [--purpose view|download]   a 5-minute link (S3 stores)
  clip hold|unhold CAMERA:CLIP --why TEXT [--incident ID]   legal hold (lifting needs ig_officer)
  clip retain CAMERA:CLIP --until DATE --why TEXT [--incident ID]   extend retention (never shortened)
  incident assign ID --user INVESTIGATOR --why TEXT
  incident close ID --why TEXT   the incident's legal hold ends; the evidential period starts
  release request --incident ID --crime-ref REF --officer NAME --force FORCE --exhibit REF --why TEXT
  release approve|refuse ID --reason TEXT   an ig_officer other than the requester
  release list
  audit verify            check the audit trail's chain and its signed seals in the store
  audit report [--from D --to D] [--format text|csv|html|json] [--user U --clip CAMERA:CLIP --incident ID] [--out F]
  report [--month YYYY-MM] [--site S] [--format html|csv|json] [--named] [--out F] [--api URL]
                          the monthly violence-prevention report (anonymised unless --named), from the running gateway
  sar --wearer W [--format text|html|json] [--out F]   a wearer's footage and everyone who accessed it
  pki init [--name NAME]  create the site CA in STATE/pki, for brokers that authenticate clients by certificate
  pki issue ID [--kind device|gateway|server] [--host H]... [--days N] [--force]
  version                 this binary's version, commit, build date and Go version
Run "vigil <command> -h" for the flags of a command.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd := args[0]; {
	case cmd == "run":
		err = runGateway(args[1:], stderr)
	case cmd == "device" && len(args) > 1 && args[1] == "add":
		err = deviceAdd(args[2:], stdout, stderr)
	case cmd == "device" && len(args) > 1 && args[1] == "list":
		err = deviceList(args[2:], stdout, stderr)
	case cmd == "pki" && len(args) > 1 && args[1] == "init":
		err = pkiInit(args[2:], stdout, stderr)
	case cmd == "pki" && len(args) > 1 && args[1] == "issue":
		err = pkiIssue(args[2:], stdout, stderr)
	case cmd == "token" && len(args) > 1 && args[1] == "create":
		err = tokenCreate(args[2:], stdout, stderr)
	case cmd == "token" && len(args) > 1 && args[1] == "list":
		err = tokenList(args[2:], stdout, stderr)
	case cmd == "token" && len(args) > 1 && args[1] == "revoke":
		err = tokenRevoke(args[2:], stdout, stderr)
	case cmd == "user" && len(args) > 1:
		err = userCmd(args[1], args[2:], os.Stdin, stdout, stderr)
	case cmd == "evidence" && len(args) > 1 && args[1] == "export":
		err = exportCmd(args[2:], stdout, stderr)
	case cmd == "audit" && len(args) > 1:
		err = auditCmd(args[1], args[2:], stdout, stderr)
	case cmd == "report":
		err = reportCmd(args[1:], stdout, stderr)
	case cmd == "sar":
		err = sarCmd(args[1:], stdout, stderr)
	case cmd == "release" && len(args) > 1:
		err = releaseCmd(args[1], args[2:], stdout, stderr)
	case cmd == "incident" && len(args) > 1:
		err = incidentCmd(args[1], args[2:], stdout, stderr)
	case cmd == "clip" && len(args) > 1:
		err = clipCmd(args[1], args[2:], stdout, stderr)
	case cmd == "evidence" && len(args) > 1:
		err = evidenceCmd(args[1], args[2:], stdout, stderr)
	case cmd == "serial" && len(args) > 1 && args[1] == "list":
		err = serialList(args[2:], stdout, stderr)
	case cmd == "doctor":
		return doctorCmd(args[1:], stdout, stderr)
	case cmd == "version" || cmd == "--version":
		fmt.Fprintln(stdout, "vigil", buildinfo.Get())
		return 0
	case cmd == "-h" || cmd == "--help" || cmd == "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "vigil:", oneLine(err))
		return 1
	}
	return 0
}

// oneLine joins a multi-line error (several config problems) into one line.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// common are the flags every subcommand shares.
type common struct {
	state, config string
}

func (c *common) add(fs *flag.FlagSet) {
	fs.StringVar(&c.state, "state", "", "state directory (default ./var, or the config file's state)")
	fs.StringVar(&c.config, "config", "", "YAML configuration file (see deploy/examples/vigil.yaml)")
}

// parse parses args, refuses stray arguments, and loads the configuration.
func (c *common) parse(fs *flag.FlagSet, args []string) (app.Config, error) {
	if err := fs.Parse(args); err != nil {
		return app.Config{}, err
	}
	if fs.NArg() > 0 {
		return app.Config{}, fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return c.load()
}

// load returns the configuration: defaults, then the config file, then flags.
func (c *common) load() (app.Config, error) {
	cfg := app.DefaultConfig()
	if c.config != "" {
		var err error
		if cfg, err = app.LoadConfig(c.config); err != nil {
			return cfg, err
		}
	}
	if c.state != "" {
		cfg.State = c.state
	}
	return cfg, nil
}

func runGateway(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	httpAddr := fs.String("http", "", "HTTP listen address for the API, health and metrics (default 127.0.0.1:8080)")
	brokerListen := fs.String("broker-listen", "", "embedded MQTT broker address (default 127.0.0.1:1883)")
	mqttURL := fs.String("mqtt", "", "external broker URL tcp://host:port or ssl://host:port (disables the embedded broker)")
	var arcs, hooks multi
	fs.Var(&arcs, "arc", "DC-09 receiver tcp://host:port?account=1234&receiver=1&prefix=1&format=adm-cid|sia-dcs&key=HEX (repeatable: first primary, then backups)")
	fs.Var(&hooks, "webhook", "webhook URL for CloudEvents (repeatable)")
	secretFile := fs.String("webhook-secret-file", "", "file holding the webhook HMAC key")
	site := fs.String("site", "", "this gateway's site id (default demo)")
	gatewayID := fs.String("gateway-id", "", "stable gateway id, used as the MQTT client id (default vigil-HOSTNAME)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	s3 := fs.String("s3", "", "object-locked evidence bucket as http(s)://host:port/bucket (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY); default: a local directory under the state dir, not for production evidence")
	cfg, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	// flags lays the command line over a loaded configuration, at start and
	// at each reload (SIGHUP), so a reload sees what a restart would.
	flags := func(cfg *app.Config) {
		set(&cfg.HTTP, *httpAddr)
		set(&cfg.Broker.Listen, *brokerListen)
		set(&cfg.MQTT.URL, *mqttURL)
		set(&cfg.Alerts.WebhookSecretFile, *secretFile)
		set(&cfg.Site, *site)
		set(&cfg.GatewayID, *gatewayID)
		set(&cfg.LogLevel, *logLevel)
		set(&cfg.Evidence.S3, *s3)
		if len(arcs) > 0 {
			cfg.ARC = nil
			for _, u := range arcs {
				cfg.ARC = append(cfg.ARC, app.ARCConfig{URL: u})
			}
		}
		if len(hooks) > 0 {
			cfg.Webhooks = nil
			for _, u := range hooks {
				cfg.Webhooks = append(cfg.Webhooks, app.HookConfig{URL: u})
			}
		}
	}
	flags(&cfg)
	level, err := app.ParseLevel(cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// Refuse to start where alarms could be lost (see doctor.go).
	networkChecks, err := startupChecks(cfg, log)
	if err != nil {
		return err
	}
	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go networkChecks(ctx) // logs what it finds; ends with ctx
	// SIGHUP reloads routes and devices (app.Reload logs what it did or
	// why it refused).
	a.ReloadFrom(func() (app.Config, error) {
		cfg, err := c.load()
		flags(&cfg)
		return cfg, err
	})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = a.Reload(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	return a.Run(ctx)
}

func deviceAdd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil device add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	kind := fs.String("kind", "", "button or camera")
	site := fs.String("site", "", "site id")
	wearer := fs.String("wearer", "", "name of the person who wears it")
	camera := fs.String("camera", "", "paired camera id (buttons)")
	tokenFile := fs.String("token-file", "", "cameras: write the new upload token to this file (mode 0600) instead of printing it")
	keyFile := fs.String("serial-key-file", "", "the device's serial HMAC key in hex; created with a new random key (mode 0600) if the file does not exist, for provisioning into the pendant")
	// The id comes first ("device add ID --kind …"); flag parsing stops at the
	// first non-flag, so take it off before parsing.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return errors.New("device add: the device ID comes first: vigil device add ID --kind button --site SITE --wearer NAME")
	}
	id := args[0]
	cfg, err := c.parse(fs, args[1:])
	if err != nil {
		return err
	}
	dev := registry.Device{ID: id, Kind: registry.Kind(*kind), Site: *site, Wearer: *wearer, Camera: *camera}
	if *keyFile != "" {
		if dev.SerialKey, err = serialKey(*keyFile); err != nil {
			return err
		}
	}
	var token string
	if dev.Kind == registry.KindCamera {
		// A camera authenticates its uploads with a token; the registry keeps
		// only its hash, so it is shown (or written) now and never again.
		if token, dev.UploadTokenSHA256, err = registry.NewUploadToken(); err != nil {
			return err
		}
	} else if *tokenFile != "" {
		return errors.New("device add: --token-file is for cameras")
	}
	d, err := app.OpenRegistry(cfg.State).Add(dev, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "added %s %s at %s for %s (zone %03d)\n", d.Kind, d.ID, d.Site, d.Wearer, d.Zone)
	switch {
	case token != "" && *tokenFile != "":
		if err := registry.WriteFileAtomic(*tokenFile, []byte(token+"\n"), 0o600); err != nil {
			return fmt.Errorf("device add: %s is registered but its token could not be written: %w", d.ID, err)
		}
		fmt.Fprintf(stdout, "upload token written to %s\n", *tokenFile)
	case token != "":
		fmt.Fprintf(stdout, "upload token (shown once; give it to the camera or its dock): %s\n", token)
	}
	return nil
}

func deviceList(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil device list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	cfg, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	list, err := app.OpenRegistry(cfg.State).List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSITE\tZONE\tWEARER\tCAMERA\tADDED")
	for _, d := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%03d\t%s\t%s\t%s\n", d.ID, d.Kind, d.Site, d.Zone, d.Wearer, d.Camera, d.Added.Format(time.RFC3339))
	}
	return tw.Flush()
}
