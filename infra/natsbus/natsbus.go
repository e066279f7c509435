// Package natsbus carries the live change feed between replicas over NATS
// JetStream, through watermill's JetStream publisher and a subscriber of
// its own (Subscriber). Every replica reads every message (its own
// ephemeral consumer, starting at what is new), so each SSE hub sees every
// change; the hubs drop redeliveries by position.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config tunes Open; its zero value works.
type Config struct {
	// MaxAge is how long the broker keeps the feed (default 1 h): a replica
	// that is away longer resumes its clients from the log, not the feed.
	MaxAge time.Duration
	// Name names the connection for the broker's monitoring (default "messengerd").
	Name string
}

// Bus is a connection to NATS with a watermill publisher and subscriber.
type Bus struct {
	conn       *nats.Conn
	Publisher  *wmjs.Publisher
	Subscriber *Subscriber
}

// Open connects to url and makes sure the JetStream stream of topic exists.
// JetStream names cannot hold dots, so topic must be a plain name.
func Open(ctx context.Context, url, topic string, cfg Config) (*Bus, error) {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = time.Hour
	}
	if cfg.Name == "" {
		cfg.Name = "messengerd"
	}
	conn, err := nats.Connect(url, nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	streamCfg := func(topic string) jetstream.StreamConfig {
		return jetstream.StreamConfig{Name: topic, Subjects: []string{topic}, MaxAge: cfg.MaxAge, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld}
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, streamCfg(topic)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("create stream %s: %w", topic, err)
	}
	logger := watermill.NopLogger{}
	pub, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: conn, Logger: logger, ConfigureStream: streamCfg})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("JetStream publisher: %w", err)
	}
	sub := &Subscriber{js: js, topic: streamCfg, ackWait: 30 * time.Second, closing: make(chan struct{})}
	return &Bus{conn: conn, Publisher: pub, Subscriber: sub}, nil
}

// Close closes the subscriber, the publisher and the connection.
func (b *Bus) Close() error {
	err := b.Subscriber.Close()
	if perr := b.Publisher.Close(); err == nil {
		err = perr
	}
	b.conn.Close()
	return err
}

// DeleteStreams deletes the JetStream streams at url whose names match,
// and returns the names of those it deleted; one deleted meanwhile by
// another is no error.
func DeleteStreams(ctx context.Context, url string, match func(name string) bool) ([]string, error) {
	conn, err := nats.Connect(url, nats.Name("messengerd prune"))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	defer conn.Close()
	js, err := jetstream.New(conn)
	if err != nil {
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	var names []string
	list := js.StreamNames(ctx)
	for name := range list.Name() {
		if match(name) {
			names = append(names, name)
		}
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	var deleted []string
	for _, name := range names {
		switch err := js.DeleteStream(ctx, name); {
		case err == nil:
			deleted = append(deleted, name)
		case errors.Is(err, jetstream.ErrStreamNotFound):
		default:
			return deleted, fmt.Errorf("delete stream %s: %w", name, err)
		}
	}
	return deleted, nil
}
