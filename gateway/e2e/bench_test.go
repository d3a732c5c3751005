package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
	"github.com/vigil-gw/vigil/gateway/outbox"
)

// The end-to-end benchmarks measure Vigil against Mosquitto itself, on the
// same broker, under the same load and in the same run, so that the figures
// are ratios that survive a noisy machine. They run once per invocation:
//
//	VIGIL_E2E_BENCH=1 go test -run='^$' -bench=E2E -benchtime=1x -timeout 20m ./gateway/e2e/
//
// VIGIL_BENCH_PRESSES and VIGIL_BENCH_EVENTS shrink them for a quick look,
// VIGIL_BENCH_SERIAL_PRESSES and VIGIL_BENCH_SERIAL_SECONDS the serial ones
// (bench_serial_test.go). The TLS benchmark is in bench_tls_test.go.
// BENCHMARKS.md records the figures and how to read them.
const (
	// benchButtons simulated buttons heartbeat in the background of the
	// latency benchmark, each every benchHeartbeat, with their first
	// heartbeats spread over one interval: about 100 events/s.
	benchButtons   = 1000
	benchHeartbeat = 10 * time.Second
	// benchPresses duress presses (and as many Mosquitto probes) are made at
	// exponentially distributed gaps of mean benchPressGap (50/s), never closer
	// than benchMinGap (200/s).
	benchPresses  = 1000
	benchPressGap = 20 * time.Millisecond
	benchMinGap   = 5 * time.Millisecond
	// benchEvents heartbeats are published for the ingest benchmark over
	// benchPublishers connections, each keeping at most benchWindow QoS 1
	// publishes unacknowledged.
	benchEvents     = 100_000
	benchPublishers = 8
	benchWindow     = 256
	// benchFsyncs is how many 4 KiB write+fsync pairs measure one fsync.
	benchFsyncs = 200
	// benchOtherSite holds the devices past the 999 ADM-CID zones of one site.
	benchOtherSite = "leeds-b"
	// heartbeatSeries is the counter the ingest benchmark watches.
	heartbeatSeries = `vigil_events_total{source="mqtt",type="heartbeat"}`
)

func skipUnlessE2EBench(b *testing.B) {
	b.Helper()
	if os.Getenv("VIGIL_E2E_BENCH") != "1" {
		b.Skip("set VIGIL_E2E_BENCH=1 to run the end-to-end benchmarks (make bench does)")
	}
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	require.NoError(b, err, "%s=%q is not a number", name, s)
	require.Positive(b, n, "%s must be positive", name)
	return n
}

// BenchmarkE2EDuressLatency measures publish → the DC-09 receiver holds the
// frame, for duress presses from registered devices while 1,000 simulated
// buttons heartbeat, beside Mosquitto's own QoS 1 publish → subscriber round
// trip measured in the same window on the same broker, and one fsync on the
// state directory's file system. Target: Vigil p99 ≤ 2 × Mosquitto p99 +
// one fsync (median).
//
// It runs twice: with Mosquitto's default set_tcp_nodelay false (Nagle's
// algorithm on for the broker's client sockets), and with set_tcp_nodelay
// true, which is what deploy/mosquitto ships and the test harness uses.
func BenchmarkE2EDuressLatency(b *testing.B) {
	skipUnlessE2EBench(b)
	for _, nodelay := range []bool{false, true} {
		name := "mosquitto=default"
		if nodelay {
			name = "mosquitto=nodelay"
		}
		b.Run(name, func(b *testing.B) { benchDuressLatency(b, nodelay) })
	}
}

func benchDuressLatency(b *testing.B, nodelay bool) {
	n := envInt(b, "VIGIL_BENCH_PRESSES", benchPresses)
	bin := buildBenchVigil(b)
	broker := startBenchMosquitto(b, nodelay)
	state := b.TempDir()
	zones := benchRegister(b, state)

	frames := newZoneMatcher()
	arcURL := startBenchARC(b, frames.onFrame)
	v := startVigilBin(b, bin, state, "--mqtt", broker, "--arc", arcURL)
	fleet := startBenchFleet(b, broker)
	pr := startProbe(b, broker, n)
	pub := benchClient(b, broker, "bench-duress")
	measureDuressLatency(b, duressRun{
		what: fmt.Sprintf("broker tcp, nodelay=%v", nodelay), n: n, state: state, zones: zones, frames: frames, vigil: v, probe: pr,
		background: func() uint64 { return fleetEvents(fleet) },
		publish: func(dev int, payload []byte) paho.Token {
			return pub.Publish(devices.EventTopic(site, deviceID(dev)), 1, false, payload)
		},
	})
}

