// Package app assembles a running Vigil gateway from its configuration: the
// embedded broker (or an external one), the MQTT transport, the journal, the
// alert engine, the outbox and its forwarders, and the HTTP API. cmd/vigil is a
// thin shell around it; tests start the same App in-process.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sync/errgroup"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/mqtt"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/devices/serial"
	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/ingest"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/gateway/broker"
	"github.com/vigil-gw/vigil/gateway/forward"
	"github.com/vigil-gw/vigil/gateway/forward/footage"
	"github.com/vigil-gw/vigil/gateway/forward/wearer"
	"github.com/vigil-gw/vigil/gateway/incident"
	"github.com/vigil-gw/vigil/gateway/internal/ratelog"
	"github.com/vigil-gw/vigil/gateway/internal/schema"
	"github.com/vigil-gw/vigil/gateway/journal"
	"github.com/vigil-gw/vigil/gateway/outbox"
	"github.com/vigil-gw/vigil/gateway/sysclock"
	"github.com/vigil-gw/vigil/gateway/timer"
	"github.com/vigil-gw/vigil/governance"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
	"github.com/vigil-gw/vigil/governance/report"
)

// Route names. ARC receivers are arc0 (primary), arc1, …; webhooks webhook0, ….
const wearerRoute = "wearer"

func arcRoute(i int) string     { return "arc" + strconv.Itoa(i) }
func webhookRoute(i int) string { return "webhook" + strconv.Itoa(i) }

// StateFiles names the files in the state directory.
const (
	StateDB     = "vigil.db"
	BrokerDB    = "broker.db"
	RegistryDB  = "devices.json"
	stateDBMode = 0o600
)

// Access files in the state directory.
const (
	// GovernanceDB holds users, API tokens and sessions (and the other
	// governance records).
	GovernanceDB = access.DBFile
	// TokensFile is the API token file of versions before users existed.
	// OpenAccess imports it into GovernanceDB once and renames it.
	TokensFile = "tokens.json"
)

// OpenRegistry returns the device registry of a state directory.
func OpenRegistry(stateDir string) *registry.Registry {
	return registry.Open(filepath.Join(stateDir, RegistryDB))
}

// OpenAccess opens the users, tokens and sessions of a state directory (in
// GovernanceDB, created if needed), importing a legacy TokensFile. The CLI
// and the gateway both use it, at the same time: the store keeps nothing
// in memory that the other could make stale. closeDB closes the database.
func OpenAccess(ctx context.Context, stateDir string, log *slog.Logger) (_ *access.Store, closeDB func() error, _ error) {
	db, s, err := openAccessDB(ctx, stateDir, log)
	if err != nil {
		return nil, nil, err
	}
	return s, db.Close, nil
}

// openAccessDB opens the governance database and the access store in it;
// the audit trail and governance records share the database.
func openAccessDB(ctx context.Context, stateDir string, log *slog.Logger) (*sql.DB, *access.Store, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	db, err := access.OpenDB(filepath.Join(stateDir, GovernanceDB))
	if err != nil {
		return nil, nil, err
	}
	if err := sqlitedb.Migrate(ctx, db, access.DBSchema(), log); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("governance: %w", err)
	}
	s, err := access.Open(ctx, db, access.Options{LegacyTokens: filepath.Join(stateDir, TokensFile), Logger: log})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, s, nil
}

