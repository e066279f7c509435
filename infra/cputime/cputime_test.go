package cputime

import (
	"testing"
	"time"
)

// TestSelfCountsWork: spinning for 50 ms of wall time adds CPU time, and
// no more than the wall time the test took on all its threads allows.
func TestSelfCountsWork(t *testing.T) {
	before, start := Self(), time.Now()
	for x := 0; time.Since(start) < 50*time.Millisecond; x++ {
		_ = x * x
	}
	used, wall := Self()-before, time.Since(start)
	if used <= 0 {
		t.Fatalf("CPU time went from %v by %v", before, used)
	}
	if used > 64*wall+time.Second {
		t.Errorf("CPU time grew by %v in %v of wall time", used, wall)
	}
}
