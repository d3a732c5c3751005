package dc09

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vigil-gw/vigil/gateway/forward"
)

// Config says where and how a Client reports. ParseURL builds one from a URL;
// zero durations take the defaults listed on each field.
type Config struct {
	// Addr is the receiver's host:port.
	Addr string
	// Account is the account number at the ARC, 3–16 hex digits.
	Account string
	// Receiver and Prefix are the optional receiver and account-prefix
	// numbers, 1–6 hex digits each, "" to leave them out.
	Receiver, Prefix string
	// Format selects the event body; empty means FormatADMCID.
	Format Format
	// Key, when set, encrypts every frame with AES-CBC; it must be 16, 24 or
	// 32 bytes.
	Key []byte
	// TLS, when set, wraps the TCP connection in TLS with this configuration.
	TLS *tls.Config
	// AckTimeout bounds the wait for the response to one frame; default 5s.
	AckTimeout time.Duration
	// DialTimeout bounds connecting (and the TLS handshake); default 3s.
	DialTimeout time.Duration
	// LinkTest is the interval between NULL link-test frames sent by Run;
	// default 60s; negative disables link tests.
	LinkTest time.Duration
	// OnLink is called when the link goes up or down, as seen by Send results
	// and link tests, and once when the first exchange settles it. It is
	// called synchronously, must return quickly and must not call the Client.
	OnLink func(up bool, err error)
	// Now is the clock for frame timestamps; default time.Now. Timeouts use
	// real time.
	Now func() time.Time
	// ClockUnsynchronised, when set, reports whether Now is known not to be
	// synchronised to a time source; see Client.stamp for what changes.
	ClockUnsynchronised func() bool
	// Logger receives diagnostics; default discards them. Keys are never logged.
	Logger *slog.Logger
}

// Defaults for Config's zero durations.
const (
	DefaultAckTimeout  = 5 * time.Second
	DefaultDialTimeout = 3 * time.Second
	DefaultLinkTest    = 60 * time.Second
)

// maxNAKResends is how many times Send resends a frame the receiver NAKed
// (with the timestamp corrected by the receiver's clock) before giving up.
const maxNAKResends = 2

// Errors a Client returns; test them with errors.Is.
var (
	// ErrClosed means Close was called.
	ErrClosed = errors.New("dc09: client closed")
	// ErrNAK means the receiver kept refusing the frame's timestamp.
	ErrNAK = errors.New("dc09: receiver answered NAK")
	// ErrDUH means the receiver cannot process the frame; the error is also
	// marked forward.Permanent.
	ErrDUH = errors.New("dc09: receiver answered DUH")
	// ErrConfig means the Config is unusable; Send marks it forward.Permanent.
	ErrConfig = errors.New("dc09: bad configuration")
)

