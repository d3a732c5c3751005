package doctor

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/objstore/s3test"
	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

const dialTimeout = 2 * time.Second

// listen starts a TCP listener that accepts and closes connections.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// tlsServer is an HTTPS server with its own CA (that nothing trusts) and
// quiet handshake-error logging.
func tlsServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// caFile writes the certificate of an httptest TLS server, its own CA.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	return p
}

func TestCheckARC(t *testing.T) {
	ln := listen(t)
	tlsSrv := tlsServer(t)
	tlsAddr := tlsSrv.Listener.Addr().String()
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	down := testnet.ClosedAddr(t)
	tests := []struct {
		name    string
		url     string
		backup  bool
		want    Status
		summary string
		advice  string
	}{
		{"receiver up", "tcp://" + ln.Addr().String() + "?account=1234", true, OK, "the ARC receiver at " + ln.Addr().String() + " accepts connections", ""},
		{"receiver down, a backup follows", "tcp://" + down + "?account=1234", true, Warn, "cannot connect to the ARC receiver at " + down + ": connection refused",
			"go to the backup receiver after alerts.escalate_after"},
		{"last receiver down", "tcp://" + down + "?account=1234", false, Warn, "connection refused", "no backup receiver follows this one"},
		{"TLS receiver with a certificate nobody trusts", "tls://" + tlsAddr + "?account=1234", false, Warn,
			"TLS: the certificate is signed by an unknown authority", ""},
		{"TLS to a plain port", "tls://" + plain.Listener.Addr().String() + "?account=1234", false, Warn, "TLS: the server did not answer in TLS", ""},
		{"unusable url", "tcp://" + ln.Addr().String() + "?account=12&key=00", true, Fail, "dc09: url:", "vigil run refuses it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := checkARC(context.Background(), "arc[3]", tt.url, tt.backup, dialTimeout)
			assert.Equal(t, "arc[3]", f.Name)
			assert.Equal(t, tt.want, f.Status, f.Summary)
			assert.Contains(t, f.Summary, tt.summary)
			assert.Contains(t, f.Advice, tt.advice)
		})
	}

	// A receiver that comes back is reachable again: the check is live.
	ln2, err := net.Listen("tcp", down)
	require.NoError(t, err)
	defer ln2.Close()
	f := checkARC(context.Background(), "arc[0]", "tcp://"+down+"?account=1234", false, dialTimeout)
	assert.Equal(t, OK, f.Status, f.Summary)

	// Against the real DC-09 receiver used by the integration tests.
	rcv := &dc09.Receiver{}
	rln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rcv.Serve(ctx, rln) }()
	f = checkARC(context.Background(), "arc[0]", "tcp://"+rln.Addr().String()+"?account=1234", false, dialTimeout)
	assert.Equal(t, OK, f.Status, f.Summary)
	cancel()
	<-done
}

func TestCheckWebhook(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("k3y\n"), 0o600))
	var mu sync.Mutex
	var methods []string
	requests := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), methods...) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
	}))
	t.Cleanup(srv.Close)
	tlsSrv := tlsServer(t)
	down := testnet.ClosedAddr(t)
	tests := []struct {
		name    string
		url     string
		secret  string
		want    Status
		summary string
		advice  string
	}{
		{"any answer is reachable", srv.URL + "/hook?token=s3cr3t", secret, OK, "the webhook " + srv.URL + "/hook answered HTTP 405", ""},
		{"certificate not trusted", tlsSrv.URL + "/hook", secret, Warn, "TLS: the certificate is signed by an unknown authority", "update-ca-certificates"},
		{"nobody there", "http://" + down + "/hook", secret, Warn, "cannot reach the webhook http://" + down + "/hook: connection refused", "wait in the durable outbox"},
		{"plain http beyond loopback", "http://192.0.2.1/hook", secret, Fail, "plain http is only allowed to loopback", "vigil run refuses it"},
		{"secret file missing", srv.URL + "/hook", filepath.Join(t.TempDir(), "none"), Fail, "no such file or directory", "HMAC key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := checkWebhook(context.Background(), "webhook[1]", tt.url, tt.secret, false, dialTimeout)
			assert.Equal(t, "webhook[1]", f.Name)
			assert.Equal(t, tt.want, f.Status, f.Summary)
			assert.Contains(t, f.Summary, tt.summary)
			assert.Contains(t, f.Advice, tt.advice)
			assert.NotContains(t, f.Summary+f.Advice, "s3cr3t", "a query may hold a token: it is never shown")
			assert.NotContains(t, f.Summary+f.Advice, "k3y")
		})
	}
	assert.Equal(t, []string{http.MethodHead}, requests(), "one HEAD request, nothing posted")

	// Connecting only, as vigil run does at every start: same verdicts on
	// the transport, no request at all.
	for _, tt := range []struct {
		url     string
		want    Status
		summary string
	}{
		{srv.URL + "/hook", OK, "the webhook's server " + srv.Listener.Addr().String() + " accepts connections ("},
		{tlsSrv.URL + "/hook", Warn, "TLS: the certificate is signed by an unknown authority"},
		{"http://" + down + "/hook", Warn, "connection refused"},
	} {
		f := checkWebhook(context.Background(), "webhook[0]", tt.url, secret, true, dialTimeout)
		assert.Equal(t, tt.want, f.Status, f.Summary)
		assert.Contains(t, f.Summary, tt.summary)
	}
	assert.Len(t, requests(), 1, "connecting sent no request")
}