// duressRun is one set-up of the duress latency benchmark: a gateway with
// benchButtons registered behind a broker, buttons heartbeating in the
// background, a probe on the same broker, and a way to publish a duress.
type duressRun struct {
	what       string // the broker set-up, for the log
	n          int    // presses (and probes)
	state      string // the gateway's state directory, for the fsync figure
	zones      map[string]string
	frames     *zoneMatcher
	vigil      *proc
	probe      *probe
	background func() uint64 // background events published so far
	// publish sends device dev's duress payload at QoS 1 (over a
	// connection the broker lets publish on the device's event topic).
	publish func(dev int, payload []byte) paho.Token
}

// measureDuressLatency presses r.n duress buttons at exponential gaps with a
// Mosquitto probe between each two, waits for every frame at the ARC, and
// reports Vigil's publish → ARC frame latency beside the probe's QoS 1
// publish → subscriber time and one fsync.
func measureDuressLatency(b *testing.B, r duressRun) {
	b.Helper()
	n, frames, v, pr := r.n, r.frames, r.vigil, r.probe
	// One fsync, under the same background load, on the state directory's
	// file system; this also lets the fleet's heartbeats reach steady state.
	fsyncs := measureFsync(b, r.state, benchFsyncs)

	payloadLen := len(duressPayload(b, 1, 1))
	rng := rand.New(rand.NewPCG(1, 2))
	bg0 := r.background()
	start := time.Now()
	next := start
	toks := make([]paho.Token, 0, n)
	for k := range n {
		gap := max(time.Duration(rng.ExpFloat64()*float64(benchPressGap)), benchMinGap)
		// Devices 1–999 in turn: each press has its own (device, seq), and a
		// device presses again only ~999 presses later, long after its last
		// frame arrived, so zone + order identifies the press.
		dev := k%registry.MaxZone + 1
		seq := uint64(k/registry.MaxZone + 1)
		payload := duressPayload(b, dev, seq)
		time.Sleep(time.Until(next)) // pacing, not waiting for a condition
		frames.expect(r.zones[deviceID(dev)], fmt.Sprintf("%s:%d", deviceID(dev), seq))
		toks = append(toks, r.publish(dev, payload))
		time.Sleep(time.Until(next.Add(gap / 2)))
		pr.publish(k, payloadLen)
		next = next.Add(gap)
	}
	for _, tok := range toks {
		require.True(b, tok.WaitTimeout(30*time.Second), "duress PUBACK")
		require.NoError(b, tok.Error())
	}
	pr.wait(b)
	pollUntil(b, 2*time.Minute, "every duress frame at the ARC", func() bool { return frames.count() >= n })
	elapsed := time.Since(start)
	bgRate := float64(r.background()-bg0) / elapsed.Seconds()

	presses := frames.matched()
	vig := make([]time.Duration, 0, n)
	for _, p := range presses {
		vig = append(vig, p.frame.Sub(p.published))
	}
	mosq := pr.latencies()
	require.Len(b, vig, n)
	require.Len(b, mosq, n)
	require.Zero(b, frames.unmatchedFrames(), "every frame matched a press")
	// The frames reach the ARC before the journal's commit: wait for the
	// last commits, then check that no press was journaled twice.
	journaled := func() int { return metric(b, v.http, `vigil_events_total{source="mqtt",type="duress"}`) }
	waitFor(b, 30*time.Second, "every press journaled", func() bool { return journaled() >= n })
	require.Equal(b, n, journaled(), "every press journaled once")
	split := breakdown(b, v, presses)
	hwm := procStatusKiB(b, v.cmd.Process.Pid, "VmHWM")
	// How each alarm reached the ARC route: handed over as it arrived, in
	// its transaction, or from the queue after the commit (the slow path).
	var via strings.Builder
	for _, w := range []outbox.Via{outbox.ViaBeforeCommit, outbox.ViaInCommit, outbox.ViaQueue} {
		k := metric(b, v.http, fmt.Sprintf(`vigil_alarm_first_attempts_total{route="arc0",via="%s"}`, w))
		fmt.Fprintf(&via, " %s %d", w, k)
		if w == outbox.ViaQueue {
			b.ReportMetric(float64(k)/float64(n), "via_queue_share")
		}
	}

	slices.Sort(vig)
	slices.Sort(mosq)
	slices.Sort(fsyncs)
	fsyncMed := quantile(fsyncs, 0.5)
	budget := 2*quantile(mosq, 0.99) + fsyncMed
	met := 0.0
	if quantile(vig, 0.99) <= budget {
		met = 1
	}

	b.ReportMetric(ms(quantile(vig, 0.5)), "p50_ms")
	b.ReportMetric(ms(quantile(vig, 0.99)), "p99_ms")
	b.ReportMetric(ms(quantile(vig, 0.999)), "p99.9_ms")
	b.ReportMetric(ms(quantile(mosq, 0.5)), "mosquitto_p50_ms")
	b.ReportMetric(ms(quantile(mosq, 0.99)), "mosquitto_p99_ms")
	b.ReportMetric(ms(quantile(mosq, 0.999)), "mosquitto_p99.9_ms")
	b.ReportMetric(ms(fsyncMed), "fsync_ms")
	b.ReportMetric(ms(budget), "budget_ms")
	b.ReportMetric(float64(quantile(vig, 0.99))/float64(quantile(mosq, 0.99)), "p99_ratio")
	b.ReportMetric(met, "target_met")
	b.ReportMetric(ms(quantile(split.toReceived, 0.5)), "to_received_p50_ms")
	b.ReportMetric(ms(quantile(split.toReceived, 0.99)), "to_received_p99_ms")
	b.ReportMetric(ms(quantile(split.receivedToFrame, 0.5)), "received_to_frame_p50_ms")
	b.ReportMetric(ms(quantile(split.receivedToFrame, 0.99)), "received_to_frame_p99_ms")
	b.ReportMetric(ms(quantile(split.toRaised, 0.5)), "to_raised_p50_ms")
	b.ReportMetric(ms(quantile(split.toRaised, 0.99)), "to_raised_p99_ms")
	b.ReportMetric(ms(quantile(split.raisedToFrame, 0.5)), "raised_to_frame_p50_ms")
	b.ReportMetric(ms(quantile(split.raisedToFrame, 0.99)), "raised_to_frame_p99_ms")
	b.ReportMetric(bgRate, "background_events/s")
	b.ReportMetric(mib(hwm), "rss_peak_MiB")

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\t%d samples\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\t\n", n)
	row := func(name string, d []time.Duration) {
		fmt.Fprintf(tw, "%s\t\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, ms(quantile(d, 0.5)), ms(quantile(d, 0.99)), ms(quantile(d, 0.999)), ms(d[len(d)-1]))
	}
	row("vigil publish→ARC frame", vig)
	row("  publish→received (broker, gateway's MQTT client)", split.toReceived)
	row("  received→ARC frame (gateway, DC-09 hop)", split.receivedToFrame)
	row("  publish→alert raised (in tx)", split.toRaised)
	row("  raised→ARC frame (< 0: sent ahead of the journal)", split.raisedToFrame)
	row("mosquitto QoS1 pub→sub", mosq)
	row(fmt.Sprintf("fsync 4 KiB (%d)", len(fsyncs)), fsyncs)
	tw.Flush()
	// go test keeps only the first lines of a benchmark's log: the verdict
	// goes first.
	b.Logf("target: vigil p99 %.2f ms ≤ 2 × mosquitto p99 + fsync median = %.2f ms: %v; vigil VmHWM %.1f MiB; alarms reached the ARC route:%s\n"+
		"duress latency, %s, with %d buttons heartbeating every %s (%.0f events/s measured), presses at mean %s gaps over %s:\n%s",
		ms(quantile(vig, 0.99)), ms(budget), met == 1, mib(hwm), via.String(),
		r.what, benchButtons, benchHeartbeat, bgRate, benchPressGap, elapsed.Round(time.Millisecond), sb.String())
}

// latencySplit is each press's latency split at one moment in the gateway,
// every slice sorted.
type latencySplit struct {
	// At ReceivedAt, when the gateway's MQTT client handed the event over:
	// the broker hop and paho before it, the gateway's work and the DC-09
	// hop after it.
	toReceived, receivedToFrame []time.Duration
	// At RaisedAt, taken inside the journal transaction before the commit's
	// fsync: ingest queueing before it, commit and outbox after it (or
	// before it, for an alarm sent ahead of the journal).
	toRaised, raisedToFrame []time.Duration
}

// breakdown splits each press's latency at the alert's ReceivedAt and
// RaisedAt, from /api/alerts.
func breakdown(b *testing.B, v *proc, presses []press) latencySplit {
	b.Helper()
	code, body := v.api(b, http.MethodGet, "/api/alerts?limit=10000", "")
	require.Equal(b, http.StatusOK, code)
	var list struct {
		Alerts []struct {
			Key        string    `json:"key"`
			ReceivedAt time.Time `json:"received_at"`
			RaisedAt   time.Time `json:"raised_at"`
		} `json:"alerts"`
	}
	require.NoError(b, json.Unmarshal(body, &list))
	type stamps struct{ received, raised time.Time }
	at := make(map[string]stamps, len(list.Alerts))
	for _, a := range list.Alerts {
		at[a.Key] = stamps{a.ReceivedAt, a.RaisedAt}
	}
	var s latencySplit
	for _, p := range presses {
		a, ok := at[p.key]
		require.True(b, ok, "no alert for %s", p.key)
		require.False(b, a.received.IsZero(), "alert %s has no received_at", p.key)
		// Wall clocks of two processes on one machine: good to microseconds.
		pub, frame := p.published.Round(0), p.frame.Round(0)
		s.toReceived = append(s.toReceived, a.received.Sub(pub))
		s.receivedToFrame = append(s.receivedToFrame, frame.Sub(a.received))
		s.toRaised = append(s.toRaised, a.raised.Sub(pub))
		s.raisedToFrame = append(s.raisedToFrame, frame.Sub(a.raised))
	}
	for _, d := range [][]time.Duration{s.toReceived, s.receivedToFrame, s.toRaised, s.raisedToFrame} {
		slices.Sort(d)
	}
	return s
}

// BenchmarkE2EIngest measures sustained durable ingest: heartbeats from
// registered devices published through Mosquitto as fast as QoS 1 allows,
// until Vigil's journaled-event counter reaches the count, beside Mosquitto's
// own QoS 1 throughput to a plain subscriber for the same messages in the
// same run. It also reports the gateway's RSS idle (1,000 devices registered,
// no traffic) and its peak (VmHWM) under this load. Targets: ≥ 10,000
// events/s on 2 cores; RSS ≤ 64 MiB.
//
// Like BenchmarkE2EDuressLatency it runs with Mosquitto's default
// set_tcp_nodelay false and with the shipped set_tcp_nodelay true.
func BenchmarkE2EIngest(b *testing.B) {
	skipUnlessE2EBench(b)
	for _, nodelay := range []bool{false, true} {
		name := "mosquitto=default"
		if nodelay {
			name = "mosquitto=nodelay"
		}
		b.Run(name, func(b *testing.B) { benchIngest(b, nodelay) })
	}
}

func benchIngest(b *testing.B, nodelay bool) {
	n := envInt(b, "VIGIL_BENCH_EVENTS", benchEvents)
	bin := buildBenchVigil(b)
	broker := startBenchMosquitto(b, nodelay)
	state := b.TempDir()
	benchRegister(b, state)
	arcURL := startBenchARC(b, nil)
	v := startVigilBin(b, bin, state, "--mqtt", broker, "--arc", arcURL)
	pid := v.cmd.Process.Pid
	idle := sampleRSS(b, pid, 2*time.Second)

	msgs := heartbeats(b, n)
	peer := mosquittoThroughput(b, broker, msgs)
	mem := sampleMemory(pid)
	vig := vigilThroughput(b, broker, v.http, msgs)
	anon, file := mem()
	peak := procStatusKiB(b, pid, "VmHWM")
	rejected := metricSum(b, v.http, "vigil_events_rejected_total")
	dups := metric(b, v.http, "vigil_events_duplicate_total")
	db, err := os.Stat(filepath.Join(state, app.StateDB))
	require.NoError(b, err)

	vRate := float64(n) / vig.total.Seconds()
	mRate := float64(n) / peer.total.Seconds()
	b.ReportMetric(vRate, "events/s")
	b.ReportMetric(mRate, "mosquitto_events/s")
	b.ReportMetric(vRate/mRate, "ratio")
	b.ReportMetric(mib(idle), "rss_idle_MiB")
	b.ReportMetric(mib(peak), "rss_peak_MiB")
	b.ReportMetric(mib(anon), "rss_peak_anon_MiB")
	b.ReportMetric(mib(file), "rss_peak_file_MiB")
	b.ReportMetric(float64(db.Size())/(1<<20), "db_MiB")

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%d heartbeats\tall PUBACKs s\tall delivered s\tevents/s\t\n", n)
	fmt.Fprintf(tw, "vigil (journaled)\t%.2f\t%.2f\t%.0f\t\n", vig.acked.Seconds(), vig.total.Seconds(), vRate)
	fmt.Fprintf(tw, "mosquitto → subscriber\t%.2f\t%.2f\t%.0f\t\n", peer.acked.Seconds(), peer.total.Seconds(), mRate)
	tw.Flush()
	b.Logf("ingest, broker nodelay=%v, over %d publisher connections (window %d):\n%s"+
		"vigil/mosquitto %.2f; target ≥ 10000 events/s: %v; rejected %d, duplicates %d\n"+
		"vigil RSS idle %.1f MiB, peak (VmHWM) %.1f MiB; target ≤ 64 MiB: %v\n"+
		"peak under load sampled every 50 ms: anonymous %.1f MiB, file-backed (the binary's pages and the bbolt mmap) %.1f MiB; state db %.1f MiB",
		nodelay, benchPublishers, benchWindow, sb.String(), vRate/mRate, vRate >= 10000, rejected, dups,
		mib(idle), mib(peak), peak <= 64<<10, mib(anon), mib(file), float64(db.Size())/(1<<20))
}

// BenchmarkIngestInProcess is BenchmarkE2EIngest's Vigil half with the
// gateway running inside the test binary (app.New, Run), so that a CPU
// profile shows where ingest time goes (the gateway has no pprof endpoint).
// VIGIL_BENCH_CPUPROFILE=FILE profiles only the measured part, leaving out
// device registration and start-up:
//
//	VIGIL_E2E_BENCH=1 VIGIL_BENCH_CPUPROFILE=/tmp/cpu.out go test -run='^$' -bench=IngestInProcess -benchtime=1x ./gateway/e2e/
//	go tool pprof -top -cum /tmp/cpu.out
//
// The profile also holds the publishers, which run in the same process.
func BenchmarkIngestInProcess(b *testing.B) {
	skipUnlessE2EBench(b)
	n := envInt(b, "VIGIL_BENCH_EVENTS", benchEvents)
	broker := startBenchMosquitto(b, false)
	state := b.TempDir()
	benchRegister(b, state)
	cfg := app.DefaultConfig()
	cfg.State, cfg.HTTP, cfg.MQTT.URL, cfg.GatewayID, cfg.LogLevel = state, "127.0.0.1:0", broker, "vigil-bench", "warn"
	cfg.ARC = []app.ARCConfig{{URL: startBenchARC(b, nil)}}
	a, err := app.New(cfg, nil)
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	pollUntil(b, 20*time.Second, "vigil to be ready", func() bool {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	msgs := heartbeats(b, n)
	if path := os.Getenv("VIGIL_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		require.NoError(b, err)
		require.NoError(b, pprof.StartCPUProfile(f))
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	b.ResetTimer()
	vig := vigilThroughput(b, broker, a.HTTPAddr(), msgs)
	b.StopTimer()
	b.ReportMetric(float64(n)/vig.total.Seconds(), "events/s")
}

// buildBenchVigil builds a vigil binary without the race detector (TestMain
// builds one with it, for the tests), so that the figures are realistic.
func buildBenchVigil(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "vigil")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/vigil-gw/vigil/cmd/vigil").CombinedOutput()
	require.NoError(b, err, "build vigil: %s", out)
	return bin
}

// benchRegister registers btn-0001 … btn-1000: the first 999 at site (ADM-CID
// has 999 zones per account) and the last at benchOtherSite. It returns each
// device's zone as the ARC sees it ("001").
func benchRegister(b *testing.B, state string) map[string]string {
	b.Helper()
	addDevices(b, state, site, registry.MaxZone)
	reg := app.OpenRegistry(state)
	for i := registry.MaxZone + 1; i <= benchButtons; i++ {
		_, err := reg.Add(registry.Device{ID: deviceID(i), Kind: registry.KindButton, Site: benchOtherSite, Wearer: fmt.Sprintf("Wearer %d", i)}, time.Now())
		require.NoError(b, err)
	}
	list, err := reg.List()
	require.NoError(b, err)
	require.Len(b, list, benchButtons)
	zones := make(map[string]string, len(list))
	for _, d := range list {
		zones[d.ID] = fmt.Sprintf("%03d", d.Zone)
	}
	return zones
}

// deviceSite is the site device i is registered at.
func deviceSite(i int) string {
	if i > registry.MaxZone {
		return benchOtherSite
	}
	return site
}

// startBenchARC runs a DC-09 receiver that ACKs everything and tells onFrame
// (if not nil) of each frame; it returns the receiver's URL for --arc.
func startBenchARC(b *testing.B, onFrame func(dc09.Received)) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	r := &dc09.Receiver{OnFrame: onFrame}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	return (&arc{addr: ln.Addr().String()}).url()
}

// startBenchFleet connects benchButtons heartbeating buttons and returns once
// all are connected.
func startBenchFleet(b *testing.B, broker string) *firmwaresim.Fleet {
	b.Helper()
	f, err := firmwaresim.NewFleet(firmwaresim.FleetConfig{Broker: broker, Site: site, Buttons: benchButtons,
		Heartbeat: benchHeartbeat, Lat: 53.8008, Lon: -1.5491, Seed: 7})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	pollUntil(b, 3*time.Minute, "every button connected", func() bool { return f.Stats().Connected == benchButtons })
	return f
}

func fleetEvents(f *firmwaresim.Fleet) uint64 {
	s := f.Stats()
	return s.Published[devices.TypeHeartbeat] + s.Published[devices.TypeBattery]
}

// benchClient connects a plain MQTT client (clean session, QoS as used).
func benchClient(b *testing.B, broker, id string) paho.Client {
	b.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second).SetKeepAlive(30 * time.Second))
	tok := c.Connect()
	require.True(b, tok.WaitTimeout(10*time.Second), "connect %s", id)
	require.NoError(b, tok.Error())
	b.Cleanup(func() { c.Disconnect(250) })
	return c
}

