// Package doctor checks that a gateway's host and configuration can do the
// job before anyone relies on it: that the state directory is usable and
// fast enough to make alarms durable, that there is room for footage, that
// the clock is right, that the broker, the ARC receivers, the webhooks and
// the object store can be reached, and that no certificate has expired.
//
// `vigil doctor` prints the report for a technician (or as JSON for
// monitoring); `vigil run` runs the local checks before it opens the state
// directory and refuses to start when a finding means alarms could be lost.
// Each check is a small function returning one Finding; judgements are pure
// functions so their thresholds are tested without a slow disk.
package doctor

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/sysclock"
)

// Status is a finding's verdict.
type Status string

// Verdicts. A warning is something that degrades the service but loses
// nothing (an unreachable receiver: alarms wait in the durable outbox); a
// failure is something that must be fixed.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Finding is the result of one check.
type Finding struct {
	// Name is the check: state_dir, fsync_latency, disk_space, clock_sync,
	// broker, arc[N], webhook[N], object_store or certificates.
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Summary is one line a technician can read.
	Summary string `json:"summary"`
	// Advice says what to do; it may be empty.
	Advice string `json:"advice"`
	// Details are the measurements behind the verdict, for monitoring.
	Details map[string]any `json:"details"`
}

// RefusesStart reports whether vigil run must not start with this finding:
// a state directory it cannot write or that another gateway holds, or a
// disk that cannot fsync, would lose alarms it had acknowledged.
func (f Finding) RefusesStart() bool {
	return f.Status == Fail && (f.Name == checkStateDir || f.Name == checkFsync)
}

// Report is every finding of one run, in a fixed order.
type Report struct {
	// OK is true when no check failed (warnings allowed).
	OK     bool      `json:"ok"`
	Checks []Finding `json:"checks"`
}

// Check names.
const (
	checkStateDir = "state_dir"
	checkFsync    = "fsync_latency"
	checkDisk     = "disk_space"
	checkClock    = "clock_sync"
	checkBroker   = "broker"
	checkStore    = "object_store"
	checkCerts    = "certificates"
)

func arcName(i int) string     { return fmt.Sprintf("arc[%d]", i) }
func webhookName(i int) string { return fmt.Sprintf("webhook[%d]", i) }

// Kind selects checks: Local ones look only at this machine; Network ones
// connect to other machines and may wait for timeouts.
type Kind int

// Kinds of check.
const (
	Local Kind = 1 << iota
	Network
	All = Local | Network
)

// clockReader is the kernel clock's state (sysclock.Kernel in production).
type clockReader interface {
	Read() sysclock.Status
}

