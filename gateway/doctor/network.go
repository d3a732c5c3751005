package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/forward/webhook"
)

// checkEmbeddedBroker checks that the embedded broker can listen: the
// address is free, or held by the gateway already running on this state
// directory (locked).
func checkEmbeddedBroker(listen string, locked bool) Finding {
	d := map[string]any{"embedded": true, "listen": listen}
	ln, err := net.Listen("tcp", listen)
	if err == nil {
		ln.Close()
		return finding(checkBroker, OK, fmt.Sprintf("the embedded broker's address %s is free", listen), "", d)
	}
	d["error"] = err.Error()
	if errors.Is(err, syscall.EADDRINUSE) {
		if locked {
			return finding(checkBroker, OK, fmt.Sprintf("the embedded broker's address %s is in use, by the vigil running on this state directory", listen), "", d)
		}
		return finding(checkBroker, Fail, fmt.Sprintf("the embedded broker's address %s is in use by another program: vigil run cannot start its broker", listen),
			"stop the other MQTT broker (systemctl stop mosquitto), or set broker.listen to a free address, or use that broker through mqtt.url", d)
	}
	return finding(checkBroker, Fail, fmt.Sprintf("the embedded broker cannot listen on %s: %v", listen, opError(err)),
		"set broker.listen to host:port with an address of this machine", d)
}

// checkExternalBroker connects to mqtt.url (with TLS for ssl:// and tls://,
// using mqtt.ca_file and the gateway's client certificate).
func checkExternalBroker(ctx context.Context, c app.MQTTConfig, timeout time.Duration) Finding {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return finding(checkBroker, Fail, "mqtt.url is not a URL", "set mqtt.url to tcp://host:port or ssl://host:port", nil)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "1883"
		if u.Scheme != "tcp" {
			port = "8883"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	d := map[string]any{"addr": addr, "tls": u.Scheme != "tcp"}
	var tcfg *tls.Config
	if u.Scheme != "tcp" {
		if tcfg, err = brokerTLS(c, u.Hostname()); err != nil {
			d["error"] = err.Error()
			return finding(checkBroker, Fail, err.Error(), "fix the file named, or the path to it in the configuration", d)
		}
	}
	took, err := dial(ctx, addr, tcfg, timeout)
	if err != nil {
		problem, isTLS := describe(err, timeout)
		d["error"], d["tls_error"] = problem, isTLS
		advice := "device events wait in the broker's persistent session until the gateway connects: check that the broker runs and that this machine can reach it (address, firewall)"
		if isTLS {
			advice = "the broker's certificate does not verify against mqtt.ca_file, or it refused the gateway's certificate: check mqtt.ca_file, cert_file and key_file against the broker's configuration"
		}
		return finding(checkBroker, Warn, fmt.Sprintf("cannot connect to the broker at %s: %s", addr, problem), advice, d)
	}
	d["connect_ms"] = ms(took)
	return finding(checkBroker, OK, fmt.Sprintf("the broker at %s accepts connections%s (%s)", addr, tlsWord(tcfg), fmtMS(took)), "", d)
}

// brokerTLS is the TLS the gateway uses with its broker: the broker's CA
// (mqtt.ca_file, else the system's) and its own certificate if configured.
func brokerTLS(c app.MQTTConfig, host string) (*tls.Config, error) {
	t := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.ca_file: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.ca_file %s has no PEM certificates", c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.cert_file/key_file: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// checkARC connects to one DC-09 receiver (TCP, with TLS for tls://). It does
// not send a frame: a link test from an unexpected connection would show in
// the ARC's logs as traffic from this account.
func checkARC(ctx context.Context, name, rawURL string, backup bool, timeout time.Duration) Finding {
	cfg, err := dc09.ParseURL(rawURL) // its errors never echo a key
	if err != nil {
		return finding(name, Fail, err.Error(), "fix this receiver's url in the arc list: vigil run refuses it", nil)
	}
	d := map[string]any{"addr": cfg.Addr, "tls": cfg.TLS != nil, "backup": backup}
	took, err := dial(ctx, cfg.Addr, cfg.TLS, timeout)
	if err != nil {
		problem, isTLS := describe(err, timeout)
		d["error"], d["tls_error"] = problem, isTLS
		advice := "alarms wait in the durable outbox and go to the backup receiver after alerts.escalate_after"
		if !backup {
			advice = "alarms wait in the durable outbox until it answers, and no backup receiver follows this one"
		}
		advice += ": check the address and port with the ARC, and the site's firewall"
		return finding(name, Warn, fmt.Sprintf("cannot connect to the ARC receiver at %s: %s", cfg.Addr, problem), advice, d)
	}
	d["connect_ms"] = ms(took)
	return finding(name, OK, fmt.Sprintf("the ARC receiver at %s accepts connections%s (%s)", cfg.Addr, tlsWord(cfg.TLS), fmtMS(took)), "", d)
}

// checkWebhook checks that a webhook's URL is acceptable and its secret
// readable, then sends it a HEAD request: any HTTP response at all shows the
// receiver is reachable (a webhook endpoint may well refuse HEAD). With
// connectOnly it only connects to the server.
func checkWebhook(ctx context.Context, name, rawURL, secretFile string, connectOnly bool, timeout time.Duration) Finding {
	// The sender's own rules decide whether the URL is usable; the secret
	// here is a placeholder, never sent.
	if _, err := webhook.New(webhook.Config{URL: rawURL, Secret: []byte{1}}); err != nil {
		return finding(name, Fail, err.Error(), "fix this webhook's url: vigil run refuses it", nil)
	}
	u, _ := url.Parse(rawURL)
	shown := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String() // no credentials or query
	d := map[string]any{"url": shown}
	if secretFile != "" {
		if b, err := os.ReadFile(secretFile); err != nil || len(strings.TrimSpace(string(b))) == 0 {
			problem := "is empty"
			if err != nil {
				problem = opError(err).Error()
			}
			return finding(name, Fail, fmt.Sprintf("the webhook secret file %s %s", secretFile, problem),
				"create it with the HMAC key agreed with the receiver (mode 0600): vigil run refuses to start without it", d)
		}
	}
	if connectOnly {
		return connectWebhook(ctx, name, u, shown, d, timeout)
	}
	client := &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, rawURL, nil)
	if err != nil {
		return finding(name, Fail, "the url cannot be requested", "fix this webhook's url", d)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		problem, isTLS := describe(err, timeout)
		d["error"], d["tls_error"] = problem, isTLS
		return finding(name, Warn, fmt.Sprintf("cannot reach the webhook %s: %s", shown, problem), webhookAdvice(isTLS), d)
	}
	resp.Body.Close()
	took := time.Since(start)
	d["http_status"], d["response_ms"] = resp.StatusCode, ms(took)
	return finding(name, OK, fmt.Sprintf("the webhook %s answered HTTP %d (%s)", shown, resp.StatusCode, fmtMS(took)), "", d)
}

// webhookAdvice is what to do about a webhook that cannot be reached.
func webhookAdvice(isTLS bool) string {
	if isTLS {
		return "alerts for it wait in the durable outbox: its certificate must verify against this machine's CA store " +
			"(install a private CA in /usr/local/share/ca-certificates and run update-ca-certificates) and name the URL's host"
	}
	return "alerts for it wait in the durable outbox and are retried: check the URL and that this machine can reach it (DNS, firewall, proxy)"
}

// connectWebhook connects to a webhook's server (with a TLS handshake for
// https, against the system's CA store, as the sender does) and sends nothing.
func connectWebhook(ctx context.Context, name string, u *url.URL, shown string, d map[string]any, timeout time.Duration) Finding {
	var t *tls.Config
	port := "80"
	if u.Scheme == "https" {
		t, port = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}, "443"
	}
	if u.Port() != "" {
		port = u.Port()
	}
	took, err := dial(ctx, net.JoinHostPort(u.Hostname(), port), t, timeout)
	if err != nil {
		problem, isTLS := describe(err, timeout)
		d["error"], d["tls_error"] = problem, isTLS
		return finding(name, Warn, fmt.Sprintf("cannot reach the webhook %s: %s", shown, problem), webhookAdvice(isTLS), d)
	}
	d["connect_ms"] = ms(took)
	return finding(name, OK, fmt.Sprintf("the webhook's server %s accepts connections%s (%s)", u.Host, tlsWord(t), fmtMS(took)), "", d)
}