// ParseURL reads a forwarder address of the form
//
//	tcp://host:port?account=1234&receiver=1&prefix=1&format=adm-cid&key=HEX
//
// "tls://" instead of "tcp://" connects with TLS, verifying the server as
// host. account is required. format is adm-cid (default) or sia-dcs; key is
// 32, 48 or 64 hex digits. ack_timeout, dial_timeout and link_test take Go
// durations ("5s"); link_test=off disables link tests. Any other parameter is
// an error, and every error names the parameter at fault. A key's value is
// never echoed in errors.
func ParseURL(raw string) (Config, error) {
	var cfg Config
	u, err := url.Parse(raw)
	if err != nil {
		// url's error repeats the whole URL, key included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return cfg, fmt.Errorf("dc09: url: %w", err)
	}
	var useTLS bool
	switch u.Scheme {
	case "tcp":
	case "tls":
		useTLS = true
	default:
		return cfg, fmt.Errorf("dc09: url: scheme %q: use tcp:// or tls://", u.Scheme)
	}
	if u.User != nil {
		return cfg, errors.New("dc09: url: user info is not supported")
	}
	if u.Path != "" && u.Path != "/" || u.Fragment != "" || u.Opaque != "" {
		return cfg, errors.New("dc09: url: only scheme, host:port and query parameters are allowed")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || port == "" {
		return cfg, fmt.Errorf("dc09: url: address %q must be host:port", u.Host)
	}
	cfg.Addr = u.Host
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return cfg, fmt.Errorf("dc09: url: query: %w", err)
	}
	for name, vals := range q {
		if len(vals) != 1 {
			return cfg, fmt.Errorf("dc09: url: parameter %s: given %d times", name, len(vals))
		}
		v := vals[0]
		switch name {
		case "account":
			cfg.Account = v
		case "receiver":
			cfg.Receiver = v
		case "prefix":
			cfg.Prefix = v
		case "format":
			cfg.Format = Format(strings.ToLower(v))
		case "key":
			k, err := hex.DecodeString(v)
			if err != nil {
				return cfg, errors.New("dc09: url: parameter key: not hex")
			}
			cfg.Key = k
		case "ack_timeout", "dial_timeout", "link_test":
			var d time.Duration
			if name == "link_test" && v == "off" {
				d = -1
			} else if d, err = time.ParseDuration(v); err != nil || d <= 0 {
				return cfg, fmt.Errorf("dc09: url: parameter %s: %q is not a positive duration", name, v)
			}
			switch name {
			case "ack_timeout":
				cfg.AckTimeout = d
			case "dial_timeout":
				cfg.DialTimeout = d
			default:
				cfg.LinkTest = d
			}
		default:
			return cfg, fmt.Errorf("dc09: url: unknown parameter %q", name)
		}
	}
	if _, ok := q["account"]; !ok {
		return cfg, errors.New("dc09: url: parameter account is required")
	}
	if useTLS {
		cfg.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if err := cfg.validate("dc09: url: "); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Validate reports the first unusable field, naming it. Errors match
// ErrConfig with errors.Is.
func (c Config) Validate() error { return c.validate("dc09: config: ") }

// configError names a bad Config field; prefix says where it came from.
type configError struct{ prefix, param, problem string }

func (e *configError) Error() string        { return e.prefix + "parameter " + e.param + ": " + e.problem }
func (e *configError) Is(target error) bool { return target == ErrConfig }

func (c Config) validate(prefix string) error {
	bad := func(param, format string, args ...any) error {
		return &configError{prefix: prefix, param: param, problem: fmt.Sprintf(format, args...)}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("addr", "%q is not host:port", c.Addr)
	}
	if err := checkHex("account", c.Account, 3, 16); err != nil {
		return bad("account", "%q must be 3–16 hex digits", c.Account)
	}
	if c.Receiver != "" && checkHex("receiver", c.Receiver, 1, 6) != nil {
		return bad("receiver", "%q must be 1–6 hex digits", c.Receiver)
	}
	if c.Prefix != "" && checkHex("prefix", c.Prefix, 1, 6) != nil {
		return bad("prefix", "%q must be 1–6 hex digits", c.Prefix)
	}
	switch c.Format {
	case "", FormatADMCID, FormatSIADCS:
	default:
		return bad("format", "%q is neither %s nor %s", c.Format, FormatADMCID, FormatSIADCS)
	}
	if c.Key != nil && checkKey(c.Key) != nil {
		return bad("key", "must be 16, 24 or 32 bytes (32, 48 or 64 hex digits), got %d bytes", len(c.Key))
	}
	if c.AckTimeout < 0 {
		return bad("ack_timeout", "must not be negative")
	}
	if c.DialTimeout < 0 {
		return bad("dial_timeout", "must not be negative")
	}
	return nil
}

// Client sends alerts to one ARC receiver over one connection, kept open and
// reused. One frame is outstanding at a time; Send and the link test take
// turns. Create it with New; it is safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	cfgErr error

	// turn is a one-slot semaphore held for a whole exchange; unlike a
	// mutex, waiting for it can be cancelled by ctx.
	turn chan struct{}
	// Held with turn:
	sess   *session
	seq    int           // last sequence number used
	offset time.Duration // receiver clock minus ours, learnt from NAKs
	learnt bool          // offset came from a receiver's NAK

	closed      context.Context // done after Close
	closeCancel context.CancelFunc

	linkMu sync.Mutex
	link   linkState
}

type linkState int

const (
	linkUnknown linkState = iota
	linkUp
	linkDown
)

// New returns a Client for cfg with defaults filled in. It does not connect:
// the first Send or link test does. A Config that fails Validate makes every
// Send fail permanently.
func New(cfg Config) *Client {
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.LinkTest == 0 {
		cfg.LinkTest = DefaultLinkTest
	}
	if cfg.Format == "" {
		cfg.Format = FormatADMCID
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	closed, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "dc09", "addr", cfg.Addr),
		cfgErr:      cfg.Validate(),
		turn:        make(chan struct{}, 1),
		closed:      closed,
		closeCancel: cancel,
	}
}

