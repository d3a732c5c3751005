// Package ratelog limits how often one thing is logged, so a misbehaving
// device or client cannot flood the log: each key may log once per period.
package ratelog

import (
	"sync"
	"time"
)

// maxKeys bounds memory against many distinct keys (bad ids, addresses).
const maxKeys = 10000

// Limiter says whether a key may log now.
type Limiter struct {
	period time.Duration
	now    func() time.Time
	mu     sync.Mutex
	last   map[string]time.Time
}

// New returns a Limiter allowing each key once per period; now may be nil.
func New(period time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{period: period, now: now, last: map[string]time.Time{}}
}

// Allow reports whether key may log now, and if so starts its period.
func (l *Limiter) Allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.period {
		return false
	}
	if len(l.last) > maxKeys {
		for k, t := range l.last {
			if now.Sub(t) >= l.period {
				delete(l.last, k)
			}
		}
	}
	l.last[key] = now
	return true
}
