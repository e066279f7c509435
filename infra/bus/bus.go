// Package bus carries the live change feed of the projector to the SSE hubs
// of every replica over watermill: one message per committed batch, holding
// that batch's changes in log order.
//
// The transport is whatever message.Publisher and message.Subscriber it is
// given: the in-process GoChannel of NewGoChannel for one process, a broker
// for several replicas. Transports redeliver and may reorder; Consume puts
// what it can back in order and the hub drops what it has already seen, by
// position.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"

	"github.com/helpdesk/messenger/projections"
)

// Topic is the default topic of the change feed.
const Topic = "messenger.changes"

// Metadata keys of a change-feed message. Positions are decimal strings.
const (
	// MetaFirst is the position of the batch's first change.
	MetaFirst = "first_position"
	// MetaPosition is the position of the batch's last change.
	MetaPosition = "position"
	// MetaAfter is the last position of the batch the same publisher sent
	// before this one; absent for a publisher's first batch. Consume uses it
	// to put batches that a transport reordered back in order.
	MetaAfter = "after_position"
)

// feedNamespace derives message UUIDs, so a batch republished or redelivered
// keeps its UUID.
var feedNamespace = uuid.MustParse("6f1d4c3e-2b7a-4e59-9a3d-7c0e8b5f1a24")

// MessageUUID returns the UUID of the message of the batch spanning
// positions first to last: the same for every delivery of that batch.
func MessageUUID(first, last uint64) string {
	return uuid.NewSHA1(feedNamespace, []byte("changes:"+strconv.FormatUint(first, 10)+"-"+strconv.FormatUint(last, 10))).String()
}

// Publisher publishes the changes of each committed batch to a topic. It is
// the projections.Publisher of the projector. Safe for concurrent use.
type Publisher struct {
	pub   message.Publisher
	topic string

	mu   sync.Mutex
	last uint64 // the last position published, or followed; 0 before the first batch
}

var _ projections.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher sending to topic through pub.
func NewPublisher(pub message.Publisher, topic string) *Publisher {
	return &Publisher{pub: pub, topic: topic}
}

// Follow tells p the position its next batch follows, before it publishes
// any: the checkpoint its projector starts from. That batch then names it
// as its predecessor, and a consumer that has seen the feed before this
// publisher started (another replica) notices it missing as any other.
func (p *Publisher) Follow(position uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = max(p.last, position)
}

// Publish sends changes, one committed batch in log order, as one message.
// It publishes nothing for an empty batch. A batch whose publish failed is
// still the predecessor the next one names: consumers notice it missing.
func (p *Publisher) Publish(ctx context.Context, changes []projections.Change) error {
	if len(changes) == 0 {
		return nil
	}
	payload, err := encodeChanges(changes)
	if err != nil {
		return fmt.Errorf("encode changes: %w", err)
	}
	first, last := changes[0].Position, changes[len(changes)-1].Position
	msg := message.NewMessageWithContext(ctx, MessageUUID(first, last), payload)
	msg.Metadata.Set(MetaFirst, strconv.FormatUint(first, 10))
	msg.Metadata.Set(MetaPosition, strconv.FormatUint(last, 10))

	// The lock keeps "after" a chain: each message names the one before it.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last > 0 && p.last < first {
		msg.Metadata.Set(MetaAfter, strconv.FormatUint(p.last, 10))
	}
	// The next batch names this one as its predecessor even if this one
	// failed: a consumer then notices it missing and marks the gap (see
	// Consume), and the streams resume from the log what it held.
	p.last = max(p.last, last)
	if err := p.pub.Publish(p.topic, msg); err != nil {
		return fmt.Errorf("publish changes %d..%d to %s: %w", first, last, p.topic, err)
	}
	return nil
}

// GoChannelBuffer is how many messages the in-process transport queues for
// a slow consumer before its publisher's goroutines wait.
const GoChannelBuffer = 1024

// NewGoChannel returns the in-process transport of a single process, both
// the Publisher and the Subscriber of the feed. It keeps nothing for late
// subscribers and never makes a publisher wait for an acknowledgement; so
// it hands each message over on a goroutine of its own, and messages
// published in quick succession often arrive out of order: Consume puts
// them back in order.
func NewGoChannel() *gochannel.GoChannel {
	return gochannel.NewGoChannel(gochannel.Config{
		OutputChannelBuffer:            GoChannelBuffer,
		Persistent:                     false,
		BlockPublishUntilSubscriberAck: false,
	}, watermill.NopLogger{})
}