// App is one gateway.
type App struct {
	cfg      Config
	log      *slog.Logger
	db       *bolt.DB
	registry *registry.Registry
	accounts *access.Store // users, API tokens and web sessions
	govDB    *sql.DB       // their database, shared with the audit trail and governance records
	audit    *audit.Log
	gov      *governance.Service
	// reportOptions are the audit report's working hours and bulk threshold.
	reportOptions report.Options
	journal       *journal.Journal
	engine        *alert.Engine
	incidents     *incident.Store // incident records and support plans, in db
	outbox        *outbox.Dispatcher
	timers        *timer.Wheel
	mqtt          *mqtt.Client
	broker        *broker.Broker
	serials       []*serial.Port
	metrics       *metrics
	http          *http.Server
	httpLn        net.Listener
	limiter       *ratelog.Limiter
	evidence      *evidence.Service
	tus           *ingest.Tus
	dock          *ingest.Dock
	announce      chan devices.Event // clip_ready events for the evidence service
	// The kernel clock's state (watchClock; tests inject a fake), read every
	// clockEvery (0: 30 s); unsynchronised for clockAlertAfter (0: 5 min)
	// raises an alert.
	clock           sysclock.Reader
	clockEvery      time.Duration
	clockAlertAfter time.Duration
	// brokerCheckEvery and brokerAlertAfter tune watchBroker (0: defaults).
	brokerCheckEvery, brokerAlertAfter time.Duration

	// Reload (reload.go) and the service manager (service.go).
	live        atomic.Pointer[routeSet]         // the reloadable part: ARC clients, webhook senders, routing
	reloadMu    sync.Mutex                       // one reload at a time
	loadConfig  func() (Config, error)           // ReloadFrom
	regSnapshot map[string]registry.Device       // the registry at the last (re)load, to log changes
	spawn       chan func(context.Context) error // runners a reload starts (new ARC clients)
	stopped     chan struct{}                    // closed when Run returns
}

