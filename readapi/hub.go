package readapi

import (
	"sync"
	"sync/atomic"

	"github.com/helpdesk/messenger/projections"
)

// HubConfig tunes a Hub; its zero value works.
type HubConfig struct {
	// ClientBuffer is how many changes a subscriber may fall behind before
	// it is cut off (default 1024).
	ClientBuffer int
}

// Hub fans the live changes of this replica out to its streams. Deliver
// never waits for a subscriber: each has a bounded buffer, and one that lets
// it fill up is cut off (its channel closed, Overflowed true) and resumes
// from the log on its next connection. Safe for concurrent use.
type Hub struct {
	buffer int

	mu   sync.Mutex // held by Deliver while it sends, and to add or remove subscribers
	head uint64     // the highest position delivered
	subs map[*Subscription]struct{}
}

// NewHub returns a hub with no subscribers.
func NewHub(cfg HubConfig) *Hub {
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = 1024
	}
	return &Hub{buffer: cfg.ClientBuffer, subs: map[*Subscription]struct{}{}}
}

// Subscription is one subscriber's view of the hub.
type Subscription struct {
	// C receives every change delivered after Subscribe, in order. It is
	// closed by Close, and by the hub when the subscriber fell behind by more
	// than its buffer (then Overflowed reports true).
	C <-chan projections.Change

	c          chan projections.Change
	hub        *Hub
	overflowed atomic.Bool
	closed     bool // guarded by hub.mu
}

// Subscribe returns a subscription to the changes delivered from now on:
// those above the Head that follows it. The caller must Close it.
func (h *Hub) Subscribe() *Subscription {
	c := make(chan projections.Change, h.buffer)
	s := &Subscription{C: c, c: c, hub: h}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Overflowed reports whether the hub cut s off because its buffer was full:
// changes after those left in C were not sent to it.
func (s *Subscription) Overflowed() bool { return s.overflowed.Load() }

// Close ends s and closes C. Calling it again does nothing.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.drop(s)
}

// drop removes s and closes its channel; h.mu must be held.
func (h *Hub) drop(s *Subscription) {
	if s.closed {
		return
	}
	s.closed = true
	delete(h.subs, s)
	close(s.c)
}

// Deliver sends changes, in log order, to every subscriber, except those at
// or below the highest position delivered before: transports redeliver. It
// never blocks on a subscriber; one whose buffer is full is cut off.
func (h *Hub) Deliver(changes []projections.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	from := h.head // the changes of one log event share its position: compare with the head before the batch
	for _, ch := range changes {
		if ch.Position <= from {
			continue
		}
		h.head = max(h.head, ch.Position)
		for s := range h.subs {
			select {
			case s.c <- ch:
			default:
				s.overflowed.Store(true)
				h.drop(s)
			}
		}
	}
}

// Head returns the highest position delivered.
func (h *Hub) Head() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.head
}

// Subscribers returns how many subscriptions are open.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
