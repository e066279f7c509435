package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helpdesk/messenger/domain"
)

// Publisher carries the changes of each applied batch to the live streams
// of every replica. It is called after the batch has committed, so it only
// ever publishes what the log and the read models already hold.
type Publisher interface {
	Publish(ctx context.Context, changes []Change) error
}

// Config tunes a Projector; its zero value works.
type Config struct {
	// BatchSize is how many events one read-model transaction applies at most (default 500).
	BatchSize int
	// OnBatch, if set, is called after each committed batch with the number
	// of events it held and the new checkpoint.
	OnBatch func(events int, position uint64)
	// OnError, if set, is told of errors that Run retries.
	OnError func(error)
	// MaintainEvery is how many events Run applies between two rounds of
	// the dialect's maintenance, if it has any (see Maintainer; default
	// 1,000, and at most a round a second). The rows of the conversations
	// being talked in are rewritten with each post, and until a vacuum
	// every old version stays where the statements read: with 200 busy
	// conversations and 5,000 events between rounds, the batches' updates
	// of them took twice as long, and their readers' plans went wrong.
	MaintainEvery int
	// PollCheckpoint, if set, makes WaitFor also read the stored checkpoint
	// this often: for replicas whose read models another process projects.
	PollCheckpoint time.Duration
	// SplitSearch, with a dialect whose engine serves each connection with
	// a process of its own (a Pipeliner), writes a batch's search
	// documents in a second transaction, on a second connection, which
	// the engine runs beside the first and commits just before it. A crash
	// between the two commits leaves documents of events past the
	// checkpoint, which applying those events again rewrites; never fewer.
	// For Rebuild, which writes the most documents; ignored by Run. Its
	// transactions also have their statements planned at every batch (a
	// CustomPlanner's CustomPlans): its tables grow from nothing.
	SplitSearch bool
}

// Projector applies the log to the read models: one transaction per batch of
// events, the checkpoint in the same transaction as the rows, so no event is
// skipped or applied twice, whatever the instant of a crash.
type Projector struct {
	db    *sql.DB    // the writer
	stmts *stmtCache // the writer's statements kept prepared; nil with a Pipeliner
	d     Dialect
	log   Log
	pub   Publisher
	cfg   Config

	// convs holds the conversations' states as the read models hold them
	// once the last batch applied (convsAt) commits, so that a batch reads
	// only those it has not met yet. The next batch uses them only if it
	// follows convsAt; a batch whose commit fails drops them (forget), and
	// so does one that fails half-way. Only the goroutine applying batches
	// touches them, never a background commit.
	convs     map[string]*convState
	customers map[string]string // customer id → "name email", for the search documents of new conversations
	convsAt   uint64

	applied  atomic.Uint64
	running  atomic.Bool // Run is applying the log in this process
	mu       sync.Mutex
	moved    chan struct{} // closed and replaced when applied grows
	waiters  int           // WaitFor calls following the stored checkpoint
	stopPoll func()        // stops their poller
}

// maxKnownConversations and maxKnownCustomers bound the states a projector
// keeps between batches; past them, it starts afresh.
const (
	maxKnownConversations = 100_000
	maxKnownCustomers     = 100_000
)

// NewProjector returns a projector writing through db (which must already be
// migrated, see Migrate), reading log, and publishing to pub (nil: none).
func NewProjector(db *sql.DB, d Dialect, log Log, pub Publisher, cfg Config) *Projector {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.MaintainEvery <= 0 {
		cfg.MaintainEvery = 1000
	}
	p := &Projector{db: db, d: d, log: log, pub: pub, cfg: cfg, moved: make(chan struct{})}
	if _, pipes := d.(Pipeliner); !pipes {
		p.stmts = newStmtCache(db)
	}
	return p
}

// Load reads the stored checkpoint; call it before Run, Step or Applied.
func (p *Projector) Load(ctx context.Context) error {
	pos, err := Checkpoint(ctx, p.db, p.d)
	if err != nil {
		return err
	}
	p.advance(pos)
	return nil
}

// Checkpoint returns the position up to which the read models in db have
// applied the log.
func Checkpoint(ctx context.Context, db *sql.DB, d Dialect) (uint64, error) {
	var pos int64
	if err := db.QueryRowContext(ctx, d.Rebind(`SELECT position FROM checkpoints WHERE name = ?`), Name).Scan(&pos); err != nil {
		return 0, fmt.Errorf("read checkpoint: %w", err)
	}
	return uint64(pos), nil
}

