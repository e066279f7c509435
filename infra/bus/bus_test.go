package bus

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/projections"
)

// batchAt returns a batch of n changes of the log event at pos.
func batchAt(pos uint64, n int) []projections.Change {
	out := make([]projections.Change, n)
	for i := range out {
		out[i] = projections.Change{Position: pos, Kind: projections.ConversationUpdated, ConversationID: "c" + strconv.FormatUint(pos, 10),
			Actor: domain.Actor{Kind: domain.ActorCustomer, ID: "cu1"}}
	}
	return out
}

// collector gathers what Consume delivers.
type collector struct {
	mu  sync.Mutex
	got []projections.Change
	ch  chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) deliver(changes []projections.Change) {
	c.mu.Lock()
	c.got = append(c.got, changes...)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// waitFor waits until n changes have arrived and returns them.
func (c *collector) waitFor(t *testing.T, n int, within time.Duration) []projections.Change {
	t.Helper()
	deadline := time.After(within)
	for {
		c.mu.Lock()
		got := append([]projections.Change(nil), c.got...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("got %d changes, want %d", len(got), n)
		}
	}
}

// consume runs Consume until the test ends and returns its result channel.
func consume(t *testing.T, sub message.Subscriber, deliver func([]projections.Change)) (cancel func(), done <-chan error) {
	t.Helper()
	return consumeAfter(t, sub, 0, deliver)
}

// consumeAfter is consume for a consumer that has seen the log up to after.
func consumeAfter(t *testing.T, sub message.Subscriber, after uint64, deliver func([]projections.Change)) (cancel func(), done <-chan error) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	errc, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		errc <- Consume(ctx, sub, Topic, after, deliver)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Error("Consume did not return after its context ended")
		}
	})
	return stop, errc
}

