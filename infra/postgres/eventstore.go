package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/infra/codec"
	"github.com/helpdesk/messenger/infra/eventstore"
	"github.com/helpdesk/messenger/projections"
)

var (
	_ commands.EventStore = (*EventStore)(nil)
	_ projections.Log     = (*EventStore)(nil)
)

// ErrClosed is returned by an EventStore's Append and Wait once it is closed.
var ErrClosed = errors.New("event store closed")

// NotifyChannel is the channel every append transaction notifies, with the
// last position it appended as the payload, as it commits.
const NotifyChannel = "messenger_events"

// EventStoreConfig tunes an EventStore. Its zero value works.
type EventStoreConfig struct {
	// MaxBatch bounds the appends committed together in one transaction;
	// 0 means 512.
	MaxBatch int
	// Writers is the number of writer goroutines, each with its own
	// connection; 0 means 1. With two, the next batch is on its way to the
	// server, waiting for the lock on log_head, while the one before it
	// commits; but batches are smaller, and each costs one WAL flush, so
	// one writer did as well or better in the benchmarks.
	Writers int
	// PollInterval is how often Wait looks for events appended by another
	// process when no notification arrives; appends through this
	// EventStore wake it at once, and so do notifications. 0 means 250ms.
	PollInterval time.Duration
	// CommitTimeout bounds the time a batch takes, from the first
	// statement to the commit, so that a stuck server cannot hold the
	// writers forever. 0 means 30s.
	CommitTimeout time.Duration
	// TailSize is how many of the newest events appended through this
	// store ReadAll serves from memory (see eventstore.Tail); 0 means
	// eventstore.DefaultTailSize, below 0 none.
	TailSize int
}

// EventStore is the event log in PostgreSQL.
//
// # Global order
//
// A reader of ReadAll(after) must never miss an event whose transaction
// commits after that of a later-numbered one (the bigserial gap). The store
// serialises the assignment of positions: every append transaction first
// updates the one row of log_head (UPDATE log_head SET position = position
// + n RETURNING position), numbers its n events from the position it held,
// and commits. The row lock is held until the commit is visible to all, so
// the next transaction, in this process or another replica, cannot take a
// position until the previous one's events are visible: transactions
// become visible in position order, and a reader whose snapshot holds
// position p holds every position below p. A transaction numbers only what
// it inserts, so positions are dense (1, 2, 3, …), and log_head holds the
// head of the log.
//
// The alternative, a transaction-id watermark (pg_current_xact_id() with
// every row, reading below pg_snapshot_xmin), lets appends commit in
// parallel, but orders the log by a (transaction id, sequence) pair that
// the projections' one uint64 checkpoint holds only as a sparse packed
// number, and makes every reader, and every read-your-writes wait, lag
// behind the oldest transaction holding an id anywhere on the server, such
// as a long rebuild. The lock costs one commit, and one WAL flush, at a
// time; group commit makes each of them carry a batch of appends.
//
// # Group commit
//
// Append queues its request to the writer goroutines. A writer takes every
// request waiting, up to MaxBatch, decides each in order as if it ran alone,
// and sends the transaction in one round trip, as one pipeline that the
// server runs as one implicit transaction: the update of log_head, which
// also notifies, and one INSERT of all the rows from arrays. The lock on
// log_head is held only while the server runs that and commits.
// A conflicting request writes nothing and does not affect the others, as
// if each had its own savepoint, without the cost of subtransactions.
//
// The writer decides without reading when it can: it remembers the
// version each stream it wrote or read had reached, which can only be a
// lower bound of its version now. It writes a stream at the version after
// the one it expects, so if the stream moved on meanwhile the INSERT fails on
// UNIQUE (stream, version), as it fails on UNIQUE (event_id) for events in
// the log already (an idempotent retry); it reads the versions it does not
// know in one query before the transaction. A request found in conflict is
// in conflict at the moment of the read, unless its events are in the log:
// the writer then looks for them and answers with the stored records. When
// the INSERT fails on a unique constraint, the transaction rolls back and
// the writer applies the batch again on the locked path: the lock first, then the
// versions and the stored events read under it, then the writes. Should
// the server refuse a batch even so (someone writing without the lock, or a
// value the checks let through), the writer applies its requests one per
// transaction, so that only the guilty one fails.
//
// With two writers (EventStoreConfig.Writers), one batch is on its way to
// the server, waiting for the lock, while the one before it commits.
//
// Each writer has its own connection, outside the DB's pool; Wait listens
// for NotifyChannel on one more.
type EventStore struct {
	db            *DB
	connConfig    *pgx.ConnConfig
	maxBatch      int
	poll          time.Duration
	commitTimeout time.Duration

	reqs      chan *appendReq // unbuffered: a request sent is one a writer holds
	turn      chan struct{}   // holds the one token of the writer that may collect the next batch
	done      chan struct{}   // closed by Close
	writers   sync.WaitGroup
	closeOnce sync.Once

	// changed is closed, and replaced, after every commit through this
	// store, every notification and every reconnection of the listener.
	changed atomic.Pointer[chan struct{}]

	versions versionCache
	tail     *eventstore.Tail // nil: every read goes to the database

	listenMu      sync.Mutex
	listenStarted bool               // guarded by listenMu
	listenCancel  context.CancelFunc // guarded by listenMu
	listenDone    chan struct{}      // closed when the listener returns

	// onBatch, when set by a test before the first append, is called by a
	// writer with the size of every batch it takes.
	onBatch func(size int)
	// beforeCommit, when set by a test before the first append, is called
	// by a writer once a batch's events are inserted and its head written,
	// with the lock on log_head held, before COMMIT.
	beforeCommit func(positions []uint64)
}

