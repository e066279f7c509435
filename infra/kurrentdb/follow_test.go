package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/helpdesk/messenger/domain"
)

// fakeFeed is a Feed over a fixed log whose subscriptions follow a script.
type fakeFeed struct {
	log []domain.Recorded
	// drops[i] is how many events the i-th subscription passes before it
	// drops; -1 (and any subscription beyond the script): it never drops,
	// and waits for its context once the log is exhausted.
	drops []int
	// refuse holds the subscriptions whose Subscribe fails.
	refuse map[int]bool
	// replay is how many events before from a subscription passes again,
	// as a feed that starts at or before its from would.
	replay int
	// fail, if set, is the error of the subscription's Recv after its
	// script's events, in place of a drop.
	fail error

	mu    sync.Mutex
	froms []uint64
}

var errDrop = errors.New("fake drop")

func (f *fakeFeed) Subscribe(ctx context.Context, from uint64) (Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.froms)
	f.froms = append(f.froms, from)
	if f.refuse[n] {
		return nil, fmt.Errorf("subscribe %d: refused", n)
	}
	i := 0
	for i < len(f.log) && f.log[i].Position <= from {
		i++
	}
	drop := -1
	if n < len(f.drops) {
		drop = f.drops[n]
	}
	return &fakeSub{ctx: ctx, log: f.log, next: max(i-f.replay, 0), drop: drop, fail: f.fail}, nil
}

func (f *fakeFeed) subscribedFrom() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.froms)
}

type fakeSub struct {
	ctx    context.Context
	log    []domain.Recorded
	next   int
	drop   int // events left before the drop; -1: never
	fail   error
	closed bool
}

func (s *fakeSub) Recv() (domain.Recorded, error) {
	if s.closed {
		return domain.Recorded{}, errors.New("closed")
	}
	if s.drop == 0 {
		if s.fail != nil {
			return domain.Recorded{}, s.fail
		}
		return domain.Recorded{}, errDrop
	}
	if s.next == len(s.log) {
		<-s.ctx.Done()
		return domain.Recorded{}, s.ctx.Err()
	}
	if s.drop > 0 {
		s.drop--
	}
	s.next++
	return s.log[s.next-1], nil
}

func (s *fakeSub) Close() { s.closed = true }

// feedLog returns n records at positions that grow unevenly, as
// KurrentDB's do.
func feedLog(n int) []domain.Recorded {
	recs := make([]domain.Recorded, n)
	pos := uint64(0)
	for i := range recs {
		pos += uint64(100 + 37*(i%5))
		recs[i] = domain.Recorded{Position: pos, Stream: "conversation-1", Version: int64(i + 1), EventID: fmt.Sprint(i), Type: "conversation.message_posted"}
	}
	return recs
}

// recordSleeps returns a Backoff whose waits are recorded, not slept.
func recordSleeps(initial, ceiling time.Duration) (Backoff, *[]time.Duration) {
	var sleeps []time.Duration
	b := Backoff{Initial: initial, Max: ceiling}
	b.sleep = func(ctx context.Context, d time.Duration) error {
		sleeps = append(sleeps, d)
		return ctx.Err()
	}
	return b, &sleeps
}

func positions(recs []domain.Recorded) []uint64 {
	ps := make([]uint64, len(recs))
	for i, r := range recs {
		ps[i] = r.Position
	}
	return ps
}

func TestFollowResubscribesFromLastHandled(t *testing.T) {
	log := feedLog(10)
	for _, replay := range []int{0, 2} {
		t.Run(fmt.Sprintf("feed repeating %d events", replay), func(t *testing.T) {
			feed := &fakeFeed{log: log, drops: []int{3, 0, 0, 2, 0, 0, 0, 0, -1}, refuse: map[int]bool{2: true}, replay: replay}
			if replay > 0 {
				// A repeating feed spends its budget on the repeats.
				feed.drops = []int{3, 2, 0, 4, 2, 2, 2, 2, -1}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var got []domain.Recorded
			handle := func(r domain.Recorded) error {
				if got = append(got, r); len(got) == len(log) {
					cancel()
				}
				return nil
			}
			backoff, sleeps := recordSleeps(100*time.Millisecond, time.Second)
			err := Follow(ctx, feed, 0, handle, backoff)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Follow: got %v, want context.Canceled", err)
			}
			if !reflect.DeepEqual(positions(got), positions(log)) {
				t.Fatalf("handled %v, want each of %v once, in order", positions(got), positions(log))
			}
			p := log[2].Position // the last handled by the first subscription
			q := log[4].Position // … by the fourth
			wantFroms := []uint64{0, p, p, p, q, q, q, q, q}
			if got := feed.subscribedFrom(); !reflect.DeepEqual(got, wantFroms) {
				t.Errorf("subscribed from %v, want %v", got, wantFroms)
			}
			ms := time.Millisecond
			// Doubling after each failure in a row, capped at Max, and
			// back to Initial once a subscription passed an event.
			wantSleeps := []time.Duration{100 * ms, 200 * ms, 400 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms}
			if !reflect.DeepEqual(*sleeps, wantSleeps) {
				t.Errorf("waited %v, want %v", *sleeps, wantSleeps)
			}
		})
	}
}

