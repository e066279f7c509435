package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/infra/bus"
	"github.com/helpdesk/messenger/infra/dirlock"
	"github.com/helpdesk/messenger/infra/kurrentdb"
	"github.com/helpdesk/messenger/infra/lease"
	"github.com/helpdesk/messenger/infra/natsbus"
	"github.com/helpdesk/messenger/infra/postgres"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/infra/sqlite"
	"github.com/helpdesk/messenger/projections"
	"github.com/helpdesk/messenger/readapi"
)

// eventStore is the log as every part of messengerd uses it.
type eventStore interface {
	commands.EventStore
	projections.Log
	readapi.Log
	Head(ctx context.Context) (uint64, error)
	Close() error
}

// backend is where the log, the read models and the change feed live.
type backend struct {
	store   eventStore
	writer  *sql.DB // read-model writes
	reader  *sql.DB // read-model queries
	readers int     // reader's connections at most
	dialect projections.Dialect
	// pool is set when the read models are in PostgreSQL: several replicas
	// may share them, and one at a time runs the projector.
	pool    *pgxpool.Pool
	pub     message.Publisher
	sub     message.Subscriber
	topic   string // of the change feed (changesTopic)
	closers []func() error
}

// pgReaders is the size of the PostgreSQL pool of the read models'
// queries; pgLogConns, of the log's (the event store's reads: a command's
// stream, the projector's batches, the streams' resumptions; the leases).
// 32 together, as the one pool they shared before the read models had a
// schema of their own: two replicas at full pools, with their projectors'
// and event stores' own connections, stay under PostgreSQL's default 100.
const (
	pgReaders  = 24
	pgLogConns = 8
)

// replicated reports whether other processes may share this backend.
func (b *backend) replicated() bool { return b.pool != nil }

func (b *backend) close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}

// openBackend opens what cfg names: PostgreSQL for the log and the read
// models when DatabaseURL is set, else one SQLite file under DataDir; the
// log in KurrentDB instead when EventStoreURL is set;
// NATS JetStream for the change feed when BusURL is set, else an in-process
// channel.
func openBackend(ctx context.Context, cfg config) (_ *backend, err error) {
	b := &backend{}
	defer func() {
		if err != nil {
			b.close() // what was opened before the failure
		}
	}()
	if cfg.DatabaseURL != "" {
		// The log's pool: the event store's reads (the projector's, the
		// streams' resumptions), the leases and the schema's lock.
		db, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Config{MaxConns: pgLogConns})
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, db.Close)
		id, err := db.Installation(ctx)
		if err != nil {
			return nil, err
		}
		b.topic = changesTopic(id)
		// The read models' pool, in the schema of this version alone.
		rm, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Config{MaxConns: pgReaders, Schema: projections.Schema()}) // pgxpool's default, max(4, CPUs), starves requests and streams
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, rm.Close)
		// The projector writes through connections of its own, so that no
		// burst of queries can keep it, and every write waiting on it, waiting.
		writer := stdlib.OpenDB(*rm.Pool().Config().ConnConfig.Copy())
		writer.SetMaxOpenConns(4)
		// Each connection keeps its statements prepared, and the server
		// their plans, which may have been made for tables much smaller
		// than they have grown: renewed every half hour, as the pool's
		// are every hour.
		writer.SetConnMaxLifetime(30 * time.Minute)
		b.closers = append(b.closers, writer.Close)
		b.writer, b.reader, b.dialect, b.pool = writer, rm.SQL(), readmodel.Postgres{}, db.Pool()
		b.readers = int(rm.Pool().Config().MaxConns)
		if cfg.EventStoreURL == "" {
			store := postgres.NewEventStore(db, postgres.EventStoreConfig{})
			b.closers = append(b.closers, store.Close)
			b.store = store
		}
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		// One process per embedded store: a second server, or a rebuild
		// beside the running one, would write the same file unseen.
		release, err := dirlock.Lock(cfg.DataDir)
		if err != nil {
			if errors.Is(err, dirlock.ErrInUse) {
				return nil, fmt.Errorf("%w: stop the messengerd using it first (serve, rebuild or seed), or give this one its own -data-dir", err)
			}
			return nil, err
		}
		b.closers = append(b.closers, release)
		db, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "messenger.db"))
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, db.Close)
		b.writer, b.reader, b.dialect, b.readers = db.Writer(), db.Reader(), readmodel.SQLite{}, db.Readers()
		id, err := db.Installation(ctx)
		if err != nil {
			return nil, err
		}
		b.topic = changesTopic(id)
		if cfg.EventStoreURL == "" {
			store := sqlite.NewEventStore(db, sqlite.EventStoreConfig{})
			b.closers = append(b.closers, store.Close)
			b.store = store
		}
	}
	if cfg.EventStoreURL != "" {
		// The log in KurrentDB; the read models stay where the lines above put them.
		store, err := kurrentdb.Open(ctx, cfg.EventStoreURL) // its errors show the URL without its password
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, store.Close)
		b.store = store
	}
	if cfg.BusURL != "" {
		nb, err := natsbus.Open(ctx, cfg.BusURL, b.topic, natsbus.Config{})
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, nb.Close)
		b.pub, b.sub = nb.Publisher, nb.Subscriber
	} else {
		gc := bus.NewGoChannel()
		b.closers = append(b.closers, gc.Close)
		b.pub, b.sub = gc, gc
	}
	return b, nil
}

// migrate creates the read models if they are missing (or of an older
// Name), once even when replicas start together. Read models recreated
// beside a log that is not empty are marked unfinished until a rebuild
// (serve's buildInBulk) fills them.
func (b *backend) migrate(ctx context.Context) error {
	return b.withSchemaLock(ctx, func() error {
		head, err := b.store.Head(ctx)
		if err != nil {
			return fmt.Errorf("read the log's head: %w", err)
		}
		_, err = projections.MigrateOver(ctx, b.writer, b.dialect, head)
		return err
	})
}

// withSchemaLock runs f holding the lock that read-model migrations and
// rebuilds take on a shared database: replicas starting together migrate
// once, and a replica starting during a rebuild waits for its end rather
// than take the read models it is making for unfinished, and recreate them.
// The embedded database has one process: f runs as it is.
func (b *backend) withSchemaLock(ctx context.Context, f func() error) error {
	if b.pool == nil {
		return f()
	}
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// The versions' schemas are apart: a rolling upgrade's build takes
	// the lock of its own while replicas of the version before start.
	key := lease.Key("schema/" + projections.Schema())
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return fmt.Errorf("lock the read models' schema: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
	return f()
}
