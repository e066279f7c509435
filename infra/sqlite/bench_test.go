package sqlite

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// benchWriters is how many goroutines append at once in the benchmarks.
const benchWriters = 64

// setParallelism makes RunParallel start benchWriters goroutines in all.
func setParallelism(b *testing.B) {
	b.Helper()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((benchWriters + procs - 1) / procs)
}

// BenchmarkAppend appends one event per call through the EventStore, from
// 64 goroutines each on its own stream: group commit shares each fsync.
func BenchmarkAppend(b *testing.B) {
	s, _ := openStore(b, benchPath(b), EventStoreConfig{})
	var batches, requests atomic.Int64
	s.onBatch = func(n int) {
		batches.Add(1)
		requests.Add(int64(n))
	}
	ctx := context.Background()
	var next atomic.Int64
	setParallelism(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		stream := fmt.Sprint("bench-", next.Add(1))
		var version int64
		for pb.Next() {
			if _, err := s.Append(ctx, stream, version, posted(1)); err != nil {
				b.Error(err)
				return
			}
			version++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(requests.Load())/float64(max(batches.Load(), 1)), "appends/commit")
}

// BenchmarkRawInsert is the baseline of BenchmarkAppend: one INSERT and one
// COMMIT per call on a plain table, through the same single writer
// connection at synchronous=FULL, from as many goroutines.
func BenchmarkRawInsert(b *testing.B) {
	db := openDB(b, benchPath(b))
	ctx := context.Background()
	if _, err := db.Writer().ExecContext(ctx, `CREATE TABLE raw (id INTEGER PRIMARY KEY, stream TEXT NOT NULL, data BLOB NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"message_id":"m-0b6a3f9e-4f7c-4c8e-9d43-2f1d3f0c1a2b","body":"body 0","client_id":""}`)
	var next atomic.Int64
	setParallelism(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		stream := fmt.Sprint("bench-", next.Add(1))
		for pb.Next() {
			tx, err := db.Writer().BeginTx(ctx, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO raw (stream, data) VALUES (?, ?)`, stream, data); err != nil {
				tx.Rollback()
				b.Error(err)
				return
			}
			if err := tx.Commit(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// benchPath is a database file that lasts as long as the benchmark.
func benchPath(b *testing.B) string {
	b.Helper()
	return b.TempDir() + "/bench.db"
}
