package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

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

// timeFormat is how the log stores times: RFC 3339 in UTC with nine
// fractional digits, so that the text sorts in time order.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// EventStoreConfig tunes an EventStore. Its zero value works.
type EventStoreConfig struct {
	// MaxBatch bounds the appends committed together in one transaction;
	// 0 means 256.
	MaxBatch int
	// PollInterval is how often Wait looks for events appended by another
	// process; in-process appends wake it at once. 0 means 500ms.
	PollInterval time.Duration
	// TailSize is how many of the newest events appended through this
	// store ReadAll serves from memory (see eventstore.Tail); 0 means
	// eventstore.DefaultTailSize, below 0 none.
	TailSize int
}

// EventStore is the event log in a SQLite file. Appends are group
// committed: concurrent calls are queued to one writer goroutine, which
// applies all those waiting in one transaction, each undone alone if it
// fails (in a savepoint of its own, or as one statement, below), and
// commits them with one fsync. A lone append commits at once.
//
// Several processes may share the file, each with its own EventStore. The
// writer remembers the version each stream reached in the commits it made,
// which can only be a lower bound of the stream's version now: an
// append of one event that expects that version (or any, or a stream it
// has never met, for a new one) is one INSERT at the next version, without
// reading, and needs no savepoint, since SQLite undoes a failed statement
// alone. If the stream moved on meanwhile, or the event is in the log
// already, the INSERT fails on UNIQUE (stream, version) or UNIQUE
// (event_id), and the append is decided again by reading, as every other
// append is: the event looked up by id (an idempotent retry), the stream's
// version read, in a savepoint.
type EventStore struct {
	db       *DB
	maxBatch int
	poll     time.Duration

	reqs      chan *appendReq // unbuffered: a request sent is one the writer holds
	done      chan struct{}   // closed by Close
	stopped   chan struct{}   // closed when the writer goroutine returns
	closeOnce sync.Once

	// changed is closed, and replaced, after every commit that appended
	// events. Only the writer goroutine replaces it.
	changed atomic.Pointer[chan struct{}]

	tail *eventstore.Tail // nil: every read goes to the database

	// prepared holds the writer's statements, compiled once on the one
	// writer connection and used by every batch's transaction; only the
	// writer goroutine touches it. nil until the first batch.
	prepared *stmts

	// versions holds a version each stream the writer met had reached as a
	// batch committed: a lower bound of its version now. Only the writer
	// goroutine touches it; at most maxVersions entries.
	versions map[string]int64

	// onBatch, when set by a test before the first append, is called by the
	// writer goroutine with the size of every batch it takes.
	onBatch func(size int)
}

// NewEventStore returns an EventStore over db and starts its writer
// goroutine, which Close stops. db must outlive it.
func NewEventStore(db *DB, cfg EventStoreConfig) *EventStore {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	s := &EventStore{
		db:       db,
		maxBatch: cfg.MaxBatch,
		poll:     cfg.PollInterval,
		reqs:     make(chan *appendReq),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if cfg.TailSize >= 0 {
		s.tail = eventstore.NewTail(cfg.TailSize)
	}
	ch := make(chan struct{})
	s.changed.Store(&ch)
	go s.run()
	return s
}

// Close stops the writer goroutine once the batch it is committing, if any,
// is done. Appends and Waits after Close, or still queued, return ErrClosed.
// It does not close the DB.
func (s *EventStore) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	<-s.stopped
	if s.prepared != nil {
		s.prepared.close()
	}
	return nil
}

// row is an event as the events table holds it.
type row struct {
	position  int64
	stream    string
	version   int64
	eventID   string
	typ       string
	schema    int
	at        string
	actorKind string
	actorID   string
	data      []byte
}

// appendReq is one Append call on its way to the writer goroutine,
// appendResult the answer.
type (
	appendReq    = eventstore.Request[row]
	appendResult = eventstore.Result[row]
)

