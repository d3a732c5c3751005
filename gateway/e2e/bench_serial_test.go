package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/devices/serial"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

// The serial benchmarks drive the gateway's serial transport through a real
// pty, with firmwaresim's SerialRelay playing a radio receiver that relays
// pendants (stop-and-wait each: one event frame on the air until its ack
// frame arrives). The peer is the line itself: at serialBaud with 8N1
// framing a byte takes 10 bit times, so a frame of W bytes on the wire
// (COBS-stuffed, with both delimiters) takes W × 10 / serialBaud seconds and
// the line carries at most serialBaud / (10 × W) frames a second each way.
//
// A pty has no baud rate: it moves bytes as fast as the two processes read
// and write them. So every benchmark runs twice: line=pty as it is, and
// line=115200, where the relay's side of the line is paced to 115200 baud
// (pacedLine): each write of W bytes is held back until the line would have
// finished sending it, and so is each read of the gateway's acks. That is
// the line a real USB-UART at 115200 baud would give, full duplex.
const (
	serialBaud = serial.DefaultBaud
	// serialBitsPerByte is 8N1: a start bit, 8 data bits, a stop bit.
	serialBitsPerByte = 10
	// serialDuressPendants take turns to press duress in the latency
	// benchmark, while serialHeartbeatPendants heartbeat every
	// serialHeartbeat in the background: 16 frames/s, about a fifth of what
	// the paced line carries.
	serialDuressPendants    = 8
	serialHeartbeatPendants = 32
	serialHeartbeat         = 2 * time.Second
	// serialPresses duress presses are made at exponential gaps of mean
	// serialPressGap, never closer than serialMinGap: each pendant presses
	// again only ~serialDuressPendants presses later, long after its last
	// frame was acknowledged.
	serialPresses  = 400
	serialPressGap = 50 * time.Millisecond
	serialMinGap   = 20 * time.Millisecond
	// serialThroughputPendants send heartbeats back to back (each as soon
	// as the previous one is acknowledged) for serialSeconds, after a second
	// of warm-up.
	serialThroughputPendants = 16
	serialSeconds            = 10
)

// BenchmarkE2ESerialLatency measures a duress press on a serial pendant →
// the DC-09 receiver holds the frame, through a real pty, while other
// pendants heartbeat on the same line, beside the line's own time for the
// frame (its wire bytes × 10 / 115200 s). It also reports the pendant's
// press → ack round trip (the ack is sent once the event is durable).
//
//	VIGIL_E2E_BENCH=1 go test -run='^$' -bench=E2ESerialLatency -benchtime=1x -timeout 20m ./gateway/e2e/
//
// VIGIL_BENCH_SERIAL_PRESSES changes the number of presses.
func BenchmarkE2ESerialLatency(b *testing.B) {
	skipUnlessE2EBench(b)
	for _, paced := range []bool{false, true} {
		b.Run(serialLineName(paced), func(b *testing.B) { benchSerialLatency(b, paced) })
	}
}

// BenchmarkE2ESerialThroughput measures how many event frames a second the
// gateway journals and acknowledges from one serial line, with
// serialThroughputPendants pendants sending heartbeats stop-and-wait (each
// pendant's next frame goes out once the previous one is acknowledged, as
// firmware does), beside the line's limit for frames of that size at 115200
// baud.
//
//	VIGIL_E2E_BENCH=1 go test -run='^$' -bench=E2ESerialThroughput -benchtime=1x -timeout 20m ./gateway/e2e/
//
// VIGIL_BENCH_SERIAL_SECONDS changes how long it measures.
func BenchmarkE2ESerialThroughput(b *testing.B) {
	skipUnlessE2EBench(b)
	for _, paced := range []bool{false, true} {
		b.Run(serialLineName(paced), func(b *testing.B) { benchSerialThroughput(b, paced) })
	}
}

func serialLineName(paced bool) string {
	if paced {
		return fmt.Sprintf("line=%d", serialBaud)
	}
	return "line=pty"
}