// Send reports m to the receiver and returns nil once the receiver ACKs it.
// A NAK (timestamp outside the receiver's window) makes Send adopt the
// receiver's clock and resend, at most twice. A DUH, an event type with no
// DC-09 code or an unusable Config returns an error marked forward.Permanent.
// Timeouts, dial failures and dropped connections close the connection and
// return a retryable error naming the address and the cause.
func (c *Client) Send(ctx context.Context, m forward.Message) error {
	if c.cfgErr != nil {
		return forward.Permanent(c.cfgErr)
	}
	id, data, xdata, err := eventBody(m, c.cfg.Format, c.cfg.Account)
	if err != nil {
		return forward.Permanent(err)
	}
	if c.closed.Err() != nil {
		return fmt.Errorf("dc09: send to %s: %w", c.cfg.Addr, ErrClosed)
	}
	ctx, cancel := c.exchangeContext(ctx)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		return err
	}
	f := c.frame(id, c.nextSeq())
	f.Data, f.XData = data, xdata
	link, err := c.sendLocked(ctx, f, m)
	c.release()
	c.report(link, err)
	return err
}

// sendLocked runs the exchange for f, resending after NAKs, and says what it
// learnt about the link. The caller holds the turn.
func (c *Client) sendLocked(ctx context.Context, f Frame, m forward.Message) (linkState, error) {
	for attempt := 0; ; attempt++ {
		c.stamp(&f)
		resp, err := c.exchange(ctx, f)
		if err != nil {
			if ctx.Err() != nil {
				return linkUnknown, err
			}
			return linkDown, err
		}
		switch resp.ID {
		case IDACK:
			c.log.Debug("alert delivered", "seq", f.Seq, "event", m.Event, "alert", m.AlertID)
			return linkUp, nil
		case IDDUH:
			return linkUp, forward.Permanent(fmt.Errorf("dc09: send to %s: %w to seq %04d (%s %s, zone %d)",
				c.cfg.Addr, ErrDUH, f.Seq, m.Kind, m.Event, m.Zone))
		case IDNAK:
			if resp.HasTimestamp {
				c.offset, c.learnt = resp.Timestamp.Sub(c.cfg.Now()), true
				c.log.Info("receiver clock differs; correcting timestamps", "seq", f.Seq, "offset", c.offset)
			}
			if attempt >= maxNAKResends {
				return linkUp, fmt.Errorf("dc09: send to %s: %w to seq %04d %d times (receiver clock is %s ahead of ours)",
					c.cfg.Addr, ErrNAK, f.Seq, attempt+1, c.offset)
			}
		}
	}
}

// Run sends a NULL link-test frame at once and then every LinkTest until ctx
// is done, reporting link changes through OnLink. It closes the connection
// when it returns, and returns nil when ctx ends it.
func (c *Client) Run(ctx context.Context) error {
	defer c.closeConn()
	if c.cfgErr != nil {
		return c.cfgErr
	}
	if c.cfg.LinkTest < 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(c.cfg.LinkTest)
	defer t.Stop()
	for {
		c.linkTest(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-c.closed.Done():
			return nil
		case <-t.C:
		}
	}
}

// linkTest sends one NULL frame. Any response, even a NAK or DUH, shows the
// receiver is there.
func (c *Client) linkTest(ctx context.Context) {
	ctx, cancel := c.exchangeContext(ctx)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		return
	}
	f := c.frame(IDNull, c.nextSeq())
	c.stamp(&f)
	resp, err := c.exchange(ctx, f)
	link := linkUp
	switch {
	case err != nil && ctx.Err() != nil:
		link = linkUnknown
	case err != nil:
		link = linkDown
	case resp.ID == IDNAK && resp.HasTimestamp:
		c.offset, c.learnt = resp.Timestamp.Sub(c.cfg.Now()), true
	}
	c.release()
	c.report(link, err)
}

// Close closes the connection and makes later Sends fail with ErrClosed. An
// exchange in progress is interrupted.
func (c *Client) Close() error {
	c.closeCancel()
	c.turn <- struct{}{}
	defer c.release()
	return c.closeConnLocked()
}

