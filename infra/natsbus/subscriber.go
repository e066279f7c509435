package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
)

// Subscriber reads a topic as watermill messages, each subscription through
// an ephemeral JetStream consumer of its own, one message at a time: the
// next is delivered once the last is acked (or nacked, and then redelivered).
//
// watermill-nats's own (pkg/jetstream, v2.1.3, the newest) closes a
// subscription's channel when its context ends while the NATS callback may
// be sending on it: a data race, which `go test -race` caught at a
// replica's shutdown, and a "send on closed channel" panic when the send
// wins. Here the channel is closed only once the consumer is stopped and
// no callback is left running. Messages are decoded as its publisher
// encodes them (wmjs.DefaultUnmarshaler).
type Subscriber struct {
	js      jetstream.JetStream
	topic   func(string) jetstream.StreamConfig
	ackWait time.Duration

	mu      sync.Mutex
	closed  bool          // guarded by mu
	closing chan struct{} // closed by Close
	subs    sync.WaitGroup
}

var _ message.Subscriber = (*Subscriber)(nil)

// errClosed is Subscribe's error once Close has been called.
var errClosed = errors.New("natsbus: subscriber closed")

// Subscribe returns the messages published to topic from now on, until ctx
// ends or the subscriber closes; the channel is then closed.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	s.subs.Add(1)
	s.mu.Unlock()
	consumer, remove, err := newConsumer(ctx, s.js, s.topic(topic).Name)
	if err != nil {
		s.subs.Done()
		return nil, err
	}
	out := make(chan *message.Message)
	stop := make(chan struct{}) // closed first when the subscription ends
	var (
		callbacks sync.Mutex // held to start a callback, and to stop them
		stopped   bool       // guarded by callbacks
		running   sync.WaitGroup
	)
	cc, err := consumer.Consume(func(msg jetstream.Msg) {
		callbacks.Lock()
		if stopped {
			callbacks.Unlock()
			return
		}
		running.Add(1)
		callbacks.Unlock()
		defer running.Done()
		s.handle(ctx, msg, out, stop)
	})
	if err != nil {
		remove()
		s.subs.Done()
		return nil, err
	}
	go func() {
		defer s.subs.Done()
		select {
		case <-ctx.Done():
		case <-s.closing:
		}
		close(stop) // a callback waiting to send or for its ack returns
		cc.Stop()
		callbacks.Lock()
		stopped = true
		callbacks.Unlock()
		running.Wait()
		close(out)
		remove()
	}()
	return out, nil
}

// handle delivers msg on out and acks or nacks it as its reader does; it
// gives up when stop is closed (the broker redelivers what was not acked,
// to a consumer that no longer exists: nothing).
func (s *Subscriber) handle(ctx context.Context, msg jetstream.Msg, out chan<- *message.Message, stop <-chan struct{}) {
	m, err := wmjs.DefaultUnmarshaler{}.Unmarshal(msg)
	if err != nil {
		_ = msg.Term() // undecodable: never again
		return
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.SetContext(mctx)
	select {
	case out <- m:
	case <-stop:
		return
	}
	timeout := time.NewTimer(s.ackWait)
	defer timeout.Stop()
	select {
	case <-m.Acked():
		_ = msg.Ack()
	case <-m.Nacked():
		_ = msg.Nak()
	case <-timeout.C:
		_ = msg.Nak()
	case <-stop:
	}
}

// Close ends every subscription and waits for their channels to close.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	s.subs.Wait()
	return nil
}

// newConsumer makes an ephemeral consumer of stream that starts at messages
// published from now on; the broker removes it when it has been idle for a
// minute (a replica that died), and remove deletes it at once.
func newConsumer(ctx context.Context, js jetstream.JetStream, stream string) (jetstream.Consumer, func(), error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	name := "messengerd_" + watermill.NewShortUUID()
	consumer, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Name: name, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("consumer of %s: %w", stream, err)
	}
	return consumer, func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, name)
	}, nil
}