// serialWorld is a gateway reading a pty whose other end a relay drives.
type serialWorld struct {
	vigil *proc
	relay *firmwaresim.SerialRelay
	line  *pacedLine // nil for line=pty
	keys  map[string][]byte
	zones map[string]string // device → ADM-CID zone, "001"
}

// startSerialWorld registers the pendants (with serial keys) at site, starts
// the gateway with a serial port on a pty and an ARC telling onFrame of
// every frame, waits until the port is open, and puts the relay on the air.
func startSerialWorld(b *testing.B, bin string, ids []string, paced bool, onFrame func(dc09.Received)) *serialWorld {
	b.Helper()
	state := b.TempDir()
	w := &serialWorld{keys: make(map[string][]byte, len(ids)), zones: make(map[string]string, len(ids))}
	reg := app.OpenRegistry(state)
	for _, id := range ids {
		key := make([]byte, 32)
		_, _ = crand.Read(key)
		w.keys[id] = key
		d, err := reg.Add(registry.Device{ID: id, Kind: registry.KindButton, Site: site, Wearer: "Carer " + id, SerialKey: hex.EncodeToString(key)}, time.Now())
		require.NoError(b, err)
		w.zones[id] = fmt.Sprintf("%03d", d.Zone)
	}
	link := filepath.Join(b.TempDir(), "ttyVigil")
	pty, err := firmwaresim.OpenPTY(link)
	require.NoError(b, err)
	b.Cleanup(func() { pty.Close() })
	arcURL := startBenchARC(b, onFrame)
	cfg := filepath.Join(b.TempDir(), "vigil.yaml")
	require.NoError(b, os.WriteFile(cfg, []byte(fmt.Sprintf("serial:\n  - path: %s\n    site: %s\n    baud: %d\narc:\n  - url: %q\n",
		link, site, serialBaud, arcURL)), 0o600))
	w.vigil = startVigilBin(b, bin, state, "--config", cfg, "--broker-listen", testnet.ClosedAddr(b))
	pollUntil(b, 10*time.Second, "the serial port to open", func() bool {
		return metric(b, w.vigil.http, `vigil_serial_port_up{port="`+link+`"}`) == 1
	})

	var line io.ReadWriteCloser = pty.Master
	if paced {
		w.line = newPacedLine(pty.Master, serialBaud)
		line = w.line
	}
	w.relay, err = firmwaresim.NewSerialRelay(firmwaresim.SerialRelayConfig{Line: line, Pendants: w.keys, Site: site, Seed: 11})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.relay.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		require.NoError(b, <-done)
	})
	return w
}

func pendantIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%02d", prefix, i+1)
	}
	return ids
}

