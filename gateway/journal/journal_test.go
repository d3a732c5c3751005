package journal

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
)

func openDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "j.db"), 0o600, nil)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func rec(device string, seq uint64, id string) Record {
	return Record{Site: "s", Source: "mqtt", Received: time.Now(),
		Event: devices.Event{V: 1, ID: id, Device: device, Seq: seq, Type: devices.TypeHeartbeat, TS: time.Now()}}
}

type result struct {
	o   Outcome
	err error
}

func submitWait(j *Journal, r Record) result {
	ch := make(chan result, 1)
	j.Submit(context.Background(), r, func(o Outcome, err error) { ch <- result{o, err} })
	return <-ch
}

func start(t *testing.T, j *Journal) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); j.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func TestGroupCommitBatchesConcurrentSubmitters(t *testing.T) {
	db := openDB(t)
	var applied, commits atomic.Int64
	j, err := New(db, Options{
		Apply:     func(*bolt.Tx, Record, string) error { applied.Add(1); return nil },
		Committed: func() { commits.Add(1) },
	})
	require.NoError(t, err)
	start(t, j)
	const n = 2000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := submitWait(j, rec("d", uint64(i+1), "id"))
			assert.NoError(t, r.err)
			assert.Equal(t, Appended, r.o)
		})
	}
	wg.Wait()
	assert.Equal(t, int64(n), applied.Load())
	c, err := j.Count()
	require.NoError(t, err)
	assert.Equal(t, n, c)
	assert.Less(t, commits.Load(), int64(n), "concurrent submitters share commits")
	t.Logf("%d records in %d commits", n, commits.Load())
}

func TestApplyFailureFailsTheBatchAndNothingIsAcked(t *testing.T) {
	db := openDB(t)
	j, err := New(db, Options{Apply: func(_ *bolt.Tx, r Record, _ string) error {
		if r.Event.Seq == 2 {
			return errors.New("boom")
		}
		return nil
	}})
	require.NoError(t, err)
	start(t, j)
	r := submitWait(j, rec("d", 2, "x"))
	require.Error(t, r.err)
	assert.Contains(t, r.err.Error(), "journal: commit: journal: apply d:2: boom")
	c, err := j.Count()
	require.NoError(t, err)
	assert.Zero(t, c, "the failed transaction left nothing behind")
	assert.NoError(t, submitWait(j, rec("d", 3, "y")).err, "the journal keeps working")
}

func TestQuarantineTruncatesAndLists(t *testing.T) {
	db := openDB(t)
	j, err := New(db, Options{Apply: func(*bolt.Tx, Record, string) error { return nil }})
	require.NoError(t, err)
	start(t, j)
	for i := range 3 {
		ch := make(chan result, 1)
		j.Quarantine(context.Background(), Rejected{Topic: "t", Reason: "payload", Error: "bad " + string(rune('a'+i)),
			Payload: []byte(strings.Repeat("x", MaxQuarantinePayload+100))}, func(o Outcome, err error) { ch <- result{o, err} })
		r := <-ch
		require.NoError(t, r.err)
		assert.Equal(t, Quarantined, r.o)
	}
	q, err := j.Quarantined(2)
	require.NoError(t, err)
	require.Len(t, q, 2)
	assert.Equal(t, "bad c", q[0].Error, "newest first")
	assert.Len(t, q[0].Payload, MaxQuarantinePayload)
	assert.Equal(t, uint64(3), q[0].ID)
}

func TestSubmitAfterStopIsRefused(t *testing.T) {
	db := openDB(t)
	j, err := New(db, Options{Apply: func(*bolt.Tx, Record, string) error { return nil }})
	require.NoError(t, err)
	cancel := start(t, j)
	require.NoError(t, submitWait(j, rec("d", 1, "a")).err)
	cancel()
	require.Eventually(t, func() bool { return errors.Is(submitWait(j, rec("d", 2, "b")).err, ErrClosed) }, 5*time.Second, time.Millisecond)
}

func TestKeyAndDuplicateDetection(t *testing.T) {
	db := openDB(t)
	var keys []string
	j, err := New(db, Options{Apply: func(_ *bolt.Tx, _ Record, key string) error { keys = append(keys, key); return nil }})
	require.NoError(t, err)
	start(t, j)
	assert.Equal(t, Appended, submitWait(j, rec("btn-1", 42, "a")).o)
	assert.Equal(t, Duplicate, submitWait(j, rec("btn-1", 42, "a")).o)
	assert.Equal(t, Appended, submitWait(j, rec("btn-10", 42, "a")).o, "device ids that prefix each other do not collide")
	d := rec("btn-1", 42, "b")
	d.Event.Type = devices.TypeDuress
	assert.Equal(t, Conflict, submitWait(j, d).o)
	assert.Equal(t, Duplicate, submitWait(j, d).o, "the conflicting duress is itself deduplicated")
	require.Len(t, keys, 3)
	assert.Equal(t, "btn-1:42", keys[0])
	assert.Regexp(t, `^btn-1:42:[0-9a-f]{8}$`, keys[2])
}

