// Package console is the control-room console: a small web application
// (HTML, CSS and vanilla JavaScript embedded in the binary, no build step
// and nothing fetched from elsewhere) that shows open alerts live, lets
// operators acknowledge, annotate and resolve them through the existing
// alert API, and shows devices and amber sessions.
//
// The board is live over server-sent events: on connect a client gets a
// full snapshot, then a fresh snapshot after every committed change. The
// alert engine signals changes through a Broadcaster, which never blocks
// the alert path; each stream re-reads the state itself when woken.
//
// Authentication and permissions stay with the API (gateway/app wraps
// Events in its guard); this package only serves what it is given.
package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/vigil-gw/vigil/gateway/alert"
)

//go:embed assets
var assets embed.FS

// Path is where the console is served.
const Path = "/console/"

// CSP is the Content-Security-Policy of every console asset: nothing from
// another origin, no inline script or style, no framing (clickjacking).
const CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Alerts is what the console reads from the alert engine.
type Alerts interface {
	List(limit int) ([]alert.View, error)
	AmberSessions() ([]alert.AmberSession, error)
}

// Device is one row of the device board.
type Device struct {
	ID     string `json:"id"`
	Kind   string `json:"kind,omitempty"`
	Site   string `json:"site"`
	Wearer string `json:"wearer,omitempty"`
	// Registered is false for a device the gateway heard from but does not
	// know (an unverified duress).
	Registered bool `json:"registered"`
	// Online is true while the device has been heard from and has no open
	// offline alert: the engine's supervision is the authority.
	Online       bool      `json:"online"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	LastType     string    `json:"last_type,omitempty"`
	Battery      *int      `json:"battery,omitempty"`
	BatteryLow   bool      `json:"battery_low,omitempty"`
	OfflineAlert string    `json:"offline_alert,omitempty"`
}

// Config is what the console serves from.
type Config struct {
	Alerts  Alerts
	Changes *Broadcaster
	// MayReadDevices reports whether the caller of r may see the device
	// board; Devices returns it. Both nil: no device board.
	MayReadDevices func(r *http.Request) bool
	Devices        func() ([]Device, error)
	// Outcomes are the outcomes an alert may be resolved with.
	Outcomes []string
	// Heartbeat is the interval of keep-alive messages (default 15s): they
	// keep proxies from closing an idle stream and let the page see that
	// the stream is alive.
	Heartbeat time.Duration
	// MinInterval is the least time between two snapshots to one client
	// (default 100ms): a burst of changes becomes one re-read. The first
	// change after a quiet spell is sent at once.
	MinInterval time.Duration
	// MaxAge ends a stream after this long (default 10m); the browser
	// reconnects at once, through authentication again, so an ended or
	// expired session stops receiving alerts.
	MaxAge time.Duration
	// WriteTimeout drops a client that cannot take a message within it
	// (default 10s).
	WriteTimeout time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
}

// Console serves the console's pages and its event stream.
type Console struct {
	cfg        Config
	log        *slog.Logger
	static     http.Handler
	onShutdown sync.Once
}

// New returns a console serving from cfg.
func New(cfg Config) *Console {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 100 * time.Millisecond
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 10 * time.Minute
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Changes == nil {
		cfg.Changes = NewBroadcaster()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &Console{cfg: cfg, log: cfg.Logger.With("component", "console"),
		static: http.StripPrefix(Path, http.FileServerFS(sub))}
}

// Assets serves the console's files under Path with a strict
// Content-Security-Policy.
func (c *Console) Assets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		// Revalidate every time: an upgraded gateway must not run an old
		// script against a new API.
		h.Set("Cache-Control", "no-cache")
		c.static.ServeHTTP(w, r)
	})
}

// snapshot is the state a client shows.
type snapshot struct {
	Alerts  []alert.View         `json:"alerts"`
	Amber   []alert.AmberSession `json:"amber"`
	Devices []Device             `json:"devices,omitempty"`
	// DevicesDenied says the caller's role may not see the device board.
	DevicesDenied bool `json:"devices_denied,omitempty"`
}

// read builds the snapshot for the caller of r: open alerts, P1 first and
// otherwise in the engine's control-room order (undelivered first, newest
// first), amber sessions, and the device board when the caller may see it.
func (c *Console) read(r *http.Request) (snapshot, error) {
	var s snapshot
	all, err := c.cfg.Alerts.List(0)
	if err != nil {
		return s, fmt.Errorf("console: alerts: %w", err)
	}
	s.Alerts = []alert.View{}
	for _, a := range all {
		if a.Open() {
			s.Alerts = append(s.Alerts, a)
		}
	}
	slices.SortStableFunc(s.Alerts, func(a, b alert.View) int { return a.Priority - b.Priority })
	if s.Amber, err = c.cfg.Alerts.AmberSessions(); err != nil {
		return s, fmt.Errorf("console: amber sessions: %w", err)
	}
	if s.Amber == nil {
		s.Amber = []alert.AmberSession{}
	}
	slices.SortFunc(s.Amber, func(a, b alert.AmberSession) int { return a.Deadline.Compare(b.Deadline) })
	if c.cfg.Devices != nil && c.cfg.MayReadDevices != nil {
		if !c.cfg.MayReadDevices(r) {
			s.DevicesDenied = true
		} else if s.Devices, err = c.cfg.Devices(); err != nil {
			return s, fmt.Errorf("console: devices: %w", err)
		} else if s.Devices == nil {
			s.Devices = []Device{}
		}
	}
	return s, nil
}

// Events is GET /api/events: a text/event-stream of "snapshot" events (the
// open alerts, amber sessions and, for roles that may see it, the device
// board; sent on connect and after every change, never twice the same),
// "ping" events with a comment every Heartbeat, and one "config" event on
// connect (the outcomes an alert may be resolved with). Every event's data
// carries the server's time ("now") so that the page's clocks tick from
// it, not from a workstation clock that may be wrong.
//
// Authentication is the caller's business: wrap Events in the API's guard.
func (c *Console) Events(w http.ResponseWriter, r *http.Request) {
	// Shutdown does not cancel requests; without this, open streams would
	// hold the server's shutdown until its deadline.
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		c.onShutdown.Do(func() { srv.RegisterOnShutdown(c.cfg.Changes.Close) })
	}
	sub := c.cfg.Changes.Subscribe()
	defer sub.Close()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a buffering reverse proxy would hold alerts back
	w.WriteHeader(http.StatusOK)

	send := func(event string, data []byte) bool {
		var b bytes.Buffer
		if event == "ping" {
			b.WriteString(": heartbeat\n")
		}
		// data is a JSON object: the server's time goes in as its first member.
		fmt.Fprintf(&b, "event: %s\ndata: {\"now\":%q", event, c.cfg.Now().UTC().Format(time.RFC3339Nano))
		if rest := bytes.TrimPrefix(data, []byte("{")); len(rest) > 1 {
			b.WriteByte(',')
			b.Write(rest)
		} else {
			b.WriteByte('}')
		}
		b.WriteString("\n\n")
		_ = rc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
		if _, err := w.Write(b.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// retry: how soon the browser reconnects after the stream ends.
	if _, err := io.WriteString(w, "retry: 2000\n\n"); err != nil {
		return
	}
	cfg, _ := json.Marshal(map[string]any{"outcomes": c.cfg.Outcomes})
	if !send("config", cfg) {
		return
	}
	var last []byte
	push := func() bool {
		s, err := c.read(r)
		if err != nil {
			c.log.Error("console snapshot failed", "err", err)
			msg, _ := json.Marshal(map[string]string{"error": err.Error()})
			return send("problem", msg)
		}
		b, err := json.Marshal(s)
		if err != nil {
			c.log.Error("console snapshot failed", "err", err)
			return false
		}
		if bytes.Equal(b, last) {
			return true // a change this client does not see (a heartbeat, for an operator)
		}
		last = b
		return send("snapshot", b)
	}
	if !push() {
		return
	}
	ping := time.NewTicker(c.cfg.Heartbeat)
	defer ping.Stop()
	maxAge := time.NewTimer(c.cfg.MaxAge)
	defer maxAge.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.Done():
			return
		case <-maxAge.C:
			return
		case <-ping.C:
			if !send("ping", []byte("{}")) {
				return
			}
		case <-sub.C():
			if !push() {
				return
			}
			// Let a burst settle: what changes meanwhile leaves a signal
			// in sub.C() and is sent as one snapshot after the pause.
			pause := time.NewTimer(c.cfg.MinInterval)
			select {
			case <-r.Context().Done():
				pause.Stop()
				return
			case <-sub.Done():
				pause.Stop()
				return
			case <-pause.C:
			}
		}
	}
}
