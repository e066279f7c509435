package natsbus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/helpdesk/messenger/infra/bus"
	"github.com/helpdesk/messenger/infra/natsbus"
	"github.com/helpdesk/messenger/infra/natsbus/natstest"
	"github.com/helpdesk/messenger/projections"
)

// collector gathers what a replica's hub would receive.
type collector struct {
	mu  sync.Mutex
	got []uint64
}

func (c *collector) deliver(changes []projections.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range changes {
		c.got = append(c.got, ch.Position)
	}
}

func (c *collector) positions() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.got...)
}

// Two replicas each receive every batch one of them publishes, in order.
func TestFanOutAcrossReplicas(t *testing.T) {
	url := natstest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := "messenger_test_" + watermill.NewShortUUID()
	t.Cleanup(func() { deleteStream(t, url, topic) })

	var replicas []*collector
	var buses []*natsbus.Bus
	for range 2 {
		b, err := natsbus.Open(ctx, url, topic, natsbus.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		c := &collector{}
		go bus.Consume(ctx, b.Subscriber, topic, 0, c.deliver)
		replicas, buses = append(replicas, c), append(buses, b)
	}
	time.Sleep(300 * time.Millisecond) // the consumers start at what is new: let them exist first

	pub := bus.NewPublisher(buses[0].Publisher, topic)
	const batches = 50
	for i := range batches {
		pos := uint64(2*i + 1)
		if err := pub.Publish(ctx, []projections.Change{{Position: pos, Kind: projections.ConversationUpdated}, {Position: pos + 1, Kind: projections.MessageCreated}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for i, c := range replicas {
		for len(c.positions()) < 2*batches && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		got := c.positions()
		if len(got) != 2*batches {
			t.Fatalf("replica %d received %d changes, want %d", i, len(got), 2*batches)
		}
		for j, p := range got {
			if p != uint64(j+1) {
				t.Fatalf("replica %d: change %d has position %d, want %d (out of order or duplicated)", i, j, p, j+1)
			}
		}
	}
}

func deleteStream(t *testing.T, url, topic string) {
	if _, err := natsbus.DeleteStreams(context.Background(), url, func(name string) bool { return name == topic }); err != nil {
		t.Errorf("delete stream %s: %v", topic, err)
	}
}

// A subscription that ends while messages flow closes its channel once,
// after its last send: watermill-nats's own subscriber closed it under a
// callback still sending (a race under -race, a panic when the send won).
func TestSubscriptionEndsWhileMessagesFlow(t *testing.T) {
	url := natstest.URL(t)
	topic := "messenger_test_" + watermill.NewShortUUID()
	t.Cleanup(func() { deleteStream(t, url, topic) })
	b, err := natsbus.Open(context.Background(), url, topic, natsbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	stopPub := make(chan struct{})
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			default:
			}
			_ = b.Publisher.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i))))
		}
	}()
	defer func() { close(stopPub); <-published }()
	for round := range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		msgs, err := b.Subscriber.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		// Some rounds end with a message waiting to be read, some with
		// one read and not acked (the next waits for its ack).
		for i := range round % 3 {
			if m, ok := <-msgs; ok && (round%2 == 0 || i < round%3-1) {
				m.Ack()
			}
		}
		cancel()
		closed := time.After(5 * time.Second)
	drain:
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					break drain
				}
				m.Ack()
			case <-closed:
				t.Fatalf("round %d: the channel is still open 5 s after the subscription's context ended", round)
			}
		}
	}
	if err := b.Subscriber.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscriber.Subscribe(context.Background(), topic); err == nil {
		t.Error("a closed subscriber subscribed")
	}
}
