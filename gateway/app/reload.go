package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/forward/webhook"
	"github.com/vigil-gw/vigil/gateway/outbox"
)

// A reload (SIGHUP, App.Reload) re-reads the configuration and the device
// registry and applies, without a restart and without losing a queued
// message:
//
//   - arc: receivers added, removed or changed (URL, key, timeouts);
//   - webhooks: added, removed or changed (URL, secret);
//   - alerts.routing, alerts.escalate_after, alerts.ack_timeout,
//     alerts.link_test and alerts.webhook_secret_file;
//   - the device registry (devices.json): new events are judged against it.
//
// Everything else needs a restart and is named in the log when it changed.
// A configuration that does not load or validate is refused as a whole and
// the running one stays.
//
// Routes are positional (arc0 is the first receiver in the file, webhook1
// the second webhook), so a queue follows its position: replacing the
// primary receiver's URL sends what is queued for arc0 to the new receiver,
// which is what someone replacing a receiver wants. When the list gets
// shorter, the queue of a route that is gone is not dropped:
//
//   - a removed ARC route's pending alarms move to the new primary ARC
//     (arc0), unless that already has the same message: any ARC accepting
//     an alarm is help on the way, and the receivers deduplicate by the
//     message's idempotency key. The old entries are kept as "moved".
//   - a removed webhook's pending messages stay pending under its name and
//     are logged: every webhook already gets its own copy of each alert, so
//     moving them would only send another consumer duplicates. They are
//     delivered if a webhook at that position is configured again.
//   - with no ARC left at all, ARC queues stay pending the same way.
//
// The same rule applies at start-up to queues of routes removed from the
// configuration while the gateway was stopped.

// reloadable lists the configuration keys a reload applies; Config's other
// keys need a restart.
var reloadable = []string{"arc", "webhooks", "alerts.routing", "alerts.escalate_after",
	"alerts.ack_timeout", "alerts.link_test", "alerts.webhook_secret_file"}

// arcSlot is one configured ARC receiver and the client that serves it.
type arcSlot struct {
	name, addr string
	// print identifies the receiver's settings (URL, key, timeouts) without
	// holding the key: a reload keeps the client of an unchanged receiver,
	// and its connection.
	print  string
	client *dc09.Client
	// retired is set before a replaced client is closed, so the link-down
	// report its closing causes raises no "ARC not answering" alert.
	retired atomic.Bool
}

// hookSlot is one configured webhook and its sender.
type hookSlot struct {
	name, print string
	sender      *webhook.Sender
}

// routeSet is what the reloadable configuration builds: the ARC clients,
// the webhook senders and the routing.
type routeSet struct {
	arcs  []*arcSlot
	hooks []*hookSlot
	// alert holds ARC, Webhooks and ByPriority; Wearer and Evidence are
	// fixed and added by the caller.
	alert alert.Routes
}

// outboxRoutes is the set's routes for the dispatcher: each ARC escalates
// to the next after escalate_after.
func (rs *routeSet) outboxRoutes(escalateAfter time.Duration) []outbox.Route {
	var out []outbox.Route
	for i, s := range rs.arcs {
		r := outbox.Route{Name: s.name, Sender: s.client}
		if i+1 < len(rs.arcs) {
			r.Backup, r.EscalateAfter = rs.arcs[i+1].name, escalateAfter
		}
		out = append(out, r)
	}
	for _, h := range rs.hooks {
		out = append(out, outbox.Route{Name: h.name, Sender: h.sender})
	}
	return out
}

