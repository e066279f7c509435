package projections_test

import (
	"context"
	"testing"

	"github.com/helpdesk/messenger/infra/postgres"
	"github.com/helpdesk/messenger/infra/postgres/pgtest"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/infra/sqlite"
	"github.com/helpdesk/messenger/projections"
)

// TestWarmOpensEveryConnection warms the read models of a scripted
// helpdesk on each engine and checks that the pool then holds as many idle
// connections as it was asked to warm: each was opened, and used, at once.
func TestWarmOpensEveryConnection(t *testing.T) {
	ctx := context.Background()
	t.Run("sqlite", func(t *testing.T) {
		db, err := sqlite.Open(ctx, t.TempDir()+"/m.db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := projections.Migrate(ctx, db.Writer(), readmodel.SQLite{}); err != nil {
			t.Fatal(err)
		}
		rm := projections.NewReadModels(db.Reader(), readmodel.SQLite{})
		if err := rm.Warm(ctx, db.Readers()); err != nil {
			t.Fatal(err)
		}
		if got, want := db.Reader().Stats().Idle, db.Readers(); got != want || want < 2 {
			t.Errorf("%d idle readers after warming %d", got, want)
		}
		// More than the pool holds: as many as it holds, without waiting.
		if err := rm.Warm(ctx, 10*db.Readers()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		db, err := postgres.Open(ctx, pgtest.NewDatabase(t), postgres.Config{MaxConns: 6})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := projections.Migrate(ctx, db.SQL(), readmodel.Postgres{}); err != nil {
			t.Fatal(err)
		}
		rm := projections.NewReadModels(db.SQL(), readmodel.Postgres{})
		if err := rm.Warm(ctx, 6); err != nil {
			t.Fatal(err)
		}
		if got := db.Pool().Stat().IdleConns(); got != 6 {
			t.Errorf("%d idle connections after warming 6", got)
		}
	})
	// On a helpdesk with rows, too: the questions are the same.
	for _, e := range engines {
		t.Run(e.name+"/scripted", func(t *testing.T) {
			w := build(t, e.open(t))
			if err := w.rm.Warm(ctx, 2); err != nil {
				t.Fatal(err)
			}
		})
	}
}