func TestFollowFromCheckpoint(t *testing.T) {
	log := feedLog(6)
	feed := &fakeFeed{log: log, drops: []int{1}, replay: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []domain.Recorded
	backoff, _ := recordSleeps(0, 0)
	err := Follow(ctx, feed, log[2].Position, func(r domain.Recorded) error {
		if got = append(got, r); len(got) == 3 {
			cancel()
		}
		return nil
	}, backoff)
	if !errors.Is(err, context.Canceled) || !reflect.DeepEqual(positions(got), positions(log[3:])) {
		t.Errorf("Follow from %d: handled %v, %v; want %v", log[2].Position, positions(got), err, positions(log[3:]))
	}
}

func TestFollowStops(t *testing.T) {
	log := feedLog(4)
	t.Run("cancel while waiting for events", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		start := time.Now()
		err := Follow(ctx, &fakeFeed{log: log}, 0, func(domain.Recorded) error { return nil }, Backoff{})
		if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
			t.Errorf("Follow: %v after %v, want context.Canceled promptly", err, time.Since(start))
		}
	})
	t.Run("cancel during the backoff", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		start := time.Now()
		feed := &fakeFeed{log: log, drops: []int{0}}
		err := Follow(ctx, feed, 0, func(domain.Recorded) error { return nil }, Backoff{Initial: time.Hour})
		if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
			t.Errorf("Follow: %v after %v, want context.Canceled promptly", err, time.Since(start))
		}
	})
	t.Run("handle fails", func(t *testing.T) {
		boom := errors.New("boom")
		feed := &fakeFeed{log: log}
		var handled int
		err := Follow(context.Background(), feed, 0, func(r domain.Recorded) error {
			if handled++; handled == 2 {
				return boom
			}
			return nil
		}, Backoff{})
		if !errors.Is(err, boom) || handled != 2 || len(feed.subscribedFrom()) != 1 {
			t.Errorf("Follow: %v after %d events and %d subscriptions; want boom after 2 and 1", err, handled, len(feed.subscribedFrom()))
		}
	})
	t.Run("undecodable event", func(t *testing.T) {
		feed := &fakeFeed{log: log, drops: []int{1}, fail: fmt.Errorf("x: %w", ErrUndecodable)}
		err := Follow(context.Background(), feed, 0, func(domain.Recorded) error { return nil }, Backoff{})
		if !errors.Is(err, ErrUndecodable) || len(feed.subscribedFrom()) != 1 {
			t.Errorf("Follow: %v after %d subscriptions, want ErrUndecodable after 1", err, len(feed.subscribedFrom()))
		}
	})
}

// TestFollowStoreThroughDrops follows the Store's own Feed, a catch-up
// subscription to $all through the real client, while the server drops it
// every few events and KurrentDB's own events come between ours.
func TestFollowStoreThroughDrops(t *testing.T) {
	f := startFake(t)
	f.set(func(f *fakeServer) { f.systemEvents = true; f.dropAfter = 3 })
	s := openFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var want []domain.Recorded
	for i := range 5 {
		recs, err := s.Append(ctx, fmt.Sprintf("conversation-%d-%s", i, uuid.NewString()), domain.NoStream, pending(i+1))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, recs...)
	}
	checkpoint := want[1].Position
	want = want[2:]
	var got []domain.Recorded
	total := len(want) + 1 // and the live one
	handle := func(r domain.Recorded) error {
		if got = append(got, r); len(got) == total {
			cancel()
		}
		return nil
	}
	done := make(chan error, 1)
	feed := &countingFeed{Feed: s}
	go func() { done <- Follow(ctx, feed, checkpoint, handle, Backoff{Initial: time.Millisecond}) }()
	// One more, appended while Follow runs, reaches it live.
	live, err := s.Append(ctx, "conversation-live-"+uuid.NewString(), domain.NoStream, pending(1))
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, live...)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow: %v (handled %d of %d)", err, len(got), len(want))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("handled %v,\nwant %v", positions(got), positions(want))
	}
	if n := feed.n.Load(); n < int32(len(want)/3) {
		t.Errorf("%d subscriptions for %d events dropped every 3: the drops did not happen", n, len(want))
	}
}

// countingFeed counts the subscriptions to its Feed.
type countingFeed struct {
	Feed
	n atomic.Int32
}

func (c *countingFeed) Subscribe(ctx context.Context, from uint64) (Subscription, error) {
	c.n.Add(1)
	return c.Feed.Subscribe(ctx, from)
}
