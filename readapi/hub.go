package readapi

import (
	"slices"
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
// never waits for a subscriber: the changes go into one ring that every
// subscription reads at its own pace, and each subscriber is told that
// there is more on a channel of its own that holds one signal, so a busy
// one is told once. A subscriber that falls behind by more than the ring
// holds is cut off (Next reports it, Overflowed is true) and resumes from
// the log on its next connection. Safe for concurrent use.
type Hub struct {
	mu   sync.RWMutex // held by Deliver while it writes the ring, for reading by Next
	ring []projections.Change
	next uint64 // the sequence number the next change delivered gets; change k is at ring[k%len(ring)]

	subsMu sync.Mutex      // held to add or remove subscribers, and while Deliver signals them
	subs   []*Subscription // open subscriptions, each at its index

	head atomic.Uint64 // the highest position delivered; written under mu
}

// NewHub returns a hub with no subscribers.
func NewHub(cfg HubConfig) *Hub {
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = 1024
	}
	return &Hub{ring: make([]projections.Change, cfg.ClientBuffer)}
}

// Subscription is one subscriber's place in the hub. Next and Caught are
// for one goroutine at a time.
type Subscription struct {
	hub        *Hub
	ready      chan struct{} // holds a signal when changes may wait
	cursor     atomic.Uint64 // the sequence number of the next change to take
	overflowed atomic.Bool
	closed     atomic.Bool
	index      int // in hub.subs; guarded by hub.subsMu
}

// Subscribe returns a subscription to the changes delivered from now on:
// those above the Head that follows it. The caller must Close it.
func (h *Hub) Subscribe() *Subscription {
	s := &Subscription{hub: h, ready: make(chan struct{}, 1)}
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	h.mu.RLock()
	s.cursor.Store(h.next)
	h.mu.RUnlock()
	s.index = len(h.subs)
	h.subs = append(h.subs, s)
	return s
}

// Ready returns the channel that receives a signal once changes were
// delivered after the last signal: then Next has some, or had them
// already. It is never closed.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Next copies into dst the changes delivered since those already taken, in
// order, as many as dst holds, and returns how many. ok is false once the
// subscription is closed, or cut off for falling more than the hub's
// ClientBuffer behind (then Overflowed reports true): the changes after
// those taken are not for it.
func (s *Subscription) Next(dst []projections.Change) (n int, ok bool) {
	if s.closed.Load() || s.overflowed.Load() {
		return 0, false
	}
	h := s.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	if s.overflowed.Load() { // cut off (cutAll) before what follows was added
		return 0, false
	}
	cur := s.cursor.Load()
	if h.next-cur > uint64(len(h.ring)) {
		s.overflowed.Store(true)
		return 0, false
	}
	for cur < h.next && n < len(dst) {
		dst[n] = h.ring[cur%uint64(len(h.ring))]
		n++
		cur++
	}
	s.cursor.Store(cur)
	return n, true
}

// Caught reports whether s has taken every change delivered, so that no
// change at or below Head is on its way to it.
func (s *Subscription) Caught() bool {
	h := s.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	return s.cursor.Load() == h.next
}

// Overflowed reports whether the hub cut s off because it fell more than
// the hub's ClientBuffer behind: changes after those it took were not sent
// to it.
func (s *Subscription) Overflowed() bool {
	if s.overflowed.Load() {
		return true
	}
	h := s.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	return !s.closed.Load() && h.next-s.cursor.Load() > uint64(len(h.ring))
}

// Close ends s. Calling it again does nothing.
func (s *Subscription) Close() {
	h := s.hub
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	if s.closed.Swap(true) {
		return
	}
	last := h.subs[len(h.subs)-1]
	h.subs[s.index], last.index = last, s.index
	h.subs[len(h.subs)-1] = nil
	h.subs = h.subs[:len(h.subs)-1]
}

// Deliver adds changes, in log order, to what every subscriber gets,
// except those at or below the highest position delivered before:
// transports redeliver. A FeedGap among them cuts every subscriber off
// before the changes that follow it. It never waits for a subscriber.
func (h *Hub) Deliver(changes []projections.Change) {
	for {
		i := slices.IndexFunc(changes, func(ch projections.Change) bool { return ch.Kind == projections.FeedGap })
		if i < 0 {
			h.deliver(changes)
			return
		}
		h.deliver(changes[:i])
		if changes[i].Position > h.head.Load() {
			// Changes before it were lost: every subscriber stops, before
			// it can take what follows, and its client resumes from its
			// last event, which replays from the log what it missed.
			h.cutAll()
		}
		changes = changes[i+1:]
	}
}

// deliver is Deliver for changes without a FeedGap.
func (h *Hub) deliver(changes []projections.Change) {
	h.mu.Lock()
	from := h.head.Load() // the changes of one log event share its position: compare with the head before the batch
	added := false
	for _, ch := range changes {
		if ch.Position <= from {
			continue
		}
		h.ring[h.next%uint64(len(h.ring))] = ch
		h.next++
		h.head.Store(max(h.head.Load(), ch.Position))
		added = true
	}
	h.mu.Unlock()
	if !added {
		return
	}
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	for _, s := range h.subs {
		select {
		case s.ready <- struct{}{}:
		default: // already told
		}
	}
}

// cutAll cuts every subscription off, as if it had fallen behind, and
// wakes it: Next takes nothing more.
func (h *Hub) cutAll() {
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	for _, s := range h.subs {
		s.overflowed.Store(true)
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
}

// Head returns the highest position delivered.
func (h *Hub) Head() uint64 { return h.head.Load() }

// Subscribers returns how many subscriptions are open.
func (h *Hub) Subscribers() int {
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	return len(h.subs)
}