// buildRoutes makes the ARC clients and webhook senders of cfg, reusing
// those of prev (nil at start) whose settings are unchanged.
func (a *App) buildRoutes(cfg Config, prev *routeSet) (*routeSet, error) {
	rs := &routeSet{}
	for i, ac := range cfg.ARC {
		dcfg, err := dc09.ParseURL(ac.URL)
		if err != nil {
			return nil, fmt.Errorf("arc[%d]: %w", i, err)
		}
		if ac.KeyFile != "" {
			hexKey, err := readSecret(ac.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("arc[%d]: %w", i, err)
			}
			if dcfg.Key, err = hex.DecodeString(string(hexKey)); err != nil {
				return nil, fmt.Errorf("arc[%d]: key file %s: not hex: %w", i, ac.KeyFile, err)
			}
		}
		name := arcRoute(i)
		// The receiver's own URL parameters win over the general settings.
		if dcfg.AckTimeout == 0 {
			dcfg.AckTimeout = cfg.Alerts.AckTimeout
		}
		if dcfg.LinkTest == 0 {
			dcfg.LinkTest = cfg.Alerts.LinkTest
		}
		print := fingerprint(ac.URL, string(dcfg.Key), dcfg.AckTimeout.String(), dcfg.LinkTest.String())
		if prev != nil && i < len(prev.arcs) && prev.arcs[i].print == print {
			rs.arcs = append(rs.arcs, prev.arcs[i])
		} else {
			s := &arcSlot{name: name, addr: dcfg.Addr, print: print}
			dcfg.Logger = a.log.With("route", name)
			dcfg.OnLink = func(up bool, err error) {
				if !s.retired.Load() {
					a.onARCLink(name, s.addr, up, err)
				}
			}
			dcfg.ClockUnsynchronised = a.clockUnsynchronised // dc09's stamp says why
			s.client = dc09.New(dcfg)
			rs.arcs = append(rs.arcs, s)
		}
		rs.alert.ARC = append(rs.alert.ARC, name)
	}
	for i, hc := range cfg.Webhooks {
		secretFile := hc.SecretFile
		if secretFile == "" {
			secretFile = cfg.Alerts.WebhookSecretFile
		}
		secret, err := readSecret(secretFile)
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d]: %w", i, err)
		}
		name := webhookRoute(i)
		print := fingerprint(hc.URL, string(secret), cfg.GatewayID)
		if prev != nil && i < len(prev.hooks) && prev.hooks[i].print == print {
			rs.hooks = append(rs.hooks, prev.hooks[i])
		} else {
			s, err := webhook.New(webhook.Config{URL: hc.URL, Secret: secret, Source: "urn:vigil:gateway:" + cfg.GatewayID})
			if err != nil {
				return nil, fmt.Errorf("webhooks[%d]: %w", i, err)
			}
			rs.hooks = append(rs.hooks, &hookSlot{name: name, print: print, sender: s})
		}
		rs.alert.Webhooks = append(rs.alert.Webhooks, name)
	}
	var err error
	if rs.alert.ByPriority, err = cfg.routing(); err != nil {
		return nil, err
	}
	return rs, nil
}

// fingerprint identifies settings that may include a secret, without
// keeping the secret.
func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// successor is where a removed route's pending messages go: the primary ARC
// for an ARC route (when one is configured), nowhere for a webhook. See the
// reload rules above.
func successor(live *routeSet) func(string) string {
	return func(route string) string {
		if strings.HasPrefix(route, "arc") && len(live.arcs) > 0 {
			return live.arcs[0].name
		}
		return ""
	}
}

// ReloadFrom sets where Reload reads the configuration: cmd/vigil passes
// the config file with its command-line flags laid over it, so a reload
// sees what a restart would.
func (a *App) ReloadFrom(load func() (Config, error)) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.loadConfig = load
}

