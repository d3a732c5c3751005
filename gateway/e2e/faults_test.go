package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
)

// TestFaultyFleet runs a fleet that sends malformed payloads, duplicates and
// skewed clocks. Every message must be accounted for exactly once (journaled,
// dropped as a duplicate, or rejected with a reason), every duress must reach
// the ARC, and the gateway must stay healthy.
func TestFaultyFleet(t *testing.T) {
	const n = 40
	broker := startMosquitto(t)
	state := t.TempDir()
	addDevices(t, state, site, n)
	rcv := startARC(t, nil)
	v := startVigil(t, state, "--mqtt", broker, "--arc", rcv.url())

	fleet, err := firmwaresim.NewFleet(firmwaresim.FleetConfig{Broker: broker, Site: site, Buttons: n,
		Heartbeat: 250 * time.Millisecond, DuressRate: 10, ClockSkew: 2 * time.Hour, SkewFraction: 0.2, Seed: 7,
		Faults: firmwaresim.Faults{MalformedRate: 0.1, DuplicateRate: 0.1}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	require.NoError(t, fleet.Run(ctx))
	st := fleet.Stats()
	require.Zero(t, st.PublishErrors)
	var sent uint64
	for _, c := range st.Published {
		sent += c
	}
	var malformed uint64
	for _, c := range st.Malformed {
		malformed += c
	}
	total := int(sent + malformed + st.Duplicates)
	t.Logf("fleet sent %d messages: %v well-formed, %v malformed, %d duplicates", total, st.Published, st.Malformed, st.Duplicates)
	require.Positive(t, malformed)
	require.Positive(t, st.Duplicates)
	require.Positive(t, st.Published["duress"])

	accounted := func() (journaled, dup, rejected int) {
		for _, typ := range []string{"duress", "duress_cancel", "heartbeat", "battery"} {
			journaled += metric(t, v.http, `vigil_events_total{source="mqtt",type="`+typ+`"}`)
		}
		for _, r := range []string{"payload", "topic", "v", "id", "device", "seq", "type", "ts", "loc", "battery"} {
			rejected += metric(t, v.http, `vigil_events_rejected_total{reason="`+r+`"}`)
		}
		return journaled, metric(t, v.http, "vigil_events_duplicate_total"), rejected
	}
	waitFor(t, 30*time.Second, "every message accounted for", func() bool {
		j, d, r := accounted()
		return j+d+r >= total
	})
	j, d, r := accounted()
	assert.Equal(t, total, j+d+r, "journaled %d + duplicates %d + rejected %d", j, d, r)
	assert.GreaterOrEqual(t, r, int(malformed), "every malformed payload rejected")
	assert.Positive(t, d, "duplicates dropped by (device, seq)")

	// Every duress, including those from skewed clocks, reached the ARC once.
	waitFor(t, 30*time.Second, "every duress at the ARC", func() bool {
		sum := 0
		for _, c := range rcv.alarms() {
			sum += c
		}
		return sum >= int(st.Published["duress"])
	})
	sum := 0
	for _, c := range rcv.alarms() {
		sum += c
	}
	assert.Equal(t, int(st.Published["duress"]), sum)

	// Rejections are inspectable.
	code, body := v.api(t, http.MethodGet, "/api/quarantine", "")
	require.Equal(t, http.StatusOK, code)
	var q struct {
		Rejected []struct {
			Reason string `json:"reason"`
			Error  string `json:"error"`
		} `json:"rejected"`
	}
	require.NoError(t, json.Unmarshal(body, &q))
	require.NotEmpty(t, q.Rejected)
	for _, x := range q.Rejected {
		assert.NotEmpty(t, x.Reason)
		assert.Contains(t, x.Error, "devices: "+x.Reason+":", "the error names the field")
	}
	hr, err := http.Get("http://" + v.http + "/readyz")
	require.NoError(t, err)
	hr.Body.Close()
	assert.Equal(t, http.StatusOK, hr.StatusCode, "still healthy")
}