func benchSerialLatency(b *testing.B, paced bool) {
	n := envInt(b, "VIGIL_BENCH_SERIAL_PRESSES", serialPresses)
	bin := buildBenchVigil(b)
	duressIDs := pendantIDs("pend", serialDuressPendants)
	hbIDs := pendantIDs("hb", serialHeartbeatPendants)
	frames := newZoneMatcher()
	w := startSerialWorld(b, bin, append(slices.Clone(duressIDs), hbIDs...), paced, frames.onFrame)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Background: each heartbeat pendant every serialHeartbeat, their
	// first heartbeats spread over one interval.
	var bgDone sync.WaitGroup
	bgCtx, bgStop := context.WithCancel(ctx)
	for i, id := range hbIDs {
		bgDone.Go(func() {
			t := time.NewTimer(serialHeartbeat * time.Duration(i) / time.Duration(len(hbIDs)))
			defer t.Stop()
			for {
				select {
				case <-bgCtx.Done():
					return
				case <-t.C:
				}
				if _, err := w.relay.Press(bgCtx, id, devices.TypeHeartbeat); err != nil && bgCtx.Err() == nil {
					b.Errorf("heartbeat %s: %v", id, err)
					return
				}
				t.Reset(serialHeartbeat)
			}
		})
	}
	defer func() { bgStop(); bgDone.Wait() }()
	// Let every heartbeat pendant have sent once before timing starts.
	time.Sleep(serialHeartbeat + 100*time.Millisecond) // warm-up, not waiting for a condition
	st0 := w.relay.Stats()

	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Now()
	next := start
	presses := make([]firmwaresim.SerialPress, 0, n)
	for k := range n {
		gap := max(time.Duration(rng.ExpFloat64()*float64(serialPressGap)), serialMinGap)
		id := duressIDs[k%len(duressIDs)]
		time.Sleep(time.Until(next)) // pacing, not waiting for a condition
		frames.expectWith(w.zones[id], func() string {
			p, err := w.relay.Press(ctx, id, devices.TypeDuress)
			require.NoError(b, err)
			presses = append(presses, p)
			return fmt.Sprintf("%s:%d", p.Device, p.Counter)
		})
		next = next.Add(gap)
	}
	rtts := make([]time.Duration, 0, n)
	for _, p := range presses {
		rtt, err := w.relay.WaitAcked(ctx, p.Device, p.Counter)
		require.NoError(b, err, "duress acknowledged")
		rtts = append(rtts, rtt)
	}
	pollUntil(b, 2*time.Minute, "every duress frame at the ARC", func() bool { return frames.count() >= n })
	elapsed := time.Since(start)
	st := w.relay.Stats()
	bgRate := float64(st.Pressed[devices.TypeHeartbeat]-st0.Pressed[devices.TypeHeartbeat]) / elapsed.Seconds()

	matched := frames.matched()
	lat := make([]time.Duration, 0, n)
	for _, p := range matched {
		lat = append(lat, p.frame.Sub(p.published))
	}
	require.Len(b, lat, n)
	require.Zero(b, frames.unmatchedFrames(), "every frame matched a press")
	// The frames reach the ARC before the journal's commit: wait for the
	// last commits, then check that no press was journaled twice.
	journaled := func() int { return metric(b, w.vigil.http, `vigil_events_total{source="serial",type="duress"}`) }
	waitFor(b, 30*time.Second, "every press journaled", func() bool { return journaled() >= n })
	require.Equal(b, n, journaled(), "every press journaled once")
	require.Zero(b, st.BadFrames, "every ack verified at the pendant")
	split := breakdown(b, w.vigil, matched)
	toRaised, raisedToFrame := split.toRaised, split.raisedToFrame
	hwm := procStatusKiB(b, w.vigil.cmd.Process.Pid, "VmHWM")

	wire := serialWireBytes(b, devices.TypeDuress)
	ack := serialAckBytes(b)
	wireTime := lineTime(wire)
	slices.Sort(lat)
	slices.Sort(rtts)
	b.ReportMetric(ms(quantile(lat, 0.5)), "p50_ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "p99_ms")
	b.ReportMetric(ms(quantile(lat, 0.999)), "p99.9_ms")
	b.ReportMetric(ms(quantile(rtts, 0.5)), "ack_p50_ms")
	b.ReportMetric(ms(quantile(rtts, 0.99)), "ack_p99_ms")
	b.ReportMetric(ms(quantile(toRaised, 0.5)), "to_raised_p50_ms")
	b.ReportMetric(ms(quantile(raisedToFrame, 0.5)), "raised_to_frame_p50_ms")
	b.ReportMetric(wire, "wire_bytes")
	b.ReportMetric(ms(wireTime), "line_frame_ms")
	b.ReportMetric(float64(quantile(lat, 0.99))/float64(wireTime), "p99_per_line_frame")
	b.ReportMetric(bgRate, "background_frames/s")
	b.ReportMetric(float64(st.Retransmissions-st0.Retransmissions), "retransmissions")
	b.ReportMetric(mib(hwm), "rss_peak_MiB")

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\t%d samples\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\t\n", n)
	row := func(name string, d []time.Duration) {
		fmt.Fprintf(tw, "%s\t\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, ms(quantile(d, 0.5)), ms(quantile(d, 0.99)), ms(quantile(d, 0.999)), ms(d[len(d)-1]))
	}
	row("press→ARC frame", lat)
	row("  press→alert raised (in tx)", toRaised)
	row("  raised→ARC frame", raisedToFrame)
	row("press→ack at the pendant", rtts)
	tw.Flush()
	b.Logf("serial duress latency, %s, %d duress pendants, %d heartbeating every %s (%.1f frames/s measured), presses at mean %s gaps over %s:\n%s"+
		"line at %d baud: duress frame %.1f bytes on the wire = %.2f ms, ack %.0f bytes = %.2f ms; p99 = %.1f line frame times\n"+
		"relay: %s; vigil VmHWM %.1f MiB",
		serialLineName(paced), len(duressIDs), len(hbIDs), serialHeartbeat, bgRate, serialPressGap, elapsed.Round(time.Millisecond), sb.String(),
		serialBaud, wire, ms(wireTime), ack, ms(lineTime(ack)), float64(quantile(lat, 0.99))/float64(wireTime), st, mib(hwm))
}

func benchSerialThroughput(b *testing.B, paced bool) {
	secs := envInt(b, "VIGIL_BENCH_SERIAL_SECONDS", serialSeconds)
	bin := buildBenchVigil(b)
	ids := pendantIDs("pend", serialThroughputPendants)
	w := startSerialWorld(b, bin, ids, paced, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var acked atomic.Int64
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for ctx.Err() == nil {
				p, err := w.relay.Press(ctx, id, devices.TypeHeartbeat)
				if err != nil {
					return
				}
				if _, err := w.relay.WaitAcked(ctx, id, p.Counter); err != nil {
					return
				}
				acked.Add(1)
			}
		})
	}
	time.Sleep(time.Second) // warm-up, not waiting for a condition
	series := `vigil_events_total{source="serial",type="heartbeat"}`
	a0, j0, st0, t0 := acked.Load(), metric(b, w.vigil.http, series), w.relay.Stats(), time.Now()
	time.Sleep(time.Duration(secs) * time.Second) // the measurement window
	a1, j1, st1, t1 := acked.Load(), metric(b, w.vigil.http, series), w.relay.Stats(), time.Now()
	cancel()
	wg.Wait()
	hwm := procStatusKiB(b, w.vigil.cmd.Process.Pid, "VmHWM")
	require.Zero(b, st1.BadFrames, "every ack verified at the pendant")
	require.GreaterOrEqual(b, metric(b, w.vigil.http, series), int(a1), "every acknowledged frame was journaled")

	dt := t1.Sub(t0).Seconds()
	rate := float64(a1-a0) / dt
	journaled := float64(j1-j0) / dt
	wire := serialWireBytes(b, devices.TypeHeartbeat)
	ack := serialAckBytes(b)
	limit := serialBaud / (serialBitsPerByte * wire)
	b.ReportMetric(rate, "frames/s")
	b.ReportMetric(journaled, "journaled_frames/s")
	b.ReportMetric(limit, "line_limit_frames/s")
	b.ReportMetric(rate/limit, "ratio")
	b.ReportMetric(wire, "wire_bytes")
	b.ReportMetric(rate*wire*serialBitsPerByte, "line_bits/s")
	b.ReportMetric(float64(st1.Retransmissions-st0.Retransmissions), "retransmissions")
	b.ReportMetric(mib(hwm), "rss_peak_MiB")
	b.Logf("serial throughput, %s, %d pendants stop-and-wait sending heartbeats, over %.1f s: %.0f frames/s acknowledged, %.0f journaled\n"+
		"line limit at %d baud 8N1 for %.1f-byte frames: %.1f frames/s (acks, %.0f bytes each, go the other way): ratio %.2f\n"+
		"relay: %s; vigil VmHWM %.1f MiB",
		serialLineName(paced), len(ids), dt, rate, journaled, serialBaud, wire, limit, ack, rate/limit, st1, mib(hwm))
}

