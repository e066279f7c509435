// Package kurrentdb keeps Messenger's log in KurrentDB (formerly
// EventStoreDB), through the gRPC client EventStore-Client-Go v4 (package
// esdb).
//
// Each domain stream is a KurrentDB stream of the same name. An event is
// stored as a JSON event whose type is the codec's type name, whose data is
// the codec's JSON, and whose metadata holds the schema, the time and the
// actor; its KurrentDB id is derived from the domain event id (EventUUID),
// so a retried append carries the same ids. A stream's version is its last
// revision + 1, and an event's position in the global log is its commit
// position in $all: positions grow with the log but are not dense (they are
// byte offsets in the transaction log), and the log leaves out KurrentDB's
// own events, whose type or stream begins with "$".
//
// The server must be an EventStoreDB of the 22 releases or later, or any
// KurrentDB: older servers send no log position with the events of a
// stream read. The
// connection's user must be allowed to read $all.
package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/infra/eventstore"
	"github.com/helpdesk/messenger/projections"
)

var (
	_ commands.EventStore = (*Store)(nil)
	_ projections.Log     = (*Store)(nil)
	_ Feed                = (*Store)(nil)
)

// ErrClosed is returned by the calls of a Store after Close.
var ErrClosed = errors.New("kurrentdb store closed")

const (
	// pollInterval is how often Wait reads the head of the log besides
	// its subscription.
	pollInterval = 500 * time.Millisecond
	// anyAttempts bounds the appends at AnyVersion that lose a race
	// before Append reports a conflict.
	anyAttempts = 16
	// maxPage bounds the events one read of $all asks for.
	maxPage = 4096
)

// Store is the log in one KurrentDB database (a node or a cluster). It is
// safe for concurrent use. It caches nothing: several processes may share
// the database, each with its own Store.
type Store struct {
	conf esdb.Configuration // copied for every client
	poll time.Duration      // of Wait

	mu     sync.Mutex
	client *esdb.Client // replaced when it gives up on the server
	closed bool
}

// ParseURL returns the client's configuration for a connection string:
// esdb://, esdb+discover://, or the same with the scheme kurrentdb://,
// kurrentdb+discover://, which KurrentDB's newer clients use. Settings go
// in the query as the client documents them, e.g.
// esdb://127.0.0.1:2113?tls=false for a node in insecure mode. The
// client's own logging is off: every error reaches the caller.
func ParseURL(url string) (*esdb.Configuration, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return nil, errors.New("kurrentdb: the connection string has no scheme: want esdb:// or kurrentdb://")
	}
	switch strings.ToLower(scheme) {
	case "esdb", "kurrentdb":
		scheme = "esdb"
	case "esdb+discover", "kurrentdb+discover":
		scheme = "esdb+discover"
	default:
		return nil, fmt.Errorf("kurrentdb: connection string scheme %q: want esdb, esdb+discover, kurrentdb or kurrentdb+discover", scheme)
	}
	conf, err := esdb.ParseConnectionString(scheme + "://" + rest)
	if err != nil {
		// The client's message may quote the string, password included.
		return nil, fmt.Errorf("kurrentdb: invalid connection string %s: %s", Redact(url), strings.ReplaceAll(err.Error(), rest, "…"))
	}
	conf.Logger = esdb.NoopLogging()
	return conf, nil
}

// Redact returns url with the password, if any, replaced by "xxxxx", for
// logs and error messages.
func Redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	hosts := rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hosts = rest[:i]
	}
	at := strings.LastIndex(hosts, "@")
	if at < 0 {
		return url
	}
	user, _, hasPassword := strings.Cut(hosts[:at], ":")
	if !hasPassword {
		return url
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// Open connects to the KurrentDB database at url (see ParseURL) and checks
// that it can read the head of $all. The client's discovery does not heed
// ctx: with a server down, Open returns after the connection string's
// maxDiscoverAttempts × gossipTimeout at most (10 × 5s by default).
func Open(ctx context.Context, url string) (*Store, error) {
	conf, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	s, err := newStore(conf)
	if err != nil {
		return nil, err
	}
	if _, err := s.Head(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("kurrentdb: open %s: %w", Redact(url), err)
	}
	return s, nil
}

// newStore returns a Store with a client for conf, which it does not
// connect yet.
func newStore(conf *esdb.Configuration) (*Store, error) {
	client, err := esdb.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("kurrentdb: %w", err)
	}
	return &Store{conf: *conf, poll: pollInterval, client: client}, nil
}

