package projections

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"
)

// TestStmtCache: a statement run in one transaction is prepared after it,
// serves the next transactions on the one connection (also after the
// table changed), and the least recently used go beyond the bound.
func TestStmtCache(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1) // as the writer: a transaction holds the one connection
	if _, err := db.Exec(`CREATE TABLE t (a INTEGER)`); err != nil {
		t.Fatal(err)
	}
	c := newStmtCache(db)
	const insert = `INSERT INTO t (a) VALUES (?)`
	run := func(a int) {
		t.Helper()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		tt := &txn{ctx: ctx, tx: tx, d: plainDialect{}, cache: c}
		if _, err := tt.execNow(insert, []any{a}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		c.prepare(ctx)
	}
	run(1)
	if c.prepared() != 1 || c.get(insert) == nil {
		t.Fatalf("%d statements prepared after the first transaction, want the insert", c.prepared())
	}
	run(2)
	if _, err := db.Exec(`ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	run(3)
	var n, sum int
	if err := db.QueryRow(`SELECT COUNT(*), SUM(a) FROM t WHERE b = 'x'`).Scan(&n, &sum); err != nil || n != 3 || sum != 6 {
		t.Fatalf("%d rows, sum %d (%v); want 3 rows, 6", n, sum, err)
	}

	for i := range stmtCacheSize + 10 {
		c.get(fmt.Sprintf("SELECT %d", i))
		if i == 5 {
			c.get(insert) // used recently: it stays
		}
	}
	c.prepare(ctx)
	if got := c.prepared(); got != stmtCacheSize {
		t.Errorf("%d statements prepared, want the bound, %d", got, stmtCacheSize)
	}
	if c.get(`SELECT 0`) != nil {
		t.Error("the least recently used statement is still prepared")
	}
	if c.get(fmt.Sprintf("SELECT %d", stmtCacheSize+9)) == nil {
		t.Error("the most recent statement is not prepared")
	}
}

// plainDialect is a Dialect whose statements need no rebinding.
type plainDialect struct{ Dialect }

func (plainDialect) Rebind(q string) string { return q }

// TestStmtCacheNow: a reader's statement is prepared at its first use and
// served from then on, from any connection of the pool.
func TestStmtCacheNow(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2)`); err != nil {
		t.Fatal(err)
	}
	c := newStmtCache(db)
	const q = `SELECT SUM(a) FROM t WHERE a >= ?`
	first := c.now(ctx, q)
	if first == nil || c.now(ctx, q) != first || c.prepared() != 1 {
		t.Fatalf("prepared %d statements; want one, the same at each use", c.prepared())
	}
	done := make(chan int, 4)
	for range 4 { // several connections at once
		go func() {
			var sum int
			if err := c.now(ctx, q).QueryRowContext(ctx, 1).Scan(&sum); err != nil {
				t.Error(err)
			}
			done <- sum
		}()
	}
	for range 4 {
		if sum := <-done; sum != 3 {
			t.Errorf("sum %d, want 3", sum)
		}
	}
	if c.now(ctx, `SELECT nonsense FROM nowhere`) != nil {
		t.Error("a statement that cannot be prepared was kept")
	}
}
