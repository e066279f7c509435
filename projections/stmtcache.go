package projections

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCacheSize bounds the statements a stmtCache keeps prepared.
const stmtCacheSize = 256

// stmtCache keeps statements prepared on a pool of an engine that runs
// each statement as it comes (not a Pipeliner): SQLite compiles a statement
// every time it is prepared, and the projector and the queries run the
// same few statements again and again (a list of VALUES has one text per
// number of rows). The projector's writer has one connection, which its
// transaction holds: a statement it first meets is noted (get) and
// prepared once the transaction is over (prepare), then serves the later
// transactions on that connection. The readers prepare at once (now). The
// least recently used are closed beyond stmtCacheSize.
type stmtCache struct {
	db *sql.DB

	mu     sync.Mutex
	stmts  map[string]*cachedStmt
	missed map[string]uint64 // run unprepared since the last prepare, with when last
	uses   uint64
}

type cachedStmt struct {
	stmt *sql.Stmt
	used uint64 // stmtCache.uses when last used
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[string]*cachedStmt{}, missed: map[string]uint64{}}
}

// get returns the statement of q prepared, or nil, noting q to prepare.
func (c *stmtCache) get(q string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	stmt, used := c.touch(q)
	if stmt == nil {
		c.missed[q] = used
	}
	return stmt
}

// touch counts a use of q and returns its statement, if prepared, and the
// count; c.mu is held.
func (c *stmtCache) touch(q string) (*sql.Stmt, uint64) {
	c.uses++
	if s := c.stmts[q]; s != nil {
		s.used = c.uses
		return s.stmt, c.uses
	}
	return nil, c.uses
}

// now returns the statement of q, prepared at once if need be, or nil if
// it cannot be: for a pool whose connections no long transaction holds
// (the readers), where a statement is prepared on each connection that
// runs it.
func (c *stmtCache) now(ctx context.Context, q string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	stmt, used := c.touch(q)
	c.mu.Unlock()
	if stmt != nil {
		return stmt
	}
	stmt, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.stmts[q]; s != nil { // prepared meanwhile by another caller
		stmt.Close()
		return s.stmt
	}
	c.stmts[q] = &cachedStmt{stmt: stmt, used: used}
	c.evict()
	return stmt
}

// prepare prepares the statements run unprepared since it last ran; call
// it outside any transaction on the writer. A statement that fails to
// prepare is left to run unprepared.
func (c *stmtCache) prepare(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	missed := c.missed
	c.missed = map[string]uint64{}
	c.mu.Unlock()
	for q, used := range missed {
		stmt, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if old := c.stmts[q]; old != nil {
			old.stmt.Close()
		}
		c.stmts[q] = &cachedStmt{stmt: stmt, used: used}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.evict()
	c.mu.Unlock()
}

// evict closes the least recently used statements beyond the bound.
func (c *stmtCache) evict() {
	for len(c.stmts) > stmtCacheSize {
		var oldest string
		var at uint64
		for q, s := range c.stmts {
			if oldest == "" || s.used < at {
				oldest, at = q, s.used
			}
		}
		c.stmts[oldest].stmt.Close()
		delete(c.stmts, oldest)
	}
}

// prepared returns how many statements the cache holds (for tests).
func (c *stmtCache) prepared() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.stmts)
}