// stamp sets f's timestamp: our clock corrected by the offset a receiver's
// NAK taught us. The caller holds the turn.
//
// While our clock is known to be unsynchronised (a Raspberry Pi without
// RTC before NTP has answered) and no receiver has told us its time, an
// unencrypted frame goes without a timestamp. DC-09 makes it optional
// there, and none is better than a wrong one: a receiver that checks it
// would NAK the alarm and cost a round trip (or several, if our clock is
// being stepped), and one that does not would log the alarm at a time
// that may be hours or years out. Without a timestamp the receiver uses
// its own clock, which is what an ARC operator needs. An encrypted frame
// must carry one (the timestamp is its replay protection), so it gets our
// best guess and the NAK path corrects it. The [H] time of occurrence is
// unaffected: it is the device's event time, not ours.
func (c *Client) stamp(f *Frame) {
	f.Timestamp = c.cfg.Now().Add(c.offset)
	f.HasTimestamp = c.cfg.Key != nil || c.learnt || c.cfg.ClockUnsynchronised == nil || !c.cfg.ClockUnsynchronised()
}

func (c *Client) frame(id string, seq int) Frame {
	return Frame{ID: id, Seq: seq, Receiver: c.cfg.Receiver, Prefix: c.cfg.Prefix, Account: c.cfg.Account}
}

// nextSeq advances the link's sequence number, 0001…9999 then 0001 again.
func (c *Client) nextSeq() int {
	c.seq++
	if c.seq > 9999 {
		c.seq = 1
	}
	return c.seq
}

// exchangeContext returns ctx, also cancelled when the client is closed.
func (c *Client) exchangeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.closed, func() { cancel(ErrClosed) })
	return ctx, func() { stop(); cancel(nil) }
}

func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dc09: send to %s: waiting for the link: %w", c.cfg.Addr, context.Cause(ctx))
	}
}

func (c *Client) release() { <-c.turn }

// exchange writes f and waits for the response with the same SEQ (a NAK may
// carry 0000), skipping stale responses to earlier frames and anything that
// does not parse. Any failure closes the connection so the next exchange
// starts clean. The caller holds the turn.
//
// If a reused connection turns out to be closed (the write fails, or the
// receiver hangs up without a word), the frame is sent once more on a new
// connection: the receiver may have closed the idle link just as we wrote,
// and an alarm should not wait for the outbox's retry for that. At worst the
// receiver gets the frame twice, which DC-09 receivers must tolerate anyway.
func (c *Client) exchange(ctx context.Context, f Frame) (Frame, error) {
	reused := c.sess != nil && c.sess.alive()
	resp, err := c.exchangeOnce(ctx, f)
	var cf connFailure
	if reused && errors.As(err, &cf) && ctx.Err() == nil {
		c.log.Debug("reused connection was closed; resending on a new one", "seq", f.Seq, "err", err)
		return c.exchangeOnce(ctx, f)
	}
	return resp, err
}

// connFailure marks an exchange that failed because the connection was
// already gone: nothing came back before it closed.
type connFailure struct{ error }

func (e connFailure) Unwrap() error { return e.error }

func (c *Client) exchangeOnce(ctx context.Context, f Frame) (Frame, error) {
	if err := context.Cause(ctx); ctx.Err() != nil {
		return Frame{}, fmt.Errorf("dc09: send to %s: %w", c.cfg.Addr, err)
	}
	raw, err := f.Encode(c.cfg.Key)
	if err != nil {
		return Frame{}, fmt.Errorf("dc09: send to %s: %w", c.cfg.Addr, err)
	}
	s, err := c.connect(ctx)
	if err != nil {
		return Frame{}, err
	}
	s.drain()

	fail := func(op string, err error) (Frame, error) {
		_ = c.closeConnLocked()
		if ctx.Err() != nil {
			return Frame{}, fmt.Errorf("dc09: send to %s: %s seq %04d: %w", c.cfg.Addr, op, f.Seq, context.Cause(ctx))
		}
		if errors.Is(err, io.EOF) {
			return Frame{}, fmt.Errorf("dc09: send to %s: connection closed by receiver while waiting for seq %04d: %w", c.cfg.Addr, f.Seq, err)
		}
		return Frame{}, fmt.Errorf("dc09: send to %s: %s seq %04d: %w", c.cfg.Addr, op, f.Seq, err)
	}

	timer := time.NewTimer(c.cfg.AckTimeout)
	defer timer.Stop()
	if err := s.conn.SetWriteDeadline(time.Now().Add(c.cfg.AckTimeout)); err != nil {
		return fail("set deadline for", err)
	}
	// Cancelling ctx unblocks a write stuck on a full socket buffer at once.
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := s.conn.Write(raw); err != nil {
		resp, err := fail("write", err)
		return resp, connFailure{err}
	}
	heard := false // whether anything came back for this frame
	for {
		var b []byte
		select {
		case b = <-s.frames:
		case <-s.done:
			// The receiver may have answered and then hung up.
			select {
			case b = <-s.frames:
			default:
				resp, err := fail("read response to", s.err)
				if !heard {
					err = connFailure{err}
				}
				return resp, err
			}
		case <-timer.C:
			return fail("wait for response to", fmt.Errorf("no response within %s: %w", c.cfg.AckTimeout, os.ErrDeadlineExceeded))
		case <-ctx.Done():
			return fail("wait for response to", context.Cause(ctx))
		}
		heard = true
		resp, err := ParseFrame(b, c.cfg.Key)
		if err != nil {
			c.log.Warn("skipping unreadable response", "err", err)
			continue
		}
		switch resp.ID {
		case IDACK, IDNAK, IDDUH:
		default:
			c.log.Warn("skipping unexpected frame", "id", resp.ID, "seq", resp.Seq)
			continue
		}
		if resp.Seq != f.Seq && !(resp.ID == IDNAK && resp.Seq == 0) {
			c.log.Debug("skipping stale response", "id", resp.ID, "seq", resp.Seq, "want", f.Seq)
			continue
		}
		return resp, nil
	}
}