// duressPayload is a v1 duress from device i with its own seq.
func duressPayload(b *testing.B, i int, seq uint64) []byte {
	return eventPayload(b, i, seq, devices.TypeDuress, time.Now())
}

func eventPayload(b *testing.B, i int, seq uint64, typ devices.Type, ts time.Time) []byte {
	battery := 87
	p, err := devices.Encode(devices.Event{V: devices.Version, ID: crand.Text(), Device: deviceID(i), Seq: seq, Type: typ,
		TS: ts.UTC().Truncate(time.Millisecond), Loc: &devices.Location{Lat: 53.8008, Lon: -1.5491, AccM: 8}, Battery: &battery})
	require.NoError(b, err)
	return p
}

// press is one duress: its idempotency key, when it was published and when
// its frame reached the ARC.
type press struct {
	key              string
	published, frame time.Time
}

// zoneMatcher pairs each duress frame at the ARC with the press that caused
// it: by zone, oldest press first.
type zoneMatcher struct {
	mu        sync.Mutex
	sent      map[string][]press
	got       []press
	unmatched int
}

func newZoneMatcher() *zoneMatcher { return &zoneMatcher{sent: map[string][]press{}} }

// expect records a press for zone, timed now: call it just before Publish.
func (m *zoneMatcher) expect(zone, key string) {
	m.mu.Lock()
	m.sent[zone] = append(m.sent[zone], press{key: key, published: time.Now()})
	m.mu.Unlock()
}

