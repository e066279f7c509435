// Package postgres is the storage of Messenger on PostgreSQL through pgx:
// the event log (EventStore), and pools (Pool, and SQL for code written
// against database/sql): the log's, and one per schema of read models
// (Config.Schema).
//
// Open applies the schema of migrations/ with goose, under an advisory lock,
// so replicas that start together migrate once. goose records them in the
// table messenger_goose_version; users of the same database keep their own
// schema under another version table.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// VersionTable is the table in which goose records the migrations of this
// package.
const VersionTable = "messenger_goose_version"

//go:embed migrations/*.sql
var migrations embed.FS

// Config tunes Open. Its zero value works.
type Config struct {
	// MaxConns bounds the connections of the pool; 0 keeps the URL's
	// pool_max_conns or, without one, pgxpool's default of max(4, CPUs).
	// An EventStore opens its own connections besides these.
	MaxConns int32
	// Logger receives goose's log of the migrations applied; nil discards it.
	Logger *slog.Logger
	// Schema, when set, opens a pool for tables kept in a schema of their
	// own (the read models of one version), not for the log: Open creates
	// the schema if it is missing, sets it as every connection's
	// search_path, alone, so that no statement reaches a table of the same
	// name elsewhere (another version's), and applies no migration.
	Schema string
}

// sessionDefaults are the settings every connection starts with, unless
// the URL sets them. Every statement here touches a few hundred rows at
// most, and is planned for it:
//   - No JIT: the cost estimates of the projector's batched updates
//     (correlated subqueries per row) pass jit_above_cost, and compiling
//     them took 160 ms a statement, against 8 ms to run them.
//   - No parallel workers: an inbox page searched for two common words was
//     planned as a parallel walk of the inbox, whose two workers took
//     25 ms each to start on these machines, for 3 ms of work: 56 ms a
//     page on the seeded dataset, 2.8 ms without them. Index builds have a
//     setting of their own (max_parallel_maintenance_workers).
var sessionDefaults = map[string]string{
	"jit":                             "off",
	"max_parallel_workers_per_gather": "0",
}

// DB is an open PostgreSQL database whose schema is up to date.
type DB struct {
	pool  *pgxpool.Pool
	sqlDB *sql.DB
}

// Open connects to the database at url (a postgres:// URL or a
// keyword/value string, as pgx parses them) and applies the migrations it
// lacks. Several processes may call it at once: one applies the migrations
// while the others wait for it. It returns an error if the database is
// unreachable or a migration fails.
func Open(ctx context.Context, url string, cfg Config) (*DB, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	for name, value := range sessionDefaults {
		if _, set := pcfg.ConnConfig.RuntimeParams[name]; !set {
			pcfg.ConnConfig.RuntimeParams[name] = value
		}
	}
	if cfg.Schema != "" {
		if err := createSchema(ctx, pcfg.ConnConfig, cfg.Schema); err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		pcfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db := &DB{pool: pool, sqlDB: stdlib.OpenDBFromPool(pool)}
	if cfg.Schema != "" {
		return db, nil
	}
	if err := migrate(ctx, db.sqlDB, cfg.Logger); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return db, nil
}

// Installation returns the random id that names this database's log,
// made by its migrations once. Ask the log's pool: one opened with a
// Schema does not see the log's tables.
func (db *DB) Installation(ctx context.Context) (string, error) {
	var id string
	if err := db.pool.QueryRow(ctx, `SELECT id FROM messenger_installation`).Scan(&id); err != nil {
		return "", fmt.Errorf("read the installation's id: %w", err)
	}
	return id, nil
}

// Pool returns the pool of connections, for queries through pgx. Never nil.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// SQL returns the pool as a database/sql handle. Its connections are the
// pool's: it keeps none idle of its own. Never nil; Close closes it.
func (db *DB) SQL() *sql.DB { return db.sqlDB }

// Close closes the database/sql handle and the pool, waiting for the
// connections in use to be released.
func (db *DB) Close() error {
	err := db.sqlDB.Close()
	db.pool.Close()
	if err != nil {
		return fmt.Errorf("close postgres: %w", err)
	}
	return nil
}

// createSchema creates the schema name if it is missing, through a
// connection of its own.
func createSchema(ctx context.Context, cc *pgx.ConnConfig, name string) error {
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, name).Scan(&exists); err != nil || exists {
		return err // the owner of a schema made before may create nothing more in the database
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{name}.Sanitize()); err != nil {
		// Replicas starting together: IF NOT EXISTS does not keep the
		// second from failing on the catalog's unique index.
		if qerr := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, name).Scan(&exists); qerr == nil && exists {
			return nil
		}
		return fmt.Errorf("create schema %s: %w", name, err)
	}
	return nil
}

// migrate applies the migrations db lacks while it holds migrateLock.
func migrate(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithTableName(VersionTable),
		goose.WithSessionLocker(migrateLock{}),
		// Go migrations others register globally are not ours.
		goose.WithDisableGlobalRegistry(true),
	}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	} else {
		opts = append(opts, goose.WithLogger(goose.NopLogger()))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// migrateLockID is the key of the session advisory lock held while
// migrating: a hash of the version table's name, so that a migration with
// another version table takes another lock.
var migrateLockID = func() int64 {
	h := fnv.New64a()
	h.Write([]byte(VersionTable))
	return int64(h.Sum64())
}()

// migrateLock is a goose.SessionLocker that waits for the advisory lock
// with pg_advisory_lock, rather than polling for it as goose's own does, so
// a replica starting beside another one waits only as long as the other
// migrates. The lock is the session's: it ends with the connection if the
// process dies.
type migrateLock struct{}

// SessionLock waits for the lock on conn, or for ctx to end.
func (migrateLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
		return fmt.Errorf("lock for migrations: %w", err)
	}
	return nil
}

// SessionUnlock releases the lock that SessionLock took on conn.
func (migrateLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var unlocked bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", migrateLockID).Scan(&unlocked); err != nil {
		return fmt.Errorf("unlock after migrations: %w", err)
	}
	if !unlocked {
		return errors.New("unlock after migrations: the lock was not held")
	}
	return nil
}
