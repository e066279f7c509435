package projections_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/projections"
)

// seedLog appends convs live chats of msgs messages each (customers and two
// agents taking turns, reads after replies), the way the product writes
// them, and returns how many events the log holds.
func seedLog(b testing.TB, e engine, convs, msgs int) int {
	b.Helper()
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := func() time.Time { at = at.Add(time.Millisecond); return at }
	n := 0
	appendAll := func(stream string, expected int64, evs ...domain.Event) {
		p := make([]domain.Pending, len(evs))
		for i, ev := range evs {
			n++
			p[i] = domain.Pending{EventID: fmt.Sprintf("00000000-0000-7000-9000-%012d", n), Event: ev}
		}
		if _, err := e.store.Append(ctx, stream, expected, p); err != nil {
			b.Fatal(err)
		}
	}
	agents := []domain.Actor{{Kind: domain.ActorUser, ID: "agent-1"}, {Kind: domain.ActorUser, ID: "agent-2"}}
	for i, a := range agents {
		appendAll(directory.UserStream(a.ID), domain.NoStream, directory.UserCreated{Meta: domain.Meta{At: tick(), Actor: a},
			UserID: a.ID, Name: fmt.Sprintf("Agent %d", i), Email: fmt.Sprintf("a%d@x.test", i), Role: directory.Agent, Support: true, TokenHash: a.ID})
	}
	for c := range convs {
		cust := domain.Actor{Kind: domain.ActorCustomer, ID: fmt.Sprintf("cust-%d", c)}
		appendAll(directory.CustomerStream(cust.ID), domain.NoStream, directory.CustomerRegistered{Meta: domain.Meta{At: tick(), Actor: cust},
			CustomerID: cust.ID, Name: fmt.Sprintf("Customer %d", c), Email: fmt.Sprintf("c%d@example.com", c), TokenHash: cust.ID})
		id := fmt.Sprintf("conv-%06d", c)
		evs := []domain.Event{conversation.Started{Meta: domain.Meta{At: tick(), Actor: cust}, ConversationID: id, Channel: conversation.LiveChat,
			Subject: fmt.Sprintf("Order %d", c), CustomerID: cust.ID}}
		for m := range msgs {
			who := cust
			if m%2 == 1 {
				who = agents[c%2]
			}
			evs = append(evs, conversation.MessagePosted{Meta: domain.Meta{At: tick(), Actor: who}, MessageID: fmt.Sprintf("%s-m%d", id, m),
				Body: fmt.Sprintf("message %d about order %d and its delivery", m, c)})
			if m%2 == 1 {
				evs = append(evs, conversation.Read{Meta: domain.Meta{At: tick(), Actor: agents[(c+1)%2]}, UpToSeq: m + 1})
			}
		}
		appendAll(conversation.Stream(id), domain.NoStream, evs...)
	}
	return n
}

