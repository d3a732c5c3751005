package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/evidence/objstore"
)

// Config is everything `vigil run` can be told. Every key is documented in
// deploy/examples/vigil.yaml.
type Config struct {
	State string `yaml:"state"` // state directory
	HTTP  string `yaml:"http"`  // API, health and metrics listen address
	// HTTPCertFile and HTTPKeyFile make the API (and the cameras' upload
	// endpoint) HTTPS. Needed whenever http listens beyond loopback: footage
	// and tokens must not cross the site network in clear.
	HTTPCertFile string `yaml:"http_cert_file"`
	HTTPKeyFile  string `yaml:"http_key_file"`
	Site         string `yaml:"site"` // this gateway's site id, used for its own alerts
	// GatewayID names this gateway: the MQTT client id and the CloudEvents
	// source derive from it. It must stay the same across restarts.
	GatewayID  string           `yaml:"gateway_id"`
	LogLevel   string           `yaml:"log_level"`
	Broker     BrokerConfig     `yaml:"broker"`
	MQTT       MQTTConfig       `yaml:"mqtt"`
	ARC        []ARCConfig      `yaml:"arc"`
	Webhooks   []HookConfig     `yaml:"webhooks"`
	Serial     []SerialConfig   `yaml:"serial"`
	Alerts     AlertsConfig     `yaml:"alerts"`
	Outbox     OutboxConfig     `yaml:"outbox"`
	Evidence   EvidenceConfig   `yaml:"evidence"`
	Governance GovernanceConfig `yaml:"governance"`
	Incidents  IncidentsConfig  `yaml:"incidents"`
}

// GovernanceConfig configures access to footage, the audit trail, its
// reports and evidence packages.
type GovernanceConfig struct {
	LinkTTL           time.Duration `yaml:"link_ttl"`            // how long a footage link works (5m)
	MinJustification  int           `yaml:"min_justification"`   // shortest justification accepted, in characters (10)
	SweepInterval     time.Duration `yaml:"sweep_interval"`      // how often expired footage is deleted (1h)
	AuditSealEvery    int           `yaml:"audit_seal_every"`    // audit records between signed seals (100)
	AuditSealInterval time.Duration `yaml:"audit_seal_interval"` // at most this long before a new record is sealed (15m)
	// Working hours for the audit report's out-of-hours flag, local time
	// (timezone), e.g. "07:00-19:00" on working_days.
	WorkingHours string   `yaml:"working_hours"`
	WorkingDays  []string `yaml:"working_days"` // mon … sun (mon-fri)
	Timezone     string   `yaml:"timezone"`     // IANA name (Europe/London)
	BulkClips    int      `yaml:"bulk_clips"`   // more clips than this viewed by one person in an hour is flagged (20)
	// Organization, Contact and ContactEmail go into evidence packages.
	Organization string `yaml:"organization"`
	Contact      string `yaml:"contact"`
	ContactEmail string `yaml:"contact_email"`
}

// EvidenceConfig configures the footage path: ingest, ledger, object store.
type EvidenceConfig struct {
	// S3 is the object-locked bucket as a URL with the bucket as its path,
	// e.g. https://s3.example.org/vigil-evidence. Empty keeps footage in a
	// local directory under the state directory (not for production
	// evidence). Credentials come from AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY or credentials_file, never from the URL.
	S3                 string        `yaml:"s3"`
	CredentialsFile    string        `yaml:"credentials_file"` // AWS-style credentials file ([default] aws_access_key_id = …)
	CAFile             string        `yaml:"ca_file"`          // CA for an https store with a private certificate
	Region             string        `yaml:"region"`
	PartSizeMiB        int           `yaml:"part_size_mib"`       // multipart part size (16); memory per upload is one part
	UploadRateKBps     int           `yaml:"upload_rate_kbps"`    // upload bandwidth limit in kB/s (0: unlimited)
	MaxClipMiB         int           `yaml:"max_clip_mib"`        // largest clip accepted (16384)
	HighWater          float64       `yaml:"high_water"`          // state disk fraction in use above which non-evidential clips are refused (0.9)
	DockDir            string        `yaml:"dock_dir"`            // a dock's directory of clips and sidecars ("" for none)
	NonEvidentialDays  int           `yaml:"non_evidential_days"` // retention after capture (31)
	EvidentialDays     int           `yaml:"evidential_days"`     // retention of evidential footage after its incident is closed (2190); a legal hold while it is open
	PreEvent           time.Duration `yaml:"pre_event"`           // footage before an alert that becomes evidential (2m)
	PostEvent          time.Duration `yaml:"post_event"`          // footage after its resolution (10m)
	CheckpointEvery    int           `yaml:"checkpoint_every"`    // ledger entries between signed checkpoints (100)
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"` // at most this long between checkpoints (10m)
}