func TestCheckEmbeddedBroker(t *testing.T) {
	f := checkEmbeddedBroker("127.0.0.1:0", false)
	assert.Equal(t, OK, f.Status, f.Summary)
	assert.Contains(t, f.Summary, "is free")

	ln := listen(t)
	held := ln.Addr().String()
	f = checkEmbeddedBroker(held, false)
	assert.Equal(t, Fail, f.Status)
	assert.Contains(t, f.Summary, held+" is in use by another program")
	assert.Contains(t, f.Advice, "broker.listen")

	f = checkEmbeddedBroker(held, true)
	assert.Equal(t, OK, f.Status, "the running gateway holds both the state and its broker's port")

	f = checkEmbeddedBroker("192.0.2.1:1883", false)
	assert.Equal(t, Fail, f.Status, "an address that is not this machine's")
	assert.Contains(t, f.Summary, "cannot listen on 192.0.2.1:1883")
}

func TestCheckExternalBroker(t *testing.T) {
	ln := listen(t)
	tlsSrv := tlsServer(t)
	ca := caFile(t, tlsSrv)
	tlsAddr := tlsSrv.Listener.Addr().String()
	tests := []struct {
		name    string
		cfg     app.MQTTConfig
		want    Status
		summary string
	}{
		{"tcp broker up", app.MQTTConfig{URL: "tcp://" + ln.Addr().String()}, OK, "accepts connections"},
		{"tcp broker down", app.MQTTConfig{URL: "tcp://" + testnet.ClosedAddr(t)}, Warn, "connection refused"},
		{"TLS broker with its CA", app.MQTTConfig{URL: "ssl://" + tlsAddr, CAFile: ca}, OK, "accepts connections over TLS"},
		{"TLS broker without its CA", app.MQTTConfig{URL: "ssl://" + tlsAddr}, Warn, "TLS: the certificate is signed by an unknown authority"},
		{"CA file missing", app.MQTTConfig{URL: "ssl://" + tlsAddr, CAFile: filepath.Join(t.TempDir(), "none")}, Fail, "mqtt.ca_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := checkExternalBroker(context.Background(), tt.cfg, dialTimeout)
			assert.Equal(t, checkBroker, f.Name)
			assert.Equal(t, tt.want, f.Status, f.Summary)
			assert.Contains(t, f.Summary, tt.summary)
		})
	}
}

func TestCheckLocalStore(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.State = t.TempDir()
	f := checkObjectStore(context.Background(), cfg, dialTimeout)
	assert.Equal(t, OK, f.Status, f.Summary)
	assert.Contains(t, f.Summary, "will be created at the first start")
	assert.Contains(t, f.Advice, "set evidence.s3 for production evidence")

	root := filepath.Join(cfg.State, evidence.Dir, localStoreDir)
	d, err := objstore.NewDir(root)
	require.NoError(t, err)
	require.NoError(t, d.InitBucket(context.Background()))
	f = checkObjectStore(context.Background(), cfg, dialTimeout)
	assert.Equal(t, OK, f.Status, f.Summary)
	assert.Contains(t, f.Summary, "is writable")

	require.NoError(t, os.RemoveAll(filepath.Join(root, "tmp")))
	require.NoError(t, os.WriteFile(filepath.Join(root, "tmp"), nil, 0o600))
	f = checkObjectStore(context.Background(), cfg, dialTimeout)
	assert.Equal(t, Fail, f.Status, f.Summary)
	assert.Contains(t, f.Summary, "is not usable")
}

func TestCheckS3Store(t *testing.T) {
	srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	ctx := context.Background()
	locked, err := objstore.NewS3(objstore.S3Config{Endpoint: srv.Endpoint, Bucket: "locked", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: s3test.Region})
	require.NoError(t, err)
	require.NoError(t, locked.InitBucket(ctx))
	_, err = srv.AWSClient().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("unlocked")})
	require.NoError(t, err)

	tests := []struct {
		name    string
		url     string
		want    Status
		summary string
		advice  string
	}{
		{"locked bucket", srv.URL("locked"), OK, "bucket locked at " + srv.Endpoint + " exists with object locking", ""},
		{"bucket without locking", srv.URL("unlocked"), Fail, "bucket unlocked has no object locking", "vigil evidence init-bucket"},
		{"no such bucket", srv.URL("missing"), Fail, "bucket missing does not exist", "vigil evidence init-bucket"},
		{"store down", "http://" + testnet.ClosedAddr(t) + "/locked", Warn, "cannot reach the object store", "footage stays queued on the state disk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := app.DefaultConfig()
			cfg.State, cfg.Evidence.S3, cfg.Evidence.Region = t.TempDir(), tt.url, s3test.Region
			f := checkObjectStore(ctx, cfg, dialTimeout)
			assert.Equal(t, checkStore, f.Name)
			assert.Equal(t, tt.want, f.Status, f.Summary)
			assert.Contains(t, f.Summary, tt.summary)
			assert.Contains(t, f.Advice, tt.advice)
			assert.NotContains(t, f.Summary+f.Advice, srv.SecretKey)
		})
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	cfg := app.DefaultConfig()
	cfg.State, cfg.Evidence.S3 = t.TempDir(), srv.URL("locked")
	f := checkObjectStore(ctx, cfg, dialTimeout)
	assert.Equal(t, Fail, f.Status, "no credentials: vigil run would refuse to start")
}
