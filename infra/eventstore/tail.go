// Package eventstore holds what the event store adapters share.
package eventstore

import (
	"sync"

	"github.com/helpdesk/messenger/domain"
)

// The bounds of a Tail unless told otherwise: events, and bytes of their
// data (the events themselves take about as much again).
const (
	DefaultTailSize  = 8192
	DefaultTailBytes = 16 << 20
)

// Tail keeps the newest events a store has appended in this process, as it
// committed them, so that a reader close behind the head of the log (the
// live projector, a batch or two behind) reads them from memory: no round
// trip, no query, no decoding. It holds one run of consecutive positions;
// an append that does not follow it (another process appended in between,
// or a commit whose outcome was unknown) starts a new run. A read it cannot
// answer whole from that run goes to the database.
//
// A store adds a batch once it is committed, before it answers its
// callers, so a reader finds in the tail only events any reader of the
// database finds too.
type Tail struct {
	size     int
	maxBytes int

	mu    sync.RWMutex
	ring  []domain.Recorded // ring[p%size] holds position p, for first <= p < next
	first uint64            // the oldest position held; 0 when empty
	next  uint64            // the position after the newest held
	bytes int               // of the data of the events held
}

// NewTail returns a Tail that keeps the newest size events, as long as
// their data stays within DefaultTailBytes (DefaultTailSize events if size
// is 0 or less).
func NewTail(size int) *Tail {
	if size <= 0 {
		size = DefaultTailSize
	}
	return &Tail{size: size, maxBytes: DefaultTailBytes}
}

// Add keeps recs, committed events of consecutive positions in position
// order. They replace what the tail holds unless they follow it.
func (t *Tail) Add(recs []domain.Recorded) {
	if len(recs) == 0 {
		return
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Position != recs[0].Position+uint64(i) {
			t.Reset() // not a run: keep nothing rather than a gap
			return
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ring == nil {
		t.ring = make([]domain.Recorded, t.size)
	}
	if t.first == 0 || recs[0].Position != t.next {
		t.clear()
		t.first, t.next = recs[0].Position, recs[0].Position
	}
	for _, r := range recs {
		if t.next-t.first == uint64(t.size) {
			t.dropOldest()
		}
		t.ring[r.Position%uint64(t.size)] = r
		t.bytes += len(r.Data)
		t.next++
	}
	for t.bytes > t.maxBytes && t.next-t.first > 1 {
		t.dropOldest()
	}
}

// dropOldest forgets the oldest event held.
func (t *Tail) dropOldest() {
	slot := &t.ring[t.first%uint64(t.size)]
	t.bytes -= len(slot.Data)
	*slot = domain.Recorded{}
	t.first++
}

// clear forgets every event held.
func (t *Tail) clear() {
	clear(t.ring)
	t.first, t.next, t.bytes = 0, 0, 0
}

// Reset drops what the tail holds.
func (t *Tail) Reset() {
	t.mu.Lock()
	t.clear()
	t.mu.Unlock()
}

// Read returns up to limit events with positions above after, in order,
// if the tail holds the one right after it; ok is false if it does not,
// and the reader must ask the database. It may return fewer events than
// the database holds: those another process appended after the tail's
// newest.
func (t *Tail) Read(after uint64, limit int) (recs []domain.Recorded, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.first == 0 || after+1 < t.first || after+1 >= t.next || limit < 1 {
		return nil, false
	}
	n := min(uint64(limit), t.next-(after+1))
	recs = make([]domain.Recorded, n)
	for i := range recs {
		recs[i] = t.ring[(after+1+uint64(i))%uint64(t.size)]
	}
	return recs, true
}

// Newest returns the position of the newest event held, 0 if none: the
// log holds it, committed.
func (t *Tail) Newest() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.first == 0 {
		return 0
	}
	return t.next - 1
}
