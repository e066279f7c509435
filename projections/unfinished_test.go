package projections_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/projections"
)

// failingLog is a log whose reads fail after the first.
type failingLog struct {
	projections.Log
	reads int
}

func (l *failingLog) ReadAll(ctx context.Context, after uint64, limit int) ([]domain.Recorded, error) {
	if l.reads++; l.reads > 1 {
		return nil, errors.New("the disk is gone")
	}
	return l.Log.ReadAll(ctx, after, 1)
}

// TestUnfinishedRebuildIsRedone stops a rebuild after its first batch, as
// a crash or a cancel would: its tables lack the query indexes a rebuild
// creates last, and the next start recreated nothing, since the read
// models bore the current name. Migrate must see the rebuild unfinished
// and recreate them, with their indexes; and after a rebuild that
// finished, leave them be.
func TestUnfinishedRebuildIsRedone(t *testing.T) {
	for _, c := range engines {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			e := c.open(t)
			w := build(t, e)
			w.stop()
			if err := projections.Rebuild(ctx, e.writer, e.dialect, &failingLog{Log: e.store}, nil); err == nil {
				t.Fatal("the rebuild did not fail")
			}
			if hasIndex(t, e, "members_inbox") {
				t.Fatal("the stopped rebuild made its query indexes")
			}
			merging(t, e, "a stopped rebuild", "automerge=0 crisismerge=64")
			fresh, err := projections.Migrate(ctx, e.writer, e.dialect)
			if err != nil || !fresh {
				t.Fatalf("Migrate after a stopped rebuild: fresh %v, %v", fresh, err)
			}
			for _, index := range []string{"members_inbox", "conversations_inbox", "items_created"} {
				if !hasIndex(t, e, index) {
					t.Errorf("no index %s after Migrate", index)
				}
			}
			merging(t, e, "Migrate", "")
			if err := projections.Rebuild(ctx, e.writer, e.dialect, e.store, nil); err != nil {
				t.Fatal(err)
			}
			merging(t, e, "a rebuild", "automerge=4 crisismerge=16")
			if fresh, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil || fresh {
				t.Fatalf("Migrate after a rebuild: fresh %v, %v", fresh, err)
			}
		})
	}
}

// merging checks, on SQLite, the settings of FTS5's merging that the
// search index holds after stage: "k=v …", in order; "" for none set (its
// defaults).
func merging(t *testing.T, e engine, stage, want string) {
	t.Helper()
	if _, ok := e.dialect.(readmodel.SQLite); !ok {
		return
	}
	rows, err := e.reader.Query(`SELECT k || '=' || v FROM search_fts_config WHERE k IN ('automerge', 'crisismerge') ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var kv string
		if err := rows.Scan(&kv); err != nil {
			t.Fatal(err)
		}
		got = append(got, kv)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != want {
		t.Errorf("after %s, the search index merges with %q, want %q", stage, strings.Join(got, " "), want)
	}
}

// hasIndex reports whether e's read models have the index name.
func hasIndex(t *testing.T, e engine, name string) bool {
	t.Helper()
	q := `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`
	if _, ok := e.dialect.(readmodel.Postgres); ok {
		q = `SELECT count(*) FROM pg_indexes WHERE indexname = ?`
	}
	var n int
	if err := e.reader.QueryRow(e.dialect.Rebind(q), name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestMigrateOverALogMarksTheReadModels: read models recreated beside a log
// that holds events are marked unfinished, as a rebuild marks them, so that
// no replica serves them before a rebuild fills them; beside an empty log
// (a new installation) they are not; and tables already current are left
// as they are, mark and all.
func TestMigrateOverALogMarksTheReadModels(t *testing.T) {
	for _, c := range engines {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			e := c.open(t)
			rm := projections.NewReadModels(e.reader, e.dialect)
			if fresh, err := projections.MigrateOver(ctx, e.writer, e.dialect, 0); err != nil || !fresh {
				t.Fatalf("first MigrateOver: fresh %v, %v", fresh, err)
			}
			if u, err := rm.Unfinished(ctx); err != nil || u {
				t.Fatalf("beside an empty log: unfinished %v, %v", u, err)
			}
			// An upgrade: the read models of another version, beside a log.
			if _, err := e.writer.Exec(`UPDATE checkpoints SET name = 'readmodel/v0' WHERE name LIKE 'readmodel/%'`); err != nil {
				t.Fatal(err)
			}
			if fresh, err := projections.MigrateOver(ctx, e.writer, e.dialect, 42); err != nil || !fresh {
				t.Fatalf("MigrateOver after an upgrade: fresh %v, %v", fresh, err)
			}
			if u, err := rm.Unfinished(ctx); err != nil || !u {
				t.Fatalf("recreated beside a log of 42 events: unfinished %v, %v", u, err)
			}
			if err := projections.Rebuild(ctx, e.writer, e.dialect, e.store, nil); err != nil {
				t.Fatal(err)
			}
			if u, err := rm.Unfinished(ctx); err != nil || u {
				t.Fatalf("after the rebuild: unfinished %v, %v", u, err)
			}
			if fresh, err := projections.MigrateOver(ctx, e.writer, e.dialect, 42); err != nil || fresh {
				t.Fatalf("MigrateOver of current read models: fresh %v, %v", fresh, err)
			}
		})
	}
}
