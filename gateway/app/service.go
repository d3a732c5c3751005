package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// The service manager sees the gateway through sd_notify messages when it
// runs under systemd with Type=notify (NOTIFY_SOCKET is set; without it
// every message is skipped):
//
//   - READY=1 once the HTTP listener is open and the journal, the outbox
//     and the timer wheel have each answered a probe from their own loop,
//     and the MQTT client has started (connected or not: a broker that is
//     down at boot is reported, not waited for, since waiting would only
//     make systemd restart us in a loop);
//   - RELOADING=1 and READY=1 around a reload (SIGHUP);
//   - STOPPING=1 when shutdown starts;
//   - STATUS= lines a technician reads in `systemctl status vigil`;
//   - WATCHDOG=1 every half of WATCHDOG_USEC, only while the alert
//     pipeline is healthy.
//
// Healthy means that the journal's commit loop, the timer wheel's loop and
// the outbox's escalation loop have each come round to answer a probe
// within a quarter of the watchdog interval. A commit stuck in fsync, an
// Apply or a timer that never returns, or a deadlock on the state database
// stops an answer; the pings then stop and systemd restarts the process,
// which is what fixes those. A broker or ARC receiver that does not answer
// is not unhealthy here: restarting would not bring it back, and the
// per-route delivery loops, which wait on receivers, are not probed. The
// readiness check, the metrics (vigil_arc_link_up, vigil_mqtt_connected)
// and alerts of their own report those.

// prober is a loop that answers liveness probes.
type prober interface {
	Probe(ctx context.Context) error
}

// pipeline names the loops whose answers make the alert pipeline healthy.
func (a *App) pipeline() map[string]prober {
	return map[string]prober{"journal": a.journal, "timer": a.timers, "outbox": a.outbox}
}

// checkPipeline probes every loop of the alert pipeline at once and returns
// which did not answer within wait.
func (a *App) checkPipeline(ctx context.Context, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for name, p := range a.pipeline() {
		wg.Go(func() {
			if err := p.Probe(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s loop has not answered for %s", name, wait))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// statusEvery is how often STATUS is refreshed when no watchdog asks more
// often.
const statusEvery = 30 * time.Second

// runService tells the service manager when the gateway is ready, keeps
// its watchdog fed while the alert pipeline is healthy, and says when it
// stops. It returns when ctx is done.
func (a *App) runService(ctx context.Context) error {
	// Each loop answers once it runs: READY=1 only then.
	for {
		err := a.checkPipeline(ctx, 5*time.Second)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("waiting for the alert pipeline to start", "err", oneLine(err))
	}
	status := a.statusLine()
	a.notify("READY=1", "STATUS="+status)
	defer a.notify("STOPPING=1", "STATUS=stopping: committing the journal and closing the state")

	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		a.log.Error("WATCHDOG_USEC is not usable: no watchdog pings", "err", err)
	}
	period := statusEvery
	if interval > 0 {
		period = interval / 2
		a.log.Info("systemd watchdog enabled", "interval", interval, "ping_every", period)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	var stalled string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if interval <= 0 {
			if s := a.statusLine(); s != status {
				status = s
				a.notify("STATUS=" + s)
			}
			continue
		}
		// A quarter of the interval to answer: a ping then still lands
		// within the interval after the previous one.
		if err := a.checkPipeline(ctx, interval/4); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			msg := "alert pipeline stalled, watchdog not fed (systemd will restart vigil): " + oneLine(err)
			if msg != stalled {
				a.log.Error("alert pipeline stalled: withholding the watchdog ping so that systemd restarts vigil", "err", oneLine(err))
				stalled = msg
			}
			status = msg
			a.notify("STATUS=" + msg)
			continue
		}
		if stalled != "" {
			a.log.Info("alert pipeline answering again; watchdog fed")
			stalled = ""
		}
		msgs := []string{"WATCHDOG=1"}
		if s := a.statusLine(); s != status {
			status = s
			msgs = append(msgs, "STATUS="+s)
		}
		a.notify(msgs...)
	}
}

// statusLine summarises the gateway for `systemctl status`: broker
// connection, receivers and what waits in the outbox.
func (a *App) statusLine() string {
	mqtt := "MQTT connected"
	if !a.mqtt.Connected() {
		mqtt = "MQTT NOT connected"
	}
	live := a.live.Load()
	s := fmt.Sprintf("running; %s; %d ARC receiver(s), %d webhook(s)", mqtt, len(live.arcs), len(live.hooks))
	stats, err := a.outbox.Stats()
	if err != nil {
		return s + "; outbox unreadable: " + err.Error()
	}
	pending, oldest := 0, time.Time{}
	for _, r := range stats {
		pending += r.Depth
		if !r.Oldest.IsZero() && (oldest.IsZero() || r.Oldest.Before(oldest)) {
			oldest = r.Oldest
		}
	}
	if pending == 0 {
		return s + "; outbox empty"
	}
	return s + fmt.Sprintf("; outbox %d pending, oldest %s", pending, time.Since(oldest).Round(time.Second))
}

// notify sends states to the service manager, one per line; without
// NOTIFY_SOCKET it does nothing. Failures are logged at most once a minute:
// the gateway keeps working without a service manager.
func (a *App) notify(states ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil && a.limiter.Allow("sd_notify") {
		a.log.Warn("cannot notify the service manager", "err", err)
	}
}

// monotonicUsec is the MONOTONIC_USEC= line systemd wants with RELOADING=1
// (Type=notify-reload), to tell this reload from an earlier one.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return ""
	}
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000)
}

// oneLine joins a multi-line error (several config problems) into one line.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