// NewEventStore returns an EventStore over db and starts its writer
// goroutines, which Close stops. db must outlive it. The writers connect
// when the first append arrives.
func NewEventStore(db *DB, cfg EventStoreConfig) *EventStore {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 1
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = 30 * time.Second
	}
	s := &EventStore{
		db:            db,
		connConfig:    db.pool.Config().ConnConfig,
		maxBatch:      cfg.MaxBatch,
		poll:          cfg.PollInterval,
		commitTimeout: cfg.CommitTimeout,
		reqs:          make(chan *appendReq),
		turn:          make(chan struct{}, 1),
		done:          make(chan struct{}),
		listenDone:    make(chan struct{}),
	}
	if cfg.TailSize >= 0 {
		s.tail = eventstore.NewTail(cfg.TailSize)
	}
	ch := make(chan struct{})
	s.changed.Store(&ch)
	s.turn <- struct{}{}
	for range cfg.Writers {
		s.writers.Add(1)
		go s.run(&writer{s: s})
	}
	return s
}

// Close stops the writers once the batches they are committing, if any, are
// done, and the listener of Wait. Appends and Waits after Close, or still
// queued, return ErrClosed. It does not close the DB.
func (s *EventStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.listenMu.Lock()
		started := s.listenStarted
		s.listenStarted = true // none starts after Close
		if started {
			s.listenCancel()
		}
		s.listenMu.Unlock()
		if !started {
			close(s.listenDone)
		}
	})
	s.writers.Wait()
	<-s.listenDone
	return nil
}

// row is an event as the events table holds it.
type row struct {
	position  int64
	stream    string
	version   int64
	eventID   string
	typ       string
	schema    int32
	at        time.Time
	actorKind string
	actorID   string
	data      []byte
}

// appendReq is one Append call on its way to a writer, appendResult the
// answer.
type (
	appendReq    = eventstore.Request[row]
	appendResult = eventstore.Result[row]
)

// Append adds events to stream if its version is expected, durably, and
// returns them as recorded, as ReadStream would return them: with At in
// UTC, to the microsecond, which is what PostgreSQL keeps. If the events'
// ids are already in the stream at consecutive versions, in the same order,
// it returns those records and writes nothing, whatever expected is. It
// returns an error wrapping commands.ErrConflict when the stream's version
// differs or when some of the ids are in the log but not as this batch;
// and an error, not a conflict, for no events, an empty stream name or
// event id, a repeated event id or an event the codec cannot store. If ctx
// ends while the append is queued or committing, or the connection fails
// during the commit, it returns an error and the events may or may not have
// been appended: appending them again with the same ids tells.
func (s *EventStore) Append(ctx context.Context, stream string, expected int64, events []domain.Pending) ([]domain.Recorded, error) {
	recs, rows, err := prepareAppend(stream, expected, events)
	if err != nil {
		return nil, fmt.Errorf("append to %s: %w", stream, err)
	}
	req := eventstore.NewRequest(ctx, stream, expected, rows, recs)
	return eventstore.Submit(req, s.reqs, s.done, ErrClosed, records)
}

// prepareAppend checks an append's arguments and encodes its events
// (eventstore.Prepare), with their times to the microsecond, which is what
// timestamptz keeps (pgx would drop the rest on the way).
func prepareAppend(stream string, expected int64, events []domain.Pending) ([]domain.Recorded, []row, error) {
	recs, err := eventstore.Prepare(stream, expected, events, func(t time.Time) time.Time { return t.Truncate(time.Microsecond) })
	if err != nil {
		return nil, nil, err
	}
	rows := make([]row, len(recs))
	for i, r := range recs {
		rows[i] = row{
			stream: stream, eventID: r.EventID, typ: r.Type, schema: int32(r.Schema),
			at: r.At, actorKind: string(r.Actor.Kind), actorID: r.Actor.ID, data: r.Data,
		}
	}
	return recs, rows, nil
}

