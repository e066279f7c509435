package projections_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/bench/seed"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/infra/postgres"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/infra/sqlite"
	"github.com/helpdesk/messenger/projections"
)

// seeded opens the read models to query: those of the data dir named by
// MESSENGER_BENCH_DATA_DIR (filled by `messengerd seed`, 100k conversations
// by default), or else a small dataset seeded here. With
// MESSENGER_BENCH_DATABASE_URL too, the read models are those of that
// PostgreSQL database (seeded by `messengerd seed` with
// MESSENGER_DATABASE_URL; the data dir then holds only seed-agents.json).
func seeded(b *testing.B) (*projections.ReadModels, []directory.Principal) {
	b.Helper()
	ctx := context.Background()
	dir := os.Getenv("MESSENGER_BENCH_DATA_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	if url := os.Getenv("MESSENGER_BENCH_DATABASE_URL"); url != "" {
		// Where messengerd seed put the read models.
		db, err := postgres.Open(ctx, url, postgres.Config{Schema: projections.Schema()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		rm := projections.NewReadModels(db.SQL(), readmodel.Postgres{})
		// As messengerd does at start.
		if err := rm.Warm(ctx, int(db.Pool().Config().MaxConns)); err != nil {
			b.Fatal(err)
		}
		return rm, seedAgents(b, dir)
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, "messenger.db"))
	if err != nil {
		b.Fatal(err)
	}
	store := sqlite.NewEventStore(db, sqlite.EventStoreConfig{})
	b.Cleanup(func() { store.Close(); db.Close() })
	agents := seedAgents(b, dir)
	if agents == nil {
		if _, err := projections.Migrate(ctx, db.Writer(), readmodel.SQLite{}); err != nil {
			b.Fatal(err)
		}
		res, err := seed.Run(ctx, store, seed.Spec{Conversations: 3000, Messages: 30000, Agents: 20, Customers: 1500}, nil)
		if err != nil {
			b.Fatal(err)
		}
		p := projections.NewProjector(db.Writer(), readmodel.SQLite{}, store, nil, projections.Config{BatchSize: 2000})
		if err := p.Load(ctx); err != nil {
			b.Fatal(err)
		}
		if err := p.CatchUp(ctx); err != nil {
			b.Fatal(err)
		}
		for i, id := range res.Agents {
			agents = append(agents, directory.Principal{Kind: domain.ActorUser, ID: id, Role: directory.Agent, Support: res.Support[i]})
		}
	}
	rm := projections.NewReadModels(db.Reader(), readmodel.SQLite{})
	if err := rm.Warm(ctx, db.Readers()); err != nil { // as messengerd does at start
		b.Fatal(err)
	}
	return rm, agents
}

// seedAgents reads the agents `messengerd seed` wrote into dir, if any.
func seedAgents(b *testing.B, dir string) []directory.Principal {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "seed-agents.json"))
	if err != nil {
		return nil
	}
	var f struct {
		Agents []struct {
			ID      string
			Support bool
		}
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		b.Fatal(err)
	}
	var agents []directory.Principal
	for _, a := range f.Agents {
		agents = append(agents, directory.Principal{Kind: domain.ActorUser, ID: a.ID, Role: directory.Agent, Support: a.Support})
	}
	return agents
}

// latencies runs op b.N times, round robin over the agents, and reports
// the p50 and p99 of one call.
func latencies(b *testing.B, agents []directory.Principal, op func(p directory.Principal) error) {
	b.Helper()
	d := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		p := agents[i%len(agents)]
		i++
		t := time.Now()
		if err := op(p); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(t))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkQueries measures the inbox page, the unread counts and search
// over a seeded dataset, as support agents ask them.
func BenchmarkQueries(b *testing.B) {
	rm, agents := seeded(b)
	var support []directory.Principal
	for _, a := range agents {
		if a.Support {
			support = append(support, a)
		}
	}
	ctx := context.Background()
	b.Run("inbox-customers-open", func(b *testing.B) {
		latencies(b, support, func(p directory.Principal) error {
			_, _, err := rm.Inbox(ctx, p, projections.InboxQuery{Section: projections.Customers, Status: "open", Limit: 50})
			return err
		})
	})
	b.Run("inbox-mine-open", func(b *testing.B) {
		latencies(b, support, func(p directory.Principal) error {
			_, _, err := rm.Inbox(ctx, p, projections.InboxQuery{Section: projections.Mine, Status: "open", Limit: 50})
			return err
		})
	})
	b.Run("unread", func(b *testing.B) {
		latencies(b, support, func(p directory.Principal) error { _, _, err := rm.Unread(ctx, p); return err })
	})
	terms := []string{"refund", "parcel tracking", "customer1234@example.com", "Alice", "warranty damaged"}
	b.Run("search", func(b *testing.B) {
		i := 0
		latencies(b, support, func(p directory.Principal) error {
			i++
			_, _, err := rm.Inbox(ctx, p, projections.InboxQuery{Section: projections.Customers, Status: "open", Search: terms[i%len(terms)], Limit: 50})
			return err
		})
	})
	// The link form's search of tickets and tasks, as an agent types: the
	// newest, a common word of their titles, a word's start, two common words
	// that few titles hold side by side, and none; two letters no title
	// holds side by side, and one letter; two Chinese letters no title
	// holds, and one; one accented letter.
	for _, q := range []string{"", "refund", "ref", "refund damaged", "no such title", "zq", "q", "雪祭", "雪", "é"} {
		b.Run("items-"+strings.ReplaceAll(or(q, "newest"), " ", "-"), func(b *testing.B) {
			latencies(b, support, func(directory.Principal) error { _, err := rm.FindItems(ctx, q, 10); return err })
		})
	}
	for _, term := range terms {
		b.Run("search-"+strings.ReplaceAll(term, " ", "-"), func(b *testing.B) {
			latencies(b, support, func(p directory.Principal) error {
				_, _, err := rm.Inbox(ctx, p, projections.InboxQuery{Section: projections.Customers, Status: "open", Search: term, Limit: 50})
				return err
			})
		})
	}
}

// or returns s, or else def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