func TestMonotonicTransportRejectsReplays(t *testing.T) {
	db := openDB(t)
	j, err := New(db, Options{Apply: func(*bolt.Tx, Record, string) error { return nil }})
	require.NoError(t, err)
	start(t, j)
	mono := func(device string, seq uint64, id string) Record {
		r := rec(device, seq, id)
		r.Monotonic, r.Source = true, "serial"
		return r
	}
	assert.Equal(t, Appended, submitWait(j, mono("p-1", 10, "a")).o)
	assert.Equal(t, Appended, submitWait(j, mono("p-1", 12, "b")).o, "gaps are fine")
	assert.Equal(t, Appended, submitWait(j, mono("p-10", 1, "x")).o, "another device's counter is its own")
	assert.Equal(t, Duplicate, submitWait(j, mono("p-1", 12, "b")).o, "a retransmission of the last frame is re-acked")
	assert.Equal(t, Replayed, submitWait(j, mono("p-1", 10, "a")).o, "an identical older frame is a replay")
	assert.Equal(t, Replayed, submitWait(j, mono("p-1", 11, "c")).o, "an older counter is a replay")
	assert.Equal(t, Replayed, submitWait(j, mono("p-1", 12, "d")).o, "the same counter with other content is a replay")
	assert.Equal(t, Appended, submitWait(j, mono("p-1", 13, "e")).o)
	q, err := j.Quarantined(10)
	require.NoError(t, err)
	require.Len(t, q, 3)
	assert.Equal(t, "replay", q[0].Reason)
	assert.Contains(t, q[0].Error, "counter 12 is not newer than the last accepted 12")
}

func TestEphemeralRecordsAreAppliedNotKept(t *testing.T) {
	db := openDB(t)
	var applied []uint64
	j, err := New(db, Options{
		Apply:     func(_ *bolt.Tx, r Record, _ string) error { applied = append(applied, r.Event.Seq); return nil },
		Ephemeral: func(r Record) bool { return r.Event.Type == devices.TypeHeartbeat },
	})
	require.NoError(t, err)
	start(t, j)
	assert.Equal(t, Appended, submitWait(j, rec("d", 5, "a")).o)
	assert.Equal(t, Duplicate, submitWait(j, rec("d", 5, "a")).o, "a redelivery")
	assert.Equal(t, Duplicate, submitWait(j, rec("d", 4, "z")).o, "an older heartbeat changes nothing")
	assert.Equal(t, Appended, submitWait(j, rec("d", 6, "b")).o)
	assert.Equal(t, []uint64{5, 6}, applied)
	n, err := j.Count()
	require.NoError(t, err)
	assert.Zero(t, n, "no rows kept")
}

// A replayed heartbeat from a monotonic transport is a replay, although
// heartbeats are not kept as rows.
func TestMonotonicReplayOfEphemeral(t *testing.T) {
	db := openDB(t)
	j, err := New(db, Options{Apply: func(*bolt.Tx, Record, string) error { return nil },
		Ephemeral: func(r Record) bool { return r.Event.Type == devices.TypeHeartbeat }})
	require.NoError(t, err)
	start(t, j)
	hb := func(seq uint64, id string) Record {
		r := rec("p-1", seq, id)
		r.Monotonic = true
		return r
	}
	assert.Equal(t, Appended, submitWait(j, hb(1, "a")).o)
	assert.Equal(t, Appended, submitWait(j, hb(2, "b")).o)
	assert.Equal(t, Duplicate, submitWait(j, hb(2, "b")).o, "retransmission of the last")
	assert.Equal(t, Replayed, submitWait(j, hb(1, "a")).o, "an older heartbeat replayed")
	d := rec("p-1", 2, "c")
	d.Monotonic, d.Event.Type = true, devices.TypeDuress
	assert.Equal(t, Replayed, submitWait(j, d).o, "a duress reusing a heartbeat's counter is a replay")
}

// Fresh answers, without writing, what the journal would decide: new until
// committed, then not; from a monotonic transport, a seq at or below the
// last accepted one is not fresh (a replay must not be sent anywhere early).
func TestFreshMatchesWhatTheJournalWouldAppend(t *testing.T) {
	db := openDB(t)
	j, err := New(db, Options{Apply: func(*bolt.Tx, Record, string) error { return nil },
		Ephemeral: func(r Record) bool { return r.Event.Type == devices.TypeHeartbeat }})
	require.NoError(t, err)
	start(t, j)
	fresh := func(r Record) bool {
		t.Helper()
		ok, err := j.Fresh(r)
		require.NoError(t, err)
		return ok
	}
	duress := func(seq uint64, id string, monotonic bool) Record {
		r := rec("btn", seq, id)
		r.Event.Type, r.Monotonic = devices.TypeDuress, monotonic
		return r
	}

	d5 := duress(5, "a", true)
	assert.True(t, fresh(d5))
	require.Equal(t, Appended, submitWait(j, d5).o)
	assert.False(t, fresh(d5), "journaled: a redelivery")
	assert.False(t, fresh(duress(5, "other", false)), "the seq is taken (a conflict is for the journal to decide)")
	assert.False(t, fresh(duress(3, "b", true)), "monotonic: an older seq is a replay")
	assert.Equal(t, Replayed, submitWait(j, duress(3, "b", true)).o, "as the journal decides")
	assert.True(t, fresh(duress(3, "b", false)), "not monotonic: an unused older seq is new")
	assert.True(t, fresh(duress(6, "c", true)))

	hb := rec("btn", 9, "h")
	assert.True(t, fresh(hb))
	require.Equal(t, Appended, submitWait(j, hb).o)
	assert.False(t, fresh(hb), "an ephemeral record at or below the device's latest")
	assert.False(t, fresh(duress(8, "d", true)), "monotonic: below the latest heartbeat")
	assert.True(t, fresh(rec("btn", 10, "h2")))
}