// Append adds events to stream if its version is expected, durably, and
// returns them as recorded, as ReadStream would return them. If the
// events' ids are already in the stream at consecutive versions, in the
// same order, it returns those records and writes nothing, whatever
// expected is. It returns an error wrapping commands.ErrConflict when the
// stream's version differs or when some of the ids are in the log but not
// as this batch; and an error, not a conflict, for no events, an empty
// stream name or event id, a repeated event id or an event the codec
// cannot store. If ctx ends while the append is queued or committing, it
// returns ctx's error, and the events may or may not have been appended.
func (s *EventStore) Append(ctx context.Context, stream string, expected int64, events []domain.Pending) ([]domain.Recorded, error) {
	recs, rows, err := prepareAppend(stream, expected, events)
	if err != nil {
		return nil, fmt.Errorf("append to %s: %w", stream, err)
	}
	req := eventstore.NewRequest(ctx, stream, expected, rows, recs)
	return eventstore.Submit(req, s.reqs, s.done, ErrClosed, records)
}

// prepareAppend checks an append's arguments and encodes its events
// (eventstore.Prepare), with their times to the nanosecond, as timeFormat
// keeps them.
func prepareAppend(stream string, expected int64, events []domain.Pending) ([]domain.Recorded, []row, error) {
	recs, err := eventstore.Prepare(stream, expected, events, func(t time.Time) time.Time { return t })
	if err != nil {
		return nil, nil, err
	}
	rows := make([]row, len(recs))
	for i, r := range recs {
		rows[i] = row{
			stream: stream, eventID: r.EventID, typ: r.Type, schema: r.Schema,
			at: r.At.Format(timeFormat), actorKind: string(r.Actor.Kind), actorID: r.Actor.ID, data: r.Data,
		}
	}
	return recs, rows, nil
}

// run is the writer goroutine: it takes every request waiting, up to
// maxBatch, and commits them together.
func (s *EventStore) run() {
	defer close(s.stopped)
	batch := make([]*appendReq, 0, s.maxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.done:
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
		if s.onBatch != nil {
			s.onBatch(len(batch))
		}
		s.commit(batch)
		clear(batch)
	}
}

// commit applies batch in one transaction and answers every request.
func (s *EventStore) commit(batch []*appendReq) {
	live := eventstore.Live(batch)
	if len(live) == 0 {
		return
	}
	// The batch is not the first caller's: its cancellation must not undo
	// the others' appends.
	ctx := context.WithoutCancel(live[0].Ctx)
	results := make([]appendResult, len(live))
	wrote, err := s.applyBatch(ctx, live, results)
	for i, r := range live {
		if err != nil {
			results[i] = appendResult{Err: fmt.Errorf("append to %s: %w", r.Stream, err)}
		}
	}
	if wrote && err == nil && s.tail != nil {
		// Before their callers or any reader hear of them.
		s.tail.Add(eventstore.Appended(live, results))
	}
	for i, r := range live {
		r.Answer(results[i])
	}
	if wrote && err == nil {
		ch := make(chan struct{})
		close(*s.changed.Swap(&ch))
	}
}