// New opens the state directory and builds every component. Nothing runs
// until Run. It fails fast, naming what is wrong, if another gateway holds the
// state directory or a secret cannot be read.
func New(cfg Config, log *slog.Logger) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.State, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	dbPath := filepath.Join(cfg.State, StateDB)
	// The freelist is rebuilt on open rather than written on every commit:
	// fewer pages per fsync on the alarm path, a slower start on a big file.
	db, err := bolt.Open(dbPath, stateDBMode, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("state %s is in use by another vigil process", dbPath)
		}
		return nil, fmt.Errorf("open state %s: %w", dbPath, err)
	}
	// The schema version before any component touches the database: one
	// from a newer vigil is refused, an older one migrated.
	if err := schema.Migrate(db, StateDB, schema.State(), log); err != nil {
		db.Close()
		return nil, err
	}
	a := &App{cfg: cfg, log: log, db: db, registry: OpenRegistry(cfg.State), limiter: ratelog.New(time.Minute, nil),
		spawn: make(chan func(context.Context) error), stopped: make(chan struct{})}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.govDB, a.accounts, err = openAccessDB(context.Background(), cfg.State, log); err != nil {
		return nil, err
	}
	a.metrics = newMetrics()
	a.clock = sysclock.Kernel{}

	// The ARC clients, webhook senders and routing: reload.go rebuilds them
	// on SIGHUP.
	live, err := a.buildRoutes(cfg, nil)
	if err != nil {
		return nil, err
	}
	a.live.Store(live)
	for _, s := range live.arcs {
		a.metrics.arcUp.WithLabelValues(s.name).Set(1)
	}
	routes := live.alert
	routes.Wearer, routes.Evidence = wearerRoute, evidenceRoute
	oroutes := live.outboxRoutes(cfg.Alerts.EscalateAfter)
	if a.engine, err = alert.New(db, routes, alert.Options{AmberGrace: cfg.Alerts.AmberGrace,
		OfflineIntervals: cfg.Alerts.OfflineIntervals, HeartbeatInterval: cfg.Alerts.HeartbeatInterval,
		BatteryThreshold: cfg.Alerts.BatteryThreshold, BatteryGroupWindow: cfg.Alerts.BatteryGroup,
		OnResolved: a.onResolved,
		// a.outbox is made below, before anything can raise an alert.
		Expedite: func(e outbox.Entry) bool { return a.outbox.Expedite(e, nil) }}); err != nil {
		return nil, err
	}
	if err := a.openIncidents(); err != nil {
		return nil, err
	}
	a.engine.OnDelivered = func(al alert.Alert) {
		a.metrics.deliveryLatency.WithLabelValues(al.Event, al.DeliveredVia).Observe(al.DeliveredAt.Sub(al.RaisedAt).Seconds())
	}

	mqttURL := cfg.MQTT.URL
	if mqttURL == "" {
		if a.broker, err = broker.Start(broker.Config{Addr: cfg.Broker.Listen, StorePath: filepath.Join(cfg.State, BrokerDB), Logger: log,
			CertFile: cfg.Broker.TLSCertFile, KeyFile: cfg.Broker.TLSKeyFile, ClientCAFile: cfg.Broker.ClientCAFile, GatewayID: cfg.GatewayID}); err != nil {
			return nil, err
		}
		mqttURL = a.broker.URL() // ssl:// with TLS: the gateway connects with mqtt.cert_file like any client
	}
	mcfg := mqtt.Config{URL: mqttURL, ClientID: cfg.GatewayID, Username: cfg.MQTT.Username, Logger: log, Sites: cfg.MQTT.Sites,
		OnConnection: func(up bool) { a.metrics.mqttUp.Set(b2f(up)) }}
	if cfg.MQTT.PasswordFile != "" {
		pw, err := readSecret(cfg.MQTT.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: %w", err)
		}
		mcfg.Password = string(pw)
	}
	if mcfg.TLS, err = mqttTLS(cfg.MQTT, cfg.GatewayID); err != nil {
		return nil, err
	}
	if a.mqtt, err = mqtt.New(mcfg, a.ingest); err != nil {
		return nil, err
	}
	oroutes = append(oroutes, outbox.Route{Name: wearerRoute, Sender: wearer.New(a.mqtt)})
	// The footage route needs the evidence service; its alerts go through the
	// engine (made above) and wake the outbox (made below, before anything runs).
	if err := a.openEvidence(); err != nil {
		return nil, err
	}
	if a.reportOptions, err = cfg.Governance.ReportOptions(); err != nil {
		return nil, err
	}
	if a.audit, a.gov, err = openGovernance(context.Background(), cfg, a.reportOptions, a.govDB, a.accounts, a.evidence, log); err != nil {
		return nil, err
	}
	// Footage made evidential by an alert is audited as Vigil's doing.
	oroutes = append(oroutes, outbox.Route{Name: evidenceRoute, Sender: footage.New(a.gov.Evidence())})
	for i, sc := range cfg.Serial {
		name := sc.Path
		if name == "" {
			name = "usb:" + sc.VIDPID
		}
		p, err := serial.New(serial.Config{Path: sc.Path, VIDPID: sc.VIDPID, Baud: sc.Baud, Site: sc.Site, Keys: a.serialKey,
			OnPort: func(up bool, err error) { a.onSerialPort(name, sc.Site, up, err) }, Logger: log.With("port", name)}, a.ingest)
		if err != nil {
			return nil, fmt.Errorf("serial[%d]: %w", i, err)
		}
		a.serials = append(a.serials, p)
	}

	a.outbox, err = outbox.NewDispatcher(db, oroutes, outbox.Hooks{Delivered: a.engine.Delivered}, outbox.Options{
		BackoffBase: cfg.Outbox.BackoffBase, BackoffMax: cfg.Outbox.BackoffMax, Logger: log, Observe: a.observeAttempt})
	if err != nil {
		return nil, err
	}
	// Queues of routes removed from the configuration while stopped: reload.go.
	if err := a.adoptOrphans(); err != nil {
		return nil, err
	}
	a.regSnapshot = registrySnapshot(a.registry)
	if a.timers, err = timer.NewWheel(db, a.engine.Fire, time.Now, log); err != nil {
		return nil, err
	}
	a.timers.Fired = a.outbox.Wake
	committed := func() { a.outbox.Wake(); a.timers.Wake() }
	heartbeat := func(r journal.Record) bool { return r.Event.Type == devices.TypeHeartbeat }
	if a.journal, err = journal.New(db, journal.Options{Apply: a.apply, Committed: committed, Ephemeral: heartbeat, Logger: log}); err != nil {
		return nil, err
	}
	a.metrics.register(a)
	a.metrics.reg.MustRegister(evidenceCollector{a})

	if a.httpLn, err = listenHTTP(cfg, log); err != nil {
		return nil, err
	}
	a.http = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 5 * time.Second}
	return a, nil
}