// writer is one writer goroutine and its connection.
type writer struct {
	s    *EventStore
	conn *pgx.Conn // nil until the first batch, and after a failure
}

// run is a writer goroutine: when it holds the turn, it takes every request
// waiting, up to maxBatch, and commits them together, passing the turn on
// as soon as its batch is past the point of deciding.
func (s *EventStore) run(w *writer) {
	defer s.writers.Done()
	// The context of the last batch, whose values the closing of the
	// connection keeps.
	var last context.Context
	defer func() {
		if last != nil {
			w.disconnect(last)
		}
	}()
	batch := make([]*appendReq, 0, s.maxBatch)
	for {
		select {
		case <-s.turn:
		case <-s.done:
			return
		}
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.done:
			s.turn <- struct{}{}
			return
		}
	collect:
		for len(batch) < s.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		last = batch[0].Ctx
		if s.onBatch != nil {
			s.onBatch(len(batch))
		}
		w.commit(batch, sync.OnceFunc(func() { s.turn <- struct{}{} }))
		clear(batch)
	}
}

// commit applies batch and answers every request. It calls pass, once,
// when another writer may start on the next batch.
func (w *writer) commit(batch []*appendReq, pass func()) {
	defer pass()
	s := w.s
	live := eventstore.Live(batch)
	if len(live) == 0 {
		return
	}
	// The batch is not the first caller's: its cancellation must not undo
	// the others' appends.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].Ctx), s.commitTimeout)
	defer cancel()
	results := make([]appendResult, len(live))
	wrote, err := w.apply(ctx, live, results, pass)
	var pgErr *pgconn.PgError
	if err != nil && errors.As(err, &pgErr) && len(live) > 1 {
		// The server refused the batch, yet the requests were checked and
		// decided one by one: someone wrote without the lock on log_head,
		// or a value passed the checks but not the server's. Find which
		// request, alone; nothing of the batch is committed.
		wrote, err = false, nil
		for i := range live {
			one, err := w.apply(ctx, live[i:i+1], results[i:i+1], func() {})
			if err != nil {
				results[i] = appendResult{Err: batchError(live[i], err)}
			}
			wrote = wrote || one
		}
	}
	for i, r := range live {
		if err != nil {
			results[i] = appendResult{Err: batchError(r, err)}
		}
	}
	if wrote && s.tail != nil {
		// Before their callers or any reader hear of them. Requests are
		// decided, and numbered, in order; should the one-by-one fallback
		// leave a gap (another process committing in between), Add keeps
		// nothing of them.
		s.tail.Add(eventstore.Appended(live, results))
	}
	for i, r := range live {
		r.Answer(results[i])
	}
	if wrote {
		s.broadcast()
	}
}

// batchError is the answer to r when its batch failed with err.
func batchError(r *appendReq, err error) error {
	if isUniqueViolation(err) {
		return fmt.Errorf("append to %s: %w: %w", r.Stream, commands.ErrConflict, err)
	}
	return fmt.Errorf("append to %s: %w", r.Stream, err)
}

// The statements of a batch.
const (
	columns = `position, stream, version, event_id, type, schema, at, actor_kind, actor_id, data`

	versionsSQL = `SELECT s.stream, COALESCE((SELECT max(e.version) FROM events e WHERE e.stream = s.stream), 0)
		FROM unnest($1::text[]) AS s(stream)`
	storedSQL = `SELECT ` + columns + ` FROM events WHERE event_id = ANY($1::text[])`

	// The fast path takes $1 positions, announcing the new head, and
	// numbers the rows from the head it found: $2 holds 1, 2, 3, ….
	takeSQL = `UPDATE log_head SET position = position + $1
		RETURNING position, pg_notify('` + NotifyChannel + `', position::text)`
	insertTakenSQL = `INSERT INTO events (` + columns + `)
		SELECT (SELECT position FROM log_head) - $1 + u.n, u.stream, u.version, u.event_id, u.type,
			u.schema, u.at, u.actor_kind, u.actor_id, u.data
		FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[],
			$7::integer[], $8::timestamptz[], $9::text[], $10::text[], $11::bytea[])
			AS u(n, stream, version, event_id, type, schema, at, actor_kind, actor_id, data)`

	// The locked path reads under the lock and numbers the rows itself.
	lockHeadSQL = `SELECT position FROM log_head FOR UPDATE`
	insertSQL   = `INSERT INTO events (` + columns + `)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
			$6::integer[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[])`
	setHeadSQL = `UPDATE log_head SET position = $1
		RETURNING position, pg_notify('` + NotifyChannel + `', position::text)`
)

