package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
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
	// A safety net for a stuck page, not a performance bound: the CPU is
	// shared and a loaded machine is slow.
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
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
	const password = "night shift passphrase 7"
	addUser(t, state, "olive", "operator", password)
	rcv := startARC(t, nil)
	broker := testnet.ClosedAddr(t)
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
	// An operator reports incidents but does not manage them: no incident
	// list, no reports, and the quick report one click away.
	var tabs string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(
		`[...document.querySelectorAll(".tabs a")].filter((a) => !a.hidden).map((a) => a.id).join(" ")`, &tabs)))
	assert.Equal(t, "tab-alerts tab-devices tab-report", tabs)

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
		acknowledge(sel, "calling Nurse Jones back"),
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

// addUser adds a console user with the CLI, as an administrator would.
func addUser(t *testing.T, state, name, role, password string) {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte(password+"\n"), 0o600))
	out, err := exec.Command(vigilBin, "user", "add", name, "--role", role, "--password-file", pwFile, "--state", state).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// consoleLogin opens the console and logs in; it returns once the page
// shows the signed-in views.
func consoleLogin(base, user, password string) chromedp.Tasks {
	return chromedp.Tasks{
		chromedp.Navigate(base + "/console/"),
		chromedp.WaitVisible("#login-user", chromedp.ByID),
		chromedp.SendKeys("#login-user", user, chromedp.ByID),
		chromedp.SendKeys("#login-password", password, chromedp.ByID),
		chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#app-view", chromedp.ByID),
	}
}

// choose picks an option of a select the way a person does: the value
// changes and the page hears a change event.
func choose(sel, value string) chromedp.Action {
	b, _ := json.Marshal([]string{sel, value})
	return chromedp.Evaluate(`((a) => { const e = document.querySelector(a[0]); e.value = a[1];
		if (e.value !== a[1]) throw new Error(a[0] + " has no option " + a[1]);
		e.dispatchEvent(new Event("change", { bubbles: true })); })(`+string(b)+`)`, nil)
}

