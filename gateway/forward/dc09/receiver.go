package dc09

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Response is how a Receiver answers a valid frame.
type Response int

// Receiver responses.
const (
	// RespondACK accepts the frame.
	RespondACK Response = iota
	// RespondNAK refuses it, sending the receiver's time, as DC-09 receivers
	// do for a timestamp outside their window.
	RespondNAK
	// RespondDUH says the frame cannot be processed.
	RespondDUH
	// RespondSilent sends nothing, as a receiver that has stopped answering.
	RespondSilent
	// RespondHangUp closes the connection without answering, as a receiver
	// that drops the link mid-exchange.
	RespondHangUp
)

// String returns the response's name.
func (r Response) String() string {
	switch r {
	case RespondACK:
		return "ACK"
	case RespondNAK:
		return "NAK"
	case RespondDUH:
		return "DUH"
	case RespondSilent:
		return "silent"
	case RespondHangUp:
		return "hang-up"
	}
	return fmt.Sprintf("Response(%d)", int(r))
}

// DefaultWindow is how far a frame's timestamp may be from the receiver's
// clock before the receiver NAKs it.
const DefaultWindow = 20 * time.Second

// writeTimeout bounds sending one response to a client that stopped reading.
const writeTimeout = 5 * time.Second

// Received is one frame a Receiver read.
type Received struct {
	// Frame is the parsed (and decrypted) frame.
	Frame Frame
	// Raw is the frame as it arrived, <LF> through <CR>.
	Raw []byte
	// At is the receiver's clock when the frame arrived.
	At time.Time
	// Response is what the receiver answered.
	Response Response
}

// Receiver is a DC-09 receiver, as at an ARC: it reads frames from many
// concurrent connections, drops damaged ones (bad CRC or LEN) without answer,
// NAKs frames whose timestamp is outside Window, answers DUH to intact frames
// it cannot read, and ACKs the rest, echoing SEQ, receiver, prefix and account
// (encrypted when the frame was). Set the fields before calling Serve and do
// not change them after.
type Receiver struct {
	// Key decrypts encrypted frames (16, 24 or 32 bytes); nil accepts only
	// clear frames.
	Key []byte
	// Mode chooses the response to each valid frame that passed the
	// timestamp check; nil ACKs all of them.
	Mode func(f Frame) Response
	// Window is the timestamp tolerance; 0 means DefaultWindow, negative
	// disables the check.
	Window time.Duration
	// Now is the receiver's clock; default time.Now.
	Now func() time.Time
	// Logger receives diagnostics; default discards them.
	Logger *slog.Logger
	// OnFrame, when set, is called for every valid frame with the response
	// sent, from the connection's goroutine.
	OnFrame func(Received)

	mu       sync.Mutex
	frames   []Received
	rejected int
}

// Serve accepts connections on ln and handles each in its own goroutine until
// ctx is done; then it closes ln and every connection, waits for them, and
// returns nil. It returns an error if accepting fails for another reason.
func (r *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	log := r.logger().With("component", "dc09-receiver", "addr", ln.Addr().String())
	var (
		wg       sync.WaitGroup
		connMu   sync.Mutex
		conns    = map[net.Conn]struct{}{}
		stopping bool
	)
	shutdown := func() {
		connMu.Lock()
		defer connMu.Unlock()
		stopping = true
		for conn := range conns {
			_ = conn.Close()
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close(); shutdown() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			shutdown()
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dc09: receiver: accept on %s: %w", ln.Addr(), err)
		}
		connMu.Lock()
		if stopping {
			connMu.Unlock()
			_ = conn.Close()
			continue
		}
		conns[conn] = struct{}{}
		connMu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				connMu.Lock()
				delete(conns, conn)
				connMu.Unlock()
				_ = conn.Close()
			}()
			r.handle(conn, log.With("peer", conn.RemoteAddr().String()))
		}()
	}
}

// Frames returns a copy of every frame ACKed so far, in arrival order.
func (r *Receiver) Frames() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.frames...)
}