// localStoreDir is where the evidence service keeps objects when no S3
// store is configured (evidence's objectsDir under evidence.Dir).
const localStoreDir = "objects"

// checkObjectStore checks the evidence store: for S3, that the bucket
// exists, the credentials reach it and object locking is on; for the local
// directory store, that it is writable.
func checkObjectStore(ctx context.Context, cfg app.Config, timeout time.Duration) Finding {
	if cfg.Evidence.S3 == "" {
		return checkLocalStore(filepath.Join(cfg.State, evidence.Dir, localStoreDir))
	}
	ecfg, err := app.EvidenceServiceConfig(cfg, nil)
	if err != nil {
		return finding(checkStore, Fail, err.Error(), "set the store's credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or evidence.credentials_file): vigil run refuses to start without them", nil)
	}
	s3 := *ecfg.S3
	d := map[string]any{"endpoint": s3.Endpoint, "bucket": s3.Bucket, "tls": s3.Secure}
	// One attempt within the dial timeout: the check reports, the uploader retries.
	s3.Timeout, s3.MaxRetries = timeout, 1
	store, err := objstore.NewS3(s3)
	if err != nil {
		return finding(checkStore, Fail, err.Error(), "fix evidence.s3, evidence.ca_file or the credentials", d)
	}
	start := time.Now()
	err = store.CheckBucket(ctx)
	d["response_ms"] = ms(time.Since(start))
	switch {
	case err == nil:
		return finding(checkStore, OK, fmt.Sprintf("bucket %s at %s exists with object locking", s3.Bucket, s3.Endpoint), "", d)
	case errors.Is(err, objstore.ErrUnavailable):
		problem, isTLS := describe(err, timeout)
		d["error"], d["tls_error"] = problem, isTLS
		return finding(checkStore, Warn, fmt.Sprintf("cannot reach the object store %s: %s", s3.Endpoint, problem),
			"footage stays queued on the state disk until the store answers (watch disk_space): check the endpoint, the network and evidence.ca_file", d)
	case errors.Is(err, objstore.ErrNoLocking):
		d["error"] = err.Error()
		return finding(checkStore, Fail, fmt.Sprintf("bucket %s has no object locking: evidence stored there could be deleted", s3.Bucket),
			"evidence needs a bucket created with object locking (it cannot be turned on later on every store): create a new one with vigil evidence init-bucket and point evidence.s3 at it", d)
	case errors.Is(err, objstore.ErrNotFound):
		d["error"] = err.Error()
		return finding(checkStore, Fail, fmt.Sprintf("bucket %s does not exist at %s", s3.Bucket, s3.Endpoint),
			"create it with object locking: vigil evidence init-bucket", d)
	}
	if problem, isTLS := describe(err, timeout); isTLS {
		d["error"], d["tls_error"] = problem, true
		return finding(checkStore, Warn, fmt.Sprintf("cannot reach the object store %s: %s", s3.Endpoint, problem),
			"footage stays queued on the state disk until the store answers: its certificate must verify against evidence.ca_file (or the system's CA store) and name the endpoint's host", d)
	}
	d["error"] = err.Error()
	return finding(checkStore, Fail, fmt.Sprintf("the object store %s refused the check: %v", s3.Endpoint, err),
		"check the credentials and that they may read the bucket and its object-lock configuration", d)
}