// expectWith records a press for zone, timed now, and makes it with do,
// which returns its key: for presses whose key is known only once made. The
// matcher is locked meanwhile, so its frame cannot be matched first (the
// receiver times a frame before it calls onFrame).
func (m *zoneMatcher) expectWith(zone string, do func() (key string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at := time.Now()
	m.sent[zone] = append(m.sent[zone], press{key: do(), published: at})
}

func (m *zoneMatcher) onFrame(r dc09.Received) {
	if r.Response != dc09.RespondACK || r.Frame.ID == dc09.IDNull {
		return
	}
	// ADM-CID "#acct|1121 01 ZZZ": a new (1) duress (121), partition 01, zone ZZZ.
	d := r.Frame.Data
	i := strings.LastIndexByte(d, ' ')
	if !strings.Contains(d, "|1121 ") || i < 0 {
		return
	}
	zone := d[i+1:]
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.sent[zone]
	if len(q) == 0 {
		m.unmatched++
		return
	}
	p := q[0]
	p.frame = r.At
	m.got = append(m.got, p)
	m.sent[zone] = q[1:]
}

func (m *zoneMatcher) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.got)
}

func (m *zoneMatcher) matched() []press {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.got)
}

func (m *zoneMatcher) unmatchedFrames() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unmatched
}

