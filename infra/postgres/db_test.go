package postgres

import (
	"context"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/helpdesk/messenger/infra/postgres/pgtest"
)

// TestMigrationsConcurrentAndIdempotent opens a fresh database from several
// replicas at once, then again: every Open succeeds, each migration is
// applied once, and the schema is whole.
func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	const replicas = 4
	dbs := make([]*DB, replicas)
	errs := make([]error, replicas)
	ctx := ctxFor(t, 30*time.Second)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { dbs[i], errs[i] = Open(ctx, url, Config{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	if t.Failed() {
		t.FailNow()
	}
	again := openDB(t, url) // nothing left to apply
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v, %v", files, err)
	}
	var applied, distinct int
	if err := again.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT version_id) FROM `+VersionTable+
		` WHERE version_id > 0 AND is_applied`).Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied != len(files) || distinct != len(files) {
		t.Errorf("%s holds %d applied migrations (%d distinct), want %d", VersionTable, applied, distinct, len(files))
	}
	var heads int
	if err := again.SQL().QueryRowContext(ctx, `SELECT count(*) FROM log_head`).Scan(&heads); err != nil {
		t.Fatal(err)
	}
	if heads != 1 {
		t.Errorf("log_head holds %d rows, want 1", heads)
	}
	var goose bool
	if err := again.Pool().QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&goose); err != nil {
		t.Fatal(err)
	}
	if goose {
		t.Error("Open created goose's default version table, which is the read models' to use")
	}
}

// TestEventsAreImmutable checks that the log refuses updates and deletes.
func TestEventsAreImmutable(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	if _, err := s.Append(ctx, "s", 0, posted(1)); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`UPDATE events SET type = 'x'`,
		`DELETE FROM events`,
		`TRUNCATE events`,
	} {
		if _, err := db.Pool().Exec(ctx, stmt); err == nil {
			t.Errorf("%s: got no error", stmt)
		}
	}
	if recs, err := s.ReadStream(ctx, "s"); err != nil || len(recs) != 1 {
		t.Errorf("ReadStream: got %d records, %v; want 1", len(recs), err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on the loopback refuses at once.
	if db, err := Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", Config{}); err == nil {
		db.Close()
		t.Error("Open of an unreachable server: got no error")
	}
}
