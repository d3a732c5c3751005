package console

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/alert"
)

// fakeAlerts is the engine as the console sees it.
type fakeAlerts struct {
	mu     sync.Mutex
	alerts []alert.View
	amber  []alert.AmberSession
}

func (f *fakeAlerts) List(int) ([]alert.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]alert.View(nil), f.alerts...), nil
}

func (f *fakeAlerts) AmberSessions() ([]alert.AmberSession, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]alert.AmberSession(nil), f.amber...), nil
}

func (f *fakeAlerts) set(v ...alert.View) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alerts = v
}

func view(id string, p int, st alert.State) alert.View {
	return alert.View{Alert: alert.Alert{ID: id, Priority: p, State: st, Event: "duress", Site: "leeds"}}
}

// event is one server-sent event.
type event struct {
	name string
	data map[string]json.RawMessage
}

// stream reads events from an open /api/events response.
type stream struct {
	t      *testing.T
	events chan event
}

func openStream(t *testing.T, url string) (*stream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	s := &stream{t: t, events: make(chan event, 100)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					s.events <- ev
				}
				ev = event{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
					t.Errorf("event data is not a JSON object: %q: %v", line, err)
				}
			}
		}
	}()
	return s, resp
}

// next returns the next event other than a ping.
func (s *stream) next(what string) event {
	s.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			require.True(s.t, ok, "stream ended waiting for %s", what)
			if ev.name != "ping" {
				return ev
			}
		case <-timeout:
			s.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func ids(t *testing.T, ev event) []string {
	t.Helper()
	var list []alert.View
	require.NoError(t, json.Unmarshal(ev.data["alerts"], &list))
	out := []string{}
	for _, a := range list {
		out = append(out, a.ID)
	}
	return out
}

func newServer(t *testing.T, cfg Config) (*httptest.Server, *Console) {
	t.Helper()
	c := New(cfg)
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, c.Assets())
	mux.HandleFunc("GET /api/events", c.Events)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, c
}

func TestEventsSnapshotOnConnectThenOnChange(t *testing.T) {
	src := &fakeAlerts{}
	src.set(view("battery.leeds.1", alert.P4, alert.Raised), view("btn-1.1", alert.P1, alert.Delivered),
		view("btn-2.1", alert.P1, alert.Resolved))
	b := NewBroadcaster()
	srv, _ := newServer(t, Config{Alerts: src, Changes: b, Outcomes: alert.Outcomes, Heartbeat: 20 * time.Millisecond})

	s, resp := openStream(t, srv.URL+"/api/events")
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	cfg := s.next("config")
	require.Equal(t, "config", cfg.name)
	assert.JSONEq(t, `["false_alarm","genuine_no_harm","genuine_police_attended","genuine_injury","test"]`, string(cfg.data["outcomes"]))
	snap := s.next("the first snapshot")
	require.Equal(t, "snapshot", snap.name)
	assert.Equal(t, []string{"btn-1.1", "battery.leeds.1"}, ids(t, snap), "open alerts only, P1 on top")
	var now time.Time
	require.NoError(t, json.Unmarshal(snap.data["now"], &now), "every event carries the server's time")
	assert.WithinDuration(t, time.Now(), now, time.Minute)
	assert.JSONEq(t, `[]`, string(snap.data["amber"]))
	waitLen(t, b, 1)

	src.set(view("btn-3.7", alert.P1, alert.Raised), view("btn-1.1", alert.P1, alert.Delivered))
	b.Notify()
	snap = s.next("the snapshot after a change")
	assert.Equal(t, "snapshot", snap.name)
	assert.Equal(t, []string{"btn-3.7", "btn-1.1"}, ids(t, snap))

	// A change this client cannot see sends nothing: only pings follow.
	b.Notify()
	deadline := time.After(400 * time.Millisecond)
	for done := false; !done; {
		select {
		case ev := <-s.events:
			require.Equal(t, "ping", ev.name, "no snapshot without a visible change")
		case <-deadline:
			done = true
		}
	}
	select {
	case ev := <-s.events:
		assert.Equal(t, "ping", ev.name, "heartbeats keep coming")
	case <-time.After(2 * time.Second):
		t.Fatal("no heartbeat")
	}
}

func TestEventsUnsubscribeOnDisconnectAndEndOnShutdown(t *testing.T) {
	b := NewBroadcaster()
	srv, _ := newServer(t, Config{Alerts: &fakeAlerts{}, Changes: b})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	waitLen(t, b, 1)
	cancel()
	resp.Body.Close()
	waitLen(t, b, 0)

	// Server shutdown ends open streams instead of waiting for them.
	s, _ := openStream(t, srv.URL+"/api/events")
	s.next("config")
	waitLen(t, b, 1)
	sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer scancel()
	require.NoError(t, srv.Config.Shutdown(sctx))
	for range s.events {
	}
}

func TestEventsDeviceBoardOnlyForRolesThatMaySeeIt(t *testing.T) {
	var may atomic.Bool
	srv, _ := newServer(t, Config{Alerts: &fakeAlerts{}, MayReadDevices: func(*http.Request) bool { return may.Load() },
		Devices: func() ([]Device, error) {
			return []Device{{ID: "btn-1", Site: "leeds", Registered: true, Online: true}}, nil
		}})
	s, _ := openStream(t, srv.URL+"/api/events")
	s.next("config")
	snap := s.next("snapshot")
	assert.JSONEq(t, `true`, string(snap.data["devices_denied"]))
	assert.Nil(t, snap.data["devices"])

	may.Store(true)
	s, _ = openStream(t, srv.URL+"/api/events")
	s.next("config")
	snap = s.next("snapshot")
	assert.Nil(t, snap.data["devices_denied"])
	assert.JSONEq(t, `[{"id":"btn-1","site":"leeds","registered":true,"online":true}]`, string(snap.data["devices"]))
}

func TestAssetsHaveStrictCSPAndNoInlineScript(t *testing.T) {
	srv, _ := newServer(t, Config{Alerts: &fakeAlerts{}})
	for path, ctype := range map[string]string{"/console/": "text/html", "/console/app.js": "text/javascript", "/console/app.css": "text/css"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, path)
		assert.Contains(t, resp.Header.Get("Content-Type"), ctype, path)
		assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'", path)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		if path == "/console/" {
			html := string(body)
			for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
				assert.Contains(t, m, `src="app.js"`, "no inline script: the CSP would block it")
			}
			assert.NotRegexp(t, `(?i)\son[a-z]+=`, html, "no inline event handlers")
			assert.NotContains(t, html, "style=", "no inline styles")
			assert.NotRegexp(t, `(?i)(src|href)="(https?:)?//`, html, "nothing from another origin")
		}
	}
}

func waitLen(t *testing.T, b *Broadcaster, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("subscribers: %d, want %d", b.Len(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