// applyBatch applies each request so that a failing one is undone alone
// (one INSERT, or a savepoint of its own), and commits if any wrote. It
// sets results[i] to the answer to reqs[i]; an error it returns is the
// whole batch's, none of whose writes were committed.
func (s *EventStore) applyBatch(ctx context.Context, reqs []*appendReq, results []appendResult) (wrote bool, err error) {
	if s.prepared == nil {
		// Before the transaction, which holds the one writer connection.
		if s.prepared, err = prepareStmts(ctx, s.db.writer); err != nil {
			return false, err
		}
	}
	tx, err := s.db.writer.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil || !wrote {
			if rbErr := tx.Rollback(); rbErr != nil && err == nil && !errors.Is(rbErr, sql.ErrTxDone) {
				err = fmt.Errorf("rollback: %w", rbErr)
			}
		}
	}()
	st := s.prepared.in(ctx, tx)
	// A lone request needs no savepoint: if it fails, nothing is committed.
	savepoints := len(reqs) > 1
	reached := make(map[string]int64, len(reqs)) // versions the batch wrote, until it commits
	for i, r := range reqs {
		if current, ok := s.expect(r, reached); ok && len(r.Rows) == 1 {
			res, done, err := st.insertAt(ctx, r, current)
			if err != nil {
				// Not the request's own fault, and SQLite may have ended
				// the transaction: the batch fails whole.
				return false, err
			}
			if done {
				results[i] = res
				if res.Err == nil {
					reached[r.Stream] = res.Version
					wrote = true
				}
				continue
			}
			// In the log already, or the stream moved on: decided below.
		}
		if savepoints {
			if _, err := st.savepoint.ExecContext(ctx); err != nil {
				return false, fmt.Errorf("savepoint: %w", err)
			}
		}
		results[i] = st.apply(ctx, r)
		if results[i].Err != nil && savepoints {
			if _, err := st.rollbackTo.ExecContext(ctx); err != nil {
				return false, fmt.Errorf("rollback to savepoint: %w", err)
			}
		}
		if savepoints {
			if _, err := st.release.ExecContext(ctx); err != nil {
				return false, fmt.Errorf("release savepoint: %w", err)
			}
		}
		if res := results[i]; res.Err == nil && res.Stored == nil {
			wrote = true
			reached[r.Stream] = res.Version + int64(len(r.Rows)) - 1
		}
	}
	if !wrote {
		return false, nil
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	if s.versions == nil || len(s.versions)+len(reached) > maxVersions {
		s.versions = make(map[string]int64, len(reached))
	}
	for stream, v := range reached {
		s.versions[stream] = max(s.versions[stream], v)
	}
	return true, nil
}

// maxVersions bounds the streams whose versions the writer remembers;
// past it, it starts over.
const maxVersions = 1 << 16

// expect returns the version at which the writer may insert r's events
// without reading: the one the batch so far, or the commits before it,
// left the stream at, if r expects it or any; 0 for a stream it has not
// met if r expects none. ok is false when r must be decided by reading.
func (s *EventStore) expect(r *appendReq, reached map[string]int64) (current int64, ok bool) {
	current, known := reached[r.Stream]
	if !known {
		current, known = s.versions[r.Stream]
	}
	switch {
	case !known:
		return 0, r.Expected == domain.NoStream
	case r.Expected == domain.AnyVersion:
		return current, true
	default:
		return current, r.Expected == current
	}
}

// stmts are the statements of the writer: prepared once on the writer
// connection (prepareStmts), then bound to each batch's transaction (in).
// SQLite compiles a statement each time it is prepared, which costs more
// than running these.
type stmts struct {
	byID, version, insert, savepoint, rollbackTo, release *sql.Stmt
}

const columns = `position, stream, version, event_id, type, schema, at, actor_kind, actor_id, data`

