package app

import (
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/gateway/outbox"
)

var (
	descBuildInfo = prometheus.NewDesc("vigil_build_info",
		"Always 1; the labels say which Vigil build is running, so a fleet's dashboards show which gateways missed an upgrade.",
		[]string{"version", "goversion"}, nil)
	descStartTime = prometheus.NewDesc("vigil_start_time_seconds",
		"Unix time the gateway started; a value that keeps changing is a gateway restarting.", nil, nil)
	descDiskUsed = prometheus.NewDesc("vigil_state_disk_used_ratio",
		"Fraction (0-1) of the filesystem holding the state directory's evidence spool that is in use, as the evidence high-water check measures it.", nil, nil)
	descHighWater = prometheus.NewDesc("vigil_evidence_high_water_ratio",
		"The configured evidence.high_water: above this disk fraction new non-evidential clips are refused.", nil, nil)
)

// systemCollector reports what the gateway is and what room it has left:
// build, start time, state disk use against the evidence high-water mark.
// The disk is read at scrape time so the figure is never stale, with the
// same formula evidence uses to refuse clips, so an alert on used >=
// high_water fires exactly when footage starts being refused.
type systemCollector struct {
	version, goVersion string
	started            time.Time
	dir                string // the evidence spool, on the state disk
	highWater          float64
}

func newSystemCollector(cfg Config, started time.Time) *systemCollector {
	version, goVersion := buildVersion()
	return &systemCollector{version: version, goVersion: goVersion, started: started,
		dir: filepath.Join(cfg.State, evidence.Dir), highWater: cfg.Evidence.HighWater}
}

// buildinfoVersion is the linker flag with which the Makefile stamps the
// version `vigil version` prints (cmd/internal/buildinfo).
const buildinfoVersion = "github.com/vigil-gw/vigil/cmd/internal/buildinfo.version="

// buildVersion is the version `vigil version` reports, so a dashboard and a
// technician at the box name the same build. gateway/app cannot import
// cmd/internal/buildinfo (Go's internal rule), so it reads the same stamp
// from where the go command records it: the -ldflags build setting.
func buildVersion() (version, goVersion string) {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(bi)
}

// versionFrom resolves as buildinfo does: the -X stamp, else the module
// version the go command derived (not "(devel)"), else "0.0.0-dev".
func versionFrom(bi *debug.BuildInfo) (version, goVersion string) {
	version, goVersion = "0.0.0-dev", runtime.Version()
	if bi == nil {
		return version, goVersion
	}
	if bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	for _, s := range bi.Settings {
		if s.Key != "-ldflags" {
			continue
		}
		for _, f := range strings.Fields(s.Value) {
			f = strings.Trim(strings.TrimPrefix(f, "-X="), `'"`)
			if v, ok := strings.CutPrefix(f, buildinfoVersion); ok && v != "" {
				version = v
			}
		}
	}
	return version, goVersion
}

func (c *systemCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBuildInfo
	ch <- descStartTime
	ch <- descDiskUsed
	ch <- descHighWater
}

func (c *systemCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, c.version, c.goVersion)
	ch <- prometheus.MustNewConstMetric(descStartTime, prometheus.GaugeValue, float64(c.started.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(descHighWater, prometheus.GaugeValue, c.highWater)
	// A disk that cannot be read leaves the series absent rather than 0: a
	// reassuring 0 would hide the very fault the alert is for.
	if disk, err := evidence.DiskOf(c.dir); err == nil {
		ch <- prometheus.MustNewConstMetric(descDiskUsed, prometheus.GaugeValue, disk.Used())
	}
}

// presetAttempts creates each route's attempt counters at 0, so that a
// route's first refusal is a rise from 0 that increase() sees: a counter
// that first appears already at 1 looks unchanged to it, and
// VigilAlertRefused would miss exactly the first alert a receiver refused.
// (Routes a reload adds later are covered by the rule's second clause.)
// The alarm path counters start at 0 too, so that a share can be read
// from the first alarm on.
func (m *metrics) presetAttempts(a *App) {
	stats, err := a.outbox.Stats()
	if err != nil {
		return // the counters then appear on first use, as before
	}
	for _, s := range stats {
		for _, result := range []string{"ok", "retry", "permanent"} {
			m.attempts.WithLabelValues(s.Route, result)
		}
		for _, via := range []outbox.Via{outbox.ViaBeforeCommit, outbox.ViaInCommit, outbox.ViaQueue} {
			m.alarmPath.WithLabelValues(s.Route, string(via))
		}
	}
}
