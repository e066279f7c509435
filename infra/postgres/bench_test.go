package postgres

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helpdesk/messenger/infra/postgres/pgtest"
)

// benchWriters is how many goroutines append at once in the benchmarks.
const benchWriters = 64

// latencies collects the durations of the calls of a parallel benchmark.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

// report reports the rate of calls and the 50th and 99th percentiles of
// their durations.
func (l *latencies) report(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if len(l.all) == 0 {
		return
	}
	slices.Sort(l.all)
	q := func(p float64) float64 {
		return float64(l.all[int(p*float64(len(l.all)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// runWriters runs call from benchWriters goroutines, each with a stream of
// its own, b.N times in all, timing every call. i counts the calls of
// the goroutine from 0.
func runWriters(b *testing.B, call func(ctx context.Context, stream string, i int) error) *latencies {
	b.Helper()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((benchWriters + procs - 1) / procs)
	ctx := context.Background()
	var next atomic.Int64
	l := &latencies{}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		stream := fmt.Sprint("bench-", next.Add(1))
		var took []time.Duration
		defer func() { l.add(took) }()
		for i := 0; pb.Next(); i++ {
			start := time.Now()
			if err := call(ctx, stream, i); err != nil {
				b.Error(err)
				return
			}
			took = append(took, time.Since(start))
		}
	})
	b.StopTimer()
	return l
}

// BenchmarkAppend64 appends one event per call through the EventStore,
// from 64 goroutines each on its own stream with its expected version:
// group commit shares each commit, and its fsync, among the appends
// waiting.
func BenchmarkAppend64(b *testing.B) {
	s, _ := newStore(b, EventStoreConfig{})
	var batches, requests atomic.Int64
	s.onBatch = func(n int) {
		batches.Add(1)
		requests.Add(int64(n))
	}
	l := runWriters(b, func(ctx context.Context, stream string, i int) error {
		_, err := s.Append(ctx, stream, int64(i), posted(1))
		return err
	})
	l.report(b)
	b.ReportMetric(float64(requests.Load())/float64(max(batches.Load(), 1)), "appends/commit")
}

// BenchmarkRawInsert64 is the baseline of BenchmarkAppend64: from as many
// goroutines, each call is one single-row INSERT into a plain table,
// committed on its own (one statement in autocommit: the INSERT and its
// COMMIT in one round trip), through a pool of 64 connections.
func BenchmarkRawInsert64(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, pgtest.NewDatabase(b), Config{MaxConns: benchWriters})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	pool := db.Pool()
	if _, err := pool.Exec(ctx, `CREATE TABLE raw (id BIGSERIAL PRIMARY KEY, stream TEXT NOT NULL, data BYTEA NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	warm(b, pool)
	data := []byte(`{"message_id":"m-0b6a3f9e-4f7c-4c8e-9d43-2f1d3f0c1a2b","body":"body 0","client_id":""}`)
	l := runWriters(b, func(ctx context.Context, stream string, _ int) error {
		_, err := pool.Exec(ctx, `INSERT INTO raw (stream, data) VALUES ($1, $2)`, stream, data)
		return err
	})
	l.report(b)
}

// warm opens every connection of pool, so that the benchmark does not time
// their start.
func warm(b *testing.B, pool *pgxpool.Pool) {
	b.Helper()
	conns := make([]*pgxpool.Conn, 0, benchWriters)
	for range benchWriters {
		c, err := pool.Acquire(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
}