// Options tune a run. Zero values take the defaults.
type Options struct {
	// Checks selects the kinds of check to run (All).
	Checks Kind
	// Create makes a missing state directory, as vigil run does. Without
	// it a missing directory is reported (not created) and its nearest
	// existing parent is measured instead.
	Create bool
	// Timeout bounds the whole run (10 s). A check still running then is
	// reported as a warning that it did not finish.
	Timeout time.Duration
	// DialTimeout bounds each connection attempt (3 s).
	DialTimeout time.Duration
	// LockWait is how long to wait for the state database's lock (500 ms).
	LockWait time.Duration
	// FsyncSamples and FsyncBudget bound the fsync measurement: at most
	// this many writes (50), stopping early when the budget (2 s) is spent.
	FsyncSamples int
	FsyncBudget  time.Duration
	// ConnectOnly makes the webhook checks connect (TCP, and TLS for
	// https) without sending a request: vigil run checks at every start,
	// and a request each time would show in the receivers' logs.
	ConnectOnly bool
	// Clock reads the kernel clock (sysclock.Kernel).
	Clock clockReader
	// Now is the time certificates are judged against (time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Checks == 0 {
		o.Checks = All
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Timeout, 10*time.Second)
	def(&o.DialTimeout, 3*time.Second)
	def(&o.LockWait, 500*time.Millisecond)
	def(&o.FsyncBudget, 2*time.Second)
	if o.FsyncSamples <= 0 {
		o.FsyncSamples = 50
	}
	if o.Clock == nil {
		o.Clock = sysclock.Kernel{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// check is one named check to run concurrently with the others.
type check struct {
	name string
	run  func(ctx context.Context) Finding
}

// Run checks cfg and this machine and returns every finding. The state
// directory is checked first, on its own, because the disk checks measure
// the directory it finds and the broker check needs to know whether a
// gateway is running; the rest run concurrently under opts.Timeout.
func Run(ctx context.Context, cfg app.Config, opts Options) Report {
	opts.defaults()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	var first []Finding
	var checks []check
	var st stateInfo
	if opts.Checks&Local != 0 {
		var f Finding
		f, st = checkState(cfg.State, opts)
		first = append(first, f)
		if st.dir != "" {
			checks = append(checks,
				check{checkFsync, func(context.Context) Finding { return checkFsyncLatency(st.dir, opts.FsyncSamples, opts.FsyncBudget) }},
				check{checkDisk, func(context.Context) Finding { return checkDiskSpace(st.dir, cfg.Evidence.HighWater) }})
		}
		checks = append(checks, check{checkClock, func(context.Context) Finding { return checkClockSync(opts.Clock) }})
		if cfg.MQTT.URL == "" {
			checks = append(checks, check{checkBroker, func(context.Context) Finding { return checkEmbeddedBroker(cfg.Broker.Listen, st.locked) }})
		}
	}
	if opts.Checks&Network != 0 {
		if cfg.MQTT.URL != "" {
			checks = append(checks, check{checkBroker, func(ctx context.Context) Finding { return checkExternalBroker(ctx, cfg.MQTT, opts.DialTimeout) }})
		}
		for i, a := range cfg.ARC {
			checks = append(checks, check{arcName(i), func(ctx context.Context) Finding {
				return checkARC(ctx, arcName(i), a.URL, i+1 < len(cfg.ARC), opts.DialTimeout)
			}})
		}
		for i, h := range cfg.Webhooks {
			secret := h.SecretFile
			if secret == "" {
				secret = cfg.Alerts.WebhookSecretFile
			}
			checks = append(checks, check{webhookName(i), func(ctx context.Context) Finding {
				return checkWebhook(ctx, webhookName(i), h.URL, secret, opts.ConnectOnly, opts.DialTimeout)
			}})
		}
		checks = append(checks, check{checkStore, func(ctx context.Context) Finding { return checkObjectStore(ctx, cfg, opts.DialTimeout) }})
	}
	if opts.Checks&Local != 0 {
		checks = append(checks, check{checkCerts, func(context.Context) Finding { return checkCertificates(certFiles(cfg), opts.Now()) }})
	}
	return report(append(first, runAll(ctx, checks)...))
}

// runAll runs checks concurrently and returns their findings in the order
// given. A check that has not finished when ctx ends is reported as such; its
// goroutine finishes on its own later (a stuck fsync cannot be interrupted)
// and its result is dropped.
func runAll(ctx context.Context, checks []check) []Finding {
	type result struct {
		i int
		f Finding
	}
	out := make([]Finding, len(checks))
	got := make([]bool, len(checks))
	results := make(chan result, len(checks)) // buffered: late checks never block
	for i, c := range checks {
		go func() { results <- result{i, c.run(ctx)} }()
	}
	record := func(r result) { out[r.i], got[r.i] = r.f, true }
collect:
	for range checks {
		select {
		case r := <-results:
			record(r)
		case <-ctx.Done():
			break collect
		}
	}
	for drained := false; !drained; {
		select {
		case r := <-results: // finished just as time ran out
			record(r)
		default:
			drained = true
		}
	}
	for i, c := range checks {
		if !got[i] {
			out[i] = finding(c.name, Warn, "did not finish in time",
				"the check was still running when the time allowed ran out: run vigil doctor again; a disk or network this slow is itself a problem", nil)
		}
		out[i].Name = c.name
		if out[i].Details == nil {
			out[i].Details = map[string]any{}
		}
	}
	return out
}

func report(fs []Finding) Report {
	r := Report{OK: true, Checks: fs}
	for _, f := range fs {
		if f.Status == Fail {
			r.OK = false
		}
	}
	return r
}

// finding builds a Finding; details may be nil.
func finding(name string, s Status, summary, advice string, details map[string]any) Finding {
	if details == nil {
		details = map[string]any{}
	}
	return Finding{Name: name, Status: s, Summary: summary, Advice: advice, Details: details}
}