// Close closes the connection. Calls after it return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.client.Close()
}

// conn returns the current client.
func (s *Store) conn() (*esdb.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.client, nil
}

// renew replaces client by a new one if err says that it gave up on the
// server: it does when a discovery fails (the server was down while it
// reconnected) and is unusable from then on. The next call connects
// afresh. The old client is not closed: its connection is gone already,
// and closing it could panic a call blocked on it.
func (s *Store) renew(client *esdb.Client, err error) {
	if !isConnectionClosed(err) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.client != client {
		return
	}
	conf := s.conf
	if c, err := esdb.NewClient(&conf); err == nil {
		s.client = c
	}
}

// call runs f with the current client, renews the client if f's error
// calls for it, and returns ctx's error in place of an error caused by
// ctx's end.
func call[T any](ctx context.Context, s *Store, f func(*esdb.Client) (T, error)) (T, error) {
	client, err := s.conn()
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := f(client)
	if err != nil {
		s.renew(client, err)
		err = ctxErr(ctx, err)
	}
	return v, err
}

// ReadStream returns the events of stream in version order; none, and no
// error, when the stream does not exist.
func (s *Store) ReadStream(ctx context.Context, stream string) ([]domain.Recorded, error) {
	recs, err := s.readStream(ctx, stream, 0, math.MaxInt64)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return recs, nil
}

// readStream reads up to count events of stream from revision on, to the
// end of the stream (io.EOF).
func (s *Store) readStream(ctx context.Context, stream string, revision, count uint64) ([]domain.Recorded, error) {
	return call(ctx, s, func(c *esdb.Client) ([]domain.Recorded, error) {
		rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{From: esdb.Revision(revision)}, count)
		if isStreamNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		var recs []domain.Recorded
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				return recs, nil
			}
			if isStreamNotFound(err) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			rec, err := decodeEvent(ev.Event)
			if err != nil {
				return nil, err
			}
			recs = append(recs, rec)
		}
	})
}

// Append adds events to stream if its version is expected and returns them
// as recorded, as ReadStream returns them.
//
// If the ids of events are already in the stream at consecutive versions,
// in the same order, it returns those records and writes nothing, whatever
// expected is; if only some are, or not in that order, it returns a
// conflict. KurrentDB alone would append the events again at the stream's
// current version, or at AnyVersion once its cache of recent ids has
// forgotten them, so Append reads the stream first (but for an append at
// domain.NoStream, which KurrentDB checks exactly), and reads the new
// events back afterwards for their log positions: an append costs two or
// three round trips, one of them a read of the whole stream. An append at
// AnyVersion is made at the version read, and made again from a fresh read
// if another append came between, up to 16 times. An id already used in
// another stream is not detected: KurrentDB has no index of event ids.
//
// It returns an error wrapping commands.ErrConflict when the stream's
// version differs (KurrentDB's wrong-expected-version answer); and an
// error, not a conflict, for no events, an empty stream name or one that
// begins with "$" (KurrentDB's own), an empty or repeated event id, or an
// event the codec cannot store. If ctx ends during the append, the events
// may or may not have been appended.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events []domain.Pending) ([]domain.Recorded, error) {
	data, err := prepareAppend(stream, expected, events)
	if err != nil {
		return nil, fmt.Errorf("append to %s: %w", stream, err)
	}
	var lost error // the last wrong-expected-version answer
	for attempt := 0; ; attempt++ {
		var stored []domain.Recorded
		// At NoStream, KurrentDB's own check is exact: it writes to a
		// stream that does not exist, where the ids cannot be, and else
		// compares the ids with the stream's first events. The first try
		// needs no read.
		if attempt > 0 || expected != domain.NoStream {
			if stored, err = s.readStream(ctx, stream, 0, math.MaxInt64); err != nil {
				return nil, fmt.Errorf("append to %s: read: %w", stream, err)
			}
		}
		if recs, found, err := findBatch(stored, events); err != nil || found {
			if err != nil {
				return nil, fmt.Errorf("append to %s: %w", stream, err)
			}
			return recs, nil
		}
		if lost != nil && (expected != domain.AnyVersion || attempt >= anyAttempts) {
			return nil, fmt.Errorf("append to %s: expected version %d: %w: %w", stream, expected, commands.ErrConflict, lost)
		}
		var current int64
		if len(stored) > 0 {
			current = stored[len(stored)-1].Version
		}
		version := expected
		if version == domain.AnyVersion {
			version = current // so that the check for the ids above still holds
		}
		rev, err := ExpectedRevision(version)
		if err != nil {
			return nil, fmt.Errorf("append to %s: %w", stream, err)
		}
		_, err = call(ctx, s, func(c *esdb.Client) (*esdb.WriteResult, error) {
			return c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: rev}, data...)
		})
		if isWrongExpectedVersion(err) {
			lost = err
			continue // a retry of this batch may have won: look again
		}
		if err != nil {
			return nil, fmt.Errorf("append to %s: %w", stream, err)
		}
		// The events are at revisions version, version+1, …: read them
		// back for their positions.
		recs, err := s.readStream(ctx, stream, uint64(version), uint64(len(events)))
		if err != nil {
			return nil, fmt.Errorf("append to %s: read back: %w", stream, err)
		}
		if len(recs) != len(events) {
			return nil, fmt.Errorf("append to %s: read back %d events at version %d, want %d", stream, len(recs), version+1, len(events))
		}
		for i, r := range recs {
			if r.EventID != events[i].EventID {
				return nil, fmt.Errorf("append to %s: read back event %s at version %d, want %s", stream, r.EventID, r.Version, events[i].EventID)
			}
		}
		return recs, nil
	}
}

