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
	// it is cut off (default 8192, a second of a few thousand posts a
	// second: with 1024, a support agent's stream that paused 110 ms at
	// 3,000 posts/s was cut off, resumed from the log, and the replays of
	// such streams loaded the server further, so that more were cut off).
	// The ring is shared: a change takes 128 bytes once (1 MiB in all),
	// whatever the subscribers.
	ClientBuffer int
}

// Hub fans the live changes of this replica out to its streams. Deliver
// never waits for a subscriber: the changes go into one ring that every
// subscription reads at its own pace, and each subscriber is told that
// there is more on a channel of its own that holds one signal, so a busy
// one is told once. A subscriber that falls behind by more than the ring
// holds is cut off (Next reports it, Overflowed is true) and resumes from
// the log on its next connection. Safe for concurrent use.
//
// A subscription for one audience (SubscribeFor: a customer's widget) is
// told only of the changes for it and those for everyone (see audience):
// a post wakes its customer's widgets, not every widget open. It passes
// over the rest without reading them, so the ring running past them does
// not cut it off. A staff member who sees only their own conversations
// subscribes likewise (SubscribeStaff), and is told of a conversation's
// changes when the route given with them (DeliverRouted) names them, or
// when it does not know.
type Hub struct {
	mu   sync.RWMutex // held by Deliver while it writes the ring, for reading by Next
	ring []projections.Change
	next uint64 // the sequence number the next change delivered gets; change k is at ring[k%len(ring)]

	// Held to add or remove subscribers, and by Deliver while it writes
	// the ring and signals them (taken before mu).
	subsMu sync.Mutex
	subs   []*Subscription            // open subscriptions for every change, each at its index
	keyed  map[string][]*Subscription // open subscriptions for a customer's changes, each at its index
	staff  map[string][]*Subscription // open subscriptions for the conversations routed to a staff member

	head atomic.Uint64 // the highest position delivered; written under mu
}

// NewHub returns a hub with no subscribers.
func NewHub(cfg HubConfig) *Hub {
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = 8192
	}
	return &Hub{ring: make([]projections.Change, cfg.ClientBuffer), keyed: map[string][]*Subscription{},
		staff: map[string][]*Subscription{}}
}

// Subscription is one subscriber's place in the hub. Next and Caught are
// for one goroutine at a time.
type Subscription struct {
	hub        *Hub
	ready      chan struct{} // holds a signal when changes may wait
	cursor     atomic.Uint64 // the sequence number of the next change to take
	overflowed atomic.Bool
	closed     atomic.Bool
	index      int // in hub.subs, or hub.keyed[key] (hub.staff[key]); guarded by hub.subsMu

	// For a subscription for one audience: key names it (a staff member's
	// when staff), and first is one more than the sequence number of the
	// first change for it not taken, 0 if there is none (written by
	// Deliver under hub.mu, and by Next).
	key   string
	staff bool
	first atomic.Uint64
	// passed is the position up to which Next passed over every change,
	// as not for it (0 for a subscription to every change).
	passed atomic.Uint64
}

// Subscribe returns a subscription to the changes delivered from now on:
// those above the Head that follows it. The caller must Close it.
func (h *Hub) Subscribe() *Subscription { return h.SubscribeFor("") }

// SubscribeFor is Subscribe for the changes of one audience, key (a
// customer's id: see audience), and those for everyone; "" is for every
// change.
func (h *Hub) SubscribeFor(key string) *Subscription { return h.subscribe(key, false) }

// SubscribeStaff is Subscribe for a staff member who sees only the
// conversations they take part in or whose linked items concern them: the
// changes of the conversations routed to key (see DeliverRouted), and
// those for everyone. The counters, which only the staff who see every
// customer conversation use, are not among them.
func (h *Hub) SubscribeStaff(key string) *Subscription { return h.subscribe(key, true) }