func prepareStmts(ctx context.Context, db *sql.DB) (*stmts, error) {
	var st stmts
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&st.byID, `SELECT ` + columns + ` FROM events WHERE event_id = ?`},
		{&st.version, `SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?`},
		{&st.insert, `INSERT INTO events (stream, version, event_id, type, schema, at, actor_kind, actor_id, data)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&st.savepoint, `SAVEPOINT append`},
		{&st.rollbackTo, `ROLLBACK TO append`},
		{&st.release, `RELEASE append`},
	} {
		stmt, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*p.stmt = stmt
	}
	return &st, nil
}

// in returns the statements bound to tx, which runs on the connection they
// were prepared on (the writer pool holds one), so none is compiled again.
func (st *stmts) in(ctx context.Context, tx *sql.Tx) *stmts {
	return &stmts{
		byID: tx.StmtContext(ctx, st.byID), version: tx.StmtContext(ctx, st.version), insert: tx.StmtContext(ctx, st.insert),
		savepoint: tx.StmtContext(ctx, st.savepoint), rollbackTo: tx.StmtContext(ctx, st.rollbackTo), release: tx.StmtContext(ctx, st.release),
	}
}

// close closes the statements prepared.
func (st *stmts) close() {
	for _, s := range []*sql.Stmt{st.byID, st.version, st.insert, st.savepoint, st.rollbackTo, st.release} {
		if s != nil {
			s.Close()
		}
	}
}

// apply appends r's events, or finds them already in the log. It reads the
// stream's version inside the transaction, so it sees the requests before it
// in the batch and every other process's commits.
func (st *stmts) apply(ctx context.Context, r *appendReq) appendResult {
	first, found, err := st.find(ctx, r.Rows[0].eventID)
	if err != nil {
		return appendResult{Err: fmt.Errorf("append to %s: %w", r.Stream, err)}
	}
	if found {
		return st.replay(ctx, r, first)
	}
	var current int64
	if err := st.version.QueryRowContext(ctx, r.Stream).Scan(&current); err != nil {
		return appendResult{Err: fmt.Errorf("append to %s: read Version: %w", r.Stream, err)}
	}
	if r.Expected != domain.AnyVersion && r.Expected != current {
		return appendResult{Err: fmt.Errorf("append to %s: expected version %d, stream is at version %d: %w",
			r.Stream, r.Expected, current, commands.ErrConflict)}
	}
	positions := make([]int64, len(r.Rows))
	for i, w := range r.Rows {
		version := current + 1 + int64(i)
		res, err := st.insert.ExecContext(ctx, r.Stream, version, w.eventID, w.typ, w.schema, w.at, w.actorKind, w.actorID, w.data)
		if err != nil {
			if isUniqueViolation(err) {
				return appendResult{Err: fmt.Errorf("append to %s: event %s (version %d) is already in the log: %w",
					r.Stream, w.eventID, version, commands.ErrConflict)}
			}
			return appendResult{Err: fmt.Errorf("append to %s: insert: %w", r.Stream, err)}
		}
		if positions[i], err = res.LastInsertId(); err != nil {
			return appendResult{Err: fmt.Errorf("append to %s: insert: %w", r.Stream, err)}
		}
	}
	return appendResult{Positions: positions, Version: current + 1}
}

// insertAt inserts r's one event at the version after current. done is
// false when the INSERT failed on a unique constraint (the event is in the
// log already, or the stream is past current), which SQLite undid alone.
// Another constraint refusing it (a trigger) is r's answer; any other
// failure, after which SQLite may have ended the transaction, an error.
func (st *stmts) insertAt(ctx context.Context, r *appendReq, current int64) (res appendResult, done bool, err error) {
	w := r.Rows[0]
	out, err := st.insert.ExecContext(ctx, r.Stream, current+1, w.eventID, w.typ, w.schema, w.at, w.actorKind, w.actorID, w.data)
	var e *sqlite.Error
	switch {
	case isUniqueViolation(err):
		return appendResult{}, false, nil
	case errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_CONSTRAINT:
		return appendResult{Err: fmt.Errorf("append to %s: insert: %w", r.Stream, err)}, true, nil
	case err != nil:
		return appendResult{}, false, fmt.Errorf("insert: %w", err)
	}
	position, err := out.LastInsertId()
	if err != nil {
		return appendResult{}, false, fmt.Errorf("insert: %w", err)
	}
	return appendResult{Positions: []int64{position}, Version: current + 1}, true, nil
}

// replay returns the stored rows of r's events, given that the first is
// stored as first, if they are all in r's stream at consecutive versions in
// r's order; a conflict otherwise.
func (st *stmts) replay(ctx context.Context, r *appendReq, first row) appendResult {
	stored := make([]row, len(r.Rows))
	stored[0] = first
	for i := 1; i < len(r.Rows); i++ {
		w, found, err := st.find(ctx, r.Rows[i].eventID)
		if err != nil {
			return appendResult{Err: fmt.Errorf("append to %s: %w", r.Stream, err)}
		}
		if !found {
			return appendResult{Err: fmt.Errorf("append to %s: event %s is in the log but event %s is not: %w",
				r.Stream, first.eventID, r.Rows[i].eventID, commands.ErrConflict)}
		}
		stored[i] = w
	}
	for i, w := range stored {
		if w.stream != r.Stream || w.version != first.version+int64(i) {
			return appendResult{Err: fmt.Errorf("append to %s: event %s is in the log already, at %s version %d, not following %s: %w",
				r.Stream, w.eventID, w.stream, w.version, first.eventID, commands.ErrConflict)}
		}
	}
	return appendResult{Stored: stored}
}

// find returns the stored row of event id, if there is one.
func (st *stmts) find(ctx context.Context, id string) (row, bool, error) {
	w, err := scanRow(st.byID.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return row{}, false, nil
	}
	if err != nil {
		return row{}, false, fmt.Errorf("find event %s: %w", id, err)
	}
	return w, true, nil
}

func isUniqueViolation(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// ReadStream returns the events of stream in version order; none, and no
// error, when the stream does not exist.
func (s *EventStore) ReadStream(ctx context.Context, stream string) ([]domain.Recorded, error) {
	recs, err := s.query(ctx, `SELECT `+columns+` FROM events WHERE stream = ? ORDER BY version`, stream)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return recs, nil
}

// ReadAll returns up to limit events with a position above after, in
// position order. Positions are dense: 1, 2, 3, … in commit order, and a
// read sees a commit whole or not at all, so it never skips an event.
// It returns an error if limit is below 1.
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
	recs, err := s.query(ctx, `SELECT `+columns+` FROM events WHERE position > ? ORDER BY position LIMIT ?`, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, err)
	}
	return recs, nil
}

// Head returns the highest position in the log, 0 when it is empty.
func (s *EventStore) Head(ctx context.Context) (uint64, error) {
	var head int64
	if err := s.db.reader.QueryRowContext(ctx, `SELECT COALESCE(MAX(position), 0) FROM events`).Scan(&head); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	return uint64(head), nil
}

// Wait returns nil once the log holds an event with a position above after:
// at once if it does already, as soon as an append through this EventStore
// commits, and within the poll interval of one by another process. It
// returns ctx's error when ctx ends first, and ErrClosed once the store is
// closed.
func (s *EventStore) Wait(ctx context.Context, after uint64) error {
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

// query runs a read on the readers and decodes its rows.
func (s *EventStore) query(ctx context.Context, query string, args ...any) ([]domain.Recorded, error) {
	rs, err := s.db.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		w, err := scanRow(rs)
		if err != nil {
			return nil, err
		}
		rows = append(rows, w)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	return records(rows)
}

// scanRow reads the columns of one event.
func scanRow(sc interface{ Scan(...any) error }) (row, error) {
	var w row
	err := sc.Scan(&w.position, &w.stream, &w.version, &w.eventID, &w.typ, &w.schema, &w.at, &w.actorKind, &w.actorID, &w.data)
	return w, err
}

// records decodes stored rows.
func records(rows []row) ([]domain.Recorded, error) {
	recs := make([]domain.Recorded, len(rows))
	for i, w := range rows {
		at, err := time.Parse(time.RFC3339Nano, w.at)
		if err != nil {
			return nil, fmt.Errorf("event at position %d: time %q: %w", w.position, w.at, err)
		}
		actor := domain.Actor{Kind: domain.ActorKind(w.actorKind), ID: w.actorID}
		ev, err := codec.Decode(w.typ, w.schema, w.data, domain.Meta{At: at, Actor: actor})
		if err != nil {
			return nil, fmt.Errorf("event at position %d: %w", w.position, err)
		}
		recs[i] = domain.Recorded{
			Position: uint64(w.position), Stream: w.stream, Version: w.version, EventID: w.eventID,
			Type: w.typ, Schema: w.schema, At: at.UTC(), Actor: actor, Data: w.data, Event: ev,
		}
	}
	return recs, nil
}
