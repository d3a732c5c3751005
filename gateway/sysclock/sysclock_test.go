package sysclock

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJudge(t *testing.T) {
	tests := []struct {
		name     string
		status   int64
		maxError int64 // µs
		want     State
	}{
		{"fresh boot: flag set, error at the limit", staUnsync, 16_000_000, Unsynchronised},
		{"daemon just updated", 0, 1_500, Synchronised},
		{"chrony without rtcsync keeps the flag on a good clock", staUnsync, 20_000, Synchronised},
		{"daemon stopped long ago: error reached the limit", 0, 16_000_000, Unsynchronised},
		{"just under the limit", 0, 15_999_999, Synchronised},
		{"nonsense negative error", 0, -1, Unsynchronised},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := judge(tt.status, tt.maxError, 7)
			assert.Equal(t, tt.want, st.State)
			assert.Equal(t, tt.status&staUnsync != 0, st.UnsyncFlag)
			assert.Equal(t, time.Duration(tt.maxError)*time.Microsecond, st.MaxError)
			assert.Equal(t, 7*time.Microsecond, st.EstError)
		})
	}
}

func TestKernelRead(t *testing.T) {
	st := Kernel{}.Read()
	if runtime.GOOS != "linux" {
		assert.Equal(t, Unknown, st.State)
		assert.Contains(t, st.Reason, runtime.GOOS)
		return
	}
	// Whatever this machine's clock is doing, a read-only adjtimex works
	// unprivileged and gives a definite answer with a plausible error bound
	// (a sandbox that forbids the call makes it Unknown, saying why).
	if st.State == Unknown {
		assert.Contains(t, st.Reason, "adjtimex: ")
		if os.Getenv("CI") == "true" {
			t.Fatalf("adjtimex is not allowed here: %s", st.Reason)
		}
		t.Skipf("adjtimex is not allowed here: %s", st.Reason)
	}
	assert.GreaterOrEqual(t, st.MaxError, time.Duration(0))
	assert.LessOrEqual(t, st.MaxError, 16*time.Second)
	assert.Equal(t, st.MaxError >= 16*time.Second, st.State == Unsynchronised)
}

func TestStateString(t *testing.T) {
	assert.Equal(t, "synchronised", Synchronised.String())
	assert.Equal(t, "unsynchronised", Unsynchronised.String())
	assert.Equal(t, "unknown", Unknown.String())
}

// fakeClock is a Reader whose state the test sets.
type fakeClock struct {
	mu sync.Mutex
	st State
}

func (f *fakeClock) Read() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Status{State: f.st}
}

func (f *fakeClock) set(s State) {
	f.mu.Lock()
	f.st = s
	f.mu.Unlock()
}

// recorder keeps the callbacks a Watch made, in order.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *recorder) config(reader Reader, now func() time.Time) WatchConfig {
	return WatchConfig{Reader: reader, AlertAfter: 5 * time.Minute, Now: now,
		OnChange:         func(st Status) { r.add("change:" + st.State.String()) },
		OnProlonged:      func(d time.Duration, _ Status) { r.add("prolonged:" + d.String()) },
		OnResynchronised: func(Status) { r.add("resynchronised") }}
}

func TestWatchPoll(t *testing.T) {
	type step struct {
		at    time.Duration // since the first reading
		state State
	}
	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{"synchronised all along", []step{{0, Synchronised}, {30 * time.Second, Synchronised}},
			[]string{"change:synchronised"}},
		{"boot, then NTP within the grace: no alert", []step{{0, Unsynchronised}, {30 * time.Second, Unsynchronised}, {60 * time.Second, Synchronised}},
			[]string{"change:unsynchronised", "change:synchronised"}},
		{"unsynchronised for good: one alert, however many readings", []step{
			{0, Unsynchronised}, {4 * time.Minute, Unsynchronised}, {5 * time.Minute, Unsynchronised}, {6 * time.Minute, Unsynchronised}, {60 * time.Minute, Unsynchronised}},
			[]string{"change:unsynchronised", "prolonged:5m0s"}},
		{"alert, recovery, a second spell alerts again", []step{
			{0, Unsynchronised}, {5 * time.Minute, Unsynchronised}, {6 * time.Minute, Synchronised},
			{7 * time.Minute, Unsynchronised}, {11 * time.Minute, Unsynchronised}, {12 * time.Minute, Unsynchronised}},
			[]string{"change:unsynchronised", "prolonged:5m0s", "resynchronised", "change:synchronised", "change:unsynchronised", "prolonged:5m0s"}},
		{"an unknown reading does not end a spell", []step{
			{0, Unsynchronised}, {3 * time.Minute, Unknown}, {5 * time.Minute, Unsynchronised}},
			[]string{"change:unsynchronised", "change:unknown", "change:unsynchronised", "prolonged:5m0s"}},
		{"unknown all along: never an alert", []step{{0, Unknown}, {time.Hour, Unknown}},
			[]string{"change:unknown"}},
		{"synchronised, then lost", []step{{0, Synchronised}, {time.Minute, Unsynchronised}, {5 * time.Minute, Unsynchronised}, {6 * time.Minute, Unsynchronised}},
			[]string{"change:synchronised", "change:unsynchronised", "prolonged:5m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			var now time.Time
			fc := &fakeClock{}
			var r recorder
			w := NewWatch(r.config(fc, func() time.Time { return now }))
			for _, s := range tt.steps {
				now = base.Add(s.at)
				fc.set(s.state)
				w.poll()
			}
			assert.Equal(t, tt.want, r.get())
		})
	}
}

func TestWatchRun(t *testing.T) {
	fc := &fakeClock{st: Unsynchronised}
	var r recorder
	cfg := r.config(fc, nil)
	cfg.Interval, cfg.AlertAfter = time.Millisecond, time.Millisecond
	w := NewWatch(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	waitFor(t, &r, []string{"change:unsynchronised", "prolonged:"})
	fc.set(Synchronised)
	waitFor(t, &r, []string{"change:unsynchronised", "prolonged:", "resynchronised", "change:synchronised"})
	cancel()
	require.NoError(t, <-done)
}

// waitFor polls until the recorded calls start with want (prolonged:
// matches any duration).
func waitFor(t *testing.T, r *recorder, want []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := r.get()
		if matches(got, want) {
			return
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "watch did not report", "got %v, want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func matches(got, want []string) bool {
	if len(got) < len(want) {
		return false
	}
	for i, w := range want {
		if w == "prolonged:" {
			if len(got[i]) < len(w) || got[i][:len(w)] != w {
				return false
			}
			continue
		}
		if got[i] != w {
			return false
		}
	}
	return true
}
