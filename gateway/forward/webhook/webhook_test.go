package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/forward"
)

var secret = []byte("s3cret-hmac-key")

func testMsg() forward.Message {
	return forward.Message{Key: "btn-1:42", AlertID: "btn-1.42", Kind: forward.KindAlarm, Event: "duress", Priority: 1,
		Device: "btn-1", Seq: 42, Site: "leeds", Wearer: "Nurse A", Verified: true,
		Time: time.Date(2026, 11, 21, 10, 15, 30, 0, time.UTC), RaisedAt: time.Date(2026, 11, 21, 10, 15, 30, 5e6, time.UTC),
		Location: &forward.Location{Lat: 53.8008, Lon: -1.5491, AccM: 8}}
}

func TestDeliversSignedCloudEvent(t *testing.T) {
	var got struct {
		body []byte
		hdr  http.Header
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.body, _ = io.ReadAll(r.Body)
		got.hdr = r.Header.Clone()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	s, err := New(Config{URL: srv.URL, Secret: secret, Source: "urn:vigil:gateway:test"})
	require.NoError(t, err)
	require.NoError(t, s.Send(context.Background(), testMsg()))

	assert.Equal(t, ContentType, got.hdr.Get("Content-Type"))
	assert.Equal(t, "btn-1:42", got.hdr.Get(IdempotencyHeader))
	assert.True(t, Verify(secret, got.body, got.hdr.Get(SignatureHeader)), "signature verifies over the exact body")
	assert.False(t, Verify([]byte("other"), got.body, got.hdr.Get(SignatureHeader)))

	var ce map[string]any
	require.NoError(t, json.Unmarshal(got.body, &ce))
	assert.Equal(t, "1.0", ce["specversion"])
	assert.Equal(t, "btn-1:42", ce["id"])
	assert.Equal(t, "urn:vigil:gateway:test", ce["source"])
	assert.Equal(t, "org.vigil.alert.alarm", ce["type"])
	assert.Equal(t, "btn-1.42", ce["subject"])
	assert.Equal(t, "application/json", ce["datacontenttype"])
	data := ce["data"].(map[string]any)
	assert.Equal(t, "Nurse A", data["wearer"])
	assert.Equal(t, "duress", data["event"])
}

func TestClassifiesFailures(t *testing.T) {
	for _, tc := range []struct {
		status     int
		retryAfter string
		permanent  bool
		delay      time.Duration
	}{
		{500, "", false, 0},
		{503, "7", false, 7 * time.Second},
		{429, "", false, 0},
		{408, "", false, 0},
		{400, "", true, 0},
		{401, "", true, 0},
		{404, "", true, 0},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				http.Error(w, "nope", tc.status)
			}))
			defer srv.Close()
			s, err := New(Config{URL: srv.URL, Secret: secret})
			require.NoError(t, err)
			err = s.Send(context.Background(), testMsg())
			require.Error(t, err)
			assert.Equal(t, tc.permanent, forward.IsPermanent(err), err.Error())
			d, ok := forward.RetryDelay(err)
			assert.Equal(t, tc.delay != 0, ok)
			assert.Equal(t, tc.delay, d)
			assert.Contains(t, err.Error(), "btn-1:42")
		})
	}
}

func TestTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	s, err := New(Config{URL: srv.URL, Secret: secret, Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	err = s.Send(context.Background(), testMsg())
	require.Error(t, err)
	assert.False(t, forward.IsPermanent(err))
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	s, err := New(Config{URL: url, Secret: secret})
	require.NoError(t, err)
	err = s.Send(context.Background(), testMsg())
	require.Error(t, err)
	assert.False(t, forward.IsPermanent(err))
}

func TestConfigChecks(t *testing.T) {
	_, err := New(Config{URL: "http://incident.example.org/hook", Secret: secret})
	require.ErrorContains(t, err, "plain http is only allowed to loopback")
	_, err = New(Config{URL: "ftp://127.0.0.1/x", Secret: secret})
	require.ErrorContains(t, err, "scheme must be https")
	_, err = New(Config{URL: "https://incident.example.org/hook"})
	require.ErrorContains(t, err, "HMAC secret is required")
	_, err = New(Config{URL: "https://incident.example.org/hook", Secret: secret})
	require.NoError(t, err)
	_, err = New(Config{URL: "http://[::1]:9/x", Secret: secret})
	require.NoError(t, err)
}