// BrokerConfig configures the embedded broker, used when MQTT.URL is empty.
type BrokerConfig struct {
	Listen string `yaml:"listen"`
	// With all three set the listener is TLS and every client needs a
	// certificate from ClientCAFile whose CN is its device id (or gateway_id):
	// it may then only publish its own events and read its own commands.
	// The gateway itself connects with mqtt.ca_file, cert_file and key_file.
	TLSCertFile  string `yaml:"tls_cert_file"`  // the broker's server certificate (vigil pki issue NAME --kind server)
	TLSKeyFile   string `yaml:"tls_key_file"`   // its key
	ClientCAFile string `yaml:"client_ca_file"` // the site CA (vigil pki init): STATE/pki/ca.crt
}

// MQTTConfig points Vigil at an external broker.
type MQTTConfig struct {
	URL          string `yaml:"url"` // tcp:// or ssl://; empty: the embedded broker
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	CAFile       string `yaml:"ca_file"`
	CertFile     string `yaml:"cert_file"` // the gateway's client certificate, for brokers that require one
	KeyFile      string `yaml:"key_file"`
	// Sites limits the subscription to these sites' events, for several
	// gateways on one broker, each site served by exactly one of them
	// (deploy/SCALE.md). Empty: every site.
	Sites []string `yaml:"sites"`
}

// ARCConfig is one alarm receiver; the first is primary, the rest backups.
type ARCConfig struct {
	URL string `yaml:"url"` // tcp://host:port?account=…&receiver=…&prefix=…&format=…&key=…
	// KeyFile holds the AES key in hex, instead of key= in the URL.
	KeyFile string `yaml:"key_file"`
}

// SerialConfig is one serial port with pendants behind it (a radio receiver
// or dock), found by path or by USB vendor and product id.
type SerialConfig struct {
	Path   string `yaml:"path"`   // e.g. /dev/ttyUSB0
	VIDPID string `yaml:"vidpid"` // e.g. "0403:6001" (vigil serial list shows them)
	Baud   int    `yaml:"baud"`   // default 115200
	Site   string `yaml:"site"`   // the site the pendants on this port belong to
}

// HookConfig is one webhook receiver.
type HookConfig struct {
	URL        string `yaml:"url"`
	SecretFile string `yaml:"secret_file"` // HMAC key; defaults to alerts.webhook_secret_file
}

// AlertsConfig tunes alert handling.
type AlertsConfig struct {
	EscalateAfter     time.Duration `yaml:"escalate_after"` // primary ARC silence before the backup gets it too
	LinkTest          time.Duration `yaml:"link_test"`      // DC-09 NULL interval
	AckTimeout        time.Duration `yaml:"ack_timeout"`    // DC-09 wait for ACK
	WebhookSecretFile string        `yaml:"webhook_secret_file"`
	AmberGrace        time.Duration `yaml:"amber_grace"`       // pre-alert to "failed to check in"
	OfflineIntervals  int           `yaml:"offline_intervals"` // heartbeats missed before offline
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	BatteryThreshold  int           `yaml:"battery_threshold"` // percent
	BatteryGroup      time.Duration `yaml:"battery_group"`     // one low-battery notification per site per this
	// Routing lists the routes for each priority ("p1".."p4"): "arc" (the
	// primary ARC, with its backups by escalation), "webhooks" (all of them),
	// or a route name (arc0, arc1, webhook0, …). Unlisted priorities keep the
	// default: p1 to arc and webhooks, p2-p4 to webhooks.
	Routing map[string][]string `yaml:"routing"`
}

// OutboxConfig tunes retries.
type OutboxConfig struct {
	BackoffBase time.Duration `yaml:"backoff_base"`
	BackoffMax  time.Duration `yaml:"backoff_max"`
}

