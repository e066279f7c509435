package postgres

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helpdesk/messenger/infra/eventstore/storetest"
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

// TestSessionDefaults checks that the pool's connections run without JIT
// and parallel workers, and the store writer's too, unless the URL says
// otherwise.
func TestSessionDefaults(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 20*time.Second)
	url := pgtest.NewDatabase(t)
	show := func(db *DB, name string) string {
		t.Helper()
		var v string
		if err := db.SQL().QueryRowContext(ctx, `SELECT current_setting($1)`, name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	db := openDB(t, url)
	for name, want := range map[string]string{"jit": "off", "max_parallel_workers_per_gather": "0"} {
		if got := show(db, name); got != want {
			t.Errorf("%s = %q on a pool connection, want %q", name, got, want)
		}
	}
	s := NewEventStore(db, EventStoreConfig{})
	t.Cleanup(func() { s.Close() })
	w, err := pgx.ConnectConfig(ctx, s.ownConnConfig("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	var v string
	if err := w.QueryRow(ctx, `SELECT current_setting('max_parallel_workers_per_gather')`).Scan(&v); err != nil || v != "0" {
		t.Errorf("max_parallel_workers_per_gather = %q, %v on the store's writer, want 0", v, err)
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	own := openDB(t, url+sep+"max_parallel_workers_per_gather=1")
	if got := show(own, "max_parallel_workers_per_gather"); got != "1" {
		t.Errorf("max_parallel_workers_per_gather = %q with the URL setting 1, want 1", got)
	}
}

// TestOpenSchema: pools opened with a Schema, several at once (replicas
// starting together), create it once, search it alone, and leave the log's
// schema unmigrated by them: a table of the same name elsewhere is out of
// their reach.
func TestOpenSchema(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	log, err := Open(ctx, url, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var wg sync.WaitGroup
	dbs := make([]*DB, 4)
	errs := make([]error, 4)
	for i := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(ctx, url, Config{Schema: "readmodel_vtest"})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	var path string
	if err := dbs[0].Pool().QueryRow(ctx, `SHOW search_path`).Scan(&path); err != nil || path != `"readmodel_vtest"` {
		t.Fatalf("search_path %q (%v)", path, err)
	}
	if _, err := dbs[0].Pool().Exec(ctx, `CREATE TABLE users (id int)`); err != nil {
		t.Fatal(err)
	}
	var schema string
	if err := dbs[1].Pool().QueryRow(ctx, `SELECT schemaname FROM pg_tables WHERE tablename = 'users'`).Scan(&schema); err != nil || schema != "readmodel_vtest" {
		t.Fatalf("table created in %q (%v)", schema, err)
	}
	// The log's tables are not on the path.
	if _, err := dbs[1].Pool().Exec(ctx, `SELECT 1 FROM events`); err == nil {
		t.Error("the log's table events is reachable from the schema's pool")
	}
	if _, err := log.Pool().Exec(ctx, `SELECT 1 FROM events`); err != nil {
		t.Errorf("the log's pool: %v", err)
	}
}

// TestInstallationID: a database names its log with a random id, made once
// by the migrations.
func TestInstallationID(t *testing.T) {
	storetest.InstallationID(t, func(t *testing.T) string { return pgtest.NewDatabase(t) }, func(url string) (string, error) {
		db, err := Open(context.Background(), url, Config{})
		if err != nil {
			return "", err
		}
		defer db.Close()
		return db.Installation(context.Background())
	})
}
