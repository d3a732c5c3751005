// Package forward defines what every alert forwarder receives and how it reports
// failure. Each forwarder (DC-09 to an ARC, webhook, device command) lives in a
// sub-package that imports this one; the outbox dispatcher consumes them through
// a one-method interface it declares itself.
package forward

import (
	"errors"
	"time"
)

// Kind says whether a message raises an alarm or restores (cancels) one.
type Kind string

// Message kinds.
const (
	KindAlarm   Kind = "alarm"
	KindRestore Kind = "restore"
	// KindEvidence is not an alarm: it tells the evidence service that an
	// alert needs a camera's footage (Event EventEvidenceOpen, from Time) or
	// that the alert was resolved (EventEvidenceClose, at Time).
	KindEvidence Kind = "evidence"
)

// Evidence message events.
const (
	EventEvidenceOpen  = "evidential_open"
	EventEvidenceClose = "evidential_close"
)

// Location is a device's reported position.
type Location struct {
	Lat  float64 `json:"lat"`
	Lon  float64 `json:"lon"`
	AccM float64 `json:"acc_m,omitempty"`
}

// Message is one alert notification addressed to one route. Receivers
// deduplicate on Key, which is stable across gateway restarts and retries.
type Message struct {
	Key      string    `json:"key"`      // idempotency key: device id + ":" + device seq
	AlertID  string    `json:"alert_id"` // the alert this message belongs to
	Kind     Kind      `json:"kind"`
	Event    string    `json:"event"`    // device event type that caused it, e.g. "duress"
	Priority int       `json:"priority"` // 1 is most urgent
	Device   string    `json:"device"`
	Seq      uint64    `json:"seq"`
	Site     string    `json:"site"`
	Wearer   string    `json:"wearer,omitempty"`
	Zone     int       `json:"zone,omitempty"` // the device's user/zone number at the ARC (1-999); 0 if unknown
	Verified bool      `json:"verified"`       // false: the device is not registered or failed checks
	Time     time.Time `json:"time"`           // when the event happened (device clock, or receipt if the clock was wrong)
	RaisedAt time.Time `json:"raised_at"`      // when the gateway raised the alert, in the transaction that makes it durable
	Location *Location `json:"location,omitempty"`
	Place    string    `json:"place,omitempty"` // where on site, as text ("Ward 7, bay 3")
	Battery  *int      `json:"battery,omitempty"`
	Text     string    `json:"text,omitempty"` // short human-readable summary
}

// permanentError marks a failure that retrying will not fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err to say that resending the same message will fail the
// same way (HTTP 4xx, DC-09 DUH). The outbox stops retrying and makes it visible.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or anything it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Priority8 is the message's priority clamped to a byte, for ordering keys.
func (m Message) Priority8() byte { return byte(min(max(m.Priority, 0), 255)) }

// retryAfterError carries the receiver's requested delay before the next try.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e retryAfterError) Error() string { return e.err.Error() }
func (e retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps a retryable err with the delay the receiver asked for
// (HTTP Retry-After). The outbox waits at least that long.
func RetryAfter(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return retryAfterError{err, after}
}

// RetryDelay returns the delay requested with RetryAfter, if any.
func RetryDelay(err error) (time.Duration, bool) {
	var r retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}
