// Package sqlite is the embedded storage of Messenger: one SQLite file (pure
// Go, modernc.org/sqlite) in WAL mode holding the event log, and the read
// models of whoever shares the file through Writer and Reader.
//
// Every write goes through the single connection of Writer, so writers queue
// in database/sql rather than on SQLite's lock; reads use the pool of
// read-only connections of Reader and never wait for a writer. Commits are
// synchronous=FULL: an acknowledged write survives a crash or a power cut.
// A user of Writer whose writes can be derived again from the log may
// relax it on a connection it holds (the projector does, with
// synchronous=NORMAL: see projections.FlushDeferrer), provided it sets
// FULL again, or closes the connection, before giving it back.
//
// PRAGMA user_version is the version of the schema in migrations/, applied
// by Open; other users of the file must track their own schema elsewhere.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"runtime"
	"strconv"
	"strings"

	msqlite "modernc.org/sqlite" // and registers the "sqlite" driver
)

// SQLite's lower() folds ASCII letters only: a search for "école" missed
// the item titled "École" on the embedded store, which PostgreSQL's lower()
// (and so the same query there) finds. Every connection of this process
// gets Go's instead, as SQLite's ICU extension replaces it: a letter of any
// script in lower case, rune by rune (strings.ToLower), NULL for NULL, and
// any other value as it is.
func init() {
	msqlite.MustRegisterDeterministicScalarFunction("lower", 1, func(_ *msqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case string:
			return strings.ToLower(v), nil
		case []byte:
			return strings.ToLower(string(v)), nil
		default:
			return v, nil
		}
	})
}

// busyTimeoutMS is how long a connection waits for another process's lock.
const busyTimeoutMS = 10000

//go:embed migrations/*.sql
var migrations embed.FS

// DB is an open SQLite database file: one writer connection and a pool of
// read-only ones.
type DB struct {
	writer *sql.DB
	reader *sql.DB
}

// Open opens the database file at path, creating it if need be, and brings
// its schema up to date. It returns an error if the file cannot be put in WAL
// mode or holds a schema newer than this program knows.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("open sqlite: empty path")
	}
	name := "file:" + (&url.URL{Path: path}).EscapedPath()
	common := "_pragma=busy_timeout(" + strconv.Itoa(busyTimeoutMS) + ")&_pragma=foreign_keys(1)"

	writer, err := sql.Open("sqlite", name+"?"+common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=cache_size(-131072)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// One connection: database/sql queues the writers, and a transaction
	// begun on it takes SQLite's write lock at once (BEGIN IMMEDIATE).
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	db := &DB{writer: writer}
	if err := db.checkWriter(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := migrate(ctx, writer, migrations); err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}

	reader, err := sql.Open("sqlite", name+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	if err := reader.PingContext(ctx); err != nil {
		reader.Close()
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: readers: %w", path, err)
	}
	db.reader = reader
	return db, nil
}

// checkWriter connects the writer and makes sure the settings that make a
// commit durable took effect.
func (db *DB) checkWriter(ctx context.Context) error {
	var mode string
	if err := db.writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %s, want wal", mode)
	}
	var sync int
	if err := db.writer.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return err
	}
	if sync != 2 {
		return fmt.Errorf("synchronous is %d, want 2 (FULL)", sync)
	}
	return nil
}

// Writer returns the pool of the one connection every write goes through.
// Its transactions begin IMMEDIATE, holding the file's write lock until they
// end: keep them short, and do not call EventStore.Append while holding one,
// since the store's writer waits for this connection.
func (db *DB) Writer() *sql.DB { return db.writer }

// Installation returns the random id that names this database's log, made
// by its migrations once.
func (db *DB) Installation(ctx context.Context) (string, error) {
	var id string
	if err := db.reader.QueryRowContext(ctx, `SELECT id FROM installation`).Scan(&id); err != nil {
		return "", fmt.Errorf("read the installation's id: %w", err)
	}
	return id, nil
}

// Reader returns a pool of read-only connections. In WAL mode their reads
// see the last commit and never wait for the writer.
func (db *DB) Reader() *sql.DB { return db.reader }

// Readers returns how many connections Reader opens at most.
func (db *DB) Readers() int { return db.reader.Stats().MaxOpenConnections }

// Close closes every connection. The last one to close checkpoints the WAL
// into the database file.
func (db *DB) Close() error {
	var errs []error
	if db.reader != nil {
		errs = append(errs, db.reader.Close())
	}
	errs = append(errs, db.writer.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite: %w", err)
	}
	return nil
}

// migrate applies, in one transaction, the files of fsys's migrations folder
// numbered above the database's user_version, named 0001_what.sql,
// 0002_….sql and so on, and sets user_version to the last one's number.
func migrate(ctx context.Context, db *sql.DB, fsys fs.FS) error {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// Glob returns names in lexical order, which the zero-padded numbers make
	// numeric order.
	for i, name := range names {
		num, _, ok := strings.Cut(path.Base(name), "_")
		if n, err := strconv.Atoi(num); !ok || err != nil || n != i+1 {
			return fmt.Errorf("migrate: %s: want a name starting %04d_", name, i+1)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if version > len(names) {
		return fmt.Errorf("migrate: the schema is at version %d, newer than this program's %d", version, len(names))
	}
	if version == len(names) {
		return nil
	}
	for _, name := range names[version:] {
		script, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, string(script)); err != nil {
			return fmt.Errorf("migrate: %s: %w", name, err)
		}
	}
	// PRAGMA takes no parameters; len(names) is an int.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(len(names))); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