// benchRebuild rebuilds and reads the log from the database, not from the
// tail of the store that appended it, as a rebuild does in a process of
// its own.
func benchRebuild(b *testing.B, open func(testing.TB) engine) {
	e := open(b)
	events := seedLog(b, e, 1000, 20)
	ctx := context.Background()
	b.Run("rebuild", func(b *testing.B) {
		for b.Loop() {
			if err := projections.Rebuild(ctx, e.writer, e.dialect, e.cold, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	})
	if _, ok := e.dialect.(readmodel.Postgres); ok {
		b.Run("rows-rewritten", func(b *testing.B) { benchRewrite(b, e, events) })
	}
	b.Run("raw-ordered-read", func(b *testing.B) {
		for b.Loop() {
			var after uint64
			for {
				recs, err := e.cold.ReadAll(ctx, after, 2000)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) == 0 {
					break
				}
				after = recs[len(recs)-1].Position
			}
		}
		b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// benchRewrite is the floor of a rebuild on PostgreSQL: the server copies
// every row the rebuild wrote, table by table, into a table like it, with
// the same indexes (those a rebuild builds at its end too), two tables at
// a time as the rebuild writes on two connections, without reading the
// log, applying it, or sending anything. events/s is the log's events
// over the time of that copy, beside the rebuild's.
func benchRewrite(b *testing.B, e engine, events int) {
	ctx := context.Background()
	var rows int64
	for _, t := range projections.Tables() {
		var n int64
		if err := e.writer.QueryRowContext(ctx, `SELECT count(*) FROM `+t).Scan(&n); err != nil {
			b.Fatal(err)
		}
		rows += n
	}
	e.writer.SetMaxOpenConns(max(e.writer.Stats().MaxOpenConnections, 4))
	for b.Loop() {
		next := make(chan string, len(projections.Tables()))
		for _, t := range projections.Tables() {
			next <- t
		}
		close(next)
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Go(func() {
				for t := range next {
					if _, err := e.writer.ExecContext(ctx, `DROP TABLE IF EXISTS rewrite_`+t); err != nil {
						errs <- err
						return
					}
					if _, err := e.writer.ExecContext(ctx, `CREATE TABLE rewrite_`+t+` (LIKE `+t+` INCLUDING ALL)`); err != nil {
						errs <- err
						return
					}
					if _, err := e.writer.ExecContext(ctx, `INSERT INTO rewrite_`+t+` SELECT * FROM `+t); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(rows)/float64(events), "rows/event")
}

// BenchmarkRebuildSQLite rebuilds the read models from a log of 1,000 live
// chats (about 32,000 events) beside a raw ordered read of the same log.
func BenchmarkRebuildSQLite(b *testing.B) { benchRebuild(b, sqliteEngine) }

// BenchmarkRebuildPostgres is BenchmarkRebuildSQLite on PostgreSQL.
func BenchmarkRebuildPostgres(b *testing.B) { benchRebuild(b, postgresEngine) }

// discard is a Publisher that drops the changes: the live projector's
// benchmarks publish, so that they read the counters as the server does.
type discard struct{}

func (discard) Publish(context.Context, []projections.Change) error { return nil }

// benchLiveBatch times the live projector's steps, each a batch of posts
// as the server sees them: customers' messages and agents' replies spread
// over 200 live chats. Batches of 1 are those of a quiet helpdesk, of 32
// those of a few thousand posts a second.
func benchLiveBatch(b *testing.B, open func(testing.TB) engine) {
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("posts=%d", batch), func(b *testing.B) { benchLiveBatchOf(b, open, batch) })
	}
}

func benchLiveBatchOf(b *testing.B, open func(testing.TB) engine, batch int) {
	e := open(b)
	const convs = 200
	seedLog(b, e, convs, 4)
	ctx := context.Background()
	if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
		b.Fatal(err)
	}
	proj := projections.NewProjector(e.writer, e.dialect, e.store, discard{}, projections.Config{})
	if err := proj.CatchUp(ctx); err != nil {
		b.Fatal(err)
	}
	agents := []domain.Actor{{Kind: domain.ActorUser, ID: "agent-1"}, {Kind: domain.ActorUser, ID: "agent-2"}}
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	post := func() {
		c := n % convs
		id := fmt.Sprintf("conv-%06d", c)
		n++
		at = at.Add(time.Millisecond)
		who := domain.Actor{Kind: domain.ActorCustomer, ID: fmt.Sprintf("cust-%d", c)}
		evs := []domain.Pending{{EventID: fmt.Sprintf("00000000-0000-7000-a000-%012d", n)}}
		if n%3 == 0 {
			who = agents[c%2]
		}
		evs[0].Event = conversation.MessagePosted{Meta: domain.Meta{At: at, Actor: who}, MessageID: fmt.Sprintf("live-%d", n),
			Body: fmt.Sprintf("live message %d about order %d", n, c)}
		if _, err := e.store.Append(ctx, conversation.Stream(id), domain.AnyVersion, evs); err != nil {
			b.Fatal(err)
		}
	}
	var events int
	for b.Loop() {
		b.StopTimer()
		for range batch {
			post()
		}
		b.StartTimer()
		got, err := proj.Step(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if got != batch {
			b.Fatalf("a step applied %d events, want %d", got, batch)
		}
		events += got
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkLiveBatchSQLite times the live projector's batches of 32 posts
// on SQLite: what a post waits for, after its append, to be read back.
func BenchmarkLiveBatchSQLite(b *testing.B) { benchLiveBatch(b, sqliteEngine) }

// BenchmarkLiveBatchPostgres is BenchmarkLiveBatchSQLite on PostgreSQL.
func BenchmarkLiveBatchPostgres(b *testing.B) { benchLiveBatch(b, postgresEngine) }