// Applied returns the position up to which this projector has applied the log.
func (p *Projector) Applied() uint64 { return p.applied.Load() }

func (p *Projector) advance(pos uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pos > p.applied.Load() {
		p.applied.Store(pos)
		close(p.moved)
		p.moved = make(chan struct{})
	}
}

// WaitFor returns once the read models have applied position pos, or with
// ctx's error.
func (p *Projector) WaitFor(ctx context.Context, pos uint64) error {
	if p.cfg.PollCheckpoint > 0 && !p.running.Load() {
		// Another process projects: follow the stored checkpoint, with one
		// poller for all the waiters of this process.
		p.follow(ctx)
		defer p.unfollow()
	}
	for {
		p.mu.Lock()
		done, moved := p.applied.Load() >= pos, p.moved
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// follow counts a waiter and starts the poller of the stored checkpoint
// when it is the first.
func (p *Projector) follow(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waiters++
	if p.waiters > 1 {
		return
	}
	pollCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p.stopPoll = stop
	go func() {
		t := time.NewTicker(p.cfg.PollCheckpoint)
		defer t.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
				if err := p.Load(pollCtx); err != nil && pollCtx.Err() == nil && p.cfg.OnError != nil {
					p.cfg.OnError(fmt.Errorf("follow the checkpoint: %w", err))
				}
			}
		}
	}()
}

// unfollow counts a waiter gone and stops the poller after the last.
func (p *Projector) unfollow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waiters--
	if p.waiters == 0 {
		p.stopPoll()
	}
}

// Step applies the next batch of events, if any, and returns how many.
func (p *Projector) Step(ctx context.Context) (int, error) {
	from := p.Applied()
	recs, err := p.log.ReadAll(ctx, from, p.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("read log after %d: %w", from, err)
	}
	return p.applyBatch(ctx, recs)
}

// applyBatch applies recs, the events that follow the checkpoint, in one
// transaction, and returns how many.
func (p *Projector) applyBatch(ctx context.Context, recs []domain.Recorded) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	pr, err := p.prepare(ctx, recs, p.Applied(), func() (*sql.Conn, *sql.Tx, error) { return p.begin(ctx) })
	if err != nil {
		return 0, err
	}
	if err := p.commit(ctx, pr); err != nil {
		p.forget()
		return 0, err
	}
	return len(recs), nil
}

// begin begins a transaction of the writer; if the dialect is a
// Pipeliner, it returns a connection of the writer instead, on which the
// txn's first statements begin the transaction (see txn). If it is a
// FlushDeferrer, the transaction runs on a connection of its own, relaxed,
// which it returns too, for the txn to restore it (see txn.release).
func (p *Projector) begin(ctx context.Context) (*sql.Conn, *sql.Tx, error) {
	if _, ok := p.d.(Pipeliner); ok {
		conn, err := p.db.Conn(ctx)
		return conn, nil, err
	}
	fd, ok := p.d.(FlushDeferrer)
	if !ok {
		tx, err := p.db.BeginTx(ctx, nil)
		return nil, tx, err
	}
	relax, restore := fd.DeferFlush()
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, err := conn.ExecContext(ctx, relax); err != nil {
		giveBack(conn, restore)
		return nil, nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		giveBack(conn, restore)
		return nil, nil, err
	}
	return conn, tx, nil
}

// prepared is a batch applied in memory, whose row changes its txn holds
// or has sent, but not committed.
type prepared struct {
	t          *txn
	docs       *txn // the search documents' own, with Config.SplitSearch; else nil
	recs       []domain.Recorded
	changes    []Change
	from, last uint64 // the checkpoint before and after
	// counts, if the batch moved any counter, is filled in by the
	// queries countsQ as the batch commits, for the streams.
	counts  *Counts
	countsQ []Statement
}