// apply applies reqs in one transaction and commits it if any wrote. It sets
// results[i] to the answer to reqs[i] and calls pass before it sends the
// commit. An error it returns is the whole batch's: none of its writes are
// committed, unless the error is the commit's, whose outcome is unknown.
//
// It tries the fast path first and, if that fails on a unique constraint,
// the locked path.
func (w *writer) apply(ctx context.Context, reqs []*appendReq, results []appendResult, pass func()) (wrote bool, err error) {
	wrote, err = w.applyFast(ctx, reqs, results, pass)
	if err == nil || !isUniqueViolation(err) {
		return wrote, err
	}
	clear(results)
	return w.applyLocked(ctx, reqs, results, pass)
}

// applyFast decides the batch from the versions of its streams that the
// store remembers, or reads before the transaction, then sends the whole
// transaction in one round trip, so that the lock on log_head is held only
// while the server inserts and commits.
//
// It is right whenever it commits: versions only grow, and it writes each
// stream at the version after the one it took as current, so if the stream
// had moved on, the insert fails on UNIQUE (stream, version); so it does if
// an event id is in the log already. The server then rolls the transaction
// back, and applyFast returns the unique violation, on which apply takes
// the locked path. A request it finds in conflict was in conflict when the
// version was read or remembered (a remembered version above the expected
// one stays above it); it looks for the request's events in the log to
// tell an idempotent retry, and answers with the stored records if so.
func (w *writer) applyFast(ctx context.Context, reqs []*appendReq, results []appendResult, pass func()) (wrote bool, err error) {
	conn, err := w.connect(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			w.abort(ctx)
		}
	}()
	versions, toRead := w.s.versions.lookup(reqs)
	if len(toRead) > 0 {
		fresh, err := queryVersions(ctx, conn, toRead)
		if err != nil {
			return false, err
		}
		w.s.versions.observe(fresh)
		maps.Copy(versions, fresh)
	}
	// Number the rows 1, 2, 3, … until the head is known.
	ins := newInsert(len(reqs))
	var taken int64
	inBatch := make(map[string]*row)
	var unsure []int // requests in conflict, unless their events are stored
	for i, r := range reqs {
		results[i] = decide(r, versions, inBatch, &taken, ins)
		if results[i].Err != nil {
			unsure = append(unsure, i)
		}
	}
	if taken > 0 {
		pass()
		// A batch outside a transaction is one implicit transaction,
		// committed at its end, unless a test needs to stop before that.
		b := &pgx.Batch{}
		explicit := w.s.beforeCommit != nil
		if explicit {
			b.Queue("BEGIN")
		}
		b.Queue(takeSQL, taken)
		b.Queue(insertTakenSQL, taken, ins.position, ins.stream, ins.version, ins.eventID, ins.typ,
			ins.schema, ins.at, ins.actorKind, ins.actorID, ins.data)
		head, err := w.send(ctx, conn, b, b.Len()-2, taken, explicit)
		if err != nil {
			return false, err
		}
		w.s.versions.observe(versions)
		// Every stored row of the answers so far is one of this batch's.
		base := head - taken
		for i := range results {
			for j := range results[i].Positions {
				results[i].Positions[j] += base
			}
			for j := range results[i].Stored {
				results[i].Stored[j].position += base
			}
		}
	}
	if len(unsure) > 0 {
		var ids []string
		for _, i := range unsure {
			for _, ev := range reqs[i].Rows {
				ids = append(ids, ev.eventID)
			}
		}
		stored, err := readStored(ctx, conn, ids)
		if err != nil {
			// The others' answers stand: they are committed.
			for _, i := range unsure {
				results[i] = appendResult{Err: batchError(reqs[i], err)}
			}
			return taken > 0, nil
		}
		for _, i := range unsure {
			if first := stored[reqs[i].Rows[0].eventID]; first != nil {
				results[i] = replay(reqs[i], stored, first)
			}
		}
	}
	return taken > 0, nil
}