// mqttTLS builds the TLS settings for the broker connection: the CA that
// signed the broker's certificate and, for brokers that authenticate clients
// by certificate, the gateway's own certificate. nil when neither is set.
//
// A certificate whose CN is not gateway_id is refused at start: a broker
// that takes identities from certificates would treat the gateway as some
// other client, grant its subscription and deliver it nothing.
func mqttTLS(c MQTTConfig, gatewayID string) (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: ca_file: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt: ca_file %s has no PEM certificates", c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: cert_file/key_file: %w", err)
		}
		if cn := cert.Leaf.Subject.CommonName; cn != gatewayID {
			return nil, fmt.Errorf("mqtt: cert_file %s is for %q but gateway_id is %q: issue one with vigil pki issue %s --kind gateway", c.CertFile, cn, gatewayID, gatewayID)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// listenHTTP opens the API listener: HTTPS with http_cert_file and
// http_key_file, otherwise plain HTTP, with a warning when that is not on
// loopback (camera tokens and footage would cross the network in clear).
func listenHTTP(cfg Config, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("http: listen %s: %w", cfg.HTTP, err)
	}
	if cfg.HTTPCertFile == "" {
		if host, _, _ := net.SplitHostPort(cfg.HTTP); !isLoopback(host) {
			log.Warn("the API listens beyond loopback without TLS: set http_cert_file and http_key_file (vigil pki issue NAME --kind server)", "http", cfg.HTTP)
		}
		return ln, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.HTTPCertFile, cfg.HTTPKeyFile)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("http: http_cert_file/http_key_file: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HTTPAddr is the address the API listens on (useful with port 0).
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// BrokerAddr is the embedded broker's address, or "" with an external broker.
func (a *App) BrokerAddr() string {
	if a.broker == nil {
		return ""
	}
	return a.broker.Addr()
}

// Run runs every component until ctx is done, then shuts down within a bounded
// time, committing whatever the journal already holds.
func (a *App) Run(ctx context.Context) error {
	defer a.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.journal.Run(gctx) })
	g.Go(func() error { return a.outbox.Run(gctx) })
	g.Go(func() error { return a.timers.Run(gctx) })
	for _, s := range a.live.Load().arcs {
		g.Go(func() error { return s.client.Run(gctx) })
	}
	g.Go(func() error { return a.runDynamic(gctx) })
	for _, p := range a.serials {
		g.Go(func() error { return p.Run(gctx) })
	}
	a.runEvidence(gctx, g)
	g.Go(func() error { return a.audit.Run(gctx) })
	g.Go(func() error { return a.gov.Run(gctx) })
	g.Go(func() error { return a.watchClock().Run(gctx) })
	g.Go(func() error { return a.watchBroker(gctx) })
	g.Go(func() error { return a.incidents.Run(gctx, a.remind, a.cfg.Incidents.CheckEvery, nil) })
	g.Go(func() error {
		err := a.mqtt.Run(gctx)
		// The embedded broker closes once the gateway's own client has
		// stopped: mochi's Close races a connection being established
		// (mochi-mqtt/server#541), and that connection is ours when the
		// gateway stops while (re)connecting.
		if a.broker != nil {
			a.broker.Close()
		}
		return err
	})
	g.Go(func() error {
		err := a.http.Serve(a.httpLn)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http: %w", err)
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return a.http.Shutdown(sctx)
	})
	a.log.Info("vigil running", "http", a.HTTPAddr(), "broker", a.BrokerAddr(), "mqtt", a.cfg.MQTT.URL, "state", a.cfg.State,
		"arc_receivers", len(a.live.Load().arcs), "webhooks", len(a.cfg.Webhooks))
	g.Go(func() error { return a.runService(gctx) }) // READY=1, WATCHDOG=1, STOPPING=1: service.go
	defer close(a.stopped)
	return g.Wait()
}

// Close releases the state database. Run calls it on return.
func (a *App) Close() {
	if live := a.live.Load(); live != nil {
		for _, s := range live.arcs {
			s.retired.Store(true)
			s.client.Close()
		}
	}
	if a.httpLn != nil {
		a.httpLn.Close()
	}
	if a.broker != nil {
		a.broker.Close()
	}
	if a.db != nil {
		a.db.Close()
	}
	if a.evidence != nil {
		a.evidence.Close()
	}
	if a.govDB != nil {
		a.govDB.Close()
	}
}

