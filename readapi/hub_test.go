package readapi

import (
	"sync"
	"testing"
	"time"

	"github.com/helpdesk/messenger/projections"
)

func changesAt(positions ...uint64) []projections.Change {
	out := make([]projections.Change, len(positions))
	for i, p := range positions {
		out[i] = projections.Change{Position: p, Kind: projections.ConversationUpdated, ConversationID: "c"}
	}
	return out
}

// drain returns what is buffered in s without waiting.
func drain(s *Subscription) (got []uint64, closed bool) {
	for {
		select {
		case ch, ok := <-s.C:
			if !ok {
				return got, true
			}
			got = append(got, ch.Position)
		default:
			return got, false
		}
	}
}

func equalPositions(got, want []uint64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestHubDeduplicatesByPosition(t *testing.T) {
	h := NewHub(HubConfig{})
	early := h.Subscribe()
	defer early.Close()
	h.Deliver(changesAt(1, 2, 2, 3))
	late := h.Subscribe()
	defer late.Close()
	h.Deliver(changesAt(2, 3, 4, 4)) // a redelivery overlapping the last batch
	h.Deliver(changesAt(1, 2, 3, 4)) // a plain redelivery
	h.Deliver(nil)

	if got, _ := drain(early); !equalPositions(got, []uint64{1, 2, 2, 3, 4, 4}) {
		t.Errorf("early subscriber got %v, want [1 2 2 3 4 4]", got)
	}
	if got, _ := drain(late); !equalPositions(got, []uint64{4, 4}) {
		t.Errorf("late subscriber got %v, want only what came after it subscribed: [4 4]", got)
	}
	if got := h.Head(); got != 4 {
		t.Errorf("Head = %d, want 4", got)
	}
}

func TestHubClose(t *testing.T) {
	h := NewHub(HubConfig{})
	s := h.Subscribe()
	s.Close()
	s.Close()
	h.Deliver(changesAt(1))
	if got, closed := drain(s); len(got) != 0 || !closed {
		t.Errorf("closed subscription got %v (closed %v), want nothing and a closed channel", got, closed)
	}
	if s.Overflowed() {
		t.Error("Overflowed after Close, want false")
	}
	if n := h.Subscribers(); n != 0 {
		t.Errorf("Subscribers = %d, want 0", n)
	}
}

// TestHubStuckSubscriber proves a subscriber that never reads is cut off
// while 999 others, reading concurrently, receive every change in order.
func TestHubStuckSubscriber(t *testing.T) {
	const (
		readers  = 999
		buffer   = 64
		rounds   = 40
		perRound = 16 // changes per Deliver; less than buffer, so a live reader never overflows
	)
	h := NewHub(HubConfig{ClientBuffer: buffer})
	stuck := h.Subscribe()
	defer stuck.Close()

	var round sync.WaitGroup // every reader has taken the current round
	type result struct {
		got        []uint64
		overflowed bool
	}
	results := make([]result, readers)
	var done sync.WaitGroup
	subs := make([]*Subscription, readers)
	for i := range subs {
		subs[i] = h.Subscribe()
	}
	round.Add(readers)
	for i, s := range subs {
		done.Add(1)
		go func() {
			defer done.Done()
			n := 0
			for ch := range s.C {
				results[i].got = append(results[i].got, ch.Position)
				if n++; n%perRound == 0 {
					round.Done()
				}
			}
			results[i].overflowed = s.Overflowed()
		}()
	}

	pos := uint64(0)
	for r := 0; r < rounds; r++ {
		batch := make([]uint64, perRound)
		for j := range batch {
			pos++
			batch[j] = pos
		}
		start := time.Now()
		h.Deliver(changesAt(batch...))
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Deliver to %d subscribers took %v", readers+1, d)
		}
		round.Wait()
		if r < rounds-1 {
			round.Add(readers)
		}
	}

	if !stuck.Overflowed() {
		t.Fatal("the subscriber that never reads was not cut off")
	}
	got, closed := drain(stuck)
	if !closed || len(got) != buffer || got[len(got)-1] != buffer {
		t.Errorf("stuck subscriber holds %d changes up to %v (closed %v), want its first %d and a closed channel", len(got), got[len(got)-1:], closed, buffer)
	}
	if n := h.Subscribers(); n != readers {
		t.Errorf("Subscribers = %d, want %d: only the stuck one cut", n, readers)
	}
	for _, s := range subs {
		s.Close()
	}
	done.Wait()
	for i, res := range results {
		if res.overflowed || len(res.got) != int(pos) {
			t.Fatalf("reader %d got %d changes (overflowed %v), want all %d", i, len(res.got), res.overflowed, pos)
		}
		for j, p := range res.got {
			if p != uint64(j+1) {
				t.Fatalf("reader %d: change %d at position %d, want %d", i, j, p, j+1)
			}
		}
	}
}