func (h *Hub) subscribe(key string, staff bool) *Subscription {
	s := &Subscription{hub: h, ready: make(chan struct{}, 1), key: key, staff: staff && key != ""}
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	h.mu.RLock()
	s.cursor.Store(h.next)
	h.mu.RUnlock()
	switch {
	case key == "":
		s.index = len(h.subs)
		h.subs = append(h.subs, s)
	case staff:
		s.index = len(h.staff[key])
		h.staff[key] = append(h.staff[key], s)
	default:
		s.index = len(h.keyed[key])
		h.keyed[key] = append(h.keyed[key], s)
	}
	return s
}

// audience tells whom a change is for: a conversation's change is for the
// subscriptions for key (its customer) and for the staff it is routed to;
// another is for everyone, or, neither, only for the subscriptions to
// every change (only they use the counters).
func audience(ch projections.Change) (key string, conversation, everyone bool) {
	switch ch.Kind {
	case projections.CountsChanged:
		return "", false, false
	case projections.ConversationCreated, projections.ConversationUpdated, projections.ReadChanged,
		projections.MessageCreated, projections.MessageUpdated, projections.MessageDeleted:
		return ch.Customer, true, false
	default: // the helpdesk, an item (which may change anyone's rows), a kind not known here
		return "", false, true
	}
}

// A Route tells which staff subscriptions a conversation's change is for:
// their keys; ok is false when it does not know, and the change is then
// for every staff subscription.
type Route func(ch projections.Change) (keys []string, ok bool)

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
	skipped := false
	if s.key != "" {
		first := s.first.Load()
		if first == 0 { // nothing for s: pass over all
			if cur < h.next {
				s.cursor.Store(h.next)
				s.passed.Store(h.head.Load())
			}
			return 0, true
		}
		skipped, cur = first-1 > cur, max(cur, first-1)
	}
	if h.next-cur > uint64(len(h.ring)) {
		s.overflowed.Store(true)
		return 0, false
	}
	if skipped {
		// Every change below this one's position was taken or passed.
		s.passed.Store(max(s.passed.Load(), h.ring[cur%uint64(len(h.ring))].Position-1))
	}
	for cur < h.next && n < len(dst) {
		dst[n] = h.ring[cur%uint64(len(h.ring))]
		n++
		cur++
	}
	s.cursor.Store(cur)
	if s.key != "" {
		if cur == h.next {
			s.first.Store(0)
		} else {
			s.first.Store(cur + 1) // what follows may be for s
		}
	}
	return n, true
}

// Passed returns the position up to which the subscription passed over
// every change as not for it, without Next returning them (0 if none).
func (s *Subscription) Passed() uint64 { return s.passed.Load() }

// Caught reports whether s has taken every change delivered, so that no
// change at or below Head is on its way to it.
func (s *Subscription) Caught() bool {
	h := s.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	return s.cursor.Load() == h.next || (s.key != "" && s.first.Load() == 0)
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
	cur := s.cursor.Load()
	if s.key != "" {
		first := s.first.Load()
		if first == 0 {
			return false
		}
		cur = max(cur, first-1)
	}
	return !s.closed.Load() && h.next-cur > uint64(len(h.ring))
}

// Close ends s. Calling it again does nothing.
func (s *Subscription) Close() {
	h := s.hub
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	if s.closed.Swap(true) {
		return
	}
	subs, byKey := h.subs, h.keyed
	if s.staff {
		byKey = h.staff
	}
	if s.key != "" {
		subs = byKey[s.key]
	}
	last := subs[len(subs)-1]
	subs[s.index], last.index = last, s.index
	subs[len(subs)-1] = nil
	subs = subs[:len(subs)-1]
	switch {
	case s.key == "":
		h.subs = subs
	case len(subs) == 0:
		delete(byKey, s.key)
	default:
		byKey[s.key] = subs
	}
}

// Deliver adds changes, in log order, to what every subscriber gets,
// except those at or below the highest position delivered before:
// transports redeliver. A FeedGap among them cuts every subscriber off
// before the changes that follow it. It never waits for a subscriber.
// Every staff subscription gets every conversation's changes.
func (h *Hub) Deliver(changes []projections.Change) { h.DeliverRouted(changes, nil) }