// ingest handles one MQTT delivery: reject what is invalid, journal what is
// valid, and acknowledge to the broker only once either is durable.
func (a *App) ingest(d devices.Delivery) {
	ctx := context.Background()
	if d.Err != nil {
		a.reject(ctx, d, devices.Reason(d.Err), d.Err)
		return
	}
	ev := d.Decoded.Event
	reg, known, err := a.registry.Lookup(ev.Device)
	if err != nil {
		// A broken registry must not stop alarms: treat the device as unknown.
		a.log.Error("registry lookup failed", "err", err)
	}
	if d.Unauthenticated {
		known = false // the registry cannot vouch for a sender nobody authenticated
	}
	if !known && !ev.Type.Alarm() {
		a.reject(ctx, d, "device", fmt.Errorf("devices: device: %s is not registered (only a duress or man-down is accepted from an unknown device)", ev.Device))
		return
	}
	rec := journal.Record{Site: d.Decoded.Site, Event: ev, Received: d.Received, Source: d.Source, Warnings: d.Decoded.Warnings, Monotonic: d.Monotonic}
	if known {
		rec.Registered = &reg
	}
	ready := a.expedite(rec)
	a.journal.Submit(ctx, rec, func(o journal.Outcome, err error) {
		if ready != nil {
			close(ready)
		}
		if err != nil {
			return // not acknowledged: the broker redelivers after reconnect
		}
		d.Ack()
		switch o {
		case journal.Appended:
			a.metrics.eventsIn.WithLabelValues(string(ev.Type), d.Source).Inc()
			a.cameraEvent(ev)
		case journal.Duplicate:
			a.metrics.duplicates.Inc()
		case journal.Conflict:
			a.metrics.rejected.WithLabelValues("seq").Inc()
		case journal.Replayed:
			a.metrics.rejected.WithLabelValues("replay").Inc()
			if a.limiter.Allow("replay:" + ev.Device) {
				a.log.Warn("replayed device message rejected", "device", ev.Device, "seq", ev.Seq, "source", d.Source)
			}
		}
		if len(rec.Warnings) > 0 && a.limiter.Allow(ev.Device) {
			a.log.Warn("urgent event accepted with problems", "device", ev.Device, "type", ev.Type, "warnings", rec.Warnings)
		}
	})
}

// expedite hands the messages a new P1 event will queue to the routes that
// are idle, before the journal takes the event, so that a duress does not
// wait behind another commit (alert.Engine.Preview, outbox.Dispatcher.Expedite).
// The event is still acknowledged to its sender only once journaled; the
// returned channel (nil when nothing was handed over) must be closed once
// the journal has decided it, so the routes record their deliveries against
// what it committed.
func (a *App) expedite(rec journal.Record) chan struct{} {
	entries := a.engine.Preview(rec)
	if len(entries) == 0 {
		return nil
	}
	if fresh, err := a.journal.Fresh(rec); err != nil || !fresh {
		return nil // a redelivery or a replay: the journal decides, and the queue sends
	}
	ready := make(chan struct{})
	took := false
	for _, e := range entries {
		took = a.outbox.Expedite(e, ready) || took
	}
	if !took {
		return nil
	}
	return ready
}

func (a *App) reject(ctx context.Context, d devices.Delivery, reason string, cause error) {
	device := d.Device
	a.metrics.rejected.WithLabelValues(reason).Inc()
	if a.limiter.Allow("reject:" + device) {
		a.log.Warn("rejected device message", "topic", d.Topic, "reason", reason, "err", cause)
	}
	a.journal.Quarantine(ctx, journal.Rejected{Received: d.Received, Source: d.Source, Topic: d.Topic, Device: device,
		Reason: reason, Error: cause.Error(), Payload: d.Payload}, func(_ journal.Outcome, err error) {
		if err == nil {
			d.Ack() // kept in quarantine: the broker need not send it again
		}
	})
}

func (a *App) observeAttempt(route string, e outbox.Entry, via outbox.Via, err error) {
	if e.Msg.Priority == alert.P1 && e.Attempts == 1 {
		a.metrics.alarmPath.WithLabelValues(route, string(via)).Inc()
	}
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		return
	default:
		result = "retry"
		// The outbox calls Observe before it marks the entry failed, so the
		// error, not e.State, says whether the receiver refused for good.
		if e.State == outbox.Failed || forward.IsPermanent(err) {
			result = "permanent"
		}
	}
	a.metrics.attempts.WithLabelValues(route, result).Inc()
}

