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
	l := runWriters(b, func(ctx context.Context, stream string, _ int) error {
		_, err := pool.Exec(ctx, `INSERT INTO raw (stream, data) VALUES ($1, $2)`, stream, benchData)
		return err
	})
	l.report(b)
}

// BenchmarkBareGroupCommit64 is the other baseline of BenchmarkAppend64:
// the least a group commit does, as the bare program measured it.
// From as many goroutines, each call hands a row to two writer goroutines,
// each with its connection; a writer takes every row waiting, inserts them
// in one statement, committed on its own, and answers them: no expected
// versions decided, no lock, no encoding. /plain inserts into a table of
// an id and two columns; /events into the log's own table, the rows the
// store would write (its three unique indexes, its ten columns from as
// many arrays), numbered from a counter, each goroutine's stream at the
// next version.
func BenchmarkBareGroupCommit64(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchBareGroupCommit(b, false) })
	b.Run("events", func(b *testing.B) { benchBareGroupCommit(b, true) })
}

func benchBareGroupCommit(b *testing.B, events bool) {
	ctx := context.Background()
	db, err := Open(ctx, pgtest.NewDatabase(b), Config{MaxConns: 4})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Pool().Exec(ctx, `CREATE TABLE raw (id BIGSERIAL PRIMARY KEY, stream TEXT NOT NULL, data BYTEA NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	type call struct {
		stream  string
		version int64
		done    chan error
	}
	calls := make(chan *call)
	stop := make(chan struct{})
	var writers sync.WaitGroup
	var position atomic.Int64
	at := time.Now().UTC().Truncate(time.Microsecond)
	for range 2 {
		conn, err := db.Pool().Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		writers.Go(func() {
			defer conn.Release()
			var batch []*call
			for {
				select {
				case c := <-calls:
					batch = append(batch[:0], c)
				case <-stop:
					return
				}
			more:
				for len(batch) < 512 {
					select {
					case c := <-calls:
						batch = append(batch, c)
					default:
						break more
					}
				}
				n := len(batch)
				streams, datas := make([]string, n), make([][]byte, n)
				for i, c := range batch {
					streams[i], datas[i] = c.stream, benchData
				}
				var err error
				if events {
					positions, versions, ids := make([]int64, n), make([]int64, n), make([]string, n)
					types, schemas, ats := make([]string, n), make([]int32, n), make([]time.Time, n)
					kinds, actors := make([]string, n), make([]string, n)
					first := position.Add(int64(n)) - int64(n)
					for i, c := range batch {
						positions[i], versions[i] = first+int64(i)+1, c.version
						ids[i] = fmt.Sprintf("0190a1b2-c3d4-7e5f-8a9b-%012d", positions[i])
						types[i], schemas[i], ats[i], kinds[i], actors[i] = "conversation.message_posted", 1, at, "customer", "cu-1"
					}
					_, err = conn.Exec(ctx, `INSERT INTO events (`+columns+`)
						SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
							$6::integer[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[])`,
						positions, streams, versions, ids, types, schemas, ats, kinds, actors, datas)
				} else {
					_, err = conn.Exec(ctx, `INSERT INTO raw (stream, data) SELECT * FROM unnest($1::text[], $2::bytea[])`, streams, datas)
				}
				for _, c := range batch {
					c.done <- err
				}
			}
		})
	}
	defer func() { close(stop); writers.Wait() }()
	l := runWriters(b, func(ctx context.Context, stream string, i int) error {
		c := &call{stream: stream, version: int64(i) + 1, done: make(chan error, 1)}
		calls <- c
		return <-c.done
	})
	l.report(b)
}

// benchData is the payload of the baselines' rows: an event's JSON.
var benchData = []byte(`{"message_id":"m-0b6a3f9e-4f7c-4c8e-9d43-2f1d3f0c1a2b","body":"body 0","client_id":""}`)

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