// send sends b, statements that insert n rows, the one at index headAt
// returning the new head of the log, and returns that head. If inTx, b
// continues a transaction, which send commits, after calling the test hook
// beforeCommit if it is set; if not, b is sent as one implicit
// transaction, committed as it ends.
func (w *writer) send(ctx context.Context, conn *pgx.Conn, b *pgx.Batch, headAt int, n int64, inTx bool) (head int64, err error) {
	hook := w.s.beforeCommit
	if inTx && hook == nil {
		b.Queue("COMMIT")
	}
	br := conn.SendBatch(ctx, b)
	var tag pgconn.CommandTag
	for i := range b.Len() {
		if i == headAt {
			err = br.QueryRow().Scan(&head, nil)
		} else {
			tag, err = br.Exec()
		}
		if err != nil {
			break
		}
	}
	if closeErr := br.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	if err != nil {
		return 0, err
	}
	if !inTx {
		return head, nil
	}
	if hook != nil {
		positions := make([]uint64, n)
		for i := range positions {
			positions[i] = uint64(head - n + 1 + int64(i))
		}
		hook(positions)
		if tag, err = conn.Exec(ctx, "COMMIT"); err != nil {
			return 0, fmt.Errorf("commit: %w", err)
		}
	}
	if tag.String() != "COMMIT" {
		return 0, fmt.Errorf("commit: the transaction was rolled back (%s)", tag)
	}
	return head, nil
}

// applyLocked is the slow path, for a batch the fast path could not
// commit: it takes the lock on log_head first, then reads the versions of
// the batch's streams and the rows of its event ids already stored, decides
// each request in order, and sends the insert, the new head and COMMIT.
// With the lock held, what it read stays true until it commits.
func (w *writer) applyLocked(ctx context.Context, reqs []*appendReq, results []appendResult, pass func()) (wrote bool, err error) {
	conn, err := w.connect(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			w.abort(ctx)
		}
	}()
	streams, ids := batchKeys(reqs)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(lockHeadSQL)
	br := conn.SendBatch(ctx, b)
	var head int64
	_, err = br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&head)
	}
	if closeErr := br.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	if err != nil {
		return false, fmt.Errorf("lock the head: %w", err)
	}
	versions, err := queryVersions(ctx, conn, streams)
	if err != nil {
		return false, err
	}
	w.s.versions.observe(versions)
	stored, err := readStored(ctx, conn, ids)
	if err != nil {
		return false, err
	}

	ins := newInsert(len(ids))
	last := head
	for i, r := range reqs {
		results[i] = decide(r, versions, stored, &last, ins)
	}
	if last == head {
		// Nothing to write: conflicts and events already stored only.
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return false, fmt.Errorf("rollback: %w", err)
		}
		return false, nil
	}
	pass()
	b = &pgx.Batch{}
	b.Queue(insertSQL, ins.position, ins.stream, ins.version, ins.eventID, ins.typ,
		ins.schema, ins.at, ins.actorKind, ins.actorID, ins.data)
	b.Queue(setHeadSQL, last)
	if _, err := w.send(ctx, conn, b, 1, last-head, true); err != nil {
		return false, err
	}
	w.s.versions.observe(versions)
	return true, nil
}

// batchKeys returns the distinct streams of reqs and all their event ids.
func batchKeys(reqs []*appendReq) (streams, ids []string) {
	seen := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		if !seen[r.Stream] {
			seen[r.Stream] = true
			streams = append(streams, r.Stream)
		}
		for _, ev := range r.Rows {
			ids = append(ids, ev.eventID)
		}
	}
	return streams, ids
}

// versionCache holds, for streams the store wrote or read lately, a version
// each had reached: since versions never go down, a lower bound of its
// current version. Safe for concurrent use.
type versionCache struct {
	mu sync.Mutex
	m  map[string]int64 // at most versionCacheSize entries
}

// versionCacheSize bounds a versionCache; when it is full it starts over.
const versionCacheSize = 1 << 16

// lookup returns the versions the cache holds for the streams of reqs, and
// the streams whose current version must be read for the fast path to
// decide reqs: those of a request with AnyVersion that the cache does not
// hold, and those of a request expecting a version above the one it holds
// or one it does not hold. A request expecting NoStream needs no version:
// 0 is a lower bound, and UNIQUE (stream, version) does the rest.
func (c *versionCache) lookup(reqs []*appendReq) (versions map[string]int64, toRead []string) {
	versions = make(map[string]int64, len(reqs))
	read := make(map[string]bool)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range reqs {
		v, ok := c.m[r.Stream]
		if ok {
			versions[r.Stream] = v
		}
		need := false
		switch {
		case r.Expected == domain.AnyVersion:
			need = !ok
		case r.Expected != domain.NoStream:
			need = !ok || r.Expected > v
		}
		if need && !read[r.Stream] {
			read[r.Stream] = true
			toRead = append(toRead, r.Stream)
		}
	}
	return versions, toRead
}

// observe records that each stream of versions has reached its version.
func (c *versionCache) observe(versions map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for stream, v := range versions {
		c.raise(stream, v)
	}
}