// serialWireBytes is the mean size on the wire (COBS-stuffed, with both
// 0x00 delimiters) of 1,000 event frames of type typ made the way the relay
// makes them: a pendant id like "pend-01", a counter near the current Unix
// time (the relay's first counter), a fresh event id and timestamp.
// Stuffing adds a byte for every 0x00 in the frame, so sizes vary by a few
// bytes.
func serialWireBytes(b *testing.B, typ devices.Type) float64 {
	b.Helper()
	key := make([]byte, 32)
	total := 0
	const n = 1000
	base := uint32(time.Now().Unix())
	for i := range n {
		ts := time.Now().Add(time.Duration(i) * 7919 * time.Microsecond).UTC().Truncate(time.Millisecond)
		ev := devices.Event{V: devices.Version, ID: crand.Text(), Device: "pend-01", Seq: uint64(base) + uint64(i), Type: typ, TS: ts}
		payload, err := devices.Encode(ev)
		require.NoError(b, err)
		w, err := serial.Encode(serial.Frame{Type: serial.FrameEvent, Device: ev.Device, Counter: base + uint32(i), Payload: payload}, key)
		require.NoError(b, err)
		total += len(w)
	}
	return float64(total) / n
}

// serialAckBytes is the size on the wire of the gateway's ack frame to
// "pend-01".
func serialAckBytes(b *testing.B) float64 {
	b.Helper()
	w, err := serial.Encode(serial.Frame{Type: serial.FrameAck, Device: "pend-01", Counter: uint32(time.Now().Unix())}, make([]byte, 32))
	require.NoError(b, err)
	return float64(len(w))
}