// probe measures Mosquitto's own QoS 1 publish → subscriber latency with a
// publisher and a subscriber client of its own.
type probe struct {
	pub   paho.Client
	topic string
	sent  []time.Time // written only by the publishing goroutine
	mu    sync.Mutex
	got   []time.Time
	n     int
	toks  []paho.Token
}

func startProbe(b *testing.B, broker string, n int) *probe {
	b.Helper()
	return startProbeWith(b, n, func(id string) paho.Client { return benchClient(b, broker, id) })
}

// startProbeWith is startProbe with clients made by connect, given the
// client ids "bench-probe-sub" and "bench-probe-pub" (over TLS, say).
func startProbeWith(b *testing.B, n int, connect func(id string) paho.Client) *probe {
	b.Helper()
	p := &probe{topic: "vigil-bench/v1/" + site + "/probe/event", sent: make([]time.Time, n), got: make([]time.Time, n)}
	sub := connect("bench-probe-sub")
	tok := sub.Subscribe(p.topic, 1, func(_ paho.Client, m paho.Message) {
		at := time.Now()
		k, err := strconv.Atoi(string(m.Payload()[:8]))
		if err != nil || k < 0 || k >= n {
			return
		}
		p.mu.Lock()
		if p.got[k].IsZero() {
			p.got[k] = at
			p.n++
		}
		p.mu.Unlock()
	})
	require.True(b, tok.WaitTimeout(10*time.Second))
	require.NoError(b, tok.Error())
	p.pub = connect("bench-probe-pub")
	return p
}

