package bus

import (
	"container/heap"
	"time"

	"github.com/helpdesk/messenger/projections"
)

// orderer delivers batches in the order their MetaAfter chain says. Only
// Consume's goroutine uses it.
type orderer struct {
	deliver   func([]projections.Change)
	delivered uint64               // the highest position delivered
	out       []projections.Change // delivered, for emit to hand over

	held    map[uint64]batch // by the predecessor they wait for
	waiting afters           // the keys of held, a min-heap
	stalled time.Time        // since when held has waited without progress
}

// newOrderer returns an orderer that has delivered up to position after.
func newOrderer(after uint64, deliver func([]projections.Change)) *orderer {
	return &orderer{deliver: deliver, delivered: after, held: map[uint64]batch{}}
}

// add delivers b now, with the held batches it releases, or holds it until
// its predecessor has been delivered.
func (o *orderer) add(b batch, now time.Time) {
	if b.after <= o.delivered {
		o.send(b, now)
		return
	}
	if h, taken := o.held[b.after]; taken {
		if h.last != b.last { // two publishers at once: wait for neither
			o.send(b, now)
		}
		return
	}
	if len(o.held) == 0 {
		o.stalled = now
	}
	o.held[b.after] = b
	heap.Push(&o.waiting, b.after)
	if len(o.held) > maxHeld {
		o.skip(now)
	}
}

// send delivers b and then every held batch whose predecessor is delivered.
func (o *orderer) send(b batch, now time.Time) {
	o.out = append(o.out, b.changes...)
	o.delivered = max(o.delivered, b.last)
	for len(o.waiting) > 0 && o.waiting[0] <= o.delivered {
		after := heap.Pop(&o.waiting).(uint64)
		next := o.held[after]
		delete(o.held, after)
		o.out = append(o.out, next.changes...)
		o.delivered = max(o.delivered, next.last)
	}
	o.stalled = now
}

// emit hands what was delivered since the last emit to deliver, in one call.
func (o *orderer) emit() {
	if len(o.out) == 0 {
		return
	}
	out := o.out
	o.out = nil // deliver may keep it
	o.deliver(out)
}

// skip gives up on the predecessor of the oldest held batch. If batches
// were delivered before, or the consumer started past the log's start,
// those between were lost: a FeedGap goes first.
func (o *orderer) skip(now time.Time) {
	after := heap.Pop(&o.waiting).(uint64)
	b := o.held[after]
	delete(o.held, after)
	if o.delivered > 0 && after > o.delivered && len(b.changes) > 0 {
		o.out = append(o.out, projections.Change{Position: b.changes[0].Position, Kind: projections.FeedGap})
	}
	o.send(b, now)
}

// expire gives up on missing predecessors once the held batches have waited
// ReorderWait without progress.
func (o *orderer) expire(now time.Time) {
	if len(o.held) > 0 && now.Sub(o.stalled) >= reorderWait {
		o.skip(now)
	}
}

// flush delivers everything held, in chain order.
func (o *orderer) flush() {
	now := time.Now()
	for len(o.held) > 0 {
		o.skip(now)
	}
	o.emit()
}

// deadline returns when expire has work, if ever.
func (o *orderer) deadline() (time.Time, bool) {
	if len(o.held) == 0 {
		return time.Time{}, false
	}
	return o.stalled.Add(reorderWait), true
}

// afters is a min-heap of positions.
type afters []uint64

func (h afters) Len() int           { return len(h) }
func (h afters) Less(i, j int) bool { return h[i] < h[j] }
func (h afters) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *afters) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *afters) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
