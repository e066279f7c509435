package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helpdesk/messenger/infra/lease"
	"github.com/helpdesk/messenger/infra/natsbus"
	"github.com/helpdesk/messenger/infra/postgres"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/projections"
)

// legacySchemaLock and legacyLease are the schema's lock and the
// projector's lease of the builds that kept their read models beside the
// log (before readmodel/v13).
const (
	legacySchemaLock = 0x6d657373656e6772 // "messengr"
	legacyLease      = "projector"
)

// prune drops the read models of the versions other than this build's,
// which rolling upgrades leave behind in PostgreSQL: each version keeps its
// own schema (projections.Schema), and the builds before that kept theirs
// beside the log. A version that a replica still runs (its projector's
// lease or its schema's lock is held) is kept, and said so.
func prune(ctx context.Context, cfg config, stdout io.Writer) error {
	if cfg.DatabaseURL == "" {
		fmt.Fprintln(stdout, "the embedded store keeps one version of the read models: nothing to prune")
		return nil
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Config{MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()

	schemas, legacy, err := otherVersions(ctx, db.Pool())
	if err != nil {
		return err
	}
	id, err := db.Installation(ctx)
	if err != nil {
		return err
	}
	for _, s := range schemas {
		err := whileUnused(ctx, conn, s, []int64{lease.Key(leaseOf(s)), lease.Key("schema/" + s)}, stdout, func() error {
			if _, err := conn.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{s}.Sanitize()+` CASCADE`); err != nil {
				return err
			}
			if cfg.BusURL == "" {
				return nil
			}
			// Its feed is this installation's alone (the builds before
			// versioned schemas shared one, which ages out by itself).
			topic := changesTopicOf(id, s)
			deleted, err := natsbus.DeleteStreams(ctx, cfg.BusURL, func(name string) bool { return name == topic })
			for _, name := range deleted {
				fmt.Fprintf(stdout, "deleted the NATS stream %s\n", name)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	if legacy == "" {
		return nil
	}
	return whileUnused(ctx, conn, legacy+" (beside the log)", []int64{lease.Key(legacyLease), legacySchemaLock}, stdout, func() error {
		return projections.Drop(ctx, db.SQL(), readmodel.Postgres{})
	})
}

// otherVersions lists the read models in the database of pool, the log's,
// that are not this build's: the schemas of other versions, and the name
// of those that builds before versioned schemas kept beside the log ("" if
// there are none).
func otherVersions(ctx context.Context, pool *pgxpool.Pool) (schemas []string, legacy string, err error) {
	rows, err := pool.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'readmodel\_%' AND nspname <> $1 ORDER BY 1`, projections.Schema())
	if err != nil {
		return nil, "", fmt.Errorf("list the read models' schemas: %w", err)
	}
	if schemas, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, "", fmt.Errorf("list the read models' schemas: %w", err)
	}
	err = pool.QueryRow(ctx, `SELECT name FROM checkpoints WHERE name LIKE 'readmodel/%'`).Scan(&legacy)
	switch {
	case err == nil, errors.Is(err, pgx.ErrNoRows), isUndefinedTable(err):
		return schemas, legacy, nil
	default:
		return nil, "", fmt.Errorf("look for read models beside the log: %w", err)
	}
}

// whileUnused runs drop while holding every lock of keys, taken without
// waiting on conn's session; if one is held elsewhere, a replica of that
// version runs, and what is named what is kept.
func whileUnused(ctx context.Context, conn *pgxpool.Conn, what string, keys []int64, stdout io.Writer, drop func() error) error {
	var taken []int64
	defer func() {
		for _, k := range taken {
			conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, k)
		}
	}()
	for _, k := range keys {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, k).Scan(&got); err != nil {
			return err
		}
		if !got {
			fmt.Fprintf(stdout, "kept %s: a replica of that version is running\n", what)
			return nil
		}
		taken = append(taken, k)
	}
	if err := drop(); err != nil {
		return fmt.Errorf("drop %s: %w", what, err)
	}
	fmt.Fprintf(stdout, "dropped %s\n", what)
	return nil
}

// isUndefinedTable reports whether err is PostgreSQL's "relation does not
// exist".
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}