// lineTime is how long bytes take on the line at serialBaud, 8N1.
func lineTime(bytes float64) time.Duration {
	return time.Duration(bytes * serialBitsPerByte * float64(time.Second) / serialBaud)
}

// pacedLine paces a pty master to a baud rate, each direction on its own
// (a UART is full duplex). Like a UART driver with a transmit buffer, Write
// returns at once and the bytes go out back to back: a write of W bytes
// starts when the line is free and takes W × 10 bit times, and its bytes
// reach the pty only when its last byte would have arrived, so the gateway
// sees a frame no earlier than a real line delivers it. A Read returns the
// gateway's bytes (its acks) only once they would have arrived at that rate.
// The schedule is kept on a virtual clock, so a sleep that overshoots delays
// one delivery a little but does not slow the line down.
type pacedLine struct {
	f        *os.File
	byteTime time.Duration
	out      chan pacedWrite
	quit     chan struct{}
	done     chan struct{}
	closing  sync.Once
	dropped  atomic.Int64 // writes to the pty that failed

	wmu    sync.Mutex
	txFree time.Time // guarded by wmu: when the line has sent everything queued
	rxFree time.Time // used by the single reader only
}

type pacedWrite struct {
	b  []byte
	at time.Time // when its last byte arrives
}

func newPacedLine(f *os.File, baud int) *pacedLine {
	l := &pacedLine{f: f, byteTime: time.Second * serialBitsPerByte / time.Duration(baud),
		out: make(chan pacedWrite, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	go l.deliver()
	return l
}

// deliver writes each queued write to the pty when its last byte arrives.
func (l *pacedLine) deliver() {
	defer close(l.done)
	for {
		select {
		case <-l.quit:
			return
		case w := <-l.out:
			t := time.NewTimer(time.Until(w.at))
			select {
			case <-l.quit:
				t.Stop()
				return
			case <-t.C:
			}
			_ = l.f.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := l.f.Write(w.b); err != nil {
				l.dropped.Add(1)
			}
		}
	}
}

func (l *pacedLine) Write(p []byte) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	now := time.Now()
	if l.txFree.Before(now) {
		l.txFree = now
	}
	l.txFree = l.txFree.Add(time.Duration(len(p)) * l.byteTime)
	select {
	case l.out <- pacedWrite{b: slices.Clone(p), at: l.txFree}:
		return len(p), nil
	case <-l.quit:
		return 0, os.ErrClosed
	}
}

func (l *pacedLine) Read(p []byte) (int, error) {
	n, err := l.f.Read(p)
	if n > 0 {
		now := time.Now()
		if l.rxFree.Before(now) {
			l.rxFree = now
		}
		l.rxFree = l.rxFree.Add(time.Duration(n) * l.byteTime)
		time.Sleep(time.Until(l.rxFree)) // the line's own pace
	}
	return n, err
}

// Close drops what is still queued, as switching a receiver off does.
func (l *pacedLine) Close() error {
	l.closing.Do(func() { close(l.quit) })
	<-l.done
	return l.f.Close()
}
