package projections_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/projections"
)

// synchronous reads SQLite's synchronous setting through q.
func synchronous(t *testing.T, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) int {
	t.Helper()
	var level int
	if err := q.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&level); err != nil {
		t.Fatal(err)
	}
	return level
}

// batchThenWriter runs an empty batch of a projector on e's writer with
// dialect d, ended as commit says, and returns SQLite's synchronous setting
// inside the batch and on the writer after it.
func batchThenWriter(t *testing.T, e engine, d projections.Dialect, commit bool) (inside, after int) {
	t.Helper()
	ctx := context.Background()
	proj := projections.NewProjector(e.writer, d, e.store, nil, projections.Config{})
	tx, end, err := projections.BeginBatch(ctx, proj)
	if err != nil {
		t.Fatal(err)
	}
	inside = synchronous(t, tx)
	if err := end(commit); err != nil {
		t.Fatal(err)
	}
	return inside, synchronous(t, e.writer)
}

// migrated is a SQLite engine with the read models created.
func migrated(t *testing.T) engine {
	t.Helper()
	e := sqliteEngine(t)
	if _, err := projections.Migrate(context.Background(), e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	if got := synchronous(t, e.writer); got != 2 {
		t.Fatalf("the writer starts with synchronous %d, want 2 (FULL)", got)
	}
	return e
}

// TestProjectorDefersItsFlushOnly checks that the projector's transactions
// on SQLite commit with synchronous=NORMAL, and that the writer's one
// connection, which the event store's appends share, is FULL again once a
// batch commits or rolls back.
func TestProjectorDefersItsFlushOnly(t *testing.T) {
	e := migrated(t)
	for _, commit := range []bool{true, false} {
		inside, after := batchThenWriter(t, e, e.dialect, commit)
		if inside != 1 || after != 2 {
			t.Errorf("committed: %v: synchronous %d in the batch, %d on the writer after it; want 1 (NORMAL), then 2 (FULL)", commit, inside, after)
		}
	}
}

// badRestore is SQLite whose restore statement fails.
type badRestore struct{ readmodel.SQLite }

func (badRestore) DeferFlush() (string, string) {
	return `PRAGMA synchronous = NORMAL`, `RESTORE NOTHING`
}

// TestProjectorClosesAConnectionItCannotRestore checks that a connection
// left relaxed is not given back to the pool: the writer's next connection
// is a new one, FULL as opened.
func TestProjectorClosesAConnectionItCannotRestore(t *testing.T) {
	inside, after := batchThenWriter(t, migrated(t), badRestore{}, true)
	if inside != 1 || after != 2 {
		t.Errorf("synchronous %d in the batch, %d on the writer after a failed restore; want 1 (NORMAL), then 2 (FULL)", inside, after)
	}
}
