package broker

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is mochi's TCP listener with one difference: Close closes the
// connections it accepted and waits until the server has handed every one
// back, before mochi's Listeners.CloseAll waits on its clients' WaitGroup.
// mochi adds to that WaitGroup inside each connection's goroutine, so a
// connection accepted just before Close raced that Add against the Wait
// (mochi-mqtt/server#541; the race detector reported it in the gateway's
// tests). Here the Add always happens before Close returns.
type listener struct {
	id, address string
	tlsConfig   *tls.Config
	log         *slog.Logger

	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	active sync.WaitGroup // connections handed to the server and not yet back
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id, address string, tlsConfig *tls.Config) *listener {
	return &listener{id: id, address: address, tlsConfig: tlsConfig, conns: map[net.Conn]struct{}{}}
}

// Init opens the address.
func (l *listener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	l.ln = ln
	return nil
}

// Serve hands each accepted connection to the server until Close.
func (l *listener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = conn.Close()
			return
		}
		l.conns[conn] = struct{}{}
		l.active.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.active.Done()
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("client connection ended", "err", err)
			}
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
		}()
	}
}

// ID names the listener.
func (l *listener) ID() string { return l.id }

// Address is the address it listens on (the port chosen for ":0").
func (l *listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Protocol is "tcp".
func (l *listener) Protocol() string { return "tcp" }

// Close stops accepting, closes every connection it accepted, waits (a
// bounded time) for the server to hand each back, and only then has the
// server disconnect what it still lists. The order matters twice over:
// mochi adds to its clients' WaitGroup inside each connection's goroutine,
// which raced CloseAll's Wait when a connection was accepted just before
// Close (mochi-mqtt/server#541); and mochi's closeListenerClients takes its
// clients read lock twice, which deadlocks when a connecting client's
// Clients.Add is waiting for the write lock in between. With no connection
// left in flight, neither can happen.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	if l.ln != nil {
		_ = l.ln.Close()
	}
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	back := make(chan struct{})
	go func() { l.active.Wait(); close(back) }()
	select {
	case <-back:
		closeClients(l.id)
	case <-time.After(closeWait):
		// Not calling closeClients: with a connection still in flight it
		// could deadlock (above), and every connection is closed already.
		l.log.Warn("broker: connections still being set up at close; not waiting for them", "after", closeWait)
	}
}

// closeWait bounds how long Close waits for the server to hand back the
// connections it accepted.
const closeWait = 2 * time.Second