// localAdvice is said even when the local store works: it is not evidence
// storage anyone should rely on.
const localAdvice = "footage kept on the gateway's own disk is not protected by object lock off the gateway: set evidence.s3 for production evidence"

func checkLocalStore(dir string) Finding {
	d := map[string]any{"dir": dir, "local": true}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return finding(checkStore, OK, fmt.Sprintf("local directory store %s will be created at the first start", dir), localAdvice, d)
	}
	store, err := objstore.NewDir(dir)
	if err == nil {
		err = store.CheckBucket(context.Background())
	}
	if err == nil {
		err = probeWrite(filepath.Join(dir, "tmp"))
	}
	if err != nil {
		d["error"] = err.Error()
		return finding(checkStore, Fail, fmt.Sprintf("the local directory store %s is not usable: %v", dir, opError(err)),
			"make it writable by the vigil user, or move it aside so vigil run creates a new one (footage in it not yet elsewhere would be lost)", d)
	}
	return finding(checkStore, OK, fmt.Sprintf("the local directory store %s is writable", dir), localAdvice, d)
}

// dial connects to addr (with TLS when t is set) and closes the connection,
// returning how long connecting took.
func dial(ctx context.Context, addr string, t *tls.Config, timeout time.Duration) (time.Duration, error) {
	nd := &net.Dialer{Timeout: timeout}
	start := time.Now()
	var c net.Conn
	var err error
	if t == nil {
		c, err = nd.DialContext(ctx, "tcp", addr)
	} else {
		c, err = (&tls.Dialer{NetDialer: nd, Config: t}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	return took, c.Close()
}

func tlsWord(t *tls.Config) string {
	if t != nil {
		return " over TLS"
	}
	return ""
}

// describe words a connection failure for a technician and says whether TLS
// was at fault. TLS problems are named precisely, because each has its own
// fix; the URL a *url.Error would repeat (queries may hold secrets) is left
// out.
func describe(err error, timeout time.Duration) (string, bool) {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		verify    *tls.CertificateVerificationError
		dnsErr    *net.DNSError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &unknownCA):
		return "TLS: the certificate is signed by an unknown authority", true
	case errors.As(err, &hostname):
		return "TLS: " + hostname.Error(), true
	case errors.As(err, &invalid):
		return "TLS: " + invalid.Error(), true
	case errors.As(err, &verify):
		return "TLS: " + verify.Err.Error(), true
	case errors.As(err, &record):
		return "TLS: the server did not answer in TLS (is this a plain TCP or HTTP port?)", true
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (nothing listens on that port)", false
	case errors.As(err, &dnsErr):
		return "cannot resolve " + dnsErr.Name + ": " + dnsErr.Err, false
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s (wrong address, or a firewall drops the packets)", timeout), false
	}
	if msg := opError(err).Error(); strings.Contains(msg, "tls:") || strings.Contains(msg, "HTTP response to HTTPS client") {
		// Alerts the server sent ("remote error: tls: certificate
		// required") have no exported type.
		return "TLS: " + msg, true
	}
	return opError(err).Error(), false
}

// opError strips the wrappers whose messages repeat URLs and addresses
// (*url.Error, *net.OpError, *fs.PathError), keeping the cause.
func opError(err error) error {
	for {
		var ue *url.Error
		var oe *net.OpError
		switch {
		case errors.As(err, &ue):
			err = ue.Err
		case errors.As(err, &oe) && oe.Err != nil:
			return oe.Err
		default:
			return unwrapPath(err)
		}
	}
}