// DefaultConfig is a gateway that works on a fresh machine with nothing else
// installed: embedded broker on loopback, state in ./var, API on loopback.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	id := "vigil"
	if devices.ValidID(host) {
		id = "vigil-" + host
	}
	return Config{
		State:     "./var",
		HTTP:      "127.0.0.1:8080",
		Site:      "demo",
		GatewayID: id,
		LogLevel:  "info",
		Broker:    BrokerConfig{Listen: "127.0.0.1:1883"},
		Alerts: AlertsConfig{EscalateAfter: 5 * time.Second, LinkTest: 60 * time.Second, AckTimeout: 5 * time.Second,
			AmberGrace: 2 * time.Minute, OfflineIntervals: 3, HeartbeatInterval: time.Minute, BatteryThreshold: 20,
			BatteryGroup: 15 * time.Minute,
			Routing:      map[string][]string{"p1": {"arc", "webhooks"}, "p2": {"webhooks"}, "p3": {"webhooks"}, "p4": {"webhooks"}}},
		Outbox: OutboxConfig{BackoffBase: 250 * time.Millisecond, BackoffMax: 15 * time.Second},
		Evidence: EvidenceConfig{PartSizeMiB: 16, MaxClipMiB: 16 << 10, HighWater: 0.9, NonEvidentialDays: 31, EvidentialDays: 6 * 365,
			PreEvent: 2 * time.Minute, PostEvent: 10 * time.Minute, CheckpointEvery: 100, CheckpointInterval: 10 * time.Minute},
		Governance: GovernanceConfig{LinkTTL: 5 * time.Minute, MinJustification: 10, SweepInterval: time.Hour, AuditSealEvery: 100,
			AuditSealInterval: 15 * time.Minute, WorkingHours: "07:00-19:00", WorkingDays: []string{"mon", "tue", "wed", "thu", "fri"},
			Timezone: "Europe/London", BulkClips: 20, Organization: "Vigil gateway"},
		Incidents: IncidentsConfig{CheckEvery: time.Minute},
	}
}

// LoadConfig reads a YAML file over the defaults. Unknown keys are an error;
// relative paths resolve against the file's directory.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	raw, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file (io.EOF) means all defaults.
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	rel(&cfg.State)
	rel(&cfg.HTTPCertFile)
	rel(&cfg.HTTPKeyFile)
	rel(&cfg.Broker.TLSCertFile)
	rel(&cfg.Broker.TLSKeyFile)
	rel(&cfg.Broker.ClientCAFile)
	rel(&cfg.MQTT.PasswordFile)
	rel(&cfg.MQTT.CAFile)
	rel(&cfg.MQTT.CertFile)
	rel(&cfg.MQTT.KeyFile)
	rel(&cfg.Alerts.WebhookSecretFile)
	for i := range cfg.ARC {
		rel(&cfg.ARC[i].KeyFile)
	}
	for i := range cfg.Webhooks {
		rel(&cfg.Webhooks[i].SecretFile)
	}
	for i := range cfg.Serial {
		rel(&cfg.Serial[i].Path)
	}
	rel(&cfg.Evidence.CredentialsFile)
	rel(&cfg.Evidence.CAFile)
	rel(&cfg.Evidence.DockDir)
	return cfg, nil
}

