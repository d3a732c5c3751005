package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromiumPath finds the browser deploy/testenv/install.sh installs: the
// environment variable VIGIL_CHROMIUM, else chromium on PATH. Missing, the
// test is skipped under -short and fails otherwise, like the MinIO tests.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VIGIL_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("VIGIL_CHROMIUM=%s is not an executable: %v", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if testing.Short() {
		t.Skip("chromium not installed (run deploy/testenv/install.sh)")
	}
	t.Fatal("chromium not found (VIGIL_CHROMIUM, PATH): run deploy/testenv/install.sh (make test does)")
	return ""
}

// browser starts a headless Chromium for the test and returns its context.
// Uncaught script errors and security errors (a CSP violation) fail the
// test: the console must run under its own policy.
func browser(t *testing.T) context.Context {
	t.Helper()
	// Chromium's helper processes can still be writing the profile for a
	// moment after the browser is stopped, which would fail t.TempDir's
	// cleanup: remove it ourselves, retrying until they are gone.
	profile, err := os.MkdirTemp("", "vigil-console-chromium")
	require.NoError(t, err)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.UserDataDir(profile),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 45*time.Second)
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "script error: "+ev.ExceptionDetails.Error())
		case *log.EventEntryAdded:
			if ev.Entry.Source == log.SourceSecurity || ev.Entry.Source == log.SourceJavascript {
				problems = append(problems, string(ev.Entry.Source)+": "+ev.Entry.Text)
			}
		}
	})
	require.NoError(t, chromedp.Run(ctx, log.Enable(), runtime.Enable()))
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		for deadline := time.Now().Add(10 * time.Second); os.RemoveAll(profile) != nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("browser: %s", p)
		}
	})
	return ctx
}

// TestConsoleLiveBoard is an operator's shift in the browser: log in, see a
// duress appear on the board without reloading, acknowledge it with a
// note, resolve it as genuine, and the API records both under their name.
func TestConsoleLiveBoard(t *testing.T) {
	ctx := browser(t)
	state := t.TempDir()
	addDevice(t, state, "leeds", "btn-1", "Nurse Jones")
	pwFile := filepath.Join(t.TempDir(), "pw")
	const password = "night shift passphrase 7"
	require.NoError(t, os.WriteFile(pwFile, []byte(password+"\n"), 0o600))
	out, err := exec.Command(vigilBin, "user", "add", "olive", "--role", "operator", "--password-file", pwFile, "--state", state).CombinedOutput()
	require.NoError(t, err, "%s", out)
	rcv := startARC(t, nil)
	broker := freeAddr(t)
	v := startVigil(t, state, "--broker-listen", broker, "--arc", rcv.url())
	base := "http://" + v.http

	// / leads to the console; log in as the operator.
	var role, url string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#login-user", chromedp.ByID),
		chromedp.Location(&url),
		chromedp.SendKeys("#login-user", "olive", chromedp.ByID),
		chromedp.SendKeys("#login-password", password, chromedp.ByID),
		chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#board", chromedp.ByID),
		chromedp.Text("#who-role", &role, chromedp.ByID),
		chromedp.WaitVisible(`#link.live`, chromedp.ByQuery),
		// A mark that a reload would wipe.
		chromedp.Evaluate(`window.vigilTestMark = 1`, nil),
	))
	assert.Equal(t, base+"/console/", url)
	assert.Equal(t, "operator", role)

	// The duress arrives over the event stream.
	pressDuress(t, "tcp://"+broker, "leeds", "btn-1")
	const card = `#board li.alert.p1`
	var id, text, announced string
	var ok bool
	require.NoError(t, chromedp.Run(ctx,
		chromedp.WaitVisible(card, chromedp.ByQuery),
		chromedp.AttributeValue(card, "data-id", &id, &ok, chromedp.ByQuery),
		chromedp.Text(card, &text, chromedp.ByQuery),
		chromedp.Text("#announce", &announced, chromedp.ByID),
	))
	require.True(t, ok)
	assert.Contains(t, text, "DURESS")
	assert.Contains(t, text, "Nurse Jones")
	assert.Contains(t, text, "leeds")
	assert.Contains(t, announced, "New DURESS alert: Nurse Jones at leeds")
	sel := `#board li[data-id="` + id + `"]`
	// The ARC's ACK shows on the card as it happens.
	require.NoError(t, chromedp.Run(ctx, chromedp.WaitVisible(sel+` dd.ok`, chromedp.ByQuery), chromedp.Text(sel+` dd.ok`, &text, chromedp.ByQuery)))
	assert.Contains(t, text, "ACKed by arc0")

	// Acknowledge with a note.
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click(sel+` button[data-act="ack"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#act-note", chromedp.ByID),
		chromedp.SendKeys("#act-note", "calling Nurse Jones back", chromedp.ByID),
		chromedp.Click("#act-submit", chromedp.ByID),
		chromedp.WaitNotVisible("#act", chromedp.ByID),
		chromedp.WaitNotVisible(sel+` button[data-act="ack"]`, chromedp.ByQuery),
		chromedp.Text(sel, &text, chromedp.ByQuery),
	))
	assert.Contains(t, text, "acknowledged by olive")

	// Resolve as genuine; the card leaves the board.
	var mark int
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click(sel+` button[data-act="resolve"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#act-outcome", chromedp.ByID),
		chromedp.SetValue("#act-outcome", "genuine_no_harm", chromedp.ByID),
		chromedp.SendKeys("#act-note", "police attended, no injury", chromedp.ByID),
		chromedp.Click("#act-submit", chromedp.ByID),
		chromedp.WaitNotPresent(sel, chromedp.ByQuery),
		chromedp.Evaluate(`window.vigilTestMark`, &mark),
	))
	assert.Equal(t, 1, mark, "the page never reloaded")

	code, body := v.api(t, http.MethodGet, "/api/alerts/"+id, "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var got struct {
		State          string `json:"state"`
		Outcome        string `json:"outcome"`
		AcknowledgedBy string `json:"acknowledged_by"`
		ResolvedBy     string `json:"resolved_by"`
		Notes          []struct {
			By   string `json:"by"`
			Text string `json:"text"`
		} `json:"notes"`
	}
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, "resolved", got.State)
	assert.Equal(t, "genuine_no_harm", got.Outcome)
	assert.Equal(t, "olive", got.AcknowledgedBy)
	assert.Equal(t, "olive", got.ResolvedBy)
	var texts []string
	for _, n := range got.Notes {
		assert.Equal(t, "olive", n.By)
		texts = append(texts, n.Text)
	}
	assert.Equal(t, "calling Nurse Jones back|police attended, no injury", strings.Join(texts, "|"))

	// An operator's device board says who may see it instead of failing.
	var denied bool
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Navigate(base+"/console/#devices"),
		chromedp.WaitVisible("#devices-denied", chromedp.ByID),
		chromedp.Evaluate(`!document.getElementById("devices-denied").hidden`, &denied),
	))
	assert.True(t, denied)

	// The open event stream does not hold up a clean shutdown.
	start := time.Now()
	v.stop(t)
	assert.Less(t, time.Since(start), 4*time.Second)
}
