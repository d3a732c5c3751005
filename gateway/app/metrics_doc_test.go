package app

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

// metricsDoc is where every vigil_* metric is documented.
const metricsDoc = "../../docs/metrics.md"

// docMetric is one row of a metrics table in docs/metrics.md.
type docMetric struct {
	typ    string
	labels []string
}

// readMetricsDoc parses the rows of docs/metrics.md's tables that document a
// vigil_* metric: | `name` | type | `label`, `label` or — | meaning | action |.
func readMetricsDoc(t *testing.T) map[string]docMetric {
	t.Helper()
	raw, err := os.ReadFile(metricsDoc)
	require.NoError(t, err)
	backticked := regexp.MustCompile("`([^`]+)`")
	out := map[string]docMetric{}
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "| `vigil_") {
			continue
		}
		cells := strings.Split(strings.TrimSpace(line), "|")
		require.GreaterOrEqual(t, len(cells), 7, "a metric row has name, type, labels, meaning and action: %s", line)
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		_, dup := out[name]
		require.False(t, dup, "%s is documented twice", name)
		m := docMetric{typ: strings.TrimSpace(cells[2]), labels: []string{}}
		for _, l := range backticked.FindAllStringSubmatch(cells[3], -1) {
			m.labels = append(m.labels, l[1])
		}
		slices.Sort(m.labels)
		assert.NotEmpty(t, strings.TrimSpace(cells[4]), "%s: meaning", name)
		assert.NotEmpty(t, strings.TrimSpace(cells[5]), "%s: what to do when it moves", name)
		out[name] = m
	}
	require.NotEmpty(t, out, "no metric rows found in %s", metricsDoc)
	return out
}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// describedMetrics is every vigil_* metric the registry can export, with its
// variable labels, from the collectors' Describe output: a labelled counter
// or histogram nothing has counted yet is absent from a scrape but not from
// this. Desc has no accessors, so its String form is parsed.
func describedMetrics(t *testing.T, reg *prometheus.Registry) map[string][]string {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() { reg.Describe(ch); close(ch) }()
	out := map[string][]string{}
	for d := range ch {
		s := d.String()
		name := descName.FindStringSubmatch(s)
		labels := descLabels.FindStringSubmatch(s)
		require.NotNil(t, name, "cannot read the name in %s", s)
		require.NotNil(t, labels, "cannot read the labels in %s", s)
		if !strings.HasPrefix(name[1], "vigil_") {
			continue
		}
		ls := []string{}
		for l := range strings.SplitSeq(labels[1], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "c("), ")"); l != "" {
				ls = append(ls, l)
			}
		}
		slices.Sort(ls)
		out[name[1]] = ls
	}
	return out
}

// scrapedTypes is the TYPE of every vigil_* family on a /metrics page.
func scrapedTypes(body string) map[string]string {
	out := map[string]string{}
	for l := range strings.Lines(body) {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "vigil_") {
			out[f[2]] = f[3]
		}
	}
	return out
}

// TestMetricsDocumented: docs/metrics.md documents exactly the vigil_*
// metrics a running gateway exports, each with its type and labels, so an
// operator (and the alert rules, checked against the same page in
// deploy/prometheus) never meets an undocumented or imaginary metric.
func TestMetricsDocumented(t *testing.T) {
	doc := readMetricsDoc(t)
	cfg := DefaultConfig()
	cfg.ARC = []ARCConfig{{URL: "tcp://" + testnet.ClosedAddr(t) + "?account=1234&link_test=off"}}
	a := startMetricsApp(t, cfg)
	// Count once on every labelled vector so that the scrape shows its type
	// too; Describe below covers any vector added later without this.
	a.metrics.eventsIn.WithLabelValues("duress", "mqtt")
	a.metrics.rejected.WithLabelValues("payload")
	a.metrics.deliveryLatency.WithLabelValues("duress", "arc0")
	a.metrics.attempts.WithLabelValues("arc0", "ok")
	a.metrics.apiDenied.WithLabelValues("role")
	a.metrics.serialUp.WithLabelValues("/dev/ttyUSB0")

	scraped := scrapedTypes(scrapeMetrics(t, a))
	described := describedMetrics(t, a.metrics.reg)
	require.NotEmpty(t, scraped)
	require.NotEmpty(t, described)

	for name := range scraped {
		assert.Contains(t, described, name, "%s is scraped but no collector describes it", name)
	}
	for name, labels := range described {
		d, ok := doc[name]
		if !assert.True(t, ok, "%s is exported but not documented in docs/metrics.md", name) {
			continue
		}
		assert.Equal(t, labels, d.labels, "%s: labels in docs/metrics.md", name)
		if typ, ok := scraped[name]; ok {
			assert.Equal(t, typ, d.typ, "%s: type in docs/metrics.md", name)
		}
	}
	for name := range doc {
		_, ok := described[name]
		assert.True(t, ok, "%s is documented in docs/metrics.md but the gateway does not export it", name)
	}
}