// publish sends probe k, padded to size bytes like a duress payload.
func (p *probe) publish(k, size int) {
	payload := []byte(fmt.Sprintf("%08d", k))
	for len(payload) < size {
		payload = append(payload, 'x')
	}
	p.sent[k] = time.Now()
	p.toks = append(p.toks, p.pub.Publish(p.topic, 1, false, payload))
}

func (p *probe) wait(b *testing.B) {
	b.Helper()
	for _, tok := range p.toks {
		require.True(b, tok.WaitTimeout(30*time.Second), "probe PUBACK")
		require.NoError(b, tok.Error())
	}
	pollUntil(b, time.Minute, "every probe at the subscriber", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.n == len(p.got)
	})
}

func (p *probe) latencies() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]time.Duration, 0, len(p.got))
	for k, at := range p.got {
		if !at.IsZero() {
			out = append(out, at.Sub(p.sent[k]))
		}
	}
	return out
}

// measureFsync times n appends of 4 KiB each followed by fsync, in a sibling
// of dir on the same file system.
func measureFsync(b *testing.B, dir string, n int) []time.Duration {
	b.Helper()
	other := b.TempDir()
	var st1, st2 syscall.Stat_t
	require.NoError(b, syscall.Stat(dir, &st1))
	require.NoError(b, syscall.Stat(other, &st2))
	require.Equal(b, st1.Dev, st2.Dev, "fsync must be measured on the state directory's file system")
	f, err := os.Create(filepath.Join(other, "fsync.probe"))
	require.NoError(b, err)
	defer f.Close()
	buf := make([]byte, 4096)
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		_, err := f.Write(buf)
		require.NoError(b, err)
		require.NoError(b, f.Sync())
		out = append(out, time.Since(start))
	}
	return out
}

