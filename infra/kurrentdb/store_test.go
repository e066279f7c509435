package kurrentdb

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/infra/eventstore/storetest"
)

// TestContract runs the shared contract suite against a real KurrentDB
// server, given by MESSENGER_TEST_KURRENTDB_URL, e.g.
// esdb://127.0.0.1:2113?tls=false. The suite leaves its streams behind; it
// tolerates a database that holds other events.
func TestContract(t *testing.T) {
	url := os.Getenv("MESSENGER_TEST_KURRENTDB_URL")
	if url == "" {
		t.Skip("MESSENGER_TEST_KURRENTDB_URL is not set: no KurrentDB server here")
	}
	storetest.RunWith(t, func(t *testing.T) storetest.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := Open(ctx, url)
		if err != nil {
			t.Fatalf("Open(%s): %v", Redact(url), err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, storetest.Options{IDsPerStream: true, NoTail: true})
}

// TestContractFakeServer runs the contract suite through the real client
// against the fake server, with KurrentDB's own events between ours. It
// checks the adapter's logic, not KurrentDB: the live suite does that.
func TestContractFakeServer(t *testing.T) {
	f := startFake(t)
	f.set(func(f *fakeServer) { f.systemEvents = true })
	storetest.RunWith(t, func(t *testing.T) storetest.Store { return openFake(t, f) }, storetest.Options{IDsPerStream: true, NoTail: true})
}

func pending(n int) []domain.Pending {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	evs := make([]domain.Pending, n)
	for i := range evs {
		id := uuid.NewString()
		evs[i] = domain.Pending{EventID: id, Event: conversation.MessagePosted{
			Meta:      domain.Meta{At: at.Add(time.Duration(i) * time.Second), Actor: domain.Actor{Kind: domain.ActorUser, ID: "u-1"}},
			MessageID: "m-" + id, Body: "hello",
		}}
	}
	return evs
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIdempotentAppendConflictsInStream(t *testing.T) {
	s := openFake(t, startFake(t))
	ctx := ctxFor(t)
	stream := "conversation-" + uuid.NewString()
	evs := pending(3)
	if _, err := s.Append(ctx, stream, domain.NoStream, evs); err != nil {
		t.Fatal(err)
	}
	fresh := pending(1)
	for _, tt := range []struct {
		name     string
		expected int64
		evs      []domain.Pending
	}{
		{"stored, then new", domain.AnyVersion, []domain.Pending{evs[2], fresh[0]}},
		{"new, then stored", domain.AnyVersion, []domain.Pending{fresh[0], evs[0]}},
		{"out of order", domain.AnyVersion, []domain.Pending{evs[1], evs[0]}},
		{"with a gap", domain.AnyVersion, []domain.Pending{evs[0], evs[2]}},
		{"new, then stored, at the current version", 3, []domain.Pending{fresh[0], evs[0]}},
		{"out of order, at a stale version", 1, []domain.Pending{evs[2], evs[1]}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Append(ctx, stream, tt.expected, tt.evs)
			if !errors.Is(err, commands.ErrConflict) {
				t.Errorf("Append: got %v, want a conflict", err)
			}
		})
	}
	got, err := s.ReadStream(ctx, stream)
	if err != nil || len(got) != 3 {
		t.Fatalf("ReadStream: %d events, %v; want the 3 appended first", len(got), err)
	}
}

// TestAppendDoesNotDuplicate shows why Append reads the stream first:
// KurrentDB itself writes a batch again at the stream's current revision,
// whatever its ids.
func TestAppendDoesNotDuplicate(t *testing.T) {
	f := startFake(t)
	s := openFake(t, f)
	ctx := ctxFor(t)
	evs := pending(2)
	data := make([]esdb.EventData, len(evs))
	for i, p := range evs {
		var err error
		if data[i], err = encodeEvent(p); err != nil {
			t.Fatal(err)
		}
	}
	client, _ := s.conn()

	native := "conversation-" + uuid.NewString()
	for _, rev := range []esdb.ExpectedRevision{esdb.NoStream{}, esdb.Revision(1)} {
		if _, err := client.AppendToStream(ctx, native, esdb.AppendToStreamOptions{ExpectedRevision: rev}, data...); err != nil {
			t.Fatalf("AppendToStream(%T): %v", rev, err)
		}
	}
	if got, _ := s.ReadStream(ctx, native); len(got) != 4 {
		t.Fatalf("the client alone, at the current revision: %d events, want the batch twice (4)", len(got))
	}

	stream := "conversation-" + uuid.NewString()
	first, err := s.Append(ctx, stream, domain.NoStream, evs)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Append(ctx, stream, 2, evs)
	if err != nil {
		t.Fatalf("Append again at the current version: %v", err)
	}
	if again[0].Position != first[0].Position || again[1].Position != first[1].Position {
		t.Errorf("Append again: positions %d, %d, want the first append's %d, %d",
			again[0].Position, again[1].Position, first[0].Position, first[1].Position)
	}
	if got, _ := s.ReadStream(ctx, stream); len(got) != 2 {
		t.Errorf("Append again: the stream holds %d events, want 2", len(got))
	}
}

// TestAppendRacingRetries appends the same batch from many goroutines at
// once: one writes it, all return it.
func TestAppendRacingRetries(t *testing.T) {
	s := openFake(t, startFake(t))
	ctx := ctxFor(t)
	for _, expected := range []int64{domain.NoStream, domain.AnyVersion} {
		stream := "item-" + uuid.NewString()
		evs := pending(3)
		var wg sync.WaitGroup
		results := make([][]domain.Recorded, 8)
		errs := make([]error, len(results))
		for i := range results {
			wg.Go(func() { results[i], errs[i] = s.Append(ctx, stream, expected, evs) })
		}
		wg.Wait()
		for i := range results {
			if errs[i] != nil {
				t.Fatalf("expected %d: Append %d: %v", expected, i, errs[i])
			}
			if results[i][2].Position != results[0][2].Position {
				t.Errorf("expected %d: Append %d returned position %d, Append 0 %d", expected, i, results[i][2].Position, results[0][2].Position)
			}
		}
		if got, _ := s.ReadStream(ctx, stream); len(got) != 3 {
			t.Errorf("expected %d: the stream holds %d events, want 3", expected, len(got))
		}
	}
}

func TestAppendRefusesSystemStreams(t *testing.T) {
	s := openFake(t, startFake(t))
	_, err := s.Append(ctxFor(t), "$stats-x", domain.AnyVersion, pending(1))
	if err == nil || errors.Is(err, commands.ErrConflict) {
		t.Errorf("Append to $stats-x: got %v, want an error that is not a conflict", err)
	}
}

// TestServerBeforePositionsInStreamReads: servers before the EventStoreDB
// 22 releases send no position with a stream's events; the adapter says so
// rather than make one up.
func TestServerBeforePositionsInStreamReads(t *testing.T) {
	f := startFake(t)
	s := openFake(t, f)
	ctx := ctxFor(t)
	stream := "conversation-" + uuid.NewString()
	if _, err := s.Append(ctx, stream, domain.NoStream, pending(1)); err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeServer) { f.noStreamPos = true })
	_, err := s.ReadStream(ctx, stream)
	if !errors.Is(err, errNoPosition) || !strings.Contains(err.Error(), "EventStoreDB 22") {
		t.Errorf("ReadStream: got %v, want one naming the server version needed", err)
	}
}

