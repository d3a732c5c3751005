package doctor

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func msN(n ...float64) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v * float64(time.Millisecond))
	}
	return out
}

// repeat makes count samples of v ms.
func repeat(v float64, count int) []float64 {
	out := make([]float64, count)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestJudgeFsync(t *testing.T) {
	tests := []struct {
		name        string
		samples     []time.Duration
		err         error
		want        Status
		summary     string
		advice      string
		p99, maxima float64
	}{
		{"SSD", msN(repeat(0.8, 49)...), nil, OK, "fsync p99 0.8 ms over 49 writes", "", 0.8, 0.8},
		{"one spike in a hundred does not make the p99", msN(append(repeat(2, 99), 400)...), nil, OK, "max 400.0 ms", "", 2, 400},
		{"two spikes in a hundred do", msN(append(repeat(2, 98), 300, 400)...), nil, Warn, "p99 300.0 ms", "an SD card with p99 over 50.0 ms is unfit for the alert journal: move /var/lib/vigil to a USB SSD", 300, 400},
		{"of fifty samples, the worst is the p99", msN(append(repeat(2, 49), 400)...), nil, Warn, "p99 400.0 ms", "USB SSD", 400, 400},
		{"exactly at the limit is fine", msN(repeat(50, 10)...), nil, OK, "p99 50.0 ms", "", 50, 50},
		{"just over", msN(repeat(50.1, 10)...), nil, Warn, "too slow for the alert journal", "USB SSD", 50.1, 50.1},
		{"slow card, budget ran out after few samples", msN(180, 220, 250), nil, Warn, "over 3 writes", "USB SSD", 250, 250},
		{"fsync error", msN(1, 1), errors.New("fsync: input/output error"), Fail, "cannot make writes durable in /var/lib/vigil: fsync: input/output error", "check the disk (dmesg)", 0, 0},
		{"nothing measured", nil, nil, Warn, "no fsync was measured", "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := judgeFsync("/var/lib/vigil", tt.samples, tt.err)
			assert.Equal(t, checkFsync, f.Name)
			assert.Equal(t, tt.want, f.Status)
			assert.Contains(t, f.Summary, tt.summary)
			assert.Contains(t, f.Advice, tt.advice)
			if tt.p99 > 0 {
				assert.InDelta(t, tt.p99, f.Details["p99_ms"], 0.01)
				assert.InDelta(t, tt.maxima, f.Details["max_ms"], 0.01)
			}
			assert.Equal(t, len(tt.samples), f.Details["samples"])
		})
	}
}

func TestPercentile(t *testing.T) {
	s := msN(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	assert.Equal(t, 5*time.Millisecond, percentile(s, 0.5))
	assert.Equal(t, 10*time.Millisecond, percentile(s, 0.99))
	assert.Equal(t, 1*time.Millisecond, percentile(s, 0))
	assert.Equal(t, 7*time.Millisecond, percentile(msN(7), 0.99))
}

func TestJudgeDisk(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name      string
		used, hw  float64
		want      Status
		summary   string
		hasAdvice bool
	}{
		{"plenty of room", 0.40, 0.90, OK, "the state disk is 40% used, 19.2 GiB free of 32.0 GiB (evidence.high_water 90%)", false},
		{"just below the warning band", 0.849, 0.90, OK, "85% used", false},
		{"within five points", 0.85, 0.90, Warn, "close to the point where new footage is refused", true},
		{"at the mark", 0.90, 0.90, Fail, "new non-evidential footage is refused", true},
		{"above it", 0.97, 0.90, Fail, "97% used", true},
		{"a lower mark", 0.72, 0.75, Warn, "evidence.high_water 75%", true},
		{"unset mark takes the default", 0.91, 0, Fail, "evidence.high_water 90%", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total := uint64(32 * gib)
			avail := uint64((1 - tt.used) * 32 * gib)
			f := judgeDisk("/var/lib/vigil", tt.used, tt.hw, avail, total)
			assert.Equal(t, checkDisk, f.Name)
			assert.Equal(t, tt.want, f.Status, f.Summary)
			assert.Contains(t, f.Summary, tt.summary)
			assert.Equal(t, tt.hasAdvice, f.Advice != "")
			assert.Equal(t, total, f.Details["total_bytes"])
		})
	}
}

func TestJudgeCert(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name              string
		notBefore, expiry time.Time
		want              Status
		words             string
	}{
		{"valid for a year", now.Add(-day), now.Add(365 * day), OK, "valid until 2026-06-01"},
		{"31 days left", now.Add(-day), now.Add(31 * day), OK, "valid until 2025-07-02"},
		{"30 days left", now.Add(-day), now.Add(30 * day), Warn, "expires on 2025-07-01 (in 30 days)"},
		{"hours left", now.Add(-day), now.Add(5 * time.Hour), Warn, "expires on 2025-06-01 (in 0 days)"},
		{"expired yesterday", now.Add(-400 * day), now.Add(-day), Fail, "expired on 2025-05-31"},
		{"not valid yet: a clock in the past", now.Add(2 * day), now.Add(365 * day), Warn, "is not valid until 2025-06-03 (is this machine's clock right?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, words := judgeCert(tt.notBefore, tt.expiry, now)
			assert.Equal(t, tt.want, s)
			assert.Equal(t, tt.words, words)
		})
	}
}

func TestWrap(t *testing.T) {
	assert.Equal(t, []string{"one two", "three", "averyveryverylongword", "x"}, wrap("one two three averyveryverylongword x", 9))
	assert.Nil(t, wrap("  ", 10))
}
