package commands

import (
	"container/list"
	"sync"
)

// cacheEntry is the state of one stream as this process last saw it. Its
// mutex is held by the command running on the stream, so commands on one
// stream take turns in this process (and conflict only with other processes).
type cacheEntry struct {
	stream  string
	mu      sync.Mutex
	loaded  bool
	state   any // the aggregate's State after version
	version int64
	last    uint64 // the position of the event at version

	// What the state holds, as the cache counts it, and the entry's place
	// in the cache (nil once forgotten); both guarded by the cache's mutex.
	size int
	el   *list.Element
}

// stateCache keeps the entries of the most recently used streams, at most
// max of them and, but for the one used last, at most budget bytes of
// states in all (as sizeOf counts them): a long conversation holds its
// messages' texts, so a count alone bounded nothing.
type stateCache struct {
	mu      sync.Mutex
	max     int
	budget  int
	total   int        // the sizes of the entries kept
	order   *list.List // of *cacheEntry, most recent first
	entries map[string]*list.Element
}

func newStateCache(max, budget int) *stateCache {
	return &stateCache{max: max, budget: budget, order: list.New(), entries: map[string]*list.Element{}}
}

// get returns the entry of stream, making an empty one if there is none,
// and forgets the least recently used ones beyond max. A forgotten entry
// still in use stays valid for its holder.
func (c *stateCache) get(stream string) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[stream]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*cacheEntry)
	}
	e := &cacheEntry{stream: stream}
	e.el = c.order.PushFront(e)
	c.entries[stream] = e.el
	c.trim()
	return e
}

// resize records that e's state now holds size bytes, and forgets the
// least recently used entries while the states kept hold more than the
// budget. An entry already forgotten is not counted again.
func (c *stateCache) resize(e *cacheEntry, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.el == nil {
		return
	}
	c.total += size - e.size
	e.size = size
	c.trim()
}

// trim forgets the least recently used entries beyond max, and beyond the
// budget but for the most recent one; c.mu is held.
func (c *stateCache) trim() {
	for c.order.Len() > c.max || c.total > c.budget && c.order.Len() > 1 {
		old := c.order.Back().Value.(*cacheEntry)
		c.order.Remove(old.el)
		delete(c.entries, old.stream)
		c.total -= old.size
		old.el, old.size = nil, 0
	}
}

// bytes returns the sizes of the states kept.
func (c *stateCache) bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// peek returns the entry of stream if there is one, without making one or
// changing the order.
func (c *stateCache) peek(stream string) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[stream]; ok {
		return el.Value.(*cacheEntry)
	}
	return nil
}

// sizer is a state that tells what it holds (see conversation.State.Size).
type sizer interface{ Size() int }

// sizeOf approximates what state holds: what it tells, else a small
// aggregate's size.
func sizeOf(state any) int {
	if s, ok := state.(sizer); ok {
		return s.Size()
	}
	return 1 << 10
}
