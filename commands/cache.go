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
}

// stateCache keeps the entries of the most recently used streams.
type stateCache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *cacheEntry, most recent first
	entries map[string]*list.Element
}

func newStateCache(max int) *stateCache {
	return &stateCache{max: max, order: list.New(), entries: map[string]*list.Element{}}
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
	c.entries[stream] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).stream)
	}
	return e
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