// observeOne records that stream has reached version v.
func (c *versionCache) observeOne(stream string, v int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raise(stream, v)
}

func (c *versionCache) raise(stream string, v int64) {
	if old, ok := c.m[stream]; ok {
		if v > old {
			c.m[stream] = v
		}
		return
	}
	if c.m == nil || len(c.m) >= versionCacheSize {
		c.m = make(map[string]int64)
	}
	c.m[stream] = v
}

// queryVersions returns the current version of each of streams, 0 for a
// stream that does not exist.
func queryVersions(ctx context.Context, conn *pgx.Conn, streams []string) (map[string]int64, error) {
	versions := make(map[string]int64, len(streams))
	rows, err := conn.Query(ctx, versionsSQL, pgx.QueryExecModeExec, streams)
	if err != nil {
		return nil, fmt.Errorf("read versions: %w", err)
	}
	var stream string
	var v int64
	if _, err := pgx.ForEachRow(rows, []any{&stream, &v}, func() error {
		versions[stream] = v
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read versions: %w", err)
	}
	return versions, nil
}

// readStored returns the stored rows of the events of ids that are in the
// log, by id.
func readStored(ctx context.Context, conn *pgx.Conn, ids []string) (map[string]*row, error) {
	stored := make(map[string]*row)
	rows, err := conn.Query(ctx, storedSQL, pgx.QueryExecModeExec, ids)
	if err != nil {
		return nil, fmt.Errorf("find stored events: %w", err)
	}
	defer rows.Close()
	names := make(interner)
	for rows.Next() {
		w, err := scanRow(rows, names)
		if err != nil {
			return nil, fmt.Errorf("find stored events: %w", err)
		}
		stored[w.eventID] = &w
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find stored events: %w", err)
	}
	return stored, nil
}

// insert holds the columns of the rows a batch inserts.
type insert struct {
	position  []int64
	stream    []string
	version   []int64
	eventID   []string
	typ       []string
	schema    []int32
	at        []time.Time
	actorKind []string
	actorID   []string
	data      [][]byte
}

func newInsert(n int) *insert {
	return &insert{
		position: make([]int64, 0, n), stream: make([]string, 0, n), version: make([]int64, 0, n),
		eventID: make([]string, 0, n), typ: make([]string, 0, n), schema: make([]int32, 0, n),
		at: make([]time.Time, 0, n), actorKind: make([]string, 0, n), actorID: make([]string, 0, n),
		data: make([][]byte, 0, n),
	}
}

func (in *insert) add(w row) {
	in.position = append(in.position, w.position)
	in.stream = append(in.stream, w.stream)
	in.version = append(in.version, w.version)
	in.eventID = append(in.eventID, w.eventID)
	in.typ = append(in.typ, w.typ)
	in.schema = append(in.schema, w.schema)
	in.at = append(in.at, w.at)
	in.actorKind = append(in.actorKind, w.actorKind)
	in.actorID = append(in.actorID, w.actorID)
	in.data = append(in.data, w.data)
}

// decide answers r given the log as the requests before it in its batch
// left it: versions holds the current version of every stream of the
// batch, stored the rows of every event id of the batch in the log, and
// last the last position taken. If r appends, decide numbers its rows from
// last, adds them to ins, and updates versions, stored and last.
func decide(r *appendReq, versions map[string]int64, stored map[string]*row, last *int64, ins *insert) appendResult {
	if first := stored[r.Rows[0].eventID]; first != nil {
		return replay(r, stored, first)
	}
	current := versions[r.Stream]
	if r.Expected != domain.AnyVersion && r.Expected != current {
		return appendResult{Err: fmt.Errorf("append to %s: expected version %d, stream is at version %d: %w",
			r.Stream, r.Expected, current, commands.ErrConflict)}
	}
	for _, w := range r.Rows[1:] {
		if other := stored[w.eventID]; other != nil {
			return appendResult{Err: fmt.Errorf("append to %s: event %s is in the log already, at %s version %d: %w",
				r.Stream, w.eventID, other.stream, other.version, commands.ErrConflict)}
		}
	}
	res := appendResult{Positions: make([]int64, len(r.Rows)), Version: current + 1}
	for i, w := range r.Rows {
		*last++
		w.position = *last
		w.version = current + 1 + int64(i)
		res.Positions[i] = w.position
		ins.add(w)
		stored[w.eventID] = &w
	}
	versions[r.Stream] = current + int64(len(r.Rows))
	return res
}

// replay returns the stored rows of r's events, given that the first is
// stored as first, if they are all in r's stream at consecutive versions in
// r's order; a conflict otherwise.
func replay(r *appendReq, stored map[string]*row, first *row) appendResult {
	rows := make([]row, len(r.Rows))
	for i, want := range r.Rows {
		w := stored[want.eventID]
		if w == nil {
			return appendResult{Err: fmt.Errorf("append to %s: event %s is in the log but event %s is not: %w",
				r.Stream, first.eventID, want.eventID, commands.ErrConflict)}
		}
		if w.stream != r.Stream || w.version != first.version+int64(i) {
			return appendResult{Err: fmt.Errorf("append to %s: event %s is in the log already, at %s version %d, not following %s: %w",
				r.Stream, w.eventID, w.stream, w.version, first.eventID, commands.ErrConflict)}
		}
		rows[i] = *w
	}
	return appendResult{Stored: rows}
}

// connect returns the writer's connection, connecting it if need be.
func (w *writer) connect(ctx context.Context) (*pgx.Conn, error) {
	if w.conn != nil && !w.conn.IsClosed() {
		return w.conn, nil
	}
	cfg := w.s.ownConnConfig("messenger event store writer")
	// The writer's statements are short: compiling them would cost more
	// than it saves.
	cfg.RuntimeParams["jit"] = "off"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	w.conn = conn
	return conn, nil
}

// ownConnConfig returns the configuration of a connection of the store's
// own, outside the pool, named name unless the URL names connections.
func (s *EventStore) ownConnConfig(name string) *pgx.ConnConfig {
	cfg := s.connConfig.Copy()
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = name
	}
	return cfg
}