// TestReconnectAfterServerRestart: a client whose rediscovery fails (the
// server is down) gives up for good; the Store then starts a new client,
// which connects once the server is back.
func TestReconnectAfterServerRestart(t *testing.T) {
	f := startFake(t)
	s := openFake(t, f)
	ctx := ctxFor(t)
	stream := "conversation-" + uuid.NewString()
	if _, err := s.Append(ctx, stream, domain.NoStream, pending(1)); err != nil {
		t.Fatal(err)
	}
	data, err := encodeEvent(pending(1)[0])
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.conn()
	f.stop()
	// A failed append makes the client rediscover the server; that fails
	// while it is down, and the client is closed from then on.
	for i := 0; ; i++ {
		_, err := first.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, data)
		if isConnectionClosed(err) {
			break
		}
		if err == nil || i == 20 {
			t.Fatalf("AppendToStream %d with the server down: %v; want the client to give up", i, err)
		}
	}
	if _, err := s.ReadStream(ctx, stream); err == nil {
		t.Fatal("ReadStream with the server down: no error")
	}
	if c, _ := s.conn(); c == first {
		t.Fatal("the Store kept a client that gave up on the server")
	}
	f.start(t, f.addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := s.ReadStream(ctx, stream)
		if err == nil && len(got) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadStream after the restart: %d events, %v; want 1", len(got), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWaitPollsWithoutSubscription: Wait sees an append by polling the
// head when subscriptions fail.
func TestWaitPollsWithoutSubscription(t *testing.T) {
	f := startFake(t)
	f.set(func(f *fakeServer) { f.noSubscriptions = true })
	s := openFake(t, f)
	s.poll = 20 * time.Millisecond
	ctx := ctxFor(t)
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		s.Append(ctx, "conversation-"+uuid.NewString(), domain.NoStream, pending(1))
	}()
	if err := s.Wait(ctx, head); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if h, _ := s.Head(ctx); h <= head {
		t.Errorf("Wait returned with the head at %d, want above %d", h, head)
	}
}

