// Package prometheus_test checks Vigil's Prometheus alert rules and Grafana
// dashboard: the rules pass promtool's own checks and unit tests, every
// dashboard query parses, and neither uses a metric docs/metrics.md does not
// document (which gateway/app's tests hold to what the gateway exports), so
// no rule waits on a series that will never exist.
package prometheus_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const (
	rulesFile     = "vigil-rules.yml"
	rulesTestFile = "vigil-rules.test.yml"
	dashboardFile = "../grafana/vigil-dashboard.json"
	metricsDoc    = "../../docs/metrics.md"
)

// promtool finds promtool: VIGIL_PROMTOOL (set by make test from
// deploy/testenv/install.sh), else PATH. Missing, it fails under CI and
// skips elsewhere, naming what to run.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VIGIL_PROMTOOL"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	msg := "promtool not found (VIGIL_PROMTOOL unset and not on PATH): run deploy/testenv/install.sh, or make test"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestRulesCheck(t *testing.T) {
	t.Parallel()
	runPromtool(t, "check", "rules", rulesFile)
}

func TestRulesUnitTests(t *testing.T) {
	t.Parallel()
	runPromtool(t, "test", "rules", rulesTestFile)
}

// ruleFile is the part of a Prometheus rule file these tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	alert, expr string
	labels      map[string]string
	annotations map[string]string
}

func readRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var f ruleFile
	require.NoError(t, yaml.Unmarshal(raw, &f))
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, rule{alert: r.Alert, expr: r.Expr, labels: r.Labels, annotations: r.Annotations})
		}
	}
	require.NotEmpty(t, out)
	return out
}

// TestAlertsActionable: every alert says how bad it is and what to do, and
// docs/metrics.md's alert table lists exactly the alerts the file has.
func TestAlertsActionable(t *testing.T) {
	rules := readRules(t)
	documented := documentedAlerts(t)
	var names []string
	for _, r := range rules {
		if !assert.NotEmpty(t, r.alert, "only alerting rules here: %s", r.expr) {
			continue
		}
		names = append(names, r.alert)
		assert.Contains(t, []string{"critical", "warning"}, r.labels["severity"], "%s: severity", r.alert)
		assert.NotEmpty(t, r.annotations["summary"], "%s: summary", r.alert)
		assert.GreaterOrEqual(t, len(r.annotations["description"]), 80, "%s: a description a technician can act on", r.alert)
		assert.Contains(t, documented, r.alert, "%s is not in docs/metrics.md's alert table", r.alert)
	}
	for _, d := range documented {
		assert.Contains(t, names, d, "docs/metrics.md lists alert %s, which vigil-rules.yml does not have", d)
	}
}

// unitTests is the part of a promtool unit test file these tests read.
type unitTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name       string `yaml:"name"`
		AlertTests []struct {
			Alert     string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertTestedBothWays: each alert has a unit test where it fires
// and one where it stays quiet, so a rule that can never fire, or that
// always fires, cannot pass.
func TestEveryAlertTestedBothWays(t *testing.T) {
	raw, err := os.ReadFile(rulesTestFile)
	require.NoError(t, err)
	var u unitTests
	require.NoError(t, yaml.Unmarshal(raw, &u))
	assert.Equal(t, []string{rulesFile}, u.RuleFiles)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range u.Tests {
		for _, at := range tc.AlertTests {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alert] = true
			} else {
				quiet[at.Alert] = true
			}
		}
	}
	for _, r := range readRules(t) {
		assert.True(t, fires[r.alert], "%s: no unit test where it fires", r.alert)
		assert.True(t, quiet[r.alert], "%s: no unit test where it stays quiet", r.alert)
	}
}

// dashboardQueries returns every PromQL expression in the dashboard: panel
// targets, annotation queries and template variable queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d any
	require.NoError(t, json.Unmarshal(raw, &d))
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d)
	require.NotEmpty(t, out)
	return out
}

// grafanaVars stands in for the dashboard's variables, so that a query can
// be handed to promtool as plain PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$instance", ".*")