// abort ends the transaction a failed batch left open, or drops the
// connection if it cannot, so that the next batch starts afresh.
func (w *writer) abort(ctx context.Context) {
	if w.conn == nil || w.conn.IsClosed() {
		w.conn = nil
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := w.conn.Exec(ctx, "ROLLBACK"); err != nil || w.conn.PgConn().TxStatus() != 'I' {
		w.disconnect(ctx)
	}
}

// disconnect closes the writer's connection, if it has one. It keeps ctx's
// values, not its end.
func (w *writer) disconnect(ctx context.Context) {
	if w.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	w.conn.Close(ctx)
	w.conn = nil
}

func isUniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

// broadcast wakes every Wait.
func (s *EventStore) broadcast() {
	ch := make(chan struct{})
	close(*s.changed.Swap(&ch))
}

// ReadStream returns the events of stream in version order; none, and no
// error, when the stream does not exist.
func (s *EventStore) ReadStream(ctx context.Context, stream string) ([]domain.Recorded, error) {
	recs, err := s.query(ctx, `SELECT `+columns+` FROM events WHERE stream = $1 ORDER BY version`, stream)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	if len(recs) > 0 {
		s.versions.observeOne(stream, recs[len(recs)-1].Version)
	}
	return recs, nil
}

// ReadAll returns up to limit events with a position above after, in
// position order. Positions are dense, 1, 2, 3, …, and become visible in
// that order (see EventStore), and one query sees a commit whole or not at
// all, so it never skips an event. It returns an error if limit is below 1.
func (s *EventStore) ReadAll(ctx context.Context, after uint64, limit int) ([]domain.Recorded, error) {
	if limit < 1 {
		return nil, fmt.Errorf("read all after %d: limit %d is below 1", after, limit)
	}
	if after >= math.MaxInt64 {
		return nil, nil
	}
	if s.tail != nil {
		if recs, ok := s.tail.Read(after, limit); ok {
			return recs, nil
		}
	}
	recs, err := s.query(ctx, `SELECT `+columns+` FROM events WHERE position > $1 ORDER BY position LIMIT $2`, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, err)
	}
	return recs, nil
}

// Head returns the highest position in the log, 0 when it is empty.
func (s *EventStore) Head(ctx context.Context) (uint64, error) {
	var head int64
	if err := s.db.pool.QueryRow(ctx, `SELECT position FROM log_head`).Scan(&head); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	return uint64(head), nil
}

// Wait returns nil once the log holds an event with a position above after:
// at once if it does already, as soon as an append through this EventStore
// commits or a notification on NotifyChannel arrives, and within the poll
// interval otherwise. It returns ctx's error when ctx ends first, and
// ErrClosed once the store is closed.
func (s *EventStore) Wait(ctx context.Context, after uint64) error {
	select {
	case <-s.done:
		return fmt.Errorf("wait after %d: %w", after, ErrClosed)
	default:
	}
	s.listen(ctx)
	var tick <-chan time.Time
	for {
		changed := *s.changed.Load() // before Head, so no commit is missed
		if s.tail != nil && s.tail.Newest() > after {
			return nil // committed by this store: no need to ask the database
		}
		head, err := s.Head(ctx)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("wait after %d: %w", after, err)
		}
		if head > after {
			return nil
		}
		if tick == nil {
			t := time.NewTicker(s.poll)
			defer t.Stop()
			tick = t.C
		}
		select {
		case <-changed:
		case <-tick:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return fmt.Errorf("wait after %d: %w", after, ErrClosed)
		}
	}
}