// Rejected returns how many frames were dropped or answered DUH because they
// were damaged or unreadable (not counting DUHs chosen by Mode).
func (r *Receiver) Rejected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejected
}

func (r *Receiver) handle(conn net.Conn, log *slog.Logger) {
	log.Debug("connection opened")
	rd := newFrameReader(conn)
	for {
		raw, err := rd.next()
		if errors.Is(err, errFrameTooLong) {
			r.reject(log, nil, err)
			continue
		}
		if err != nil {
			log.Debug("connection closed", "err", err)
			return
		}
		resp, hangUp := r.respond(append([]byte(nil), raw...), log)
		if hangUp {
			return
		}
		if resp == nil {
			continue
		}
		if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			return
		}
		if _, err := conn.Write(resp); err != nil {
			log.Debug("cannot write response", "err", err)
			return
		}
	}
}

// respond decides the answer to one raw frame and returns it encoded (nil for
// no answer), and whether to hang up.
func (r *Receiver) respond(raw []byte, log *slog.Logger) ([]byte, bool) {
	now := r.now()
	f, err := ParseFrame(raw, r.Key)
	if err != nil {
		r.reject(log, raw, err)
		if isFraming(err) || f.Account == "" || checkSeq(f.Seq, IDDUH) != nil {
			// Damaged in transit, or too broken to address an answer to:
			// the sender will time out and resend.
			return nil, false
		}
		return r.reply(log, f, IDDUH, now, false), false
	}
	switch f.ID {
	case IDSIADCS, IDADMCID, IDNull:
	default:
		r.reject(log, raw, fieldErr("id", "%q is not an event or link-test frame", f.ID))
		return r.reply(log, f, IDDUH, now, false), false
	}

	var resp Response
	window := r.Window
	if window == 0 {
		window = DefaultWindow
	}
	if d := f.Timestamp.Sub(now); f.HasTimestamp && window > 0 && (d > window || d < -window) {
		log.Info("timestamp outside window", "seq", f.Seq, "frame_time", f.Timestamp, "skew", d)
		resp = RespondNAK
	} else if r.Mode != nil {
		resp = r.Mode(f)
	}
	rec := Received{Frame: f, Raw: raw, At: now, Response: resp}
	r.mu.Lock()
	if resp == RespondACK {
		r.frames = append(r.frames, rec)
	}
	r.mu.Unlock()
	log.Debug("frame", "id", f.ID, "seq", f.Seq, "account", f.Account, "response", resp)
	if r.OnFrame != nil {
		r.OnFrame(rec)
	}

	switch resp {
	case RespondACK:
		// An encrypted ACK must carry a timestamp; a clear one is sent as
		// in the DC-09 example, without.
		return r.reply(log, f, IDACK, now, f.Encrypted), false
	case RespondNAK:
		return r.reply(log, f, IDNAK, now, false), false
	case RespondDUH:
		return r.reply(log, f, IDDUH, now, false), false
	case RespondHangUp:
		return nil, true
	}
	return nil, false
}

// reply builds a response echoing f's SEQ, receiver, prefix and account. NAKs
// carry the receiver's time so the sender can correct its clock; NAK and DUH
// go in clear because the sender may be using the wrong key.
func (r *Receiver) reply(log *slog.Logger, f Frame, id string, now time.Time, encrypted bool) []byte {
	resp := Frame{ID: id, Seq: f.Seq, Receiver: f.Receiver, Prefix: f.Prefix, Account: f.Account}
	var key []byte
	if id == IDNAK || encrypted {
		resp.Timestamp, resp.HasTimestamp = now, true
	}
	if encrypted {
		key = r.Key
	}
	b, err := resp.Encode(key)
	if err != nil {
		log.Error("cannot encode response", "id", id, "err", err)
		return nil
	}
	return b
}

func (r *Receiver) reject(log *slog.Logger, raw []byte, err error) {
	r.mu.Lock()
	r.rejected++
	r.mu.Unlock()
	log.Warn("frame rejected", "err", err, "bytes", len(raw))
}

func (r *Receiver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Receiver) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}