// ReorderWait is how long Consume holds batches whose predecessor has not
// arrived, while none arrives, before it gives up on the predecessor.
const ReorderWait = 2 * time.Second

// reorderWait is ReorderWait, shortened by tests.
var reorderWait = ReorderWait

// maxHeld bounds the batches Consume holds while waiting for one.
const maxHeld = 4096

// ErrClosed is returned by Consume when the transport closes the
// subscription before ctx is done.
var ErrClosed = errors.New("change feed subscription closed")

// Consume subscribes to topic and calls deliver with the batches of changes,
// in log order, those that arrived together in one call, until ctx is done
// (it then returns ctx's error) or the subscription closes (ErrClosed).
// deliver must not block: it runs on the one goroutine that reads the
// subscription. Each message is acked once handed over; a malformed one is
// logged and acked, never redelivered.
//
// after is the position of the log the consumer's side has seen when it
// subscribes (its read models' checkpoint, read before subscribing; 0 for
// an empty log): a batch that follows it is delivered at once. A batch
// that names a predecessor (MetaAfter) not delivered yet is held until
// that one arrives, or until ReorderWait passes without progress; a
// predecessor given up on after a batch was delivered, or after a
// position above 0, was lost, and a FeedGap goes before the batch
// released. Redelivered batches are passed on: deliver must drop
// positions it has seen, as readapi.Hub does.
func Consume(ctx context.Context, sub message.Subscriber, topic string, after uint64, deliver func([]projections.Change)) error {
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", topic, err)
	}
	return ConsumeFrom(ctx, msgs, topic, after, deliver)
}

// ConsumeFrom is Consume over a subscription already made, for callers
// that must be subscribed before anything is published (a GoChannel keeps
// nothing for late subscribers).
func ConsumeFrom(ctx context.Context, msgs <-chan *message.Message, topic string, after uint64, deliver func([]projections.Change)) error {
	o := newOrderer(after, deliver)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	take := func(msg *message.Message) {
		if b, err := decode(msg); err != nil {
			slog.WarnContext(ctx, "dropping malformed change-feed message", "topic", topic, "uuid", msg.UUID, "err", err)
		} else {
			o.add(b, time.Now())
		}
		msg.Ack()
	}
	for {
		select {
		case <-ctx.Done():
			o.flush()
			return ctx.Err()
		case <-timer.C:
			o.expire(time.Now())
		case msg, ok := <-msgs:
			if !ok {
				o.flush()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("consume %s: %w", topic, ErrClosed)
			}
			take(msg)
			// What came meanwhile goes with it, in one call of deliver:
			// a deliver that reads for its batch (the streams render
			// what changed) keeps up by reading for more at once.
		drain:
			for range maxDrain {
				select {
				case msg, ok := <-msgs:
					if !ok {
						break drain // the next round ends
					}
					take(msg)
				default:
					break drain
				}
			}
		}
		o.emit()
		if d, ok := o.deadline(); ok {
			timer.Reset(max(time.Until(d), 0))
		} else {
			timer.Stop()
		}
	}
}

// maxDrain bounds the messages taken together into one call of deliver.
const maxDrain = 256

// batch is one decoded message.
type batch struct {
	changes []projections.Change
	last    uint64
	after   uint64 // 0: names no predecessor
}

func decode(msg *message.Message) (batch, error) {
	var b batch
	var err error
	if b.changes, err = decodeChanges(msg.Payload); err != nil {
		return b, fmt.Errorf("decode changes: %w", err)
	}
	if len(b.changes) == 0 {
		return b, errors.New("no changes")
	}
	for i, c := range b.changes {
		if c.Position == 0 || i > 0 && c.Position < b.changes[i-1].Position {
			return b, fmt.Errorf("change %d at position %d is out of order", i, c.Position)
		}
	}
	b.last = b.changes[len(b.changes)-1].Position
	if s := msg.Metadata.Get(MetaAfter); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return b, fmt.Errorf("metadata %s %q: %w", MetaAfter, s, err)
		}
		b.after = n
	}
	return b, nil
}
