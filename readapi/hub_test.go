package readapi

import (
	"slices"
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

// drain returns what s holds without waiting; closed is true when s is
// closed or cut off.
func drain(s *Subscription) (got []uint64, closed bool) {
	buf := make([]projections.Change, 3) // smaller than most batches: Next is called again
	for {
		n, ok := s.Next(buf)
		if !ok {
			return got, true
		}
		for _, ch := range buf[:n] {
			got = append(got, ch.Position)
		}
		if n < len(buf) {
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
			buf := make([]projections.Change, 5)
			for len(results[i].got) < rounds*perRound {
				n, ok := s.Next(buf)
				if !ok {
					break
				}
				for _, ch := range buf[:n] {
					results[i].got = append(results[i].got, ch.Position)
					if len(results[i].got)%perRound == 0 {
						round.Done()
					}
				}
				if n < len(buf) && len(results[i].got) < rounds*perRound {
					<-s.Ready()
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
	if got, closed := drain(stuck); !closed || len(got) != 0 {
		t.Errorf("stuck subscriber got %v (cut off %v), want nothing and cut off", got, closed)
	}
	if n := h.Subscribers(); n != readers+1 {
		t.Errorf("Subscribers = %d, want %d until the stuck one closes", n, readers+1)
	}
	stuck.Close()
	if n := h.Subscribers(); n != readers {
		t.Errorf("Subscribers = %d, want %d once the stuck one closed", n, readers)
	}
	done.Wait()
	for _, s := range subs {
		s.Close()
	}
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

// TestHubCutsOffOnlyBeyondTheBuffer: a subscriber may lag by ClientBuffer
// changes and still get them all; one more cuts it off.
func TestHubCutsOffOnlyBeyondTheBuffer(t *testing.T) {
	h := NewHub(HubConfig{ClientBuffer: 4})
	s := h.Subscribe()
	defer s.Close()
	h.Deliver(changesAt(1, 2, 2, 3))
	if got, closed := drain(s); closed || !equalPositions(got, []uint64{1, 2, 2, 3}) {
		t.Fatalf("got %v (cut off %v), want [1 2 2 3]", got, closed)
	}
	h.Deliver(changesAt(4, 5, 6, 7))
	h.Deliver(changesAt(8))
	if !s.Overflowed() {
		t.Fatal("a subscriber 5 changes behind a buffer of 4 is not cut off")
	}
	if got, closed := drain(s); !closed || len(got) != 0 {
		t.Fatalf("got %v (cut off %v), want nothing and cut off", got, closed)
	}
}

// TestHubSignalsSubscribers: Ready holds a signal once a Deliver adds
// something, one however many, and none for a Deliver that adds nothing.
func TestHubSignalsSubscribers(t *testing.T) {
	h := NewHub(HubConfig{})
	s := h.Subscribe()
	defer s.Close()
	signalled := func() bool {
		select {
		case <-s.Ready():
			return true
		default:
			return false
		}
	}
	if n, ok := s.Next(make([]projections.Change, 8)); n != 0 || !ok {
		t.Fatalf("Next = %d, %v; want 0, true", n, ok)
	}
	if !s.Caught() {
		t.Error("Caught = false with nothing delivered")
	}
	h.Deliver(nil)
	if signalled() {
		t.Fatal("signalled by an empty delivery")
	}
	h.Deliver(changesAt(1))
	h.Deliver(changesAt(2))
	if s.Caught() {
		t.Error("Caught = true with changes not taken")
	}
	if !signalled() {
		t.Fatal("not signalled by a delivery")
	}
	if signalled() {
		t.Fatal("signalled twice: a signal waits for one take")
	}
	if got, _ := drain(s); !equalPositions(got, []uint64{1, 2}) {
		t.Errorf("got %v, want [1 2]", got)
	}
	if !s.Caught() {
		t.Error("Caught = false with everything taken")
	}
	h.Deliver(changesAt(2)) // a redelivery adds nothing: nobody is told
	if signalled() {
		t.Fatal("signalled by a redelivery")
	}
	other := h.Subscribe()
	if n := h.Subscribers(); n != 2 {
		t.Errorf("Subscribers = %d, want 2", n)
	}
	s.Close()
	h.Deliver(changesAt(3))
	if got, _ := drain(other); !equalPositions(got, []uint64{3}) {
		t.Errorf("the other subscriber got %v, want [3]", got)
	}
	other.Close()
	if n := h.Subscribers(); n != 0 {
		t.Errorf("Subscribers = %d, want 0", n)
	}
}

// TestHubCutsOffAtAFeedGap: changes were lost before a FeedGap, so every
// subscriber is cut off there and takes nothing more, neither what follows
// nor what it had not taken yet: its client resumes from its last event,
// which replays them from the log. One subscribing after the gap gets what
// follows. A FeedGap at or below the head is a redelivery.
func TestHubCutsOffAtAFeedGap(t *testing.T) {
	h := NewHub(HubConfig{})
	before, widget := h.Subscribe(), h.SubscribeFor("alice")
	defer before.Close()
	defer widget.Close()
	h.Deliver(changesAt(1, 2))
	if got, closed := drain(before); closed || !equalPositions(got, []uint64{1, 2}) {
		t.Fatalf("before the gap: got %v (cut %v), want [1 2]", got, closed)
	}
	stale := []projections.Change{{Position: 2, Kind: projections.FeedGap}}
	h.Deliver(append(stale, changesAt(2)...))
	if _, closed := drain(before); closed || before.Overflowed() {
		t.Fatal("a redelivered gap cut the subscriber off")
	}
	gap := []projections.Change{{Position: 5, Kind: projections.FeedGap}}
	h.Deliver(append(append(changesAt(3), gap...), changesAt(5, 6)...))
	select {
	case <-before.Ready():
	default:
		t.Error("the cut subscriber was not woken")
	}
	if got, closed := drain(before); !closed || len(got) != 0 || !before.Overflowed() {
		t.Errorf("at the gap: got %v (cut %v, overflowed %v), want nothing and cut", got, closed, before.Overflowed())
	}
	if got, closed := drain(widget); !closed || len(got) != 0 || !widget.Overflowed() {
		t.Errorf("at the gap, a widget: got %v (cut %v, overflowed %v), want nothing and cut", got, closed, widget.Overflowed())
	}
	after := h.Subscribe()
	defer after.Close()
	h.Deliver(changesAt(7))
	if got, closed := drain(after); closed || !equalPositions(got, []uint64{7}) {
		t.Errorf("after the gap: got %v (cut %v), want [7]", got, closed)
	}
	if h.Head() != 7 {
		t.Errorf("Head = %d, want 7", h.Head())
	}
}

// forCustomer returns changes of customer's conversation at positions.
func forCustomer(customer string, positions ...uint64) []projections.Change {
	out := changesAt(positions...)
	for i := range out {
		out[i].Kind, out[i].Customer = projections.MessageCreated, customer
	}
	return out
}

// TestHubTellsAnAudienceOnlyItsChanges: a subscription for one customer
// is signalled for that customer's changes and those for everyone, not
// for others' (nor the counters, which widgets have no use of); it takes
// its own, passing over the rest, and the ring running past it with
// others' changes does not cut it off. Every other subscriber gets all.
func TestHubTellsAnAudienceOnlyItsChanges(t *testing.T) {
	h := NewHub(HubConfig{ClientBuffer: 4})
	alice, bob, agent := h.SubscribeFor("alice"), h.SubscribeFor("bob"), h.Subscribe()
	defer alice.Close()
	defer agent.Close()
	signalled := func(s *Subscription) bool {
		select {
		case <-s.Ready():
			return true
		default:
			return false
		}
	}
	if n := h.Subscribers(); n != 3 {
		t.Fatalf("Subscribers = %d, want 3", n)
	}
	counts := projections.Change{Position: 3, Kind: projections.CountsChanged}
	h.Deliver(append(forCustomer("bob", 1, 2), counts))
	if signalled(alice) || !signalled(bob) || !signalled(agent) {
		t.Fatal("a delivery for bob: want bob and the agent signalled, not alice")
	}
	if got, closed := drain(agent); closed || !equalPositions(got, []uint64{1, 2, 3}) {
		t.Fatalf("the agent got %v (cut off %v), want all", got, closed)
	}
	if got, closed := drain(bob); closed || !equalPositions(got, []uint64{1, 2, 3}) {
		t.Fatalf("bob got %v (cut off %v), want [1 2 3]: from his first change on, all", got, closed)
	}
	if !alice.Caught() || alice.Overflowed() {
		t.Fatalf("alice, with nothing for her: caught %v, overflowed %v; want caught", alice.Caught(), alice.Overflowed())
	}
	// Twice the ring of others' changes, then one for alice: she gets it,
	// having passed over everything before its position.
	h.Deliver(forCustomer("bob", 4, 5, 6, 7))
	h.Deliver(forCustomer("carol", 8, 9, 10))
	h.Deliver(append(forCustomer("bob", 11), forCustomer("alice", 12)...))
	if !signalled(alice) || alice.Overflowed() {
		t.Fatalf("alice after her change: overflowed %v, want signalled and not cut off", alice.Overflowed())
	}
	if got, closed := drain(alice); closed || !equalPositions(got, []uint64{12}) {
		t.Fatalf("alice got %v (cut off %v), want [12]", got, closed)
	}
	if p := alice.Passed(); p != 11 {
		t.Errorf("alice passed up to %d, want 11", p)
	}
	if got, closed := drain(bob); !closed || len(got) != 0 {
		t.Errorf("bob, five changes of his behind a ring of 4: got %v (cut off %v), want cut off", got, closed)
	}
	// A change for everyone reaches her; then others' pass, and she is
	// caught up to the head without taking them.
	h.Deliver([]projections.Change{{Position: 13, Kind: projections.HelpdeskChanged}})
	if !signalled(alice) {
		t.Fatal("alice not signalled for the helpdesk")
	}
	h.Deliver(forCustomer("carol", 14, 15))
	if signalled(alice) {
		t.Fatal("alice signalled for carol")
	}
	if got, _ := drain(alice); !equalPositions(got, []uint64{13, 14, 15}) {
		t.Fatalf("alice got %v, want [13 14 15]: from the helpdesk's on", got)
	}
	h.Deliver(forCustomer("carol", 16))
	if got, _ := drain(alice); len(got) != 0 || alice.Passed() != 16 || !alice.Caught() {
		t.Fatalf("alice got %v, passed %d, caught %v; want nothing, 16, caught", got, alice.Passed(), alice.Caught())
	}
	// Alice's own change lost off the ring: she is cut off.
	h.Deliver(forCustomer("alice", 17))
	h.Deliver(forCustomer("carol", 18, 19, 20, 21))
	if !alice.Overflowed() {
		t.Fatal("alice's change is off the ring, but she is not cut off")
	}
	if _, closed := drain(alice); !closed {
		t.Fatal("alice's change is off the ring, but Next goes on")
	}
	bob.Close()
	if n := h.Subscribers(); n != 2 {
		t.Errorf("Subscribers = %d after bob left, want 2", n)
	}
}

// TestHubRoutesConversationsToTheirStaff: a staff subscription is
// signalled for the conversation changes its route names, for those whose
// route does not know (or with no route: Deliver), and for those for
// everyone; not for others', nor for the counters. A widget's and an
// unkeyed subscription are not affected by the route.
func TestHubRoutesConversationsToTheirStaff(t *testing.T) {
	h := NewHub(HubConfig{})
	tia, tom, bob, agent := h.SubscribeStaff("user:tia"), h.SubscribeStaff("user:tom"), h.SubscribeFor("bob"), h.Subscribe()
	for _, s := range []*Subscription{tia, tom, bob, agent} {
		defer s.Close()
	}
	if n := h.Subscribers(); n != 4 {
		t.Fatalf("Subscribers = %d, want 4", n)
	}
	route := func(ch projections.Change) ([]string, bool) {
		switch ch.ConversationID {
		case "c-tia":
			return []string{"user:tia", "user:nobody"}, true
		case "c-none":
			return nil, true
		}
		return nil, false // c-unknown
	}
	conv := func(pos uint64, id, customer string) projections.Change {
		return projections.Change{Position: pos, Kind: projections.MessageCreated, ConversationID: id, Customer: customer}
	}
	took := func(s *Subscription) []uint64 {
		t.Helper()
		got, closed := drain(s)
		if closed {
			t.Fatal("cut off")
		}
		return got
	}
	h.DeliverRouted([]projections.Change{conv(1, "c-none", "bob"), {Position: 2, Kind: projections.CountsChanged}}, route)
	h.DeliverRouted([]projections.Change{conv(3, "c-tia", "")}, route)
	if got := took(tia); !slices.Equal(got, []uint64{3}) {
		t.Errorf("tia took %v, want [3]: her conversation only", got)
	}
	if got := took(tom); len(got) != 0 {
		t.Errorf("tom took %v, want nothing", got)
	}
	if got := took(bob); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("bob took %v, want [1 2 3]: from his own change on", got)
	}
	if got := took(agent); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("the agent took %v, want all", got)
	}
	// Unknown routes, no route at all, and a change for everyone reach
	// every staff subscription.
	h.DeliverRouted([]projections.Change{conv(4, "c-unknown", "")}, route)
	if got := took(tom); !slices.Equal(got, []uint64{4}) {
		t.Errorf("tom took %v, want [4]: a route not known goes to all staff", got)
	}
	h.Deliver([]projections.Change{conv(5, "c-none", "")})
	if got := took(tom); !slices.Equal(got, []uint64{5}) {
		t.Errorf("tom took %v, want [5]: Deliver routes nothing", got)
	}
	h.DeliverRouted([]projections.Change{{Position: 6, Kind: projections.HelpdeskChanged}}, route)
	if got := took(tom); !slices.Equal(got, []uint64{6}) {
		t.Errorf("tom took %v, want [6]: the helpdesk is for everyone", got)
	}
	if got := took(tia); !slices.Equal(got, []uint64{4, 5, 6}) {
		t.Errorf("tia took %v, want [4 5 6]", got)
	}
}
