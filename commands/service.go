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
}

// Service handles every command.
type Service struct {
	store  EventStore
	access Access
	waiter Waiter
	cfg    Config
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
	return &Service{store: store, access: access, waiter: waiter, cfg: cfg}
}

func (s *Service) meta(p directory.Principal) domain.Meta {
	return domain.Meta{At: s.cfg.Now().UTC().Truncate(time.Millisecond), Actor: p.Actor()}
}

// Result is what a write did: the position to show as its token (its last
// event's, or the stream's last when nothing changed) and whether it
// appended anything.
type Result struct {
	Position uint64
	Appended bool
}

// execute loads stream, decides and appends with the expected version,
// retrying from a fresh read on a conflict, then waits for the read models.
// It returns the state after the events and the result.
func execute[S any, E domain.Event](ctx context.Context, s *Service, stream string,
	evolve func(S, E) S, decide func(S) ([]E, error), eventID func(int, E) string) (S, Result, error) {
	var zero S
	for attempt := 0; ; attempt++ {
		recs, err := s.store.ReadStream(ctx, stream)
		if err != nil {
			return zero, Result{}, fmt.Errorf("read %s: %w", stream, err)
		}
		var state S
		var last uint64
		for _, r := range recs {
			e, ok := r.Event.(E)
			if !ok {
				return zero, Result{}, fmt.Errorf("stream %s holds a foreign event %s", stream, r.Type)
			}
			state, last = evolve(state, e), r.Position
		}
		events, err := decide(state)
		if err != nil {
			return state, Result{Position: last}, err
		}
		if len(events) == 0 {
			return state, Result{Position: last}, s.wait(ctx, last)
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
		recorded, err := s.store.Append(ctx, stream, int64(len(recs)), pending)
		if errors.Is(err, ErrConflict) {
			if attempt+1 >= s.cfg.Retries {
				return zero, Result{}, fmt.Errorf("append %s: %w", stream, ErrBusy)
			}
			select {
			case <-time.After(time.Duration(rand.IntN(1+attempt*2)) * time.Millisecond):
			case <-ctx.Done():
				return zero, Result{}, ctx.Err()
			}
			continue
		}
		if err != nil {
			return zero, Result{}, fmt.Errorf("append %s: %w", stream, err)
		}
		for _, r := range recorded {
			if e, ok := r.Event.(E); ok {
				state = evolve(state, e)
			}
		}
		pos := recorded[len(recorded)-1].Position
		return state, Result{Position: pos, Appended: true}, s.wait(ctx, pos)
	}
}

func (s *Service) wait(ctx context.Context, pos uint64) error {
	if s.waiter == nil || pos == 0 {
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