// benchMsg is one pre-encoded heartbeat.
type benchMsg struct {
	device  int
	topic   string // the device's event topic
	payload []byte
}

// heartbeats makes n heartbeats from the registered devices, round robin, each
// with its own (device, seq), encoded before any timing starts.
func heartbeats(b *testing.B, n int) []benchMsg {
	b.Helper()
	now := time.Now()
	out := make([]benchMsg, n)
	for k := range out {
		dev := k%benchButtons + 1
		out[k] = benchMsg{device: dev, topic: devices.EventTopic(deviceSite(dev), deviceID(dev)),
			payload: eventPayload(b, dev, uint64(k/benchButtons+1), devices.TypeHeartbeat, now)}
	}
	return out
}

// throughput is how long a batch took: until the publishers had every PUBACK,
// and until the far side had every message.
type throughput struct {
	acked, total time.Duration
}

// publisher sends benchMsgs over benchPublishers connections; a device's
// messages always go over the same connection, in order.
type publisher struct {
	conns []paho.Client
}

func newPublisher(b *testing.B, broker, name string) *publisher {
	b.Helper()
	p := &publisher{}
	for i := range benchPublishers {
		p.conns = append(p.conns, benchClient(b, broker, fmt.Sprintf("bench-%s-%d", name, i)))
	}
	return p
}

