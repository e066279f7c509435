package projections

import (
	"context"
	"database/sql"
	"strings"
)

// CopyAll makes the projector copy rows however few they are, as the
// large batches of a rebuild do, until restore is called.
func CopyAll() (restore func()) {
	old := copyMinRows
	copyMinRows = 1
	return func() { copyMinRows = old }
}

// BeginBatch begins p's transaction as a batch does, and returns it with
// the function that ends it as a batch does: committed, or rolled back.
func BeginBatch(ctx context.Context, p *Projector) (*sql.Tx, func(commit bool) error, error) {
	t := newTxn(ctx, func() (*sql.Conn, *sql.Tx, error) { return p.begin(ctx) }, p.d)
	if err := t.open(); err != nil {
		return nil, nil, err
	}
	return t.tx, func(commit bool) error {
		if commit {
			return t.commit()
		}
		t.rollback()
		return nil
	}, nil
}

// StorableArgs is storableArgs, for tests.
func StorableArgs(args []any) []any { return storableArgs(args) }

// FindItemsQuery is FindItems's statement on r, and its arguments.
func FindItemsQuery(r *ReadModels, q string, limit int) (string, []any, error) {
	query, args, err := r.findItemsPlan(context.Background(), q, limit)
	return r.d.Rebind(query), args, err
}

// FindItemsWalked returns the ids FindItems(q, limit) returns when the
// titles are read through, whatever the dialect could plan instead.
func FindItemsWalked(r *ReadModels, q string, limit int) ([]string, error) {
	query, args := findItemsQuery(q, limit, "")
	query = strings.Replace(query, `SELECT id, kind, title, status, created_at`, `SELECT id`, 1)
	if cp, ok := r.d.(CustomPlanner); ok {
		args = append([]any{cp.CustomPlanArg()}, args...)
	}
	ids, err := r.strings(context.Background(), query, args...)
	return ids, err
}

// Tables lists the read-model tables.
func Tables() []string { return append([]string(nil), tables...) }