// Reload applies a new configuration and re-reads the device registry while
// the gateway runs (see the rules at the top of this file). It returns why
// a configuration was refused; the running one then stays. It never drops a
// queued message, and alerts raised while it runs go out on the old routes
// or the new ones.
func (a *App) Reload(ctx context.Context) (err error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.notify("RELOADING=1", monotonicUsec(), "STATUS=reloading configuration")
	defer func() {
		status := "STATUS=running; configuration reloaded"
		if err != nil {
			status = "STATUS=running; reload refused, previous configuration kept: " + oneLine(err)
		}
		a.notify("READY=1", status)
	}()
	if a.loadConfig == nil {
		return errors.New("reload: no configuration source (ReloadFrom was not called)")
	}
	cfg, err := a.loadConfig()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		a.log.Error("reload refused: the configuration has a problem; the previous one keeps running", "err", oneLine(err))
		return fmt.Errorf("reload: %w", err)
	}
	// Compared with the configuration the gateway started with: a setting
	// that still differs is reported at every reload until a restart.
	if keys := restartKeys(a.cfg, cfg); len(keys) > 0 {
		a.log.Warn("reload: these settings changed but only take effect after a restart", "keys", strings.Join(keys, ", "))
	}
	a.reloadRegistry()

	old := a.live.Load()
	rs, err := a.buildRoutes(cfg, old)
	if err != nil {
		a.log.Error("reload refused: a receiver could not be set up; the previous configuration keeps running", "err", oneLine(err))
		return fmt.Errorf("reload: %w", err)
	}
	// 1. The dispatcher learns the new and changed routes, and keeps the
	// removed ones for now: an alert raised before step 2 may still be
	// queued on them.
	if err := a.outbox.Reconfigure(rs.outboxRoutes(cfg.Alerts.EscalateAfter)); err != nil {
		a.closeNew(rs, old)
		a.log.Error("reload refused", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	// 2. New alerts use the new routes.
	routes := rs.alert
	routes.Wearer, routes.Evidence = wearerRoute, evidenceRoute
	a.engine.SetRoutes(routes)
	a.live.Store(rs)
	// 3. Every transaction that could have read the old routes has
	// committed once this one runs: bbolt runs write transactions one at a
	// time.
	if err := a.db.Update(func(*bolt.Tx) error { return nil }); err != nil {
		a.log.Error("reload: waiting for alert transactions", "err", err)
	}
	// 4. Retire the routes that are gone, moving or keeping their queues.
	var gone []string
	for _, r := range routeNames(old) {
		if !slices.Contains(routeNames(rs), r) {
			gone = append(gone, r)
		}
	}
	retired, rerr := a.outbox.Retire(gone, successor(rs))
	a.logRetired(retired)
	if rerr != nil {
		a.log.Error("reload: moving the queues of removed routes failed; they stay pending", "err", rerr)
	}
	// 5. Start the new clients, stop the replaced ones.
	a.swapClients(ctx, old, rs)
	for _, r := range gone {
		a.metrics.arcUp.DeleteLabelValues(r)
	}
	a.log.Info("configuration reloaded", "arc_receivers", len(rs.arcs), "webhooks", len(rs.hooks),
		"routes", strings.Join(a.outbox.Routes(), ","))
	return nil
}

func routeNames(rs *routeSet) []string {
	var out []string
	for _, s := range rs.arcs {
		out = append(out, s.name)
	}
	for _, h := range rs.hooks {
		out = append(out, h.name)
	}
	return out
}

// closeNew closes the clients rs made that old does not have (a refused reload).
func (a *App) closeNew(rs, old *routeSet) {
	for _, s := range rs.arcs {
		if !slices.Contains(old.arcs, s) {
			s.retired.Store(true)
			s.client.Close()
		}
	}
}

// swapClients starts the link tests of the clients rs added and closes the
// clients old had that rs no longer uses (their Run returns).
func (a *App) swapClients(ctx context.Context, old, rs *routeSet) {
	for _, s := range rs.arcs {
		if slices.Contains(old.arcs, s) {
			continue
		}
		a.metrics.arcUp.WithLabelValues(s.name).Set(1)
		select {
		case a.spawn <- s.client.Run:
		case <-a.stopped:
		case <-ctx.Done():
			a.log.Error("reload: the new receiver's link test was not started", "route", s.name, "err", ctx.Err())
		}
	}
	for _, s := range old.arcs {
		if !slices.Contains(rs.arcs, s) {
			s.retired.Store(true)
			s.client.Close()
		}
	}
}

// logRetired says what happened to the queue of each removed route.
func (a *App) logRetired(retired []outbox.Retired) {
	for _, r := range retired {
		switch {
		case r.Moved+r.Already > 0:
			a.log.Warn("route removed: its pending messages moved to another route", "route", r.Route, "to", r.To,
				"moved", r.Moved, "already_there", r.Already)
		case r.Kept > 0:
			a.log.Error("route removed with messages pending: they are kept, not sent, until a route of this name is configured again",
				"route", r.Route, "pending", r.Kept)
		default:
			a.log.Info("route removed", "route", r.Route)
		}
	}
}

// adoptOrphans applies the reload rules at start-up to queues of routes
// that were configured when the gateway last ran but are not now.
func (a *App) adoptOrphans() error {
	orphans, err := a.outbox.Orphans()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(orphans))
	for n := range orphans {
		names = append(names, n)
	}
	slices.Sort(names)
	var retired []outbox.Retired
	next := successor(a.live.Load())
	for _, n := range names {
		r, err := a.outbox.Adopt(n, next(n))
		if err != nil {
			return err
		}
		retired = append(retired, r)
	}
	a.logRetired(retired)
	return nil
}