// run publishes msgs to topic(m) at QoS 1, each connection keeping at most
// benchWindow unacknowledged, and returns once every PUBACK is in.
func (p *publisher) run(msgs []benchMsg, topic func(benchMsg) string) error {
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for i, c := range p.conns {
		toks := make(chan paho.Token, benchWindow-1)
		wg.Go(func() {
			// PUBACKs come back in order on one connection: waiting for
			// each token in turn keeps at most benchWindow outstanding.
			for tok := range toks {
				if tok.Wait(); tok.Error() != nil {
					err := tok.Error()
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		})
		wg.Go(func() {
			defer close(toks)
			for _, m := range msgs {
				if m.device%len(p.conns) == i {
					toks <- c.Publish(topic(m), 1, false, m.payload)
				}
			}
		})
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		return fmt.Errorf("publish: %w", *err)
	}
	return nil
}

// mosquittoThroughput publishes msgs to a plain QoS 1 subscriber on the
// same broker: Mosquitto's own delivery rate for the same messages.
func mosquittoThroughput(b *testing.B, broker string, msgs []benchMsg) throughput {
	b.Helper()
	n := int64(len(msgs))
	var got atomic.Int64
	all := make(chan time.Time, 1)
	sub := benchClient(b, broker, "bench-peer-sub")
	tok := sub.Subscribe("vigil-bench/#", 1, func(_ paho.Client, _ paho.Message) {
		if got.Add(1) == n {
			all <- time.Now()
		}
	})
	require.True(b, tok.WaitTimeout(10*time.Second))
	require.NoError(b, tok.Error())
	pub := newPublisher(b, broker, "peer")
	start := time.Now()
	require.NoError(b, pub.run(msgs, func(m benchMsg) string { return "vigil-bench/" + m.topic }))
	acked := time.Since(start)
	select {
	case end := <-all:
		return throughput{acked: acked, total: end.Sub(start)}
	case <-time.After(5 * time.Minute):
		b.Fatalf("mosquitto subscriber got %d of %d messages", got.Load(), n)
	}
	return throughput{}
}

// vigilThroughput publishes msgs to their event topics and waits until the
// gateway at httpAddr has journaled all of them, polling /metrics.
func vigilThroughput(b *testing.B, broker, httpAddr string, msgs []benchMsg) throughput {
	b.Helper()
	base := metric(b, httpAddr, heartbeatSeries)
	pub := newPublisher(b, broker, "vigil")
	start := time.Now()
	var acked time.Duration
	done := make(chan error, 1)
	go func() {
		err := pub.run(msgs, func(m benchMsg) string { return m.topic })
		acked = time.Since(start)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Minute)
	for metric(b, httpAddr, heartbeatSeries)-base < len(msgs) {
		if time.Now().After(deadline) {
			b.Fatalf("vigil journaled %d of %d heartbeats in 10 min", metric(b, httpAddr, heartbeatSeries)-base, len(msgs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(start)
	require.NoError(b, <-done)
	return throughput{acked: acked, total: total}
}

// metricSum adds up every series of one metric family.
func metricSum(b *testing.B, httpAddr, family string) int {
	b.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(b, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(b, err)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, family+"{") && !strings.HasPrefix(line, family+" ") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(b, err)
		sum += v
	}
	return int(sum)
}

// procStatusKiB reads a kB field (VmRSS, VmHWM) of /proc/PID/status.
func procStatusKiB(b *testing.B, pid int, field string) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(b, err)
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			require.NoError(b, err)
			return kb
		}
	}
	b.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// sampleMemory samples RssAnon and RssFile of pid every 50 ms until the
// returned function is called, which returns their peaks in KiB. RSS counts
// the pages of bbolt's read-only mmap of the state file that the process has
// touched (RssFile); they are page cache the kernel can reclaim, unlike the
// heap (RssAnon).
func sampleMemory(pid int) func() (anon, file int64) {
	var anon, file int64 // written by the sampler until done is closed
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if a, f, err := rssSplit(pid); err == nil {
				anon, file = max(anon, a), max(file, f)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(stop)
		<-done
		return anon, file
	}
}

func rssSplit(pid int) (anon, file int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "RssAnon" && k != "RssFile") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "RssAnon" {
			anon = kb
		} else {
			file = kb
		}
	}
	return anon, file, nil
}

// sampleRSS returns the largest VmRSS seen over d, sampling every 100 ms.
func sampleRSS(b *testing.B, pid int, d time.Duration) int64 {
	b.Helper()
	var peak int64
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		peak = max(peak, procStatusKiB(b, pid, "VmRSS"))
	}
	return peak
}

// pollUntil is waitFor with a gentler interval, for conditions that are
// costly to check (a fleet's statistics, a /metrics scrape).
func pollUntil(b *testing.B, d time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quantile is the nearest-rank q-quantile of sorted samples.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*q)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(kib int64) float64 { return float64(kib) / 1024 }

// startBenchMosquitto runs a private Mosquitto like the harness's
// startMosquitto (same limits), with Nagle's algorithm on its client sockets
// as Mosquitto's own default has it (set_tcp_nodelay false), or off as
// deploy/mosquitto and the harness have it (nodelay). The benchmarks write
// the setting out so that a change to the harness cannot change its meaning.
func startBenchMosquitto(b *testing.B, nodelay bool) string {
	b.Helper()
	addr := testnet.ClosedAddr(b)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(b.TempDir(), "mosquitto.conf")
	require.NoError(b, os.WriteFile(conf, []byte(fmt.Sprintf(`listener %s 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 200000
set_tcp_nodelay %v
log_dest stderr
log_type error
log_type warning
`, port, nodelay)), 0o600))
	runMosquitto(b, conf, addr)
	return "tcp://" + addr
}
