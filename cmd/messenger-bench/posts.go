package main

import (
	"sync/atomic"
)

// post is one message the bench schedules. The scheduler fills the plain
// fields before handing the post to a writer; streams read them only after
// seeing sent set, which the writer stores after receiving the post.
type post struct {
	sched    int64 // when it was due, ns on the bench's clock
	conv     int32 // the customer whose conversation it goes to
	author   int32 // the agent replying, or -1 for the customer
	measured bool  // due after the warm-up

	sent  atomic.Int64 // when the POST was about to be written, ns on the bench's clock; 0 before
	state atomic.Int32 // postPending, postAcked or postFailed
	got   atomic.Int32 // expected subscribers that received it (each once)
	id    atomic.Pointer[string]
}

// The states of a post.
const (
	postPending int32 = iota
	postAcked
	postFailed
)

const (
	chunkBits = 12
	chunkLen  = 1 << chunkBits
	maxChunks = 1 << 16 // 268 M posts
)

// postLog holds every post by sequence number. One goroutine adds; any may
// get concurrently.
type postLog struct {
	chunks [maxChunks]atomic.Pointer[[chunkLen]post]
	n      atomic.Uint64
}

// add returns the next post and its sequence number, or nil when the log
// is full. Only one goroutine may call it.
func (l *postLog) add() (uint64, *post) {
	seq := l.n.Load()
	c := seq >> chunkBits
	if c >= maxChunks {
		return seq, nil
	}
	ch := l.chunks[c].Load()
	if ch == nil {
		ch = new([chunkLen]post)
		l.chunks[c].Store(ch)
	}
	l.n.Store(seq + 1)
	return seq, &ch[seq&(chunkLen-1)]
}

// get returns post seq, or nil if it was never added.
func (l *postLog) get(seq uint64) *post {
	if seq >= l.n.Load() {
		return nil
	}
	ch := l.chunks[seq>>chunkBits].Load()
	if ch == nil {
		return nil
	}
	return &ch[seq&(chunkLen-1)]
}

// len returns how many posts were added.
func (l *postLog) len() uint64 { return l.n.Load() }

// bitset is a growable set of sequence numbers, owned by one goroutine.
type bitset []uint64

func (b bitset) has(i uint64) bool {
	w := i >> 6
	return w < uint64(len(b)) && b[w]&(1<<(i&63)) != 0
}

func (b *bitset) set(i uint64) {
	w := i >> 6
	if w >= uint64(len(*b)) {
		n := max(w+1, uint64(2*len(*b)), 64)
		grown := make(bitset, n)
		copy(grown, *b)
		*b = grown
	}
	(*b)[w] |= 1 << (i & 63)
}
