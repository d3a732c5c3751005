package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/forward/webhook"
	"github.com/vigil-gw/vigil/gateway/internal/syncbuf"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

var vigilBin string // built once in TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vigil-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vigilBin = filepath.Join(dir, "vigil")
	out, err := exec.Command("go", "build", "-race", "-o", vigilBin, "github.com/vigil-gw/vigil/cmd/vigil").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build vigil: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mosquittoPath finds the broker binary installed by deploy/testenv/install.sh.
func mosquittoPath(t testing.TB) string {
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("mosquitto is not installed: run deploy/testenv/install.sh (make test does)")
	return ""
}

// startMosquitto runs a private Mosquitto on a free loopback port and returns
// its tcp:// URL. It stops when the test ends. listenerConf lines are added to
// the listener's section (TLS settings, for example).
func startMosquitto(t testing.TB, listenerConf ...string) string {
	t.Helper()
	addr := testnet.ClosedAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	// max_queued_messages must hold every event published while the gateway
	// is down; max_inflight_messages lets group commit batch acknowledgements.
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`listener %s 127.0.0.1
%s
allow_anonymous true
# Started as root, Mosquitto would switch to the mosquitto user and could not
# read the test's private temp files; as any other user this has no effect.
user root
persistence false
max_inflight_messages 1000
max_queued_messages 200000
# Nagle off, as deploy/mosquitto recommends: the gateway acknowledges only
# after its commit, and Nagle would hold the next alarm for a delayed ACK.
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
`, port, strings.Join(listenerConf, "\n"))), 0o600))
	runMosquitto(t, conf, addr)
	return "tcp://" + addr
}

// runMosquitto starts Mosquitto with the config file conf, stops it when the
// test ends, and waits until it listens on addr.
func runMosquitto(t testing.TB, conf, addr string) {
	t.Helper()
	cmd := exec.Command(mosquittoPath(t), "-c", conf)
	cmd.Stderr = &prefixWriter{t: t, prefix: "mosquitto: "}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	waitFor(t, 5*time.Second, "mosquitto to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

type prefixWriter struct {
	t      testing.TB
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + line)
	}
	return len(p), nil
}

// arc is a real DC-09 receiver on a loopback port.
type arc struct {
	*dc09.Receiver
	addr string
}

const arcAccount = "1234"

func startARC(t testing.TB, mode func(dc09.Frame) dc09.Response) *arc {
	t.Helper()
	return startARCWithKey(t, mode, nil)
}

// startARCWithKey starts a receiver that decrypts with key (AES, nil for clear).
func startARCWithKey(t testing.TB, mode func(dc09.Frame) dc09.Response, key []byte) *arc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &dc09.Receiver{Mode: mode, Key: key}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &arc{Receiver: r, addr: ln.Addr().String()}
}

func (a *arc) url() string {
	return "tcp://" + a.addr + "?account=" + arcAccount + "&receiver=1&prefix=1&format=adm-cid"
}

// alarms returns the accepted alarm frames (not link tests) by zone.
func (a *arc) alarms() map[string]int {
	out := map[string]int{}
	for _, f := range a.Frames() {
		if f.Frame.ID == "NULL" {
			continue
		}
		// ADM-CID data: #acct|QEEE GG ZZZ; the zone identifies the device.
		if i := strings.LastIndexByte(f.Frame.Data, ' '); i >= 0 {
			out[f.Frame.Data[i+1:]]++
		}
	}
	return out
}

// lastAlarm returns the last accepted alarm frame (not a link test), or nil.
func (a *arc) lastAlarm() *dc09.Received {
	var last *dc09.Received
	for _, f := range a.Frames() {
		if f.Frame.ID != dc09.IDNull {
			last = &f
		}
	}
	return last
}

// hooks is a webhook receiver that checks every signature.
type hooks struct {
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	keys   map[string]int
	bad    int
}

func startHooks(t testing.TB, secret []byte) *hooks {
	h := &hooks{secret: secret, keys: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if !webhook.Verify(h.secret, body, r.Header.Get(webhook.SignatureHeader)) {
			h.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ce struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		}
		if json.Unmarshal(body, &ce) != nil || ce.ID != r.Header.Get(webhook.IdempotencyHeader) {
			h.bad++
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		h.keys[ce.ID]++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hooks) snapshot() (map[string]int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.keys))
	for k, v := range h.keys {
		out[k] = v
	}
	return out, h.bad
}