// TestDashboardQueriesParse: every panel query is valid PromQL, checked by
// giving them to promtool as recording rules.
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	var f struct {
		Groups []map[string]any `yaml:"groups"`
	}
	var rules []map[string]string
	for i, q := range dashboardQueries(t) {
		if strings.HasPrefix(q, "label_values(") {
			continue // Grafana's own function, not PromQL
		}
		rules = append(rules, map[string]string{"record": "dashboard:query" + string(rune('a'+i/26)) + string(rune('a'+i%26)), "expr": grafanaVars.Replace(q)})
	}
	f.Groups = []map[string]any{{"name": "dashboard", "rules": rules}}
	raw, err := yaml.Marshal(f)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	out, err := exec.Command(pt, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, "a dashboard query is not valid PromQL:\n%s\n%s", out, raw)
}

var metricName = regexp.MustCompile(`\bvigil_[a-z0-9_]+`)

// documentedMetrics is every vigil_* metric docs/metrics.md has a row for,
// with its type.
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(metricsDoc)
	require.NoError(t, err)
	out := map[string]string{}
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "| `vigil_") {
			continue
		}
		cells := strings.Split(line, "|")
		require.GreaterOrEqual(t, len(cells), 4, line)
		out[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[2])
	}
	require.NotEmpty(t, out)
	return out
}

// documentedAlerts is the first column of docs/metrics.md's alert table.
func documentedAlerts(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(metricsDoc)
	require.NoError(t, err)
	var out []string
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "| `Vigil"); ok {
			out = append(out, "Vigil"+rest[:strings.Index(rest, "`")])
		}
	}
	require.NotEmpty(t, out)
	return out
}

// documented reports whether name is a documented metric or one of the
// series a documented histogram or summary exposes.
func documented(doc map[string]string, name string) bool {
	if _, ok := doc[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && (doc[base] == "histogram" || doc[base] == "summary" && suffix != "_bucket") {
			return true
		}
	}
	return false
}

// TestOnlyDocumentedMetricsUsed: the rules and the dashboard name no vigil_*
// metric that docs/metrics.md does not document.
func TestOnlyDocumentedMetricsUsed(t *testing.T) {
	doc := documentedMetrics(t)
	used := map[string][]string{}
	for _, r := range readRules(t) {
		for _, m := range metricName.FindAllString(r.expr, -1) {
			used[m] = append(used[m], rulesFile+" "+r.alert)
		}
	}
	for _, q := range dashboardQueries(t) {
		for _, m := range metricName.FindAllString(q, -1) {
			used[m] = append(used[m], "dashboard: "+q)
		}
	}
	require.NotEmpty(t, used)
	for m, where := range used {
		assert.True(t, documented(doc, m), "%s is used but not documented in docs/metrics.md (so the gateway does not export it): %s", m, where)
	}
	// The dashboard shows what the brief asks of it.
	for _, m := range []string{"vigil_alert_delivery_seconds_bucket", "vigil_outbox_depth", "vigil_outbox_oldest_age_seconds",
		"vigil_arc_link_up", "vigil_mqtt_connected", "vigil_serial_port_up", "vigil_events_total", "vigil_events_rejected_total",
		"vigil_evidence_backlog_bytes", "vigil_state_disk_used_ratio", "vigil_clock_synchronised"} {
		assert.True(t, slices.ContainsFunc(used[m], func(w string) bool { return strings.HasPrefix(w, "dashboard: ") }),
			"the dashboard has no panel for %s", m)
	}
}

// TestDocumentedCheckCatchesUnknown: the check above would catch a rule on
// a metric nobody exports.
func TestDocumentedCheckCatchesUnknown(t *testing.T) {
	doc := documentedMetrics(t)
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"vigil_outbox_depth", true},
		{"vigil_alert_delivery_seconds_bucket", true},
		{"vigil_alert_delivery_seconds_count", true},
		{"vigil_outbox_depth_bucket", false}, // a gauge has no buckets
		{"vigil_outbox_oldest_pending_seconds", false},
		{"vigil_nonexistent_total", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, documented(doc, tc.name))
		})
	}
}