// reloadRegistry re-reads the device registry and logs what changed. The
// registry also notices a changed file by itself on the next lookup; this
// reads it now, so a broken file is reported at the reload rather than at
// the next alarm (which then treats every device as unknown: never dropped,
// marked unverified).
func (a *App) reloadRegistry() {
	fresh, err := OpenRegistry(a.cfg.State).List()
	if err != nil {
		a.log.Error("reload: the device registry cannot be read; alarms from its devices will be marked unverified until it is fixed", "err", err)
		return
	}
	prev := a.regSnapshot
	cur := make(map[string]registry.Device, len(fresh))
	var added, removed, changed []string
	for _, d := range fresh {
		cur[d.ID] = d
		if p, ok := prev[d.ID]; !ok {
			added = append(added, d.ID)
		} else if !reflect.DeepEqual(p, d) {
			changed = append(changed, d.ID)
		}
	}
	for id := range prev {
		if _, ok := cur[id]; !ok {
			removed = append(removed, id)
		}
	}
	slices.Sort(removed)
	a.regSnapshot = cur
	// A lookup now makes the running registry read the file too.
	if _, _, err := a.registry.Lookup(""); err != nil {
		a.log.Error("reload: device registry", "err", err)
	}
	a.log.Info("device registry reloaded", "devices", len(fresh), "added", strings.Join(added, ","),
		"removed", strings.Join(removed, ","), "changed", strings.Join(changed, ","))
}

// registrySnapshot reads the registry for later comparison (at start).
func registrySnapshot(r *registry.Registry) map[string]registry.Device {
	list, err := r.List()
	if err != nil {
		return nil
	}
	out := make(map[string]registry.Device, len(list))
	for _, d := range list {
		out[d.ID] = d
	}
	return out
}

// restartKeys names the settings that differ between old and cfg, other
// than those a reload applies, by their YAML keys.
func restartKeys(old, cfg Config) []string {
	var out []string
	diffKeys("", reflect.ValueOf(old), reflect.ValueOf(cfg), &out)
	return slices.DeleteFunc(out, func(k string) bool { return slices.Contains(reloadable, k) })
}

// diffKeys walks this package's configuration structs by their YAML keys;
// anything else (lists, maps, values) is compared whole.
func diffKeys(prefix string, a, b reflect.Value, out *[]string) {
	if a.Kind() != reflect.Struct || a.Type().PkgPath() != reflect.TypeFor[Config]().PkgPath() {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, prefix)
		}
		return
	}
	for i := range a.NumField() {
		f := a.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			key = strings.ToLower(f.Name)
		}
		if prefix != "" {
			key = prefix + "." + key
		}
		diffKeys(key, a.Field(i), b.Field(i), out)
	}
}

// dynamic runs what a reload starts (the link tests of new ARC clients)
// until ctx is done. Each returns when its client is closed.
func (a *App) runDynamic(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case run := <-a.spawn:
			wg.Go(func() {
				if err := run(ctx); err != nil {
					a.log.Error("receiver link test stopped", "err", err)
				}
			})
		case <-ctx.Done():
			return nil
		}
	}
}