// proc is a vigil process started from the built binary.
type proc struct {
	cmd    *exec.Cmd
	http   string
	logs   *syncbuf.Buffer
	token  string       // an admin API token for this gateway's state
	scheme string       // "http", or "https" when the API has a certificate
	client *http.Client // trusts the API's certificate
}

// startVigil runs `vigil run` with args and waits until it is ready.
func startVigil(t testing.TB, state string, args ...string) *proc {
	t.Helper()
	return startVigilBin(t, vigilBin, state, args...)
}

// startVigilBin is startVigil with another build (the benchmarks use one
// without -race).
func startVigilBin(t testing.TB, bin, state string, args ...string) *proc {
	t.Helper()
	return launchVigil(t, bin, state, "http", http.DefaultClient, args...)
}

// launchVigil starts the binary and waits for /readyz over scheme with client.
func launchVigil(t testing.TB, bin, state, scheme string, client *http.Client, args ...string) *proc {
	t.Helper()
	httpAddr := testnet.ClosedAddr(t)
	p := &proc{http: httpAddr, logs: &syncbuf.Buffer{}, token: adminToken(t, bin, state), scheme: scheme, client: client}
	p.cmd = exec.Command(bin, append([]string{"run", "--state", state, "--http", httpAddr, "--gateway-id", "vigil-e2e", "--log-level", "warn"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("vigil log:\n%s", p.logs.String())
		}
	})
	waitFor(t, 20*time.Second, "vigil to be ready", func() bool {
		resp, err := client.Get(scheme + "://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// adminToken creates an admin API token in state with the CLI.
func adminToken(t testing.TB, bin, state string) string {
	t.Helper()
	out, err := exec.Command(bin, "token", "create", "--role", "admin", "--name", "e2e admin", "--state", state).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// api calls the gateway's API with the admin token and returns the status
// code and body.
func (p *proc) api(t testing.TB, method, path, body string) (int, []byte) {
	t.Helper()
	return callURL(t, p.client, p.scheme+"://"+p.http, p.token, method, path, body)
}

func callURL(t testing.TB, client *http.Client, base, token, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// kill9 stops the process without letting it flush anything.
func (p *proc) kill9(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.cmd.Wait()
}

// stop asks the process to shut down cleanly.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait())
}

// alerts fetches /api/alerts.
func (p *proc) alerts(t testing.TB) apiAlerts {
	t.Helper()
	code, body := p.api(t, http.MethodGet, "/api/alerts?limit=10000", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var out apiAlerts
	require.NoError(t, json.Unmarshal(body, &out))
	return out
}

type apiAlerts struct {
	Alerts []struct {
		ID       string `json:"id"`
		Key      string `json:"key"`
		Event    string `json:"event"`
		Device   string `json:"device"`
		State    string `json:"state"`
		Verified bool   `json:"verified"`
		Wearer   string `json:"wearer"`
		Feedback bool   `json:"feedback_queued"`
	} `json:"alerts"`
	Open        int `json:"open"`
	Undelivered int `json:"undelivered"`
}

// addDevice registers one button with the CLI, as an administrator would.
func addDevice(t testing.TB, state, site, id, wearer string) {
	t.Helper()
	out, err := exec.Command(vigilBin, "device", "add", id, "--kind", "button", "--site", site,
		"--wearer", wearer, "--state", state).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// addDevices registers n buttons btn-0001… at site, in-process (the CLI
// would take a process start per device).
func addDevices(t testing.TB, state, site string, n int) {
	t.Helper()
	reg := app.OpenRegistry(state)
	for i := 1; i <= n; i++ {
		_, err := reg.Add(registry.Device{ID: deviceID(i), Kind: registry.KindButton, Site: site, Wearer: fmt.Sprintf("Wearer %d", i)}, time.Now())
		require.NoError(t, err)
	}
}

func deviceID(i int) string { return fmt.Sprintf("btn-%04d", i) }

// lines reads r line by line into ch until EOF.
func lines(r io.Reader, ch chan<- string) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		ch <- s.Text()
	}
	close(ch)
}