func TestGoChannelDeliversEveryBatchInOrder(t *testing.T) {
	g := NewGoChannel()
	t.Cleanup(func() { g.Close() })
	c := newCollector()
	rs := readySubscriber{g, make(chan struct{})}
	consume(t, rs, c.deliver)
	<-rs.ready // GoChannel drops what is published before a subscriber exists

	pub := NewPublisher(g, Topic)
	const batches = 3000
	want := 0
	for i := 1; i <= batches; i++ {
		n := 1 + i%3
		if err := pub.Publish(context.Background(), batchAt(uint64(i), n)); err != nil {
			t.Fatal(err)
		}
		want += n
	}
	got := c.waitFor(t, want, 5*time.Second)
	if len(got) != want {
		t.Fatalf("got %d changes, want %d", len(got), want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Position < got[i-1].Position {
			t.Fatalf("change %d at position %d after position %d: out of order", i, got[i].Position, got[i-1].Position)
		}
	}
	if got[0].Actor != (domain.Actor{Kind: domain.ActorCustomer, ID: "cu1"}) || got[0].ConversationID != "c1" {
		t.Errorf("first change = %+v, want actor and conversation to survive the trip", got[0])
	}
}

// readySubscriber tells when Consume has subscribed.
type readySubscriber struct {
	message.Subscriber
	ready chan struct{}
}

func (r readySubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	defer close(r.ready)
	return r.Subscriber.Subscribe(ctx, topic)
}

func TestPublishMessage(t *testing.T) {
	fp := &fakePublisher{}
	pub := NewPublisher(fp, "feed")
	if err := pub.Publish(context.Background(), nil); err != nil || len(fp.msgs) != 0 {
		t.Fatalf("empty batch: err %v, %d messages; want nothing published", err, len(fp.msgs))
	}
	// A batch whose unread counters moved starts with them.
	counts := projections.Change{Position: 7, Kind: projections.CountsChanged,
		Counts: &projections.Counts{LiveChats: 3, CaughtUp: map[string]int{"user:u1": 0, "user:u2": 2}}}
	first := append(append([]projections.Change{counts}, batchAt(7, 1)...), batchAt(9, 2)...)
	if err := pub.Publish(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), batchAt(12, 1)); err != nil {
		t.Fatal(err)
	}
	if len(fp.msgs) != 2 || fp.topics[0] != "feed" {
		t.Fatalf("published %d messages to %v, want 2 to feed", len(fp.msgs), fp.topics)
	}
	m := fp.msgs[0]
	if got, want := m.UUID, MessageUUID(7, 9); got != want {
		t.Errorf("uuid = %s, want %s", got, want)
	}
	if MessageUUID(7, 9) == MessageUUID(7, 10) || MessageUUID(7, 9) != MessageUUID(7, 9) {
		t.Error("MessageUUID is not a deterministic function of first and last position")
	}
	if got := m.Metadata.Get(MetaPosition); got != "9" {
		t.Errorf("%s = %q, want 9", MetaPosition, got)
	}
	if got := m.Metadata.Get(MetaFirst); got != "7" {
		t.Errorf("%s = %q, want 7", MetaFirst, got)
	}
	if got := m.Metadata.Get(MetaAfter); got != "" {
		t.Errorf("first batch %s = %q, want none", MetaAfter, got)
	}
	if got := fp.msgs[1].Metadata.Get(MetaAfter); got != "9" {
		t.Errorf("second batch %s = %q, want 9", MetaAfter, got)
	}
	var back []projections.Change
	if err := json.Unmarshal(m.Payload, &back); err != nil || !reflect.DeepEqual(back, first) {
		t.Errorf("payload decodes to %+v (%v), want %+v", back, err, first)
	}

	fp.err = errors.New("broker down")
	if err := pub.Publish(context.Background(), batchAt(13, 1)); !errors.Is(err, fp.err) {
		t.Errorf("publish error = %v, want it to wrap %v", err, fp.err)
	}
	// The batch that failed is the next one's predecessor, so that
	// consumers notice it missing.
	fp.err = nil
	if err := pub.Publish(context.Background(), batchAt(15, 1)); err != nil {
		t.Fatal(err)
	}
	if got := fp.msgs[len(fp.msgs)-1].Metadata.Get(MetaAfter); got != "13" {
		t.Errorf("after a failed publish %s = %q, want 13", MetaAfter, got)
	}

	// A publisher started on a projector's checkpoint names it as its first
	// batch's predecessor.
	fp = &fakePublisher{}
	pub = NewPublisher(fp, "feed")
	pub.Follow(40)
	if err := pub.Publish(context.Background(), batchAt(44, 1)); err != nil {
		t.Fatal(err)
	}
	if got := fp.msgs[0].Metadata.Get(MetaAfter); got != "40" {
		t.Errorf("first batch after Follow(40): %s = %q, want 40", MetaAfter, got)
	}
}

func TestConsumeAcksAndSkipsMalformed(t *testing.T) {
	fs := newFakeSubscriber()
	c := newCollector()
	consume(t, fs, c.deliver)

	bad := []*message.Message{
		message.NewMessage("a", []byte(`{"not":"an array"`)),
		message.NewMessage("b", []byte(`[]`)),
		message.NewMessage("c", []byte(`[{"position":5},{"position":4}]`)),
	}
	for _, m := range bad {
		fs.msgs <- m
	}
	good := encode(t, batchAt(3, 1), 0)
	fs.msgs <- good
	got := c.waitFor(t, 1, 2*time.Second)
	if len(got) != 1 || got[0].Position != 3 {
		t.Fatalf("delivered %+v, want the one change at position 3", got)
	}
	for _, m := range append(bad, good) {
		select {
		case <-m.Acked():
		case <-time.After(time.Second):
			t.Errorf("message %s was not acked", m.UUID)
		}
	}
}