// Validate checks the configuration and says what to change.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("config: "+format, a...)) }
	if c.State == "" {
		bad("state: a state directory is required")
	}
	if _, _, err := net.SplitHostPort(c.HTTP); err != nil {
		bad("http: %q is not host:port", c.HTTP)
	}
	if (c.HTTPCertFile == "") != (c.HTTPKeyFile == "") {
		bad("http_cert_file and http_key_file go together: set both (vigil pki issue NAME --kind server --host H), or neither")
	}
	if !devices.ValidID(c.Site) {
		bad("site: %q must be 1-64 of A-Z a-z 0-9 _ -", c.Site)
	}
	if !devices.ValidID(c.GatewayID) {
		bad("gateway_id: %q must be 1-64 of A-Z a-z 0-9 _ -", c.GatewayID)
	}
	if c.MQTT.URL == "" {
		if _, _, err := net.SplitHostPort(c.Broker.Listen); err != nil {
			bad("broker.listen: %q is not host:port", c.Broker.Listen)
		}
		if b := c.Broker; b.TLSCertFile != "" || b.TLSKeyFile != "" || b.ClientCAFile != "" {
			if b.TLSCertFile == "" || b.TLSKeyFile == "" || b.ClientCAFile == "" {
				bad("broker: tls_cert_file, tls_key_file and client_ca_file go together: set all three, or none")
			}
			if c.MQTT.CAFile == "" || c.MQTT.CertFile == "" || c.MQTT.KeyFile == "" {
				bad("mqtt: ca_file, cert_file and key_file are needed: the embedded broker requires client certificates, the gateway's included (vigil pki issue %s --kind gateway)", c.GatewayID)
			}
		}
	} else if u, err := url.Parse(c.MQTT.URL); err != nil || (u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "tls") || u.Host == "" {
		bad("mqtt.url: %q must be tcp://host:port or ssl://host:port", c.MQTT.URL)
	}
	seen := map[string]bool{}
	for i, s := range c.MQTT.Sites {
		if !devices.ValidID(s) {
			bad("mqtt.sites[%d]: %q must be 1-64 of A-Z a-z 0-9 _ - (one topic level, no wildcards)", i, s)
		} else if seen[s] {
			bad("mqtt.sites[%d]: %q is listed twice", i, s)
		}
		seen[s] = true
	}
	for i, sc := range c.Serial {
		if (sc.Path == "") == (sc.VIDPID == "") {
			bad("serial[%d]: set path or vidpid, not both", i)
		}
		if !devices.ValidID(sc.Site) {
			bad("serial[%d]: site %q must be 1-64 of A-Z a-z 0-9 _ -", i, sc.Site)
		}
	}
	for i, h := range c.Webhooks {
		if h.SecretFile == "" && c.Alerts.WebhookSecretFile == "" {
			bad("webhooks[%d]: %s needs a secret file (secret_file or --webhook-secret-file)", i, redact(h.URL))
		}
	}
	if c.Alerts.EscalateAfter <= 0 || c.Alerts.AckTimeout <= 0 || c.Alerts.AmberGrace <= 0 || c.Alerts.HeartbeatInterval <= 0 || c.Alerts.BatteryGroup <= 0 {
		bad("alerts: escalate_after, ack_timeout, amber_grace, heartbeat_interval and battery_group must be positive")
	}
	if c.Alerts.OfflineIntervals < 1 || c.Alerts.BatteryThreshold < 1 || c.Alerts.BatteryThreshold > 100 {
		bad("alerts: offline_intervals must be at least 1 and battery_threshold 1-100")
	}
	if _, err := c.routing(); err != nil {
		bad("alerts.routing: %v", err)
	}
	if e := c.Evidence; e.S3 != "" {
		if _, err := objstore.ParseS3URL(e.S3); err != nil {
			bad("evidence.s3: %v", err)
		}
	}
	if e := c.Evidence; e.PartSizeMiB < 5 || e.PartSizeMiB > 1024 || e.MaxClipMiB < 1 || e.UploadRateKBps < 0 {
		bad("evidence: part_size_mib must be 5-1024 (S3's minimum part is 5 MiB), max_clip_mib at least 1, upload_rate_kbps not negative")
	}
	if e := c.Evidence; e.HighWater <= 0 || e.HighWater > 1 || e.NonEvidentialDays < 1 || e.EvidentialDays < e.NonEvidentialDays {
		bad("evidence: high_water must be in (0, 1], non_evidential_days at least 1, evidential_days at least non_evidential_days")
	}
	if e := c.Evidence; e.PreEvent < 0 || e.PostEvent < 0 || e.CheckpointEvery < 1 || e.CheckpointInterval <= 0 {
		bad("evidence: pre_event and post_event must not be negative, checkpoint_every at least 1, checkpoint_interval positive")
	}
	if g := c.Governance; g.LinkTTL <= 0 || g.LinkTTL > 24*time.Hour || g.MinJustification < 1 || g.SweepInterval <= 0 || g.AuditSealEvery < 1 || g.AuditSealInterval <= 0 || g.BulkClips < 1 {
		bad("governance: link_ttl must be positive and at most 24h; min_justification, audit_seal_every and bulk_clips at least 1; sweep_interval and audit_seal_interval positive")
	}
	if _, err := c.Governance.ReportOptions(); err != nil {
		bad("governance: %v", err)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		bad("log_level: %v", err)
	}
	if err := c.Incidents.validate(); err != nil {
		bad("incidents: %v", err)
	}
	return errors.Join(errs...)
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable url)"
	}
	u.RawQuery = ""
	return u.Redacted()
}

// readSecret reads a secret file, trimming surrounding white space.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	return b, nil
}

// ParseLevel turns a log level name into a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return -4, nil
	case "", "info":
		return 0, nil
	case "warn":
		return 4, nil
	case "error":
		return 8, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// routing resolves alerts.routing into route names per priority.
func (c Config) routing() (map[int][]string, error) {
	if len(c.Alerts.Routing) == 0 {
		return nil, nil
	}
	out := map[int][]string{}
	for p, names := range c.Alerts.Routing {
		var prio int
		if _, err := fmt.Sscanf(p, "p%d", &prio); err != nil || prio < 1 || prio > 4 || p != fmt.Sprintf("p%d", prio) {
			return nil, fmt.Errorf("%q is not p1, p2, p3 or p4", p)
		}
		routes := []string{}
		for _, n := range names {
			switch {
			case n == "arc":
				if len(c.ARC) > 0 {
					routes = append(routes, arcRoute(0))
				}
			case n == "webhooks":
				for i := range c.Webhooks {
					routes = append(routes, webhookRoute(i))
				}
			case validRoute(n, "arc", len(c.ARC)) || validRoute(n, "webhook", len(c.Webhooks)):
				routes = append(routes, n)
			default:
				return nil, fmt.Errorf("%s: %q is not arc, webhooks or a configured route (arc0…, webhook0…)", p, n)
			}
		}
		out[prio] = routes
	}
	return out, nil
}

func validRoute(name, prefix string, n int) bool {
	for i := range n {
		if name == prefix+strconv.Itoa(i) {
			return true
		}
	}
	return false
}
