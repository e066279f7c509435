package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// A histogram counts durations in log-linear buckets of microseconds: exact
// below 128 µs, then 64 buckets per power of two (a relative error under
// 1.6 %), up to about 2^38 µs (three days). Record is lock-free; several
// goroutines record into separate shards of one histogram.
const (
	histSub     = 64  // buckets per power of two
	histLinear  = 128 // values below this have a bucket each
	histShifts  = 32  // powers of two above the linear part
	histBuckets = histLinear + histShifts*histSub
	histShards  = 16
)

// histogram is a sharded, lock-free latency histogram. Its zero value is
// ready to use.
type histogram struct {
	shards [histShards]histShard
}

type histShard struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Uint64 // µs
	_      [64]byte      // keep shards' hot counters off each other's cache lines
}

func bucketOf(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	shift := bits.Len64(us) - 7 // ≥ 1: us>>shift lies in [64, 128)
	i := histLinear + (shift-1)*histSub + int(us>>shift) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketTop is the highest value of bucket i, in µs.
func bucketTop(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	shift := (i-histLinear)/histSub + 1
	top := uint64((i-histLinear)%histSub + histSub)
	return (top+1)<<shift - 1
}

// record adds d to the shard of key (any number that spreads recorders).
func (h *histogram) record(key int, d time.Duration) {
	if d < 0 {
		d = 0
	}
	us := uint64(d / time.Microsecond)
	s := &h.shards[uint(key)%histShards]
	s.counts[bucketOf(us)].Add(1)
	s.n.Add(1)
	for {
		m := s.max.Load()
		if us <= m || s.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// snapshot is a merged copy of a histogram's counts.
type snapshot struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64
}

func (h *histogram) snapshot() *snapshot {
	s := &snapshot{}
	for i := range h.shards {
		sh := &h.shards[i]
		for b := range sh.counts {
			s.counts[b] += sh.counts[b].Load()
		}
		s.n += sh.n.Load()
		s.max = max(s.max, sh.max.Load())
	}
	return s
}

// quantile returns the value at or below which a share q of the recorded
// values lie: the top of its bucket, never above the maximum; 0 when empty.
func (s *snapshot) quantile(q float64) time.Duration {
	if s.n == 0 {
		return 0
	}
	rank := uint64(q*float64(s.n) + 0.5)
	rank = min(max(rank, 1), s.n)
	var seen uint64
	for i, c := range s.counts {
		if seen += c; seen >= rank {
			return time.Duration(min(bucketTop(i), s.max)) * time.Microsecond
		}
	}
	return time.Duration(s.max) * time.Microsecond
}

// maximum returns the largest value recorded.
func (s *snapshot) maximum() time.Duration { return time.Duration(s.max) * time.Microsecond }