func TestConsumeReorders(t *testing.T) {
	defer func(d time.Duration) { reorderWait = d }(reorderWait)
	reorderWait = 100 * time.Millisecond

	fs := newFakeSubscriber()
	c := newCollector()
	consume(t, fs, c.deliver)

	fs.msgs <- encode(t, batchAt(1, 1), 0)
	fs.msgs <- encode(t, batchAt(4, 1), 3) // 2..3 still on the way
	fs.msgs <- encode(t, batchAt(3, 1), 2)
	fs.msgs <- encode(t, batchAt(2, 1), 1)
	fs.msgs <- encode(t, batchAt(2, 1), 1) // a redelivery is passed on
	got := c.waitFor(t, 5, 2*time.Second)
	if want := []uint64{1, 2, 3, 4, 2}; !positionsEqual(got, want) {
		t.Fatalf("delivered positions %v, want %v", positions(got), want)
	}

	// A predecessor that never comes is given up on after reorderWait.
	start := time.Now()
	fs.msgs <- encode(t, batchAt(7, 1), 6)
	fs.msgs <- encode(t, batchAt(9, 1), 7)
	got = c.waitFor(t, 8, 2*time.Second)
	if want := []uint64{1, 2, 3, 4, 2, 7, 7, 9}; !positionsEqual(got, want) || got[5].Kind != projections.FeedGap {
		t.Fatalf("delivered positions %v, want %v, the first 7 a gap", positions(got), want)
	}
	if waited := time.Since(start); waited < reorderWait {
		t.Errorf("a batch with a missing predecessor was delivered after %v, want a wait of %v", waited, reorderWait)
	}
}

func TestConsumeEnds(t *testing.T) {
	fs := newFakeSubscriber()
	cancel, done := consume(t, fs, func([]projections.Change) {})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %v, want context.Canceled", err)
	}

	fs = newFakeSubscriber()
	_, done = consume(t, fs, func([]projections.Change) {})
	close(fs.msgs)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("after the subscription closed: %v, want ErrClosed", err)
	}

	fs = newFakeSubscriber()
	fs.err = errors.New("no broker")
	if err := Consume(context.Background(), fs, Topic, 0, nil); !errors.Is(err, fs.err) {
		t.Errorf("subscribe failure: %v, want it to wrap %v", err, fs.err)
	}
}

func encode(t *testing.T, changes []projections.Change, after uint64) *message.Message {
	t.Helper()
	b, err := json.Marshal(changes)
	if err != nil {
		t.Fatal(err)
	}
	m := message.NewMessage(MessageUUID(changes[0].Position, changes[len(changes)-1].Position), b)
	if after > 0 {
		m.Metadata.Set(MetaAfter, strconv.FormatUint(after, 10))
	}
	return m
}

func positions(cs []projections.Change) []uint64 {
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = c.Position
	}
	return out
}

func positionsEqual(cs []projections.Change, want []uint64) bool {
	got := positions(cs)
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

type fakePublisher struct {
	topics []string
	msgs   []*message.Message
	err    error
}

func (f *fakePublisher) Publish(topic string, msgs ...*message.Message) error {
	if f.err != nil {
		return f.err
	}
	for _, m := range msgs {
		f.topics, f.msgs = append(f.topics, topic), append(f.msgs, m)
	}
	return nil
}

func (f *fakePublisher) Close() error { return nil }

type fakeSubscriber struct {
	msgs chan *message.Message
	err  error
}

func newFakeSubscriber() *fakeSubscriber {
	return &fakeSubscriber{msgs: make(chan *message.Message, 16)}
}

func (f *fakeSubscriber) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return f.msgs, f.err
}

func (f *fakeSubscriber) Close() error { return nil }