// prepare applies recs, the events that follow position from, through a
// txn whose transaction begin begins, and leaves the projector's
// conversation and customer states as of the batch's end (forget drops
// them if the batch does not commit).
func (p *Projector) prepare(ctx context.Context, recs []domain.Recorded, from uint64, begin func() (*sql.Conn, *sql.Tx, error)) (*prepared, error) {
	t := newTxn(ctx, begin, p.d)
	t.cache = p.stmts
	if p.convs == nil || p.convsAt != from || len(p.convs) > maxKnownConversations || len(p.customers) > maxKnownCustomers {
		p.convs, p.customers = map[string]*convState{}, map[string]string{}
	}
	b := newBatch(t, p.convs, p.customers)
	if p.pub != nil {
		b.movedReaders = map[string]bool{}
	}
	if _, pipes := p.d.(Pipeliner); p.cfg.SplitSearch && pipes && !p.running.Load() {
		b.docsT = newTxn(ctx, begin, p.d)
		// The tables grow from nothing: a plan made for an early batch
		// is no plan for a late one.
		if cp, ok := p.d.(CustomPlanner); ok {
			t.first, b.docsT.first = cp.CustomPlans(), cp.CustomPlans()
		}
	}
	p.forget() // until this batch is applied: its states may be half-way
	fail := func(err error) (*prepared, error) {
		t.rollback()
		if b.docsT != nil {
			b.docsT.rollback()
		}
		return nil, err
	}
	if err := b.prefetch(recs); err != nil {
		return fail(err)
	}
	var changes []Change
	for _, rec := range recs {
		if err := apply(t, b, rec); err != nil {
			return fail(fmt.Errorf("project %s at %d (%s v%d): %w", rec.Type, rec.Position, rec.Stream, rec.Version, err))
		}
		if p.pub != nil {
			for _, ch := range ChangesOf(rec) {
				if c := b.convs[ch.ConversationID]; c != nil {
					ch.Customer = c.customerID
				}
				changes = append(changes, ch)
			}
		}
	}
	last := recs[len(recs)-1].Position
	if err := b.flush(); err != nil {
		return fail(fmt.Errorf("project up to %d: %w", last, err))
	}
	pr := &prepared{t: t, docs: b.docsT, recs: recs, changes: changes, from: from, last: last}
	if p.pub != nil {
		pr.counts, pr.countsQ = b.counts()
	}
	p.convs, p.customers, p.convsAt = b.convs, b.customerDoc, last
	return pr, nil
}

// rollback ends pr's transactions without their changes.
func (pr *prepared) rollback() {
	pr.t.rollback()
	if pr.docs != nil {
		pr.docs.rollback()
	}
}

// forget drops the conversation and customer states kept between batches.
func (p *Projector) forget() { p.convs, p.customers = nil, nil }

// checkpointSQL moves the checkpoint from the position a batch follows to
// its last: it changes no row if another projector moved it meanwhile.
const checkpointSQL = `UPDATE checkpoints SET position = ? WHERE name = ? AND position = ?`

// checkpointGuardSQL is checkpointSQL for a Pipeliner, whose COMMIT
// follows in the same round trip, before anyone could look at a count of
// rows: when it moves no row, it divides by zero (SQLSTATE 22012), which
// fails the transaction, and the engine skips the COMMIT.
const checkpointGuardSQL = `WITH moved AS (` + checkpointSQL + ` RETURNING 1) SELECT 1 / count(*) FROM moved`

// guardFailed reports whether err is checkpointGuardSQL's division by zero.
func guardFailed(err error) bool {
	var coded interface{ SQLState() string }
	return errors.As(err, &coded) && coded.SQLState() == "22012"
}

// commit moves the checkpoint of pr, reads the counters it changed,
// commits, and tells of it. It does not touch the states kept between
// batches: a caller whose commit failed calls forget.
func (p *Projector) commit(ctx context.Context, pr *prepared) error {
	// The documents' transaction runs beside the batch's and commits first.
	var docs chan error
	if pr.docs != nil {
		docs = make(chan error, 1)
		go func() { docs <- pr.docs.commit() }()
	}
	args := []any{int64(pr.last), Name, int64(pr.from)}
	last := pr.countsQ // what the commit sends before COMMIT
	n, err := int64(1), error(nil)
	if _, pipes := p.d.(Pipeliner); !pipes {
		n, err = pr.t.execCount(checkpointSQL, args...)
	} else if docs != nil {
		// Sent with what is held, beside the documents' commit.
		_, err = pr.t.execCount(checkpointGuardSQL, args...)
	} else {
		// All in the commit's round trip.
		last = append([]Statement{{Query: checkpointGuardSQL, Args: args}}, last...)
	}
	if docs != nil {
		if docsErr := <-docs; docsErr != nil {
			pr.docs.rollback()
			err = errors.Join(err, fmt.Errorf("search documents: %w", docsErr))
		}
	}
	if err == nil && n == 1 {
		err = pr.t.commitWith(last)
	}
	if guardFailed(err) {
		n, err = 0, nil
	}
	if err != nil {
		pr.t.rollback()
		return fmt.Errorf("project up to %d: %w", pr.last, err)
	}
	if n != 1 {
		// Another projector moved the checkpoint: re-read it and go on from there.
		pr.t.rollback()
		if err := p.Load(ctx); err != nil {
			return err
		}
		return fmt.Errorf("checkpoint moved from %d by another projector", pr.from)
	}
	p.advance(pr.last)
	if p.cfg.OnBatch != nil {
		p.cfg.OnBatch(len(pr.recs), pr.last)
	}
	changes := pr.changes
	if pr.counts != nil {
		// First, at the batch's first position, so that a stream counts
		// with them as it renders the batch's changes.
		first := pr.recs[0].Position
		if len(changes) > 0 {
			first = changes[0].Position
		}
		changes = slices.Insert(changes, 0, Change{Position: first, Kind: CountsChanged, Counts: pr.counts})
	}
	if len(changes) > 0 {
		if err := p.pub.Publish(ctx, changes); err != nil && p.cfg.OnError != nil {
			p.cfg.OnError(fmt.Errorf("publish changes up to %d: %w", pr.last, err))
		}
	}
	// The writer's connection is free: prepare what the batch ran first.
	p.stmts.prepare(ctx)
	return nil
}

