package commands

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
)

// Errors of the write side, besides the domain's own.
var (
	// ErrForbidden: the caller's role may never do this.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the resource does not exist or the caller may not see it.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the event was appended but the read models did not
	// apply it in time; a retry with the same client_id is safe.
	ErrUnavailable = errors.New("read models are catching up")
	// ErrBusy: the stream changed under every retry.
	ErrBusy = errors.New("too many concurrent changes, try again")
)

// NotFoundError says which resource was not found; it wraps ErrNotFound.
type NotFoundError struct {
	What, ID string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %s does not exist", e.What, e.ID) }

// Unwrap makes errors.Is(err, ErrNotFound) hold.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

func notFound(what, id string) error { return &NotFoundError{What: what, ID: id} }

// Access answers the questions of who may do what that need the read models.
type Access interface {
	// CanSee reports whether p may see conversation id (false if it does not exist).
	CanSee(ctx context.Context, p directory.Principal, conversationID string) (bool, error)
	// MissingUsers returns those of ids that name no user.
	MissingUsers(ctx context.Context, ids []string) ([]string, error)
	// EmailTaken reports whether a user already has email.
	EmailTaken(ctx context.Context, email string) (bool, error)
}

// Waiter lets a write answer only once the read models have applied it.
type Waiter interface {
	WaitFor(ctx context.Context, position uint64) error
}

// Config holds the service's optional settings; its zero value works.
type Config struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NewID returns a fresh unique id (default UUIDv7).
	NewID func() string
	// Retries bounds the attempts on a version conflict (default 20).
	Retries int
	// WaitTimeout bounds the wait for the read models (default 10 s).
	WaitTimeout time.Duration
	// CachedStreams is how many streams' states are kept between commands
	// (default 4096), and CachedBytes how much they may hold in all
	// (default 128 MiB; a conversation's state holds its messages' texts).
	CachedStreams int
	CachedBytes   int
	// Observe, if set, is told of each write that appended events: how
	// long the store took to append them (its group commit included) and
	// how long the write then waited for the read models to apply them.
	Observe func(appended, applied time.Duration)
}

// Service handles every command.
type Service struct {
	store  EventStore
	access Access
	waiter Waiter
	cfg    Config
	cache  *stateCache
}

// NewService returns the write side over store.
func NewService(store EventStore, access Access, waiter Waiter, cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = NewID
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 20
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 10 * time.Second
	}
	if cfg.CachedStreams <= 0 {
		cfg.CachedStreams = 4096
	}
	if cfg.CachedBytes <= 0 {
		cfg.CachedBytes = 128 << 20
	}
	return &Service{store: store, access: access, waiter: waiter, cfg: cfg, cache: newStateCache(cfg.CachedStreams, cfg.CachedBytes)}
}

// CachedBytes approximates what the streams' states kept between commands
// hold (see Config.CachedBytes).
func (s *Service) CachedBytes() int { return s.cache.bytes() }

func (s *Service) meta(p directory.Principal) domain.Meta {
	return domain.Meta{At: s.cfg.Now().UTC().Truncate(time.Millisecond), Actor: p.Actor()}
}

// Result is what a write did: the position to show as its token (its last
// event's, or the stream's last when nothing changed) and whether it
// appended anything.
type Result struct {
	Position uint64
	Appended bool
	// First is the position of the first event this write appended, when
	// the store appended them at the version the state was at (0 when the
	// write appended nothing, or the store answered a retry).
	First uint64
}

