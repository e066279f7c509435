// Package lease lets one replica at a time do a job, such as running the
// projector, through a PostgreSQL session-level advisory lock: the lock is
// held as long as its connection lives, so a replica that dies (SIGKILL,
// network loss) frees it and another takes over.
package lease

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config tunes Run; its zero value works.
type Config struct {
	// Retry is how often a replica without the lease tries to take it (default 1 s).
	Retry time.Duration
	// Check is how often the holder checks that its lock connection is alive (default 1 s).
	Check time.Duration
	// OnChange, if set, is told when this replica takes or loses the lease.
	OnChange func(held bool)
}

// Key returns the advisory lock key of a named job.
func Key(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("messenger:" + name))
	return int64(h.Sum64())
}

// Run calls job with a context that lives while this replica holds the
// lease named name, and again whenever it takes the lease back, until ctx is
// done. It returns ctx's error.
func Run(ctx context.Context, pool *pgxpool.Pool, name string, cfg Config, job func(ctx context.Context) error) error {
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.Check <= 0 {
		cfg.Check = time.Second
	}
	key := Key(name)
	for {
		held, err := hold(ctx, pool, key, cfg, job)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := cfg.Retry
		if held && err == nil {
			wait = 0 // the job ended by itself: take the lease again at once
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// hold takes the lock if it is free and runs job while it is held.
func hold(ctx context.Context, pool *pgxpool.Pool, key int64, cfg Config, job func(context.Context) error) (bool, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquire lease connection: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil || !got {
		conn.Release()
		return false, err
	}
	if cfg.OnChange != nil {
		cfg.OnChange(true)
	}
	jobCtx, cancel := context.WithCancel(ctx)
	lost := make(chan struct{})
	go func() {
		defer close(lost)
		t := time.NewTicker(cfg.Check)
		defer t.Stop()
		for {
			select {
			case <-jobCtx.Done():
				return
			case <-t.C:
				checkCtx, done := context.WithTimeout(jobCtx, cfg.Check)
				err := conn.Ping(checkCtx)
				done()
				if err != nil && jobCtx.Err() == nil {
					cancel() // the connection, and with it the lock, is gone
					return
				}
			}
		}
	}()
	err = job(jobCtx)
	cancel()
	<-lost
	if cfg.OnChange != nil {
		cfg.OnChange(false)
	}
	// Unlock on a fresh context: ctx may be done already.
	unlockCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	if _, uerr := conn.Exec(unlockCtx, `SELECT pg_advisory_unlock($1)`, key); uerr != nil {
		conn.Conn().Close(unlockCtx) // closing the session frees the lock all the same
	}
	conn.Release()
	return true, err
}

// Exclusive waits until the lease named name is free, then runs job once
// while holding it: for work that must not overlap the lease's job, such as
// rebuilding the read models while replicas run.
func Exclusive(ctx context.Context, pool *pgxpool.Pool, name string, job func(ctx context.Context) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire lease connection: %w", err)
	}
	defer conn.Release()
	key := Key(name)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return fmt.Errorf("take lease %s: %w", name, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
	return job(ctx)
}