// prepareAppend checks an append's arguments (eventstore.Check, and
// KurrentDB's own streams) and encodes its events.
func prepareAppend(stream string, expected int64, events []domain.Pending) ([]esdb.EventData, error) {
	if err := eventstore.Check(stream, expected, events); err != nil {
		return nil, err
	}
	if strings.HasPrefix(stream, "$") {
		return nil, errors.New(`a stream name beginning with "$" is KurrentDB's own`)
	}
	data := make([]esdb.EventData, len(events))
	for i, p := range events {
		d, err := encodeEvent(p)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		data[i] = d
	}
	return data, nil
}

// findBatch looks for the ids of events among stored, the records of one
// stream. It returns their records if they are all there at consecutive
// versions in the same order; nothing if none is there; and an error
// wrapping commands.ErrConflict otherwise.
func findBatch(stored []domain.Recorded, events []domain.Pending) ([]domain.Recorded, bool, error) {
	at := make(map[string]int, len(events))
	for _, p := range events {
		at[p.EventID] = -1
	}
	found := 0
	for i, r := range stored {
		if _, ok := at[r.EventID]; ok {
			at[r.EventID] = i
			found++
		}
	}
	if found == 0 {
		return nil, false, nil
	}
	first := at[events[0].EventID]
	for i, p := range events {
		if j := at[p.EventID]; first < 0 || j != first+i {
			return nil, false, fmt.Errorf("event %s is in the stream already, but not as this batch: %w", p.EventID, commands.ErrConflict)
		}
	}
	return stored[first : first+len(events)], true, nil
}

// ReadAll returns up to limit events with a position above after, in log
// order, leaving out KurrentDB's own events. KurrentDB writes its log with
// one writer and a read of $all sees a prefix of it, so a later read never
// returns an event below one an earlier read returned. Positions are not
// dense; after need not be an event's position (KurrentDB refuses to read
// from one that is not: ReadAll then finds the last event at or below it,
// reading back from the end at most 16384 events). It returns an error if
// limit is below 1.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]domain.Recorded, error) {
	if limit < 1 {
		return nil, fmt.Errorf("read all after %d: limit %d is below 1", after, limit)
	}
	var recs []domain.Recorded
	cursor, from, located := after, allFrom(after), false
	for len(recs) < limit {
		// A read from a position includes the event there: ask for one more.
		page := maxPage
		if left := limit - len(recs); left < maxPage {
			page = left + 1
		}
		evs, err := s.readAll(ctx, esdb.Forwards, from, uint64(page))
		if isInvalidPosition(err) && !located && cursor == after {
			located = true
			if from, err = s.startBefore(ctx, after); err == nil {
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("read all after %d: %w", after, err)
		}
		for _, ev := range evs {
			pos, err := position(ev.Position)
			if err != nil {
				return nil, fmt.Errorf("read all after %d: event %s@%d: %w", after, ev.StreamID, ev.EventNumber, err)
			}
			if pos <= cursor {
				continue
			}
			cursor = pos
			if IsSystem(ev.StreamID, ev.EventType) {
				continue
			}
			rec, err := decodeEvent(ev)
			if err != nil {
				return nil, fmt.Errorf("read all after %d: %w", after, err)
			}
			if recs = append(recs, rec); len(recs) == limit {
				break
			}
		}
		if len(evs) < page {
			break // the end of the log
		}
		if len(evs) > 0 {
			from = evs[len(evs)-1].Position
		}
	}
	return recs, nil
}