// execute runs a command on stream: it decides on the stream's state, appends
// the events with the expected version, and retries from a fresh read on a
// conflict; then, with the stream released, it waits for the read models.
// inspect, if set, sees the state after the events while the stream is
// still held (states are not safe to keep: the next command evolves them).
//
// The state of recently used streams is kept between commands (see
// stateCache), so a command on a long conversation does not read it all
// again. A kept state may be stale when another process appended to the
// stream; the append then conflicts and the state is read afresh, and a
// decision to do nothing, or an error, on a kept state is checked against a
// fresh one before it is answered.
func execute[S any, E domain.Event](ctx context.Context, s *Service, stream string,
	evolve func(S, E) S, decide func(S) ([]E, error), eventID func(int, E) string, inspect func(S)) (Result, error) {
	entry := s.cache.get(stream)
	entry.mu.Lock()
	locked := true
	defer func() {
		if locked {
			entry.mu.Unlock()
		}
	}()
	fresh := false
	for attempt := 0; ; attempt++ {
		if !entry.loaded {
			if err := load(ctx, s, entry, evolve); err != nil {
				return Result{}, err
			}
			fresh = true
		}
		state, _ := entry.state.(S)
		events, err := decide(state)
		if (err != nil || len(events) == 0) && !fresh {
			entry.loaded = false // make sure on the stream as it is now
			continue
		}
		if err != nil {
			return Result{Position: entry.last}, err
		}
		if len(events) == 0 {
			if inspect != nil {
				inspect(state)
			}
			last := entry.last
			entry.mu.Unlock()
			locked = false
			return Result{Position: last}, s.wait(ctx, last)
		}
		pending := make([]domain.Pending, len(events))
		for i, e := range events {
			id := ""
			if eventID != nil {
				id = eventID(i, e)
			}
			if id == "" {
				id = s.cfg.NewID()
			}
			pending[i] = domain.Pending{EventID: id, Event: e}
		}
		began := time.Now()
		recorded, err := s.store.Append(ctx, stream, entry.version, pending)
		appended := time.Since(began)
		if errors.Is(err, ErrConflict) {
			entry.loaded, fresh = false, false
			if attempt+1 >= s.cfg.Retries {
				return Result{}, fmt.Errorf("append %s: %w", stream, ErrBusy)
			}
			select {
			case <-time.After(time.Duration(rand.IntN(1+attempt*2)) * time.Millisecond):
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
			continue
		}
		if err != nil {
			entry.loaded = false // the append may or may not have happened
			return Result{}, fmt.Errorf("append %s: %w", stream, err)
		}
		first := uint64(0)
		if recorded[0].Version == entry.version+1 {
			first = recorded[0].Position
			for _, r := range recorded {
				if e, ok := r.Event.(E); ok {
					state = evolve(state, e)
				}
			}
			entry.state, entry.version = state, recorded[len(recorded)-1].Version
			entry.last = recorded[len(recorded)-1].Position
			s.cache.resize(entry, sizeOf(state))
		} else {
			// The store answered a retry with events another process appended
			// after others we have not seen: read the stream again.
			if err := load(ctx, s, entry, evolve); err != nil {
				return Result{}, err
			}
			state, _ = entry.state.(S)
		}
		if inspect != nil {
			inspect(state)
		}
		pos := recorded[len(recorded)-1].Position
		entry.mu.Unlock()
		locked = false
		began = time.Now()
		err = s.wait(ctx, pos)
		if s.cfg.Observe != nil {
			s.cfg.Observe(appended, time.Since(began))
		}
		return Result{Position: pos, Appended: true, First: first}, err
	}
}

// load reads entry's stream from the store and folds it.
func load[S any, E domain.Event](ctx context.Context, s *Service, entry *cacheEntry, evolve func(S, E) S) error {
	recs, err := s.store.ReadStream(ctx, entry.stream)
	if err != nil {
		entry.loaded = false
		return fmt.Errorf("read %s: %w", entry.stream, err)
	}
	var state S
	var version int64
	var last uint64
	for _, r := range recs {
		e, ok := r.Event.(E)
		if !ok {
			entry.loaded = false
			return fmt.Errorf("stream %s holds a foreign event %s", entry.stream, r.Type)
		}
		state, version, last = evolve(state, e), r.Version, r.Position
	}
	entry.state, entry.version, entry.last, entry.loaded = state, version, last, true
	s.cache.resize(entry, sizeOf(state))
	return nil
}

// noWait marks a context made by WithoutWait.
type noWait struct{}

// WithoutWait returns a context under which a command returns once its
// events are appended, without waiting for the read models to apply them:
// for the bootstrap at a start, which may find them far behind the log (a
// rebuild after an upgrade) and would time out, stopping the process, at
// every attempt. Requests never use it: an answer means readable.
func WithoutWait(ctx context.Context) context.Context {
	return context.WithValue(ctx, noWait{}, true)
}

func (s *Service) wait(ctx context.Context, pos uint64) error {
	if s.waiter == nil || pos == 0 || ctx.Value(noWait{}) != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()
	if err := s.waiter.WaitFor(ctx, pos); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("wait for position %d: %w", pos, ErrUnavailable)
		}
		return err
	}
	return nil
}
