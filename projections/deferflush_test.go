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

// TestProjectorDefersItsFlushOnly checks that the projector's transactions
// on SQLite commit with synchronous=NORMAL, and that the writer's one
// connection, which the event store's appends share, is FULL again once a
// batch commits or rolls back.
func TestProjectorDefersItsFlushOnly(t *testing.T) {
	ctx := context.Background()
	e := sqliteEngine(t)
	if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	if got := synchronous(t, e.writer); got != 2 {
		t.Fatalf("the writer starts with synchronous %d, want 2 (FULL)", got)
	}
	proj := projections.NewProjector(e.writer, e.dialect, e.store, nil, projections.Config{})
	for _, commit := range []bool{true, false} {
		tx, end, err := projections.BeginBatch(ctx, proj)
		if err != nil {
			t.Fatal(err)
		}
		if got := synchronous(t, tx); got != 1 {
			t.Errorf("a batch runs with synchronous %d, want 1 (NORMAL)", got)
		}
		if err := end(commit); err != nil {
			t.Fatal(err)
		}
		if got := synchronous(t, e.writer); got != 2 {
			t.Errorf("after a batch (committed: %v) the writer has synchronous %d, want 2 (FULL)", commit, got)
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
	ctx := context.Background()
	e := sqliteEngine(t)
	if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	proj := projections.NewProjector(e.writer, badRestore{}, e.store, nil, projections.Config{})
	tx, end, err := projections.BeginBatch(ctx, proj)
	if err != nil {
		t.Fatal(err)
	}
	if got := synchronous(t, tx); got != 1 {
		t.Errorf("a batch runs with synchronous %d, want 1 (NORMAL)", got)
	}
	if err := end(true); err != nil {
		t.Fatal(err)
	}
	if got := synchronous(t, e.writer); got != 2 {
		t.Errorf("after a failed restore the writer has synchronous %d, want 2 (FULL)", got)
	}
}