// startBefore returns where a read of $all sees the events above after,
// a position that is not an event's: the position of the last event below
// it, or the start of $all.
func (s *Store) startBefore(ctx context.Context, after uint64) (esdb.AllPosition, error) {
	const page, pages = 256, 64
	first, err := s.readAll(ctx, esdb.Forwards, esdb.Start{}, 1)
	if err != nil {
		return nil, err
	}
	if len(first) == 0 || first[0].Position.Commit > after {
		return esdb.Start{}, nil
	}
	var from esdb.AllPosition = esdb.End{}
	for range pages {
		evs, err := s.readAll(ctx, esdb.Backwards, from, page)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if ev.Position.Commit <= after {
				return ev.Position, nil
			}
		}
		if len(evs) < page {
			return esdb.Start{}, nil
		}
		from = evs[len(evs)-1].Position
	}
	return nil, fmt.Errorf("position %d is not an event's, and more than %d events back from the end of the log", after, page*pages)
}

// readAll reads up to count events of $all in direction from from.
func (s *Store) readAll(ctx context.Context, dir esdb.Direction, from esdb.AllPosition, count uint64) ([]*esdb.RecordedEvent, error) {
	return call(ctx, s, func(c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: dir, From: from}, count)
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		var evs []*esdb.RecordedEvent
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				return evs, nil
			}
			if err != nil {
				return nil, err
			}
			if ev.Event != nil {
				evs = append(evs, ev.Event)
			}
		}
	})
}

// Head returns the position of the last event of the log, leaving out
// KurrentDB's own events; 0 when there is none.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	var from esdb.AllPosition = esdb.End{}
	for {
		const page = 64
		evs, err := s.readAll(ctx, esdb.Backwards, from, page)
		if err != nil {
			return 0, fmt.Errorf("head: %w", err)
		}
		for _, ev := range evs {
			if !IsSystem(ev.StreamID, ev.EventType) {
				pos, err := position(ev.Position)
				if err != nil {
					return 0, fmt.Errorf("head: event %s@%d: %w", ev.StreamID, ev.EventNumber, err)
				}
				return pos, nil
			}
		}
		if len(evs) < page {
			return 0, nil
		}
		next := evs[len(evs)-1].Position
		if p, ok := from.(esdb.Position); ok && next == p {
			return 0, fmt.Errorf("head: reading $all backwards does not move from %d", p.Commit)
		}
		from = next
	}
}

// Wait returns nil once the log holds an event above after: at once if it
// does already, as soon as a catch-up subscription to $all from after
// (KurrentDB's own events filtered out) sees one, and in any case within
// half a second of one, as it also reads the head of the log that often. It
// returns ctx's error when ctx ends first, and an error if the head cannot
// be read, after half a second at least, so a caller that loops is not a
// busy one.
func (s *Store) Wait(ctx context.Context, after uint64) error {
	head, err := s.Head(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil && head > after {
		return nil
	}
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := make(chan error, 1)
	go func() { seen <- s.waitSubscribed(subCtx, after) }()
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		select {
		case err := <-seen:
			if err == nil {
				return nil
			}
			seen = nil // the subscription dropped: polling goes on alone
		case <-tick.C:
			head, err := s.Head(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				return fmt.Errorf("wait after %d: %w", after, err)
			}
			if head > after {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitSubscribed returns nil once a subscription to $all from after sees an
// event of the log above after, and an error if the subscription fails.
func (s *Store) waitSubscribed(ctx context.Context, after uint64) error {
	sub, err := s.Subscribe(ctx, after)
	if err != nil {
		return err
	}
	defer sub.Close()
	for {
		rec, err := sub.Recv()
		if err != nil {
			return err
		}
		if rec.Position > after {
			return nil
		}
	}
}