// TestConsumeTakesWhatWaitsTogether: batches that wait in the subscription
// while deliver runs reach it in one call, in order, so that a deliver that
// reads the database for each call keeps up with many small batches.
func TestConsumeTakesWhatWaitsTogether(t *testing.T) {
	fs := &fakeSubscriber{msgs: make(chan *message.Message, 64)}
	var mu sync.Mutex
	var calls [][]projections.Change
	release := make(chan struct{})
	c := newCollector()
	consume(t, fs, func(changes []projections.Change) {
		mu.Lock()
		first := len(calls) == 0
		calls = append(calls, changes)
		mu.Unlock()
		if first {
			<-release // the first call is slow: the next batches wait
		}
		c.deliver(changes)
	})
	fs.msgs <- encode(t, batchAt(1, 2), 0)
	for pos := uint64(2); pos <= 40; pos++ {
		fs.msgs <- encode(t, batchAt(pos, 1), pos-1)
	}
	close(release)
	got := c.waitFor(t, 41, 2*time.Second)
	want := []uint64{1, 1}
	for pos := uint64(2); pos <= 40; pos++ {
		want = append(want, pos)
	}
	if !positionsEqual(got, want) {
		t.Fatalf("delivered positions %v, want %v", positions(got), want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) > 3 {
		t.Errorf("40 batches in %d calls, want those that waited for the first in one", len(calls))
	}
}

// TestConsumeMarksALostBatch: a batch whose predecessor never comes is
// delivered after reorderWait behind a FeedGap at its first position, since
// the batches between the last delivered and it were lost; a consumer that
// joined midway (nothing delivered yet) marks no gap for its first batch.
func TestConsumeMarksALostBatch(t *testing.T) {
	defer func(d time.Duration) { reorderWait = d }(reorderWait)
	reorderWait = 50 * time.Millisecond

	fs := newFakeSubscriber()
	c := newCollector()
	consume(t, fs, c.deliver)
	fs.msgs <- encode(t, batchAt(3, 1), 2) // joined midway: 1..2 came before
	got := c.waitFor(t, 1, 2*time.Second)
	if len(got) != 1 || got[0].Kind == projections.FeedGap {
		t.Fatalf("first batch of a consumer joining midway: %v, want it alone", got)
	}
	fs.msgs <- encode(t, batchAt(4, 1), 3)
	fs.msgs <- encode(t, batchAt(7, 2), 6) // 5..6 lost
	got = c.waitFor(t, 5, 2*time.Second)
	if !positionsEqual(got, []uint64{3, 4, 7, 7, 7}) || got[1].Kind == projections.FeedGap || got[2].Kind != projections.FeedGap ||
		got[3].Kind == projections.FeedGap {
		t.Fatalf("delivered %v, want 3, 4, a gap at 7, then the batch at 7", positions(got))
	}
}

// TestConsumeGoesOnFromItsStart: a consumer that has seen the log up to a
// position (a server started on its read models) delivers the batch that
// follows it at once, instead of waiting for a predecessor that came before
// it subscribed; and a first batch that starts further on waits for the
// batches between, then goes behind a FeedGap: they were lost to it.
func TestConsumeGoesOnFromItsStart(t *testing.T) {
	defer func(d time.Duration) { reorderWait = d }(reorderWait)
	reorderWait = time.Hour

	fs := newFakeSubscriber()
	c := newCollector()
	consumeAfter(t, fs, 100, c.deliver)
	fs.msgs <- encode(t, batchAt(101, 2), 100)
	if got := c.waitFor(t, 2, 2*time.Second); !positionsEqual(got, []uint64{101, 101}) || got[0].Kind == projections.FeedGap {
		t.Fatalf("delivered %v, want the batch at 101 alone", positions(got))
	}

	reorderWait = 50 * time.Millisecond
	fs = newFakeSubscriber()
	c = newCollector()
	consumeAfter(t, fs, 100, c.deliver)
	fs.msgs <- encode(t, batchAt(151, 1), 150) // 101..150 published before it subscribed
	got := c.waitFor(t, 2, 2*time.Second)
	if !positionsEqual(got, []uint64{151, 151}) || got[0].Kind != projections.FeedGap || got[1].Kind == projections.FeedGap {
		t.Fatalf("delivered %v, want a gap at 151, then the batch at 151", positions(got))
	}
}