// committing is a batch whose commit runs in the background.
type committing struct {
	done chan struct{}
	err  error // once done is closed
}

// wait returns the commit's error once it is done.
func (c *committing) wait() error {
	<-c.done
	return c.err
}

// page is a batch of the log as read ahead for the projector.
type page struct {
	recs []domain.Recorded
	err  error
}

// readAhead reads the log from the checkpoint on, one batch ahead of the
// one being written, until ctx is done or a read fails (the last page
// then holds the error), and ends with an empty page once the log holds
// nothing more.
func (p *Projector) readAhead(ctx context.Context) <-chan page {
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		after := p.Applied()
		for {
			recs, err := p.log.ReadAll(ctx, after, p.cfg.BatchSize)
			if err != nil {
				err = fmt.Errorf("read log after %d: %w", after, err)
			}
			select {
			case pages <- page{recs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(recs) == 0 {
				return
			}
			after = recs[len(recs)-1].Position
		}
	}()
	return pages
}

// CatchUp applies batches until the log holds nothing more. It reads the
// next batch while it writes one, and applies a batch in memory while the
// one before it is sent and committed: the batch's transaction begins after
// that commit, or at once if it has to read before (a conversation or a
// customer it does not know, or a rarer question), and none commits before
// the one before it.
func (p *Projector) CatchUp(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var prev *committing
	defer func() {
		if prev != nil {
			prev.wait() // the goroutine is done with the projector
		}
	}()
	from := p.Applied()
	for pg := range p.readAhead(ctx) {
		if pg.err != nil {
			return pg.err
		}
		if len(pg.recs) == 0 {
			break
		}
		before := prev
		pr, err := p.prepare(ctx, pg.recs, from, func() (*sql.Conn, *sql.Tx, error) {
			if before != nil {
				if err := before.wait(); err != nil {
					return nil, nil, err
				}
			}
			return p.begin(ctx)
		})
		if err == nil && before != nil {
			if err = before.wait(); err != nil {
				pr.rollback()
			}
		}
		if err != nil {
			p.forget()
			return err
		}
		from = pr.last
		c := &committing{done: make(chan struct{})}
		go func() {
			defer close(c.done)
			c.err = p.commit(ctx, pr)
		}()
		prev = c
	}
	if prev != nil {
		err := prev.wait()
		prev = nil
		if err != nil {
			p.forget()
			return err
		}
	}
	return ctx.Err()
}

// Run applies the log as it grows until ctx is done. Errors are retried
// with a growing pause (reported to Config.OnError); it returns ctx's error.
// It reads a batch only once the one before is written, unlike CatchUp:
// while the log grows, the events that came meanwhile make one batch, and
// fewer, larger batches keep up with more (reading ahead halved them, and
// doubled the posts' wait at 4,000 a second).
func (p *Projector) Run(ctx context.Context) error {
	p.running.Store(true)
	defer p.running.Store(false)
	maintain := p.maintainer(ctx)
	pause := 50 * time.Millisecond
	for {
		n, err := p.Step(ctx)
		maintain(n)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if p.cfg.OnError != nil {
				p.cfg.OnError(err)
			}
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return ctx.Err()
			}
			pause = min(pause*2, 5*time.Second)
			continue
		}
		pause = 50 * time.Millisecond
		if n > 0 {
			continue
		}
		if err := p.log.Wait(ctx, p.Applied()); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// maintainer returns what Run calls with the events of each batch: once
// MaintainEvery have been applied, and a second has passed since the last
// round, it starts a round of the dialect's maintenance in the background,
// one at a time.
func (p *Projector) maintainer(ctx context.Context) func(applied int) {
	m, ok := p.d.(Maintainer)
	if !ok {
		return func(int) {}
	}
	var busy atomic.Bool
	since, last, rounds := 0, time.Time{}, 0
	return func(applied int) {
		since += applied
		if since < p.cfg.MaintainEvery || time.Since(last) < time.Second || busy.Load() {
			return
		}
		since, last = 0, time.Now()
		rounds++
		stmts := m.Maintenance()
		if rounds%20 == 0 {
			stmts = append(stmts, m.Statistics(tables)...)
		}
		busy.Store(true)
		go func() {
			defer busy.Store(false)
			for _, q := range stmts {
				if _, err := p.db.ExecContext(ctx, q); err != nil && ctx.Err() == nil && p.cfg.OnError != nil {
					p.cfg.OnError(fmt.Errorf("maintenance: %s: %w", firstLine(q), err))
				}
			}
		}()
	}
}

// Rebuild drops the read models, recreates them and applies the whole log,
// calling progress after each batch with the events applied so far.
func Rebuild(ctx context.Context, db *sql.DB, d Dialect, log Log, progress func(applied int, position uint64)) error {
	// Indexes only queries use are built once at the end: faster than
	// keeping them up to date row by row.
	later, err := recreate(ctx, db, d, true, true)
	if err != nil {
		return err
	}
	total := 0
	p := NewProjector(db, d, log, nil, Config{BatchSize: 5000, SplitSearch: true, OnBatch: func(n int, pos uint64) {
		total += n
		if progress != nil {
			progress(total, pos)
		}
	}})
	if err := p.CatchUp(ctx); err != nil {
		return err
	}
	return finishRebuild(ctx, db, d, later)
}

// finishRebuild creates the indexes of later, refreshes the planner's
// statistics, table by table, two tables at a time, and runs the dialect's
// maintenance: a table's ANALYZE
// waits for its index builds anyway, but the tables need not wait for each
// other, and the server has a core for each. The longest tables go first.
// Last, it marks the rebuild finished.
func finishRebuild(ctx context.Context, db *sql.DB, d Dialect, later []string) error {
	m, _ := d.(Maintainer)
	order := append([]string{"search_docs", "messages"}, tables...)
	var jobs [][]string
	seen := map[string]bool{}
	for _, table := range order {
		if seen[table] {
			continue
		}
		seen[table] = true
		var job []string
		for _, q := range later {
			if indexTable(q) == table {
				job = append(job, q)
			}
		}
		if m != nil {
			job = append(job, m.Statistics([]string{table})...)
		}
		if len(job) > 0 {
			jobs = append(jobs, job)
		}
	}
	next := make(chan []string, len(jobs))
	for _, job := range jobs {
		next <- job
	}
	close(next)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			for job := range next {
				for _, q := range job {
					if _, err := db.ExecContext(ctx, q); err != nil {
						errs <- fmt.Errorf("finish the rebuild: %s: %w", firstLine(q), err)
						for range next { // the other worker stops too
						}
						return
					}
				}
			}
			errs <- nil
		}()
	}
	if err := errors.Join(<-errs, <-errs); err != nil {
		return err
	}
	// The maintenance of the tables every post rewrites also leaves them
	// ready for index-only scans (PostgreSQL's visibility map), which the
	// inbox's covering indexes are for: freshly written, every row would
	// be read from the table until a vacuum.
	var last []string
	if m != nil {
		last = m.Maintenance()
	}
	if c, ok := d.(Compactor); ok {
		last = append(last, c.Compact()...)
	}
	for _, q := range last {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("finish the rebuild: %s: %w", firstLine(q), err)
		}
	}
	if _, err := db.ExecContext(ctx, d.Rebind(`DELETE FROM checkpoints WHERE name = ?`), rebuilding); err != nil {
		return fmt.Errorf("finish the rebuild: %w", err)
	}
	return nil
}

// indexTable returns the table of a CREATE INDEX statement.
func indexTable(q string) string {
	_, rest, _ := strings.Cut(q, " ON ")
	table, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	return table
}