func TestHeadSkipsSystemEvents(t *testing.T) {
	f := startFake(t)
	s := openFake(t, f)
	ctx := ctxFor(t)
	if h, err := s.Head(ctx); err != nil || h != 0 {
		t.Fatalf("Head of a log of system events only: %d, %v; want 0", h, err)
	}
	recs, err := s.Append(ctx, "conversation-"+uuid.NewString(), domain.NoStream, pending(2))
	if err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeServer) {
		for range 200 { // more than one page of Head's backwards read
			f.writeSystem("$stats-127.0.0.1:2113", "$statsCollected")
		}
	})
	if h, err := s.Head(ctx); err != nil || h != recs[1].Position {
		t.Errorf("Head: %d, %v; want %d, the last event that is not KurrentDB's", h, err, recs[1].Position)
	}
}

func TestClosed(t *testing.T) {
	s := openFake(t, startFake(t))
	s.Close()
	if _, err := s.ReadStream(ctxFor(t), "conversation-x"); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadStream after Close: got %v, want ErrClosed", err)
	}
	if err := Follow(ctxFor(t), s, 0, func(domain.Recorded) error { return nil }, Backoff{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Follow after Close: got %v, want ErrClosed", err)
	}
}

// TestReadAllFromAnyPosition: KurrentDB refuses to read $all from a
// position inside a record; ReadAll reads after any number.
func TestReadAllFromAnyPosition(t *testing.T) {
	f := startFake(t)
	f.set(func(f *fakeServer) { f.systemEvents = true })
	s := openFake(t, f)
	ctx := ctxFor(t)
	var recs []domain.Recorded
	for range 3 {
		r, err := s.Append(ctx, "conversation-"+uuid.NewString(), domain.NoStream, pending(2))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r...)
	}
	if _, err := s.readAll(ctx, esdb.Forwards, allFrom(recs[2].Position-1), 1); !isInvalidPosition(err) {
		t.Fatalf("the fake reads $all from inside a record: %v", err)
	}
	tests := []struct {
		after uint64
		want  []domain.Recorded
	}{
		{1, recs},
		{recs[0].Position - 1, recs},
		{recs[2].Position - 1, recs[2:]},
		{recs[2].Position, recs[3:]},
		{recs[2].Position + 1, recs[3:]},
		{recs[5].Position + 1, nil},
		{1 << 60, nil},
	}
	for _, tt := range tests {
		got, err := s.ReadAll(ctx, tt.after, 100)
		if err != nil {
			t.Errorf("ReadAll(%d): %v", tt.after, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ReadAll(%d) = %v, want %v", tt.after, positions(got), positions(tt.want))
		}
	}
}
