package app

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/ingest"
	"github.com/vigil-gw/vigil/evidence/objstore"
)

// evidenceRoute is the outbox route that claims footage for alerts.
const evidenceRoute = "evidence"

// UploadPath is where cameras upload clips (tus 1.0).
const UploadPath = "/api/evidence/uploads/"

// cameras adapts the device registry to what the evidence service needs.
type cameras struct{ r *registry.Registry }

func (c cameras) Camera(id string) (evidence.Camera, bool) {
	d, ok, err := c.r.Lookup(id)
	if err != nil || !ok || d.Kind != registry.KindCamera {
		return evidence.Camera{}, false
	}
	return evidence.Camera{ID: d.ID, Site: d.Site, Wearer: d.Wearer}, true
}

func (c cameras) CameraByToken(token string) (evidence.Camera, bool) {
	d, ok, err := c.r.CameraByToken(token)
	if err != nil || !ok {
		return evidence.Camera{}, false
	}
	return evidence.Camera{ID: d.ID, Site: d.Site, Wearer: d.Wearer}, true
}

// EvidenceServiceConfig turns the configuration into the evidence service's,
// reading the store credentials from the environment or the credentials
// file. The CLI's `vigil evidence` commands use it too, so they see the same
// store as the gateway.
func EvidenceServiceConfig(cfg Config, reg *registry.Registry) (evidence.Config, error) {
	e := cfg.Evidence
	out := evidence.Config{State: cfg.State, Origin: "vigil/" + cfg.GatewayID + "/evidence",
		CheckpointEvery: e.CheckpointEvery, CheckpointInterval: e.CheckpointInterval,
		NonEvidential: time.Duration(e.NonEvidentialDays) * 24 * time.Hour, Evidential: time.Duration(e.EvidentialDays) * 24 * time.Hour,
		PreEvent: e.PreEvent, PostEvent: e.PostEvent, MaxClipSize: int64(e.MaxClipMiB) << 20, HighWater: e.HighWater,
		DockDir: e.DockDir, UploadBasePath: UploadPath, Cameras: cameras{reg}}
	if e.S3 != "" {
		s3, err := objstore.ParseS3URL(e.S3)
		if err != nil {
			return out, fmt.Errorf("evidence.s3: %w", err)
		}
		if s3.AccessKey, s3.SecretKey, err = objstore.CredentialsFromEnv(e.CredentialsFile); err != nil {
			return out, fmt.Errorf("evidence.s3: %w", err)
		}
		s3.CAFile, s3.PartSize, s3.RateLimit = e.CAFile, int64(e.PartSizeMiB)<<20, int64(e.UploadRateKBps)*1000
		if e.Region != "" {
			s3.Region = e.Region
		}
		out.S3 = &s3
	}
	return out, nil
}

// openEvidence builds the evidence service, its upload endpoint and dock.
func (a *App) openEvidence() error {
	ecfg, err := EvidenceServiceConfig(a.cfg, a.registry)
	if err != nil {
		return err
	}
	ecfg.Logger = a.log
	ecfg.ClockUnsynchronised = a.clockUnsynchronised // marks ledger entries
	ecfg.Alert = func(kind, site, text string) {
		if site == "" {
			site = a.cfg.Site
		}
		if _, err := a.engine.RaiseSystem(kind, site, text); err != nil {
			a.log.Error("could not raise an evidence alert", "kind", kind, "err", err)
		}
		a.outbox.Wake()
	}
	if a.evidence, err = evidence.Open(context.Background(), ecfg); err != nil {
		return err
	}
	a.tus, err = ingest.NewTus(ingest.TusConfig{Dir: filepath.Join(a.cfg.State, evidence.Dir, "uploads"), BasePath: UploadPath,
		MaxSize: ecfg.MaxClipSize, Sink: a.evidence, Logger: a.log,
		Auth: func(r *http.Request) (string, bool) {
			tok, ok := bearer(r)
			if !ok {
				return "", false
			}
			c, ok := ecfg.Cameras.CameraByToken(tok)
			return c.ID, ok
		}})
	if err != nil {
		return err
	}
	if ecfg.DockDir != "" {
		a.dock, err = ingest.NewDock(ingest.DockConfig{Dir: ecfg.DockDir, Spool: filepath.Join(a.cfg.State, evidence.Dir, "dock"), Sink: a.evidence, Logger: a.log,
			Rejected: func(string, error) { a.metrics.rejected.WithLabelValues("dock_sidecar").Inc() }})
		if err != nil {
			return err
		}
	}
	a.announce = make(chan devices.Event, 256)
	return nil
}

// runEvidence runs the evidence service's loops until ctx ends.
func (a *App) runEvidence(ctx context.Context, g interface{ Go(func() error) }) {
	g.Go(func() error { return a.evidence.Run(ctx) })
	g.Go(func() error { return a.tus.Run(ctx, time.Minute) })
	if a.dock != nil {
		g.Go(func() error { return a.dock.Run(ctx) })
	}
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev := <-a.announce:
				c := ev.Clip
				if err := a.evidence.Announce(ctx, ev.Device, c.ID, c.SHA256, c.Size, c.Start, c.End); err != nil {
					a.log.Warn("could not record a clip announcement", "device", ev.Device, "clip", c.ID, "err", err)
				}
			}
		}
	})
}

// cameraEvent passes a journaled clip_ready to the evidence service, off the
// journal's goroutine: the alarm path never waits for the evidence database.
func (a *App) cameraEvent(ev devices.Event) {
	if ev.Type != devices.TypeClipReady || ev.Clip == nil {
		return
	}
	select {
	case a.announce <- ev:
	default:
		a.log.Warn("clip announcement dropped: the evidence service is behind", "device", ev.Device, "clip", ev.Clip.ID)
	}
}

func (a *App) evidenceStatus(w http.ResponseWriter, r *http.Request) {
	st, err := a.evidence.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

var (
	descBacklog      = prometheus.NewDesc("vigil_evidence_backlog_clips", "Clips on the gateway's disk waiting for the object store.", nil, nil)
	descBacklogBytes = prometheus.NewDesc("vigil_evidence_backlog_bytes", "Bytes of footage waiting for the object store.", nil, nil)
	descBacklogAge   = prometheus.NewDesc("vigil_evidence_oldest_queued_age_seconds", "Age of the oldest clip not yet in the object store.", nil, nil)
	descQuarantined  = prometheus.NewDesc("vigil_evidence_quarantined_clips", "Clips kept apart because their digest did not match.", nil, nil)
	descLedger       = prometheus.NewDesc("vigil_evidence_ledger_entries", "Entries in the evidence ledger.", nil, nil)
	descUnsigned     = prometheus.NewDesc("vigil_evidence_unsigned_entries", "Ledger entries not yet covered by a signed checkpoint.", nil, nil)
)

type evidenceCollector struct{ a *App }

func (c evidenceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBacklog, descBacklogBytes, descBacklogAge, descQuarantined, descLedger, descUnsigned} {
		ch <- d
	}
}

func (c evidenceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.a.evidence.Status(ctx)
	if err != nil {
		return
	}
	age := 0.0
	if !st.OldestQueued.IsZero() {
		age = time.Since(st.OldestQueued).Seconds()
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(descBacklog, float64(st.Backlog))
	g(descBacklogBytes, float64(st.BacklogBytes))
	g(descBacklogAge, age)
	g(descQuarantined, float64(st.Quarantined))
	g(descLedger, float64(st.LedgerSize))
	g(descUnsigned, float64(st.LedgerSize-st.CheckpointSize))
}
