package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/helpdesk/messenger/infra/eventstore/storetest"
)

func TestOpenSettings(t *testing.T) {
	db := openDB(t, dbPath(t))
	ctx := context.Background()
	for _, tt := range []struct {
		pool   string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		{"writer", "synchronous", "2"},
		{"writer", "foreign_keys", "1"},
		{"writer", "busy_timeout", "10000"},
		{"writer", "user_version", "2"},
		{"reader", "journal_mode", "wal"},
		{"reader", "foreign_keys", "1"},
		{"reader", "busy_timeout", "10000"},
		{"reader", "query_only", "1"},
	} {
		pool := db.Writer()
		if tt.pool == "reader" {
			pool = db.Reader()
		}
		var got string
		if err := pool.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Errorf("%s: PRAGMA %s: %v", tt.pool, tt.pragma, err)
			continue
		}
		if !strings.EqualFold(got, tt.want) {
			t.Errorf("%s: PRAGMA %s = %s, want %s", tt.pool, tt.pragma, got, tt.want)
		}
	}
	if got := db.Writer().Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer: %d connections, want 1", got)
	}
}

func TestWrites(t *testing.T) {
	db := openDB(t, dbPath(t))
	ctx := context.Background()
	if _, err := db.Writer().ExecContext(ctx, `INSERT INTO events (stream, version, event_id, type, schema, at, actor_kind, actor_id, data)
		VALUES ('s', 1, 'e1', 'conversation.closed', 1, '2025-01-01T00:00:00.000000000Z', 'user', 'u', CAST('{}' AS BLOB))`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	tests := []struct {
		name string
		pool string
		sql  string
	}{
		{"readers are read-only", "reader", `INSERT INTO events (stream, version, event_id, type, schema, at, actor_kind, actor_id, data)
			VALUES ('s', 2, 'e2', 'conversation.closed', 1, '2025-01-01T00:00:00.000000000Z', 'user', 'u', CAST('{}' AS BLOB))`},
		{"events cannot be updated", "writer", `UPDATE events SET data = '{"x":1}'`},
		{"events cannot be deleted", "writer", `DELETE FROM events`},
		{"versions start at 1", "writer", `INSERT INTO events (stream, version, event_id, type, schema, at, actor_kind, actor_id, data)
			VALUES ('t', 0, 'e3', 'conversation.closed', 1, '2025-01-01T00:00:00.000000000Z', 'user', 'u', CAST('{}' AS BLOB))`},
		{"a version is taken once", "writer", `INSERT INTO events (stream, version, event_id, type, schema, at, actor_kind, actor_id, data)
			VALUES ('s', 1, 'e4', 'conversation.closed', 1, '2025-01-01T00:00:00.000000000Z', 'user', 'u', CAST('{}' AS BLOB))`},
		{"an event id is taken once", "writer", `INSERT INTO events (stream, version, event_id, type, schema, at, actor_kind, actor_id, data)
			VALUES ('t', 1, 'e1', 'conversation.closed', 1, '2025-01-01T00:00:00.000000000Z', 'user', 'u', CAST('{}' AS BLOB))`},
		{"columns are typed", "writer", `INSERT INTO events (stream, version, event_id, type, schema, at, actor_kind, actor_id, data)
			VALUES ('t', 'one', 'e5', 'conversation.closed', 1, '2025-01-01T00:00:00.000000000Z', 'user', 'u', CAST('{}' AS BLOB))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := db.Writer()
			if tt.pool == "reader" {
				pool = db.Reader()
			}
			if _, err := pool.ExecContext(ctx, tt.sql); err == nil {
				t.Error("got no error")
			}
		})
	}
	var n int
	if err := db.Reader().QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil || n != 1 {
		t.Errorf("events: %d, %v; want 1", n, err)
	}
}

func TestOpenMigratesOnce(t *testing.T) {
	path := dbPath(t)
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().ExecContext(ctx, `CREATE TABLE keep (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openDB(t, path) // a second migration would fail: events exists
	var n int
	if err := db.Reader().QueryRowContext(ctx, `SELECT count(*) FROM keep`).Scan(&n); err != nil {
		t.Errorf("a table of the first open is gone: %v", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := dbPath(t)
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().ExecContext(ctx, `PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(ctx, path); err == nil {
		db.Close()
		t.Fatal("Open of a newer schema: got no error")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: got %v, want it to say the schema is newer", err)
	}
}

func TestOpenPaths(t *testing.T) {
	dir := t.TempDir()
	// Characters that mean something in a URI (a query, a fragment, an
	// escape), which Open must keep as part of the file's name; Windows
	// refuses "?" in a name.
	special := "a b?c#d%20e&f=g.db"
	if runtime.GOOS == "windows" {
		special = "a b#c%20d&e=f;g.db"
	}
	tests := []struct {
		name    string
		path    string
		wantErr bool
	}{
		{"special characters", filepath.Join(dir, special), false},
		{"empty", "", true},
		{"in memory", ":memory:", true},
		{"missing directory", filepath.Join(dir, "no", "such", "dir.db"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(context.Background(), tt.path)
			if err == nil {
				db.Close()
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("Open(%q): %v, want error %t", tt.path, err, tt.wantErr)
			}
			if !tt.wantErr {
				if _, err := os.Stat(tt.path); err != nil {
					t.Errorf("the file is not where asked: %v", err)
				}
			}
		})
	}
}

// TestLowerFoldsEveryScript: lower() is Go's on both pools, as
// PostgreSQL's folds letters beyond ASCII; NULL and numbers pass through.
func TestLowerFoldsEveryScript(t *testing.T) {
	db := openDB(t, dbPath(t))
	for name, pool := range map[string]interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}{"writer": db.Writer(), "reader": db.Reader()} {
		var folded string
		var null sql.NullString
		var n int64
		if err := pool.QueryRowContext(context.Background(), `SELECT lower('ÉCOLE Straße İSTANBUL Ა ΣΑΣ'), lower(NULL), lower(12)`).
			Scan(&folded, &null, &n); err != nil {
			t.Fatal(err)
		}
		if folded != "école straße istanbul ა σασ" || null.Valid || n != 12 {
			t.Errorf("%s: lower gave %q, %v, %d", name, folded, null, n)
		}
	}
}

// TestInstallationID: a database names its log with a random id, made once
// by the migrations.
func TestInstallationID(t *testing.T) {
	storetest.InstallationID(t, func(t *testing.T) string { return filepath.Join(t.TempDir(), "a.db") }, func(path string) (string, error) {
		db, err := Open(context.Background(), path)
		if err != nil {
			return "", err
		}
		defer db.Close()
		return db.Installation(context.Background())
	})
}
