// Package webhook forwards alerts to an incident system over HTTP(S) as
// CloudEvents 1.0 in structured JSON mode, signed with HMAC-SHA256 so the
// receiver can tell the event came from this gateway and was not altered.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/vigil-gw/vigil/gateway/forward"
)

// Header names.
const (
	// SignatureHeader carries "sha256=" + hex(HMAC-SHA256(secret, body)).
	SignatureHeader = "X-Vigil-Signature"
	// IdempotencyHeader repeats the message key so a receiver can deduplicate
	// without parsing the body.
	IdempotencyHeader = "Idempotency-Key"
	// ContentType is the CloudEvents structured-mode media type.
	ContentType = "application/cloudevents+json; charset=UTF-8"
)

// EventTypePrefix starts every CloudEvents type this gateway emits; the
// message kind ("alarm", "restore") completes it.
const EventTypePrefix = "org.vigil.alert."

// Config describes one webhook receiver.
type Config struct {
	URL     string
	Secret  []byte // HMAC key; required
	Source  string // CloudEvents source, e.g. "urn:vigil:gateway:site-a"
	Timeout time.Duration
	Client  *http.Client // default: one with Timeout
}

// Sender posts messages to one webhook URL.
type Sender struct {
	cfg Config
	url string
}

// New checks cfg and returns a Sender. Plain http is refused except to a
// loopback address: alert data crosses the network only under TLS.
func New(cfg Config) (*Sender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook: url %q: %w", cfg.URL, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return nil, fmt.Errorf("webhook: url %s: plain http is only allowed to loopback; use https", u.Redacted())
	default:
		return nil, fmt.Errorf("webhook: url %s: scheme must be https (or http to loopback)", u.Redacted())
	}
	if len(cfg.Secret) == 0 {
		return nil, fmt.Errorf("webhook: url %s: an HMAC secret is required (--webhook-secret-file)", u.Redacted())
	}
	if cfg.Source == "" {
		cfg.Source = "urn:vigil:gateway"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	return &Sender{cfg: cfg, url: u.String()}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Encode builds the CloudEvent for m and returns its structured JSON body.
func Encode(source string, m forward.Message) ([]byte, error) {
	ev := event.New()
	ev.SetID(m.Key)
	ev.SetSource(source)
	ev.SetType(EventTypePrefix + string(m.Kind))
	ev.SetSubject(m.AlertID)
	ev.SetTime(m.RaisedAt)
	if err := ev.SetData(event.ApplicationJSON, m); err != nil {
		return nil, fmt.Errorf("webhook: encode %s: %w", m.Key, err)
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: encode %s: %w", m.Key, err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("webhook: encode %s: %w", m.Key, err)
	}
	return b, nil
}

// Sign returns the signature header value for body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether sig is a valid signature of body, in constant time.
func Verify(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

// Send posts m. A 2xx answer is delivery; 408, 425, 429 and 5xx, timeouts and
// connection errors are retryable (honouring Retry-After); any other 4xx is
// permanent, because the same request will be refused again.
func (s *Sender) Send(ctx context.Context, m forward.Message) error {
	body, err := Encode(s.cfg.Source, m)
	if err != nil {
		return forward.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return forward.Permanent(fmt.Errorf("webhook: %w", err))
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, body))
	req.Header.Set(IdempotencyHeader, m.Key)
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is in the route name; keep the cause
		}
		return fmt.Errorf("webhook: post %s: %w", m.Key, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly || code == http.StatusTooManyRequests || code >= 500:
		err := fmt.Errorf("webhook: post %s: receiver answered %d %q", m.Key, code, bytes.TrimSpace(snippet))
		if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && secs > 0 {
			return forward.RetryAfter(err, time.Duration(secs)*time.Second)
		}
		return err
	default:
		return forward.Permanent(fmt.Errorf("webhook: post %s: receiver refused with %d %q", m.Key, code, bytes.TrimSpace(snippet)))
	}
}
