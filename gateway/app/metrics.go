package app

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are what an operator watches: events in and rejected, alert
// delivery latency, outbox depth and age, forwarder failures, link state.
type metrics struct {
	reg             *prometheus.Registry
	eventsIn        *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	duplicates      prometheus.Counter
	deliveryLatency *prometheus.HistogramVec
	attempts        *prometheus.CounterVec
	alarmPath       *prometheus.CounterVec
	arcUp           *prometheus.GaugeVec
	mqttUp          prometheus.Gauge
	apiDenied       *prometheus.CounterVec
	serialUp        *prometheus.GaugeVec
	clockSynced     prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_events_total",
			Help: "Device events journaled, by type and transport."}, []string{"type", "source"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_events_rejected_total",
			Help: "Device messages rejected and quarantined, by the field that failed."}, []string{"reason"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_events_duplicate_total",
			Help: "Redelivered device events dropped by (device, seq) deduplication."}),
		deliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_alert_delivery_seconds",
			Help:    "Time from an alert being durable to the first receiver acknowledging it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"event", "route"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_forward_attempts_total",
			Help: "Delivery attempts by route and result (ok, retry, permanent)."}, []string{"route", "result"}),
		alarmPath: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_alarm_first_attempts_total",
			Help: "First delivery attempts of P1 alarms, by route and how the alarm reached the route: before_commit (sent while the journal's fsync ran), in_commit (handed over inside the queueing transaction) or queue (read from the queue after the commit)."}, []string{"route", "via"}),
		arcUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_arc_link_up",
			Help: "1 while the ARC receiver answers link tests and alarms."}, []string{"route"}),
		mqttUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_mqtt_connected",
			Help: "1 while the gateway is connected and subscribed to the broker."}),
		apiDenied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_api_denied_total",
			Help: "API requests refused: no_token, bad_token, bad_session, bad_password, locked_out, disabled, csrf, role, error; governance (footage, retention, release and audit requests refused by role, scope or justification: each is also in the audit trail)."}, []string{"reason"}),
		serialUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_serial_port_up",
			Help: "1 while the serial port is open."}, []string{"port"}),
	}
	m.reg.MustRegister(m.eventsIn, m.rejected, m.duplicates, m.deliveryLatency, m.attempts, m.alarmPath, m.arcUp, m.mqttUp, m.apiDenied, m.serialUp,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.clockSynced = prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_clock_synchronised",
		Help: "1 while the kernel reports the clock synchronised to a time source (NTP); 0 when it is not, or cannot tell."})
	m.reg.MustRegister(m.clockSynced)
	return m
}

// register adds the gauges computed at scrape time from the database.
func (m *metrics) register(a *App) {
	m.reg.MustRegister(&stateCollector{a: a})
	m.reg.MustRegister(newSystemCollector(a.cfg, time.Now())) // metrics_extra.go: build, start time, disk
	m.presetAttempts(a)
}

var (
	descOpen        = prometheus.NewDesc("vigil_alerts_open", "Alerts not yet resolved.", nil, nil)
	descUndelivered = prometheus.NewDesc("vigil_alerts_undelivered", "Open alerts that no receiver has acknowledged.", nil, nil)
	descDepth       = prometheus.NewDesc("vigil_outbox_depth", "Messages waiting on a route.", []string{"route"}, nil)
	descAge         = prometheus.NewDesc("vigil_outbox_oldest_age_seconds", "Age of the oldest message waiting on a route.", []string{"route"}, nil)
	descOverdue     = prometheus.NewDesc("vigil_support_steps_overdue", "Open post-incident support steps past their due time.", nil, nil)
)

// stateCollector reads alert and outbox state from the database at scrape time,
// so the figures are always what is durable, never a drifting in-memory count.
type stateCollector struct{ a *App }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOpen
	ch <- descUndelivered
	ch <- descDepth
	ch <- descAge
	ch <- descOverdue
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if counts, err := c.a.engine.Count(); err == nil {
		ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(counts.Open))
		ch <- prometheus.MustNewConstMetric(descUndelivered, prometheus.GaugeValue, float64(counts.Undelivered))
	}
	if n, err := c.a.incidents.OverdueCount(time.Now()); err == nil {
		ch <- prometheus.MustNewConstMetric(descOverdue, prometheus.GaugeValue, float64(n))
	}
	stats, err := c.a.outbox.Stats()
	if err != nil {
		return
	}
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(s.Depth), s.Route)
		age := 0.0
		if !s.Oldest.IsZero() {
			age = time.Since(s.Oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, age, s.Route)
	}
}
