package console

import "sync"

// Broadcaster fans a "something changed" signal out to every connected
// client. It carries no data: each client re-reads the state it shows when
// woken, so a signal can be merged with any other still waiting (coalesced)
// and nothing is ever queued.
//
// Notify is called on the alert path (after each committing transaction) and
// never blocks: a client that has not yet taken its last signal simply keeps
// that one.
type Broadcaster struct {
	mu     sync.RWMutex
	subs   map[*Subscription]struct{}
	closed bool
	done   chan struct{} // closed by Close: every stream ends
}

// NewBroadcaster returns a Broadcaster with no subscribers.
func NewBroadcaster() *Broadcaster {
	return &Broadcaster{subs: map[*Subscription]struct{}{}, done: make(chan struct{})}
}

// Subscription is one client's wake-up channel.
type Subscription struct {
	b    *Broadcaster
	c    chan struct{}
	once sync.Once
}

// Subscribe adds a client. It must call Close when it goes away. After the
// Broadcaster is closed, the subscription's Done channel is already closed.
func (b *Broadcaster) Subscribe() *Subscription {
	s := &Subscription{b: b, c: make(chan struct{}, 1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.subs[s] = struct{}{}
	}
	return s
}

// Notify wakes every subscriber without waiting for any of them.
func (b *Broadcaster) Notify() {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		select {
		case s.c <- struct{}{}:
		default: // already has a signal waiting: the two are one re-read
		}
	}
}

// Len is the number of subscribers.
func (b *Broadcaster) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.subs)
}

// Close ends every subscription (their Done channels close) and refuses new
// ones: the server is shutting down, and open streams would hold it up.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	close(b.done)
	clear(b.subs)
}

// C receives a value when something changed since the last receive.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Done is closed when the Broadcaster closes.
func (s *Subscription) Done() <-chan struct{} { return s.b.done }

// Close unsubscribes. It is safe to call more than once.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.b.mu.Lock()
		defer s.b.mu.Unlock()
		delete(s.b.subs, s)
	})
}
