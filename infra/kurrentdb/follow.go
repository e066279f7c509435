package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/helpdesk/messenger/domain"
)

// Feed is the log as a live stream of its events.
type Feed interface {
	// Subscribe returns a subscription to the events with a position
	// above from, in log order: those in the log already, then new ones
	// as they are appended.
	Subscribe(ctx context.Context, from uint64) (Subscription, error)
}

// Subscription is one subscription to a Feed. It ends when it drops, when
// its context ends, or on Close.
type Subscription interface {
	// Recv returns the next event, waiting for one. Once the
	// subscription has ended it returns an error: the ctx's error if the
	// subscription's context ended, or one wrapping ErrUndecodable if an
	// event cannot be decoded.
	Recv() (domain.Recorded, error)
	// Close ends the subscription. It may be called more than once.
	Close()
}

// ErrUndecodable is wrapped by the error of a Subscription whose next
// event cannot be decoded: subscribing again would meet it again.
var ErrUndecodable = errors.New("undecodable event")

// Backoff is how long Follow waits before subscribing again after a
// subscription ended: Initial, then twice as long after each failure in a
// row, at most Max. Its zero value works.
type Backoff struct {
	Initial time.Duration // 0 means 100ms
	Max     time.Duration // 0 means 10s

	// sleep, if set by a test, replaces the wait.
	sleep func(ctx context.Context, d time.Duration) error
}

func (b Backoff) wait(ctx context.Context, d time.Duration) error {
	if b.sleep != nil {
		return b.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Follow passes each event of feed with a position above from to handle,
// in log order, until ctx ends or handle fails. handle is expected to store
// the event's position as the checkpoint with the changes it makes.
//
// Nothing resubscribes by itself after a subscription drops: Follow does,
// from the position of the last event handled, after a wait that doubles
// with each drop in a row (see Backoff) and starts over once an event is
// handled. It never skips an event, and never passes one twice: an event
// at or below the last position handled is dropped, so a feed may even
// start at its from inclusive.
//
// It returns ctx's error when ctx ends; handle's error, wrapped, when it
// fails; the error of a subscription that cannot decode an event
// (ErrUndecodable); and ErrClosed once the Store is closed.
func Follow(ctx context.Context, feed Feed, from uint64, handle func(domain.Recorded) error, backoff Backoff) error {
	initial, ceiling := backoff.Initial, backoff.Max
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if ceiling <= 0 {
		ceiling = 10 * time.Second
	}
	ceiling = max(ceiling, initial)
	last, delay := from, initial
	for {
		sub, err := feed.Subscribe(ctx, last)
		if errors.Is(err, ErrClosed) {
			return err
		}
		if err == nil {
			var handled int
			handled, err = drain(sub, &last, handle)
			sub.Close()
			if errors.Is(err, errHandle) || errors.Is(err, ErrUndecodable) {
				return err
			}
			if handled > 0 {
				delay = initial
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := backoff.wait(ctx, delay); err != nil {
			return err
		}
		delay = min(delay*2, ceiling)
	}
}

// errHandle is wrapped by the error Follow returns when handle fails.
var errHandle = errors.New("handle")

// drain passes the events of sub above *last to handle, moving *last,
// until sub ends or handle fails. It returns how many it handled.
func drain(sub Subscription, last *uint64, handle func(domain.Recorded) error) (int, error) {
	n := 0
	for {
		rec, err := sub.Recv()
		if err != nil {
			return n, err
		}
		if rec.Position <= *last {
			continue
		}
		if err := handle(rec); err != nil {
			return n, fmt.Errorf("%w %s (%s v%d at %d): %w", errHandle, rec.Type, rec.Stream, rec.Version, rec.Position, err)
		}
		*last = rec.Position
		n++
	}
}

// Subscribe returns a catch-up subscription to $all after position from
// (from its start for 0), of the events of the log: a server-side filter
// leaves out those whose type begins with "$", and Recv those whose stream
// does. Unlike the client's default, it never starts at the end of $all.
// from must be 0 or the position of an event, as a checkpoint is: KurrentDB
// drops a subscription from inside a record.
func (s *Store) Subscribe(ctx context.Context, from uint64) (Subscription, error) {
	sub, err := call(ctx, s, func(c *esdb.Client) (*esdb.Subscription, error) {
		return c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{
			From:   allFrom(from),
			Filter: esdb.ExcludeSystemEventsFilter(),
		})
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to $all after %d: %w", from, err)
	}
	return &allSubscription{ctx: ctx, sub: sub}, nil
}

// allSubscription is a Subscription over a subscription to $all.
type allSubscription struct {
	ctx context.Context
	sub *esdb.Subscription
}

func (a *allSubscription) Recv() (domain.Recorded, error) {
	for {
		e := a.sub.Recv()
		switch {
		case e.SubscriptionDropped != nil:
			err := e.SubscriptionDropped.Error
			if err == nil {
				err = errors.New("dropped")
			}
			return domain.Recorded{}, fmt.Errorf("subscription to $all: %w", ctxErr(a.ctx, err))
		case e.EventAppeared != nil:
			ev := e.EventAppeared.Event
			if ev == nil || IsSystem(ev.StreamID, ev.EventType) {
				continue
			}
			rec, err := decodeEvent(ev)
			if err != nil {
				return domain.Recorded{}, fmt.Errorf("subscription to $all: %w: %w", ErrUndecodable, err)
			}
			return rec, nil
		}
		// A checkpoint, caught up or fell behind: nothing to pass on.
	}
}

func (a *allSubscription) Close() { a.sub.Close() }
