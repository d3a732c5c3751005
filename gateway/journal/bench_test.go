package journal

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
)

// BenchmarkJournalGroupCommit submits b.N heartbeat records to a Journal over
// a bbolt file in a temporary directory, from clients that each wait for
// their record to be durable before sending the next (as a broker waits for
// PUBACKs, up to its in-flight limit). One client is the peer: a commit, and
// its fsyncs, per record. records/s over that peer's is what group commit
// buys; records/commit shows how full the batches were.
func BenchmarkJournalGroupCommit(b *testing.B) {
	for _, clients := range []int{1, 16, 256, 1024} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			benchGroupCommit(b, clients)
		})
	}
}

func benchGroupCommit(b *testing.B, clients int) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "journal.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var commits atomic.Int64
	j, err := New(db, Options{
		Apply:     func(*bolt.Tx, Record, string) error { return nil },
		Committed: func() { commits.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- j.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			b.Error(err)
		}
	}()

	battery := 87
	now := time.Now().UTC()
	var next atomic.Int64 // the next record number to submit
	var failed atomic.Pointer[error]
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			done := make(chan struct{}, 1)
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				dev := fmt.Sprintf("btn-%04d", i%1000+1)
				rec := Record{Site: "leeds", Received: now, Source: "mqtt", Event: devices.Event{V: devices.Version,
					ID: fmt.Sprintf("bench-%d", i), Device: dev, Seq: uint64(i/1000 + 1), Type: devices.TypeHeartbeat, TS: now,
					Loc: &devices.Location{Lat: 53.8008, Lon: -1.5491, AccM: 8}, Battery: &battery}}
				j.Submit(ctx, rec, func(o Outcome, err error) {
					if err == nil && o != Appended {
						err = fmt.Errorf("record %d: outcome %d, want Appended", i, o)
					}
					if err != nil {
						failed.CompareAndSwap(nil, &err)
					}
					done <- struct{}{}
				})
				<-done
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(b.N)/float64(max(commits.Load(), 1)), "records/commit")
}