// listen starts the listener of NotifyChannel, unless it runs already or
// the store is closed. The listener keeps ctx's values, not its end: Close
// stops it.
func (s *EventStore) listen(ctx context.Context) {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	if s.listenStarted {
		return
	}
	s.listenStarted = true
	ctx, s.listenCancel = context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(s.listenDone)
		s.follow(ctx)
	}()
}

// follow listens for NotifyChannel until ctx ends, reconnecting after a
// failure with a growing delay, and wakes Wait on every notification.
func (s *EventStore) follow(ctx context.Context) {
	const minDelay, maxDelay = 100 * time.Millisecond, 5 * time.Second
	delay := minDelay
	for {
		listened := s.followOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if listened {
			delay = minDelay
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, maxDelay)
	}
}

// followOnce connects, listens and wakes Wait on every notification until
// the connection fails or ctx ends. It reports whether it got to listen.
func (s *EventStore) followOnce(ctx context.Context) (listened bool) {
	conn, err := pgx.ConnectConfig(ctx, s.ownConnConfig("messenger event store listener"))
	if err != nil {
		return false
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(ctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return false
	}
	// Commits made while no one listened wake nobody: Wait looks again.
	s.broadcast()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true
		}
		s.broadcast()
	}
}

// query runs a read on the pool and decodes its rows.
func (s *EventStore) query(ctx context.Context, query string, args ...any) ([]domain.Recorded, error) {
	rs, err := s.db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	scratch := rowsPool.Get().(*[]row)
	defer putRows(scratch)
	rows := (*scratch)[:0]
	names := make(interner)
	for rs.Next() {
		w, err := scanRow(rs, names)
		if err != nil {
			return nil, err
		}
		rows = append(rows, w)
	}
	*scratch = rows
	if err := rs.Err(); err != nil {
		return nil, err
	}
	return records(rows)
}

// rowsPool holds slices of rows that query reads into before it decodes
// them: a rebuild reads the log a page of thousands of events at a time.
var rowsPool = sync.Pool{New: func() any { return new([]row) }}

// maxPooledRows bounds the slices rowsPool keeps.
const maxPooledRows = 1 << 14

// putRows empties rows and gives it back to rowsPool, unless it grew too
// large to keep.
func putRows(rows *[]row) {
	clear(*rows) // drop the strings and data, which the records hold now
	*rows = (*rows)[:0]
	if cap(*rows) <= maxPooledRows {
		rowsPool.Put(rows)
	}
}

// interner holds one copy of each of the few values of the columns type and
// actor_kind that a query meets, so that its rows share them instead of
// holding a string each.
type interner map[string]string

// intern returns b as a string, the one n holds if it holds it.
func (n interner) intern(b []byte) string {
	if s, ok := n[string(b)]; ok {
		return s
	}
	s := string(b)
	n[s] = s
	return s
}

// scanRow reads the columns of one event, its type and actor kind
// interned by n.
func scanRow(sc interface{ Scan(...any) error }, n interner) (row, error) {
	var w row
	// The driver's bytes are valid until the next row: interned at once.
	var typ, actorKind pgtype.DriverBytes
	if err := sc.Scan(&w.position, &w.stream, &w.version, &w.eventID, &typ, &w.schema, &w.at, &actorKind, &w.actorID, &w.data); err != nil {
		return w, err
	}
	w.typ, w.actorKind = n.intern(typ), n.intern(actorKind)
	return w, nil
}

// records decodes stored rows.
func records(rows []row) ([]domain.Recorded, error) {
	recs := make([]domain.Recorded, len(rows))
	for i, w := range rows {
		at := w.at.UTC()
		actor := domain.Actor{Kind: domain.ActorKind(w.actorKind), ID: w.actorID}
		ev, err := codec.Decode(w.typ, int(w.schema), w.data, domain.Meta{At: at, Actor: actor})
		if err != nil {
			return nil, fmt.Errorf("event at position %d: %w", w.position, err)
		}
		recs[i] = domain.Recorded{
			Position: uint64(w.position), Stream: w.stream, Version: w.version, EventID: w.eventID,
			Type: w.typ, Schema: int(w.schema), At: at, Actor: actor, Data: w.data, Event: ev,
		}
	}
	return recs, nil
}