// serialKey gives the serial transport a registered device's HMAC key.
func (a *App) serialKey(device string) ([]byte, bool) {
	d, ok, err := a.registry.Lookup(device)
	if err != nil || !ok {
		return nil, false
	}
	return d.Key()
}

// onSerialPort raises a health alert when a serial port disappears (a
// receiver unplugged or failed): pendants behind it cannot reach anyone.
func (a *App) onSerialPort(name, site string, up bool, err error) {
	a.metrics.serialUp.WithLabelValues(name).Set(b2f(up))
	if up {
		a.log.Info("serial port open", "port", name)
		return
	}
	a.log.Error("serial port lost", "port", name, "err", err)
	if _, rerr := a.engine.RaiseSystem("serial_port_down", site,
		fmt.Sprintf("serial port %s is gone: pendants behind it cannot raise alarms: %v", name, err)); rerr != nil {
		a.log.Error("could not raise serial alert", "err", rerr)
	}
	a.outbox.Wake()
}

// onARCLink raises an alert of its own when a receiver stops answering.
func (a *App) onARCLink(route, addr string, up bool, err error) {
	a.metrics.arcUp.WithLabelValues(route).Set(b2f(up))
	if up {
		a.log.Info("ARC receiver answering", "route", route, "addr", addr)
		return
	}
	a.log.Error("ARC receiver not answering", "route", route, "addr", addr, "err", err)
	if _, rerr := a.engine.RaiseSystem("arc_link_down", a.cfg.Site,
		fmt.Sprintf("ARC receiver %s (%s) is not answering: %v", route, addr, err)); rerr != nil {
		a.log.Error("could not raise link alert", "err", rerr)
	}
	a.outbox.Wake()
}

// clockUnsynchronised reads the kernel's clock state now (one cheap system
// call), for timestamps marked as they are taken: evidence received times,
// DC-09 frame times. Unknown counts as synchronised: nothing shows it wrong.
func (a *App) clockUnsynchronised() bool {
	return a.clock.Read().State == sysclock.Unsynchronised
}

// watchClock keeps vigil_clock_synchronised current and raises one system
// alert for each spell of unsynchronised clock that outlasts
// clockAlertAfter: alert times are then unreliable and evidence is being
// marked, and someone should fix NTP. The grace keeps a Pi that boots
// without an RTC from raising one at every start before NTP answers. The
// engine has no "clear" for system alerts (a person resolves them), so
// when the clock is synchronised again a note on the alert says so.
func (a *App) watchClock() *sysclock.Watch {
	var raised string // the current spell's alert
	return sysclock.NewWatch(sysclock.WatchConfig{Reader: a.clock, Interval: a.clockEvery, AlertAfter: a.clockAlertAfter,
		OnChange: func(st sysclock.Status) {
			a.metrics.clockSynced.Set(b2f(st.State == sysclock.Synchronised))
			switch st.State {
			case sysclock.Unsynchronised:
				a.log.Warn("the clock is not synchronised: alert times may be wrong; evidence received now is marked clock_unsynchronised (run vigil doctor)",
					"max_error", st.MaxError)
			case sysclock.Synchronised:
				a.log.Info("the clock is synchronised", "max_error", st.MaxError)
			default:
				a.log.Warn("cannot tell whether the clock is synchronised", "reason", st.Reason)
			}
		},
		OnProlonged: func(lasted time.Duration, _ sysclock.Status) {
			al, err := a.engine.RaiseSystem("clock_unsynchronised", a.cfg.Site, fmt.Sprintf(
				"the gateway's clock has not been synchronised to a time source for %s: alert times may be wrong and new evidence is marked clock_unsynchronised; enable systemd-timesyncd or chrony (vigil doctor)",
				lasted.Round(time.Second)))
			if err != nil {
				a.log.Error("could not raise the clock alert", "err", err)
				return
			}
			raised = al.ID
			a.outbox.Wake()
		},
		OnResynchronised: func(sysclock.Status) {
			if raised == "" {
				return
			}
			if _, err := a.engine.AddNote(raised, "vigil", "the clock is synchronised again"); err != nil {
				a.log.Error("could not note the clock's recovery on its alert", "alert", raised, "err", err)
			}
			raised = ""
		},
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
