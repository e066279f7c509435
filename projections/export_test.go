package projections

import (
	"context"
	"database/sql"
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

// FindItemsQuery is FindItems's statement for d, and its arguments.
func FindItemsQuery(d Dialect, q string, limit int) (string, []any) {
	query, args := findItemsQuery(q, limit)
	return d.Rebind(query), args
}