// waitText waits until the element sel's text contains want: an element
// can be visible while still empty.
func waitText(sel, want string) chromedp.Action {
	b, _ := json.Marshal([]string{sel, want})
	return chromedp.Poll(`((a) => { const e = document.querySelector(a[0]); return !!e && e.textContent.includes(a[1]); })(`+string(b)+`)`,
		nil, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
}

// screenshot saves the browser's page as dir/name when VIGIL_SCREENSHOT_DIR
// is set: the README's pictures come from this test, so they show what the
// console really looks like. With upTo, the picture runs from the top of the
// page to the bottom of that element (beyond the 1280x800 viewport);
// without, it is the viewport.
func screenshot(t *testing.T, ctx context.Context, name, upTo string) {
	t.Helper()
	dir := os.Getenv("VIGIL_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	var png []byte
	var bottom float64
	require.NoError(t, chromedp.Run(ctx,
		// No focus ring or scroll position from the test's last click.
		chromedp.Evaluate(`document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)`, nil),
		chromedp.ActionFunc(func(ctx context.Context) error {
			if upTo == "" {
				return chromedp.CaptureScreenshot(&png).Do(ctx)
			}
			b, _ := json.Marshal(upTo)
			if err := chromedp.Evaluate(`Math.ceil(document.querySelector(`+string(b)+`).getBoundingClientRect().bottom) + 1`, &bottom).Do(ctx); err != nil {
				return err
			}
			var err error
			png, err = page.CaptureScreenshot().WithCaptureBeyondViewport(true).
				WithClip(&page.Viewport{X: 0, Y: 0, Width: 1280, Height: bottom, Scale: 1}).Do(ctx)
			return err
		})))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
}

// TestConsoleIncidentPages is a supervisor's part of an incident in the
// browser: a duress arrives on the board live; they acknowledge and resolve
// it as genuine; the incident it became shows the alarm's timeline and its
// support plan; they classify it (the form first shows what is missing next
// to each field), see the plan's windows in local time, record welfare
// contact, find the day red in the monthly report's safety cross, and file
// quick reports, one of them confidential. An IG officer then sees incidents
// but no alert board. The immediate-response steps are configured due a
// second after resolution, so the board's header shows overdue support
// without waiting an hour.
func TestConsoleIncidentPages(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	ctx := browser(t)
	state := t.TempDir()
	addDevice(t, state, "leeds", "btn-1", "Nurse Jones")
	const password = "late shift passphrase 3"
	addUser(t, state, "sam", "supervisor", password)
	addUser(t, state, "iggy", "ig_officer", password)
	// The API's view of the incidents, as a supervisor's script sees them
	// (an admin may not read incidents).
	out, err := exec.Command(vigilBin, "token", "create", "--role", "supervisor", "--name", "e2e supervisor", "--state", state).Output()
	require.NoError(t, err)
	token := strings.TrimSpace(string(out))
	rcv := startARC(t, nil)
	broker := testnet.ClosedAddr(t)
	cfg := writeConfig(t, "incidents:\n  check_every: 200ms\n  plan:\n    immediate: [0s, 1s]\n")
	v := startVigil(t, state, "--config", cfg, "--broker-listen", broker, "--arc", rcv.url())
	base := "http://" + v.http
	getIncident := func(id string) []byte {
		code, body := callURL(t, http.DefaultClient, base, token, http.MethodGet, "/api/incidents/"+id, "")
		require.Equal(t, http.StatusOK, code, "%s", body)
		return body
	}
	london, err := time.LoadLocation("Europe/London") // governance.timezone's default: the report's days
	require.NoError(t, err)

	// The workstation is in the report's time zone, as a Trust's would be.
	require.NoError(t, chromedp.Run(ctx,
		emulation.SetTimezoneOverride("Europe/London"),
		chromedp.EmulateViewport(1280, 800),
		consoleLogin(base, "sam", password),
		chromedp.WaitVisible(`#link.live`, chromedp.ByQuery),
		chromedp.Evaluate(`window.vigilTestMark = 1`, nil),
	))

	// A duress from a pendant that knows where on site it is.
	b, err := firmwaresim.NewButton(firmwaresim.ButtonConfig{Broker: "tcp://" + broker, Site: "leeds", Device: "btn-1",
		Place: "Flat 4, 12 Elm Road", Lat: 53.80076, Lon: -1.54908, AccM: 12, Battery: 78, SeqFile: filepath.Join(t.TempDir(), "seq")})
	require.NoError(t, err)
	pctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, b.Connect(pctx))
	t.Cleanup(b.Close)
	_, err = b.Duress(pctx)
	require.NoError(t, err)

	const card = `#board li.alert.p1`
	var id, text string
	var ok bool
	require.NoError(t, chromedp.Run(ctx,
		chromedp.WaitVisible(card+` dd.ok`, chromedp.ByQuery), // raised, and the ARC's ACK shown
		chromedp.AttributeValue(card, "data-id", &id, &ok, chromedp.ByQuery),
		chromedp.Text(card, &text, chromedp.ByQuery),
	))
	require.True(t, ok)
	assert.Contains(t, text, "Nurse Jones")
	assert.Contains(t, text, "Flat 4, 12 Elm Road · 53.80076, -1.54908 (±12 m)", "the place on site, beside the coordinates")
	screenshot(t, ctx, "console-board.png", "")

	sel := `#board li[data-id="` + id + `"]`
	require.NoError(t, chromedp.Run(ctx,
		acknowledge(sel, "calling Nurse Jones back"),
		chromedp.Click(sel+` button[data-act="resolve"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#act-outcome", chromedp.ByID),
		chromedp.SetValue("#act-outcome", "genuine_injury", chromedp.ByID),
		chromedp.SendKeys("#act-note", "assaulted at the door, police called", chromedp.ByID),
		chromedp.Click("#act-submit", chromedp.ByID),
		chromedp.WaitNotPresent(sel, chromedp.ByQuery),
	))

	// From the board, the Incidents tab shows the new incident unclassified
	// and, a second later, its immediate steps overdue.
	var overdue, unclassified string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.WaitVisible("#overdue-count", chromedp.ByID),
		chromedp.Text("#overdue-count", &overdue, chromedp.ByID),
		chromedp.Text("#unclassified-count", &unclassified, chromedp.ByID),
	))
	assert.Equal(t, "4 overdue", overdue)
	assert.Equal(t, "1 unclassified", unclassified)

	// The incident list, then the incident the alarm became.
	const row = `#incidents tbody tr`
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click("#tab-incidents", chromedp.ByID),
		chromedp.WaitVisible(row, chromedp.ByQuery),
		chromedp.Text(row, &text, chromedp.ByQuery),
	))
	assert.Contains(t, text, "inc-000001")
	assert.Contains(t, text, "unclassified")
	assert.Contains(t, text, "4 overdue")
	assert.Contains(t, text, "Nurse Jones")
	assert.Contains(t, text, "leeds")

	var timeline, clips, facts string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click(row+` a`, chromedp.ByQuery),
		chromedp.WaitVisible(`#plan tr[data-task="defusing"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#incident-clips p`, chromedp.ByQuery),
		chromedp.Text("#incident-timeline", &timeline, chromedp.ByID),
		chromedp.Text("#incident-clips", &clips, chromedp.ByID),
		chromedp.Text("#incident-facts", &facts, chromedp.ByID),
	))
	for _, want := range []string{"Alert raised", "Receiver ACK via arc0", "Acknowledged — by sam",
		"Note: calling Nurse Jones back — by sam", "Resolved: Genuine: injury — by sam", "Incident recorded from an alarm"} {
		assert.Contains(t, timeline, want)
	}
	assert.Equal(t, "Footage: ask an investigator.", clips, "a supervisor may not search clips")
	assert.Contains(t, facts, "Flat 4, 12 Elm Road")

	// Saving an empty classification shows what is missing beside each field.
	var typeErr, injuryErr string
	var invalid bool
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click("#classify-submit", chromedp.ByID),
		chromedp.WaitVisible("#cls-injury-error", chromedp.ByID),
		chromedp.Text("#cls-type-error", &typeErr, chromedp.ByID),
		chromedp.Text("#cls-injury-error", &injuryErr, chromedp.ByID),
		chromedp.Evaluate(`["cls-type", "cls-cause", "cls-setting", "cls-injury"].every((id) => document.getElementById(id).getAttribute("aria-invalid") === "true")`, &invalid),
	))
	assert.Equal(t, "Choose one from the list.", typeErr)
	assert.Equal(t, "Choose one from the list.", injuryErr)
	assert.True(t, invalid)

	var summary string
	require.NoError(t, chromedp.Run(ctx,
		choose("#cls-type", "physical_assault"),
		choose("#cls-cause", "behavioural"),
		choose("#cls-setting", "patients_home"),
		choose("#cls-injury", "minor"),
		chromedp.SendKeys("#cls-staff", "Community nursing", chromedp.ByID),
		chromedp.Click("#cls-police", chromedp.ByID),
		chromedp.SendKeys("#cls-crime", "WY-2026-0417", chromedp.ByID),
		chromedp.Click("#classify-submit", chromedp.ByID),
		waitText("#classify-done", "Saved."),
		chromedp.Text("#classification-summary", &summary, chromedp.ByID),
		chromedp.Text("#incident-timeline", &timeline, chromedp.ByID),
	))
	assert.Contains(t, summary, "Physical assault; cause behavioural; patient's home; injury minor; Community nursing; police involved (WY-2026-0417). Classified by sam")
	assert.Contains(t, timeline, "Classified as Physical assault — by sam")

	// The plan's windows, in the workstation's local time, counted from the
	// alarm's resolution: defusing opens on day 3 and is due on day 10.
	body := getIncident("inc-000001")
	var inc struct {
		OccurredAt time.Time `json:"occurred_at"`
		Resolved   time.Time `json:"resolved"`
		Plan       []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			DoneBy string `json:"done_by"`
			Note   string `json:"note"`
		} `json:"plan"`
	}
	require.NoError(t, json.Unmarshal(body, &inc))
	require.False(t, inc.Resolved.IsZero())
	local := func(d time.Duration) string { return inc.Resolved.Add(d).In(london).Format("Mon 2 Jan 2006, 15:04") }
	var defusing, madeSafe string
	var overdueRow bool
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Text(`#plan tr[data-task="defusing"] td.window`, &defusing, chromedp.ByQuery),
		chromedp.Text(`#plan tr[data-task="made_safe"]`, &madeSafe, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#plan tr[data-task="made_safe"]').classList.contains("overdue")`, &overdueRow),
	))
	assert.Contains(t, defusing, "opens "+local(72*time.Hour)+" (in 3 days)")
	assert.Contains(t, defusing, "due "+local(240*time.Hour)+" (in 10 days)")
	assert.Contains(t, madeSafe, "OVERDUE by")
	assert.True(t, overdueRow)

	// Welfare contact made, with a note.
	const welfare = `#plan tr[data-task="welfare_contact"]`
	require.NoError(t, chromedp.Run(ctx,
		chromedp.SendKeys("#note-welfare_contact", "phoned her at home, GP appointment booked", chromedp.ByID),
		chromedp.Click(welfare+` button[data-status="done"]`, chromedp.ByQuery),
		chromedp.WaitVisible(welfare+`.closed`, chromedp.ByQuery),
		chromedp.Text(welfare, &text, chromedp.ByQuery),
	))
	assert.Contains(t, text, "done")
	assert.Contains(t, text, "sam, ")
	assert.Contains(t, text, "phoned her at home, GP appointment booked")
	screenshot(t, ctx, "console-incident.png", `#plan tr[data-task="defusing"]`)
	require.NoError(t, json.Unmarshal(getIncident("inc-000001"), &inc))
	for _, task := range inc.Plan {
		if task.ID == "welfare_contact" {
			assert.Equal(t, "done", task.Status)
			assert.Equal(t, "sam", task.DoneBy)
			assert.Equal(t, "phoned her at home, GP appointment booked", task.Note)
		}
	}

	// The monthly report, this month by default, shows the day red.
	var month, csv, box string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click("#tab-reports", chromedp.ByID),
		chromedp.WaitVisible("#rep-month", chromedp.ByID),
		chromedp.Value("#rep-month", &month, chromedp.ByID),
	))
	now := time.Now().In(london)
	assert.Equal(t, now.Format("2006-01"), month)
	day := inc.OccurredAt.In(london)
	if m := day.Format("2006-01"); m != month { // the test ran across midnight at a month's end
		require.NoError(t, chromedp.Run(ctx, chromedp.SetValue("#rep-month", m, chromedp.ByID)))
	}
	require.NoError(t, chromedp.Run(ctx,
		choose("#rep-month-site", "leeds"),
		chromedp.Click("#reports-show", chromedp.ByID),
		chromedp.AttributeValue("#reports-csv", "href", &csv, &ok, chromedp.ByID),
		// Only a fully parsed report: a box can be in the DOM before its title.
		chromedp.Poll(`(() => {
			const d = document.getElementById("report-frame").contentDocument;
			if (!d || d.readyState !== "complete" || !d.URL.includes("/api/reports/monthly")) return false;
			const g = [...d.querySelectorAll("svg g.day")].find((g) => g.querySelector("title").textContent.startsWith(`+
			strconv.Quote(day.Format("Mon 2 January 2006")+":")+`));
			return g ? g.getAttribute("class") + "|" + g.querySelector("rect").getAttribute("fill") + "|" + g.querySelector("title").textContent : false;
		})()`, &box, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)),
	))
	assert.Contains(t, csv, "format=csv")
	assert.Contains(t, csv, "site=leeds")
	parts := strings.SplitN(box, "|", 3)
	require.Len(t, parts, 3, box)
	assert.Equal(t, "day mark-red", parts[0])
	assert.Equal(t, "#b3261e", parts[1])
	assert.Contains(t, parts[2], "red (physical incident), 1 incident, 1 physical")

	// A quick report, one click from the board. The confidential box is
	// offered only for the types that may be confidential.
	var conf1, conf2 bool
	var done string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click("#tab-alerts", chromedp.ByID),
		chromedp.WaitVisible("#board", chromedp.ByID),
		chromedp.Click("#tab-report", chromedp.ByID),
		chromedp.WaitVisible("#rep-type", chromedp.ByID),
		choose("#rep-type", "sexual_harassment"),
		chromedp.Evaluate(`!document.getElementById("rep-confidential").disabled`, &conf1),
		choose("#rep-type", "verbal_abuse"),
		chromedp.Evaluate(`!document.getElementById("rep-confidential").disabled`, &conf2),
		choose("#rep-site", "leeds"),
		chromedp.SendKeys("#rep-wearer", "Nurse Jones", chromedp.ByID),
		chromedp.SendKeys("#rep-place", "Reception, Elm Road clinic", chromedp.ByID),
		chromedp.SendKeys("#rep-text", "Shouted at by a visitor while booking in", chromedp.ByID),
		chromedp.Click("#report-submit", chromedp.ByID),
		chromedp.WaitVisible("#report-done", chromedp.ByID),
		chromedp.Text("#report-done", &done, chromedp.ByID),
	))
	assert.True(t, conf1)
	assert.False(t, conf2)
	assert.Contains(t, done, "Reported: inc-000002, verbal abuse at leeds")
	body = getIncident("inc-000002")
	var filed struct {
		Source, Site, Wearer, Place, Reporter, Text string
		ReportedType                                string    `json:"reported_type"`
		OccurredAt                                  time.Time `json:"occurred_at"`
	}
	require.NoError(t, json.Unmarshal(body, &filed))
	assert.Equal(t, "form", filed.Source)
	assert.Equal(t, "leeds", filed.Site)
	assert.Equal(t, "Nurse Jones", filed.Wearer)
	assert.Equal(t, "Reception, Elm Road clinic", filed.Place)
	assert.Equal(t, "sam", filed.Reporter)
	assert.Equal(t, "verbal_abuse", filed.ReportedType)
	assert.WithinDuration(t, time.Now(), filed.OccurredAt, 2*time.Minute, "when: the form's default, now")

	// A confidential report: the form sends it with a fresh key (a new
	// incident), the supervisor sees no name, and may lift it.
	var pressed string
	require.NoError(t, chromedp.Run(ctx,
		choose("#rep-type", "sexual_harassment"),
		choose("#rep-site", "leeds"),
		chromedp.SendKeys("#rep-wearer", "Nurse Jones", chromedp.ByID),
		chromedp.Click("#rep-confidential", chromedp.ByID),
		chromedp.Click("#report-submit", chromedp.ByID),
		waitText("#report-done", "inc-000003"),
		chromedp.Click("#report-done a", chromedp.ByQuery),
		chromedp.WaitVisible("#confidential-toggle", chromedp.ByID),
		chromedp.Text("#incident-facts", &facts, chromedp.ByID),
		chromedp.AttributeValue("#confidential-toggle", "aria-pressed", &pressed, &ok, chromedp.ByID),
	))
	assert.Contains(t, facts, "Member of staff\n(confidential)")
	assert.NotContains(t, facts, "Nurse Jones")
	assert.Equal(t, "true", pressed)
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click("#confidential-toggle", chromedp.ByID),
		chromedp.WaitVisible(`#confidential-toggle[aria-pressed="false"]`, chromedp.ByQuery),
		chromedp.Text("#incident-facts", &facts, chromedp.ByID),
	))
	assert.Contains(t, facts, "Nurse Jones")

	var mark int
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.vigilTestMark`, &mark)))
	assert.Equal(t, 1, mark, "the page never reloaded")

	// An IG officer works on incidents but does not watch alarms: no alert
	// board and no event stream; clip metadata is theirs to search.
	var tabs, clipsIG string
	var live bool
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click("#logout", chromedp.ByID),
		chromedp.WaitVisible("#login-user", chromedp.ByID),
		chromedp.Evaluate(`document.getElementById("login-user").value = ""`, nil),
		chromedp.SendKeys("#login-user", "iggy", chromedp.ByID),
		chromedp.SendKeys("#login-password", password, chromedp.ByID),
		chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#app-view", chromedp.ByID),
		chromedp.Evaluate(`[...document.querySelectorAll(".tabs a")].filter((a) => !a.hidden).map((a) => a.id).join(" ")`, &tabs),
		chromedp.Evaluate(`location.hash = "#incident/inc-000001"`, nil),
		chromedp.WaitVisible(`#incident-clips p`, chromedp.ByQuery),
		chromedp.Text("#incident-clips", &clipsIG, chromedp.ByID),
		chromedp.Evaluate(`!document.getElementById("link").hidden`, &live),
	))
	assert.Equal(t, "tab-incidents tab-reports tab-report", tabs)
	assert.Equal(t, "No clips are linked to this alarm.", clipsIG, "asked, and none were found")
	assert.False(t, live, "no event stream for a role that may not read alerts")
}

// acknowledge clicks Acknowledge on the board's card sel, writes note in
// the dialog, submits it, and waits until the dialog and the button are gone.
func acknowledge(sel, note string) chromedp.Tasks {
	return chromedp.Tasks{
		chromedp.Click(sel+` button[data-act="ack"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#act-note", chromedp.ByID),
		chromedp.SendKeys("#act-note", note, chromedp.ByID),
		chromedp.Click("#act-submit", chromedp.ByID),
		chromedp.WaitNotVisible("#act", chromedp.ByID),
		chromedp.WaitNotVisible(sel+` button[data-act="ack"]`, chromedp.ByQuery),
	}
}