// session is one open connection and the goroutine reading it. Reading all
// the time, rather than only while waiting for a response, is how the client
// notices at once that the receiver closed an idle connection (ARCs drop idle
// links), instead of losing an alarm's first attempt to it.
type session struct {
	conn   net.Conn
	frames chan []byte   // frames read, for the exchange waiting on them
	done   chan struct{} // closed when the reader stops
	err    error         // why the reader stopped; read after done is closed
}

// sessionBacklog is how many unread frames a session keeps; more are dropped
// (they can only be stale or junk, since one frame is outstanding at a time).
const sessionBacklog = 16

func newSession(conn net.Conn, log *slog.Logger) *session {
	s := &session{conn: conn, frames: make(chan []byte, sessionBacklog), done: make(chan struct{})}
	go s.read(log)
	return s
}

// read runs until the connection fails or is closed.
func (s *session) read(log *slog.Logger) {
	defer close(s.done)
	rd := newFrameReader(s.conn)
	for {
		b, err := rd.next()
		if errors.Is(err, errFrameTooLong) {
			log.Warn("skipping over-long frame from receiver")
			continue
		}
		if err != nil {
			s.err = err
			return
		}
		select {
		case s.frames <- append([]byte(nil), b...):
		default:
			log.Warn("dropping unread frame from receiver", "bytes", len(b))
		}
	}
}

// drain discards frames left from earlier exchanges.
func (s *session) drain() {
	for {
		select {
		case <-s.frames:
		default:
			return
		}
	}
}

// alive reports whether the reader is still running.
func (s *session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// connect returns the open session, dialling if there is none or the
// receiver has closed it.
func (c *Client) connect(ctx context.Context) (*session, error) {
	if c.sess != nil {
		if c.sess.alive() {
			return c.sess, nil
		}
		c.log.Debug("receiver closed the connection; reconnecting", "err", c.sess.err)
		_ = c.closeConnLocked()
	}
	d := &net.Dialer{Timeout: c.cfg.DialTimeout}
	var (
		conn net.Conn
		err  error
	)
	if c.cfg.TLS != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: c.cfg.TLS}).DialContext(ctx, "tcp", c.cfg.Addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", c.cfg.Addr)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("dc09: send to %s: dial: %w", c.cfg.Addr, err)
	}
	c.log.Debug("connected")
	c.sess = newSession(conn, c.log)
	return c.sess, nil
}

func (c *Client) closeConn() {
	c.turn <- struct{}{}
	defer c.release()
	_ = c.closeConnLocked()
}

// closeConnLocked closes the connection and waits for its reader to stop,
// so no goroutine outlives the session.
func (c *Client) closeConnLocked() error {
	s := c.sess
	if s == nil {
		return nil
	}
	c.sess = nil
	err := s.conn.Close()
	<-s.done
	if err != nil {
		return fmt.Errorf("dc09: close connection to %s: %w", c.cfg.Addr, err)
	}
	return nil
}

// report records what an exchange showed about the link and calls OnLink if
// that changed it.
func (c *Client) report(link linkState, err error) {
	if link == linkUnknown {
		return
	}
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	if c.link == link {
		return
	}
	c.link = link
	if link == linkUp {
		c.log.Info("link up")
		err = nil
	} else {
		c.log.Warn("link down", "err", err)
	}
	if c.cfg.OnLink != nil {
		c.cfg.OnLink(link == linkUp, err)
	}
}