// DeliverRouted is Deliver, a conversation's changes going to the staff
// subscriptions route names (to all of them where route is nil or does
// not know). It calls route with the hub's locks held.
func (h *Hub) DeliverRouted(changes []projections.Change, route Route) {
	for {
		i := slices.IndexFunc(changes, func(ch projections.Change) bool { return ch.Kind == projections.FeedGap })
		if i < 0 {
			h.deliver(changes, route)
			return
		}
		h.deliver(changes[:i], route)
		if changes[i].Position > h.head.Load() {
			// Changes before it were lost: every subscriber stops, before
			// it can take what follows, and its client resumes from its
			// last event, which replays from the log what it missed.
			h.cutAll()
		}
		changes = changes[i+1:]
	}
}

// deliver is DeliverRouted for changes without a FeedGap.
func (h *Hub) deliver(changes []projections.Change, route Route) {
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	h.mu.Lock()
	from := h.head.Load() // the changes of one log event share its position: compare with the head before the batch
	added, everyone, allStaff := false, false, false
	var keys, staffKeys []string // the audiences told, in order, perhaps repeated
	for _, ch := range changes {
		if ch.Position <= from {
			continue
		}
		seq := h.next
		h.ring[seq%uint64(len(h.ring))] = ch
		h.next++
		h.head.Store(max(h.head.Load(), ch.Position))
		added = true
		if len(h.keyed) == 0 && len(h.staff) == 0 {
			continue
		}
		// Mark the change for its audience before Next can see it.
		key, conversation, all := audience(ch)
		if all {
			everyone = true
			for _, subs := range h.keyed {
				markFirst(subs, seq)
			}
			for _, subs := range h.staff {
				markFirst(subs, seq)
			}
			continue
		}
		if h.keyed[key] != nil {
			markFirst(h.keyed[key], seq)
			keys = append(keys, key)
		}
		if !conversation || len(h.staff) == 0 {
			continue
		}
		var routed []string
		ok := false
		if route != nil {
			routed, ok = route(ch)
		}
		if !ok {
			allStaff = true
			for _, subs := range h.staff {
				markFirst(subs, seq)
			}
			continue
		}
		for _, k := range routed {
			if subs := h.staff[k]; subs != nil {
				markFirst(subs, seq)
				staffKeys = append(staffKeys, k)
			}
		}
	}
	h.mu.Unlock()
	if !added {
		return
	}
	signal(h.subs)
	if everyone {
		for _, subs := range h.keyed {
			signal(subs)
		}
		for _, subs := range h.staff {
			signal(subs)
		}
		return
	}
	for _, key := range keys {
		signal(h.keyed[key])
	}
	if allStaff {
		for _, subs := range h.staff {
			signal(subs)
		}
		return
	}
	for _, key := range staffKeys {
		signal(h.staff[key])
	}
}

// markFirst records change seq as the first for each of subs not taken,
// unless one is already.
func markFirst(subs []*Subscription, seq uint64) {
	for _, s := range subs {
		s.first.CompareAndSwap(0, seq+1)
	}
}

// signal tells each of subs that changes wait.
func signal(subs []*Subscription) {
	for _, s := range subs {
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
	cut := func(subs []*Subscription) {
		for _, s := range subs {
			s.overflowed.Store(true)
		}
		signal(subs)
	}
	cut(h.subs)
	for _, subs := range h.keyed {
		cut(subs)
	}
	for _, subs := range h.staff {
		cut(subs)
	}
}

// Head returns the highest position delivered.
func (h *Hub) Head() uint64 { return h.head.Load() }

// Subscribers returns how many subscriptions are open.
func (h *Hub) Subscribers() int {
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	n := len(h.subs)
	for _, subs := range h.keyed {
		n += len(subs)
	}
	for _, subs := range h.staff {
		n += len(subs)
	}
	return n
}
