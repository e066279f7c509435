// Package storetest is the contract every event store adapter passes:
// SQLite, PostgreSQL and KurrentDB run the same Run from their tests.
//
// The suite tolerates a store that already holds events, or that other
// subtests of the suite share: it uses fresh stream names and measures the
// global log from its head before each check.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/infra/codec"
	"github.com/helpdesk/messenger/projections"
)

// Store is an event store as the whole program uses it: the write side's
// port, the projections' log, and the head of the log.
type Store interface {
	commands.EventStore
	projections.Log
	// Head returns the highest position in the log, 0 when it is empty.
	Head(ctx context.Context) (uint64, error)
}

// Options describe what a store cannot promise; the zero value promises all.
type Options struct {
	// IDsPerStream: event ids are unique within a stream only. A store
	// without an index of ids across streams (KurrentDB) does not notice an
	// id reused in another stream; retries, which go to the same stream, are
	// still idempotent.
	IDsPerStream bool
	// NoTail: the store keeps none of its appends in memory (KurrentDB),
	// so Wait asks the server even for what the store itself appended.
	NoTail bool
}

// Run runs the contract suite. open returns a store for one subtest; it
// registers its own clean-up with t.Cleanup. Stores may keep their data
// between calls.
func Run(t *testing.T, open func(t *testing.T) Store) { RunWith(t, open, Options{}) }

// RunWith runs the contract suite for a store that cannot promise what opts say.
func RunWith(t *testing.T, open func(t *testing.T) Store, opts Options) {
	idsPerStream, noTail = opts.IDsPerStream, opts.NoTail
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"AppendNoStreamToNewStream", testAppendNoStreamToNewStream},
		{"AppendNoStreamToExistingStreamConflicts", testAppendNoStreamToExistingStreamConflicts},
		{"AppendExactVersion", testAppendExactVersion},
		{"AppendAnyVersion", testAppendAnyVersion},
		{"AppendInvalid", testAppendInvalid},
		{"AppendCancelled", testAppendCancelled},
		{"ReadStreamMissing", testReadStreamMissing},
		{"ReadAllOrderAfterLimit", testReadAllOrderAfterLimit},
		{"ReadAllRefusesNoLimit", testReadAllRefusesNoLimit},
		{"PositionsIncrease", testPositionsIncrease},
		{"RoundTripEveryEventType", testRoundTripEveryEventType},
		{"IdempotentAppend", testIdempotentAppend},
		{"IdempotentAppendConflicts", testIdempotentAppendConflicts},
		{"Wait", testWait},
		{"WaitCancelled", testWaitCancelled},
		{"WaitAnswersFromOwnAppends", testWaitAnswersFromOwnAppends},
		{"ConcurrentAppendsToOneStream", testConcurrentAppendsToOneStream},
		{"FollowerSeesEveryEventOnce", testFollowerSeesEveryEventOnce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// idsPerStream and noTail are the Options of the suite running.
var idsPerStream, noTail bool

// at is the time of the suite's events: whole milliseconds, which every
// store keeps exactly.
var at = time.Date(2025, 6, 1, 12, 30, 45, 678_000_000, time.UTC)

var actor = domain.Actor{Kind: domain.ActorUser, ID: "u-storetest"}

// newStream returns a stream name no other test uses.
func newStream(prefix string) string { return prefix + "-" + uuid.NewString() }

// posted returns n events of MessagePosted with fresh ids.
func posted(n int) []domain.Pending {
	evs := make([]domain.Pending, n)
	for i := range evs {
		id := uuid.NewString()
		evs[i] = domain.Pending{EventID: id, Event: conversation.MessagePosted{
			Meta: domain.Meta{At: at.Add(time.Duration(i) * time.Millisecond), Actor: actor}, MessageID: "m-" + id, Body: fmt.Sprintf("message %d", i),
		}}
	}
	return evs
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s Store, stream string, expected int64, evs []domain.Pending) []domain.Recorded {
	t.Helper()
	recs, err := s.Append(ctxFor(t, 10*time.Second), stream, expected, evs)
	if err != nil {
		t.Fatalf("Append(%s, %d, %d events): %v", stream, expected, len(evs), err)
	}
	if len(recs) != len(evs) {
		t.Fatalf("Append(%s): got %d records, want %d", stream, len(recs), len(evs))
	}
	return recs
}

func mustReadStream(t *testing.T, s Store, stream string) []domain.Recorded {
	t.Helper()
	recs, err := s.ReadStream(ctxFor(t, 10*time.Second), stream)
	if err != nil {
		t.Fatalf("ReadStream(%s): %v", stream, err)
	}
	return recs
}

func mustHead(t *testing.T, s Store) uint64 {
	t.Helper()
	h, err := s.Head(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

// checkRecords checks that recs are evs appended to stream from version
// first, with increasing positions.
func checkRecords(t *testing.T, recs []domain.Recorded, stream string, first int64, evs []domain.Pending) {
	t.Helper()
	if len(recs) != len(evs) {
		t.Fatalf("got %d records, want %d", len(recs), len(evs))
	}
	for i, r := range recs {
		want := evs[i].Event
		if r.Stream != stream || r.Version != first+int64(i) || r.EventID != evs[i].EventID || r.Type != want.EventType() {
			t.Errorf("record %d: got %s v%d %s %s, want %s v%d %s %s", i, r.Stream, r.Version, r.EventID, r.Type,
				stream, first+int64(i), evs[i].EventID, want.EventType())
		}
		if r.Position == 0 || (i > 0 && r.Position <= recs[i-1].Position) {
			t.Errorf("record %d: position %d after %d, want it higher", i, r.Position, recs[max(i-1, 0)].Position)
		}
		if r.Schema < 1 || len(r.Data) == 0 {
			t.Errorf("record %d: schema %d, data %q: want both set", i, r.Schema, r.Data)
		}
		if !r.At.Equal(want.EventMeta().At) || r.Actor != want.EventMeta().Actor {
			t.Errorf("record %d: got at %v by %v, want %v by %v", i, r.At, r.Actor, want.EventMeta().At, want.EventMeta().Actor)
		}
		if !reflect.DeepEqual(r.Event, want) {
			t.Errorf("record %d: got event %#v, want %#v", i, r.Event, want)
		}
	}
}

// checkRecordsEqual checks that got are the records want, field by field.
func checkRecordsEqual(t *testing.T, what string, got, want []domain.Recorded) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: record %d:\n got %+v\nwant %+v", what, i, got[i], want[i])
		}
	}
}

func checkConflict(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, commands.ErrConflict) {
		t.Errorf("got error %v, want one wrapping commands.ErrConflict", err)
	}
}

func testAppendNoStreamToNewStream(t *testing.T, s Store) {
	stream := newStream("conversation")
	evs := posted(3)
	recs := mustAppend(t, s, stream, domain.NoStream, evs)
	checkRecords(t, recs, stream, 1, evs)
	checkRecordsEqual(t, "ReadStream after Append", mustReadStream(t, s, stream), recs)
	if h := mustHead(t, s); h != recs[2].Position {
		t.Errorf("Head = %d, want the last position appended, %d", h, recs[2].Position)
	}
}

func testAppendNoStreamToExistingStreamConflicts(t *testing.T, s Store) {
	stream := newStream("conversation")
	recs := mustAppend(t, s, stream, domain.NoStream, posted(1))
	head := mustHead(t, s)
	_, err := s.Append(ctxFor(t, 10*time.Second), stream, domain.NoStream, posted(1))
	checkConflict(t, err)
	checkRecordsEqual(t, "stream after the conflict", mustReadStream(t, s, stream), recs)
	if h := mustHead(t, s); h != head {
		t.Errorf("Head after a conflict = %d, want %d", h, head)
	}
}

func testAppendExactVersion(t *testing.T, s Store) {
	tests := []struct {
		name     string
		existing int   // events in the stream before
		expected int64 // the append's expected version
		conflict bool
	}{
		{"at version 1", 1, 1, false},
		{"at version 3", 3, 3, false},
		{"behind", 3, 2, true},
		{"ahead", 1, 2, true},
		{"missing stream", 0, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := newStream("item")
			var before []domain.Recorded
			if tt.existing > 0 {
				before = mustAppend(t, s, stream, domain.NoStream, posted(tt.existing))
			}
			head := mustHead(t, s)
			evs := posted(2)
			recs, err := s.Append(ctxFor(t, 10*time.Second), stream, tt.expected, evs)
			if tt.conflict {
				checkConflict(t, err)
				checkRecordsEqual(t, "stream after the conflict", mustReadStream(t, s, stream), before)
				if h := mustHead(t, s); h != head {
					t.Errorf("Head after a conflict = %d, want %d", h, head)
				}
				return
			}
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			checkRecords(t, recs, stream, int64(tt.existing)+1, evs)
			checkRecordsEqual(t, "ReadStream", mustReadStream(t, s, stream), append(before, recs...))
		})
	}
}

func testAppendAnyVersion(t *testing.T, s Store) {
	stream := newStream("helpdesk")
	first := posted(2)
	recs1 := mustAppend(t, s, stream, domain.AnyVersion, first)
	checkRecords(t, recs1, stream, 1, first)
	second := posted(1)
	recs2 := mustAppend(t, s, stream, domain.AnyVersion, second)
	checkRecords(t, recs2, stream, 3, second)
	checkRecordsEqual(t, "ReadStream", mustReadStream(t, s, stream), append(recs1, recs2...))
}

func testAppendInvalid(t *testing.T, s Store) {
	stream := newStream("conversation")
	mustAppend(t, s, stream, domain.NoStream, posted(1))
	head := mustHead(t, s)
	// with returns one fresh event changed by f.
	with := func(f func(p *domain.Pending, m *conversation.MessagePosted)) []domain.Pending {
		p := posted(1)[0]
		m := p.Event.(conversation.MessagePosted)
		f(&p, &m)
		if p.Event != nil {
			p.Event = m
		}
		return []domain.Pending{p}
	}
	twice := posted(2)
	twice[1].EventID = twice[0].EventID
	tests := []struct {
		name     string
		stream   string
		expected int64
		evs      []domain.Pending
	}{
		{"no events", stream, domain.AnyVersion, nil},
		{"an empty stream name", "", domain.AnyVersion, posted(1)},
		{"a stream name with NUL", "conversation-\x00", domain.AnyVersion, posted(1)},
		{"a stream name not UTF-8", "conversation-\xff", domain.AnyVersion, posted(1)},
		{"an expected version below AnyVersion", stream, domain.AnyVersion - 1, posted(1)},
		{"an empty event id", stream, domain.AnyVersion, with(func(p *domain.Pending, _ *conversation.MessagePosted) { p.EventID = "" })},
		{"an event id not UTF-8", stream, domain.AnyVersion, with(func(p *domain.Pending, _ *conversation.MessagePosted) { p.EventID = "id-\xc3" })},
		{"an event id twice", stream, domain.AnyVersion, twice},
		{"a nil event", stream, domain.AnyVersion, with(func(p *domain.Pending, _ *conversation.MessagePosted) { p.Event = nil })},
		{"an actor with NUL", stream, domain.AnyVersion, with(func(_ *domain.Pending, m *conversation.MessagePosted) { m.Actor.ID = "u\x00" })},
		{"a time in year 10000", stream, domain.AnyVersion, with(func(_ *domain.Pending, m *conversation.MessagePosted) {
			m.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		})},
		{"a time in year 0", stream, domain.AnyVersion, with(func(_ *domain.Pending, m *conversation.MessagePosted) {
			m.At = time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC)
		})},
		{"a body not UTF-8", stream, domain.AnyVersion, with(func(_ *domain.Pending, m *conversation.MessagePosted) { m.Body = "caf\xe9" })},
		{"an event by pointer", stream, domain.AnyVersion, []domain.Pending{{EventID: uuid.NewString(), Event: &conversation.Closed{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Append(ctxFor(t, 10*time.Second), tt.stream, tt.expected, tt.evs)
			if err == nil {
				t.Fatal("got no error")
			}
			if errors.Is(err, commands.ErrConflict) {
				t.Errorf("got %v, want an error that is not a conflict", err)
			}
			if h := mustHead(t, s); h != head {
				t.Errorf("Head = %d, want %d", h, head)
			}
		})
	}
	if got := mustReadStream(t, s, stream); len(got) != 1 {
		t.Errorf("the stream holds %d events, want 1", len(got))
	}
}

// testAppendCancelled: an append whose context has ended appends nothing
// and says why.
func testAppendCancelled(t *testing.T, s Store) {
	head := mustHead(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stream := newStream("conversation")
	if _, err := s.Append(ctx, stream, domain.NoStream, posted(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context: got %v, want context.Canceled", err)
	}
	if h := mustHead(t, s); h != head {
		t.Errorf("Head = %d, want %d", h, head)
	}
	if got := mustReadStream(t, s, stream); len(got) != 0 {
		t.Errorf("the stream holds %d events, want none", len(got))
	}
}

func testReadAllRefusesNoLimit(t *testing.T, s Store) {
	for _, limit := range []int{0, -1} {
		if _, err := s.ReadAll(ctxFor(t, 10*time.Second), 0, limit); err == nil {
			t.Errorf("ReadAll(0, %d): got no error", limit)
		}
	}
}

func testReadStreamMissing(t *testing.T, s Store) {
	if recs := mustReadStream(t, s, newStream("conversation")); len(recs) != 0 {
		t.Errorf("ReadStream of a missing stream: got %d records, want none", len(recs))
	}
}

func testReadAllOrderAfterLimit(t *testing.T, s Store) {
	head := mustHead(t, s)
	streams := []string{newStream("a"), newStream("b"), newStream("c")}
	var want []domain.Recorded
	for round := range 3 {
		for _, stream := range streams {
			// Round r appends r+1 events, after 0+1+…+r of them.
			want = append(want, mustAppend(t, s, stream, int64(round*(round+1)/2), posted(round+1))...)
		}
	}
	ctx := ctxFor(t, 10*time.Second)
	tests := []struct {
		name  string
		after uint64
		limit int
		want  []domain.Recorded
	}{
		{"everything", head, len(want) + 10, want},
		{"limit", head, 4, want[:4]},
		{"after", want[4].Position, len(want), want[5:]},
		{"after and limit", want[0].Position, 2, want[1:3]},
		{"after the last", want[len(want)-1].Position, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ReadAll(ctx, tt.after, tt.limit)
			if err != nil {
				t.Fatalf("ReadAll(%d, %d): %v", tt.after, tt.limit, err)
			}
			checkRecordsEqual(t, fmt.Sprintf("ReadAll(%d, %d)", tt.after, tt.limit), got, tt.want)
		})
	}
}

func testPositionsIncrease(t *testing.T, s Store) {
	var last uint64
	for i := range 10 {
		stream := newStream("p")
		for _, r := range mustAppend(t, s, stream, domain.NoStream, posted(1+i%3)) {
			if r.Position <= last {
				t.Fatalf("append %d: position %d after %d, want it higher", i, r.Position, last)
			}
			last = r.Position
		}
	}
	if h := mustHead(t, s); h != last {
		t.Errorf("Head = %d, want %d", h, last)
	}
}

// Examples returns one event of every registered type (codec.Events), with
// every field set to a non-zero value and the suite's metadata. Times are
// whole milliseconds, UTC.
func Examples(t *testing.T) []domain.Event {
	t.Helper()
	zeros := codec.Events()
	evs := make([]domain.Event, len(zeros))
	for i, z := range zeros {
		evs[i] = fill(t, z, i)
	}
	return evs
}

// fill returns a copy of zero with every field set: metadata to the suite's,
// the others from the field's name and n.
func fill(t *testing.T, zero domain.Event, n int) domain.Event {
	t.Helper()
	v := reflect.New(reflect.TypeOf(zero)).Elem()
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		switch {
		case sf.Type == reflect.TypeFor[domain.Meta]():
			f.Set(reflect.ValueOf(domain.Meta{At: at.Add(time.Duration(n) * time.Millisecond), Actor: actor}))
		case sf.Type == reflect.TypeFor[time.Time]():
			f.Set(reflect.ValueOf(at.Add(time.Duration(n) * time.Hour)))
		case f.Kind() == reflect.String:
			f.SetString(fmt.Sprintf("%s %d «é» \"q\"\n", sf.Name, n))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.CanInt():
			f.SetInt(int64(40 + n))
		case f.CanUint():
			f.SetUint(uint64(40 + n))
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			s := reflect.MakeSlice(f.Type(), 2, 2)
			s.Index(0).SetString(fmt.Sprintf("%s-a-%d", sf.Name, n))
			s.Index(1).SetString(fmt.Sprintf("%s-b-%d", sf.Name, n))
			f.Set(s)
		default:
			t.Fatalf("%T.%s: the suite cannot fill a %s; extend fill", zero, sf.Name, sf.Type)
		}
	}
	return v.Interface().(domain.Event)
}

func testRoundTripEveryEventType(t *testing.T, s Store) {
	examples := Examples(t)
	stream := newStream("roundtrip")
	evs := make([]domain.Pending, len(examples))
	types := make(map[string]bool)
	for i, e := range examples {
		evs[i] = domain.Pending{EventID: uuid.NewString(), Event: e}
		types[e.EventType()] = true
	}
	if len(types) != len(examples) {
		t.Fatalf("%d examples of %d types, want one of each", len(examples), len(types))
	}
	recs := mustAppend(t, s, stream, domain.NoStream, evs)
	checkRecords(t, recs, stream, 1, evs)
	read := mustReadStream(t, s, stream)
	checkRecords(t, read, stream, 1, evs)
	checkRecordsEqual(t, "ReadStream", read, recs)
	all, err := s.ReadAll(ctxFor(t, 10*time.Second), recs[0].Position-1, len(recs))
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	checkRecordsEqual(t, "ReadAll", all, recs)
}

func testIdempotentAppend(t *testing.T, s Store) {
	stream := newStream("conversation")
	evs := posted(3)
	recs := mustAppend(t, s, stream, domain.NoStream, evs)
	more := mustAppend(t, s, stream, 3, posted(1))
	head := mustHead(t, s)
	tests := []struct {
		name     string
		expected int64
		evs      []domain.Pending
		want     []domain.Recorded
	}{
		{"same expected version", domain.NoStream, evs, recs},
		{"any version", domain.AnyVersion, evs, recs},
		{"a stale exact version", 1, evs, recs},
		{"the current version", 4, evs, recs},
		{"the last two", 1, evs[1:], recs[1:]},
		{"the first one", domain.NoStream, evs[:1], recs[:1]},
		{"the last batch", 3, []domain.Pending{{EventID: more[0].EventID, Event: more[0].Event}}, more},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Append(ctxFor(t, 10*time.Second), stream, tt.expected, tt.evs)
			if err != nil {
				t.Fatalf("Append again: %v", err)
			}
			checkRecordsEqual(t, "Append again", got, tt.want)
			if h := mustHead(t, s); h != head {
				t.Errorf("Head after appending again = %d, want %d", h, head)
			}
		})
	}
	checkRecordsEqual(t, "ReadStream", mustReadStream(t, s, stream), append(recs, more...))
}

func testIdempotentAppendConflicts(t *testing.T, s Store) {
	stream := newStream("conversation")
	evs := posted(3)
	recs := mustAppend(t, s, stream, domain.NoStream, evs)
	other := newStream("conversation")
	fresh := posted(1)
	tests := []struct {
		name   string
		stream string
		evs    []domain.Pending
	}{
		{"stored, then new", stream, []domain.Pending{evs[2], fresh[0]}},
		{"new, then stored", stream, []domain.Pending{fresh[0], evs[0]}},
		{"out of order", stream, []domain.Pending{evs[1], evs[0]}},
		{"with a gap", stream, []domain.Pending{evs[0], evs[2]}},
		{"in another stream", other, evs[:1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stream == other && idsPerStream {
				t.Skip("the store keeps event ids unique within a stream only (Options.IDsPerStream)")
			}
			head := mustHead(t, s)
			_, err := s.Append(ctxFor(t, 10*time.Second), tt.stream, domain.AnyVersion, tt.evs)
			checkConflict(t, err)
			if h := mustHead(t, s); h != head {
				t.Errorf("Head after a conflict = %d, want %d", h, head)
			}
		})
	}
	checkRecordsEqual(t, "ReadStream", mustReadStream(t, s, stream), recs)
	if got := mustReadStream(t, s, other); len(got) != 0 {
		t.Errorf("the other stream holds %d events, want none", len(got))
	}
}

func testWait(t *testing.T, s Store) {
	head := mustHead(t, s)
	ctx := ctxFor(t, 5*time.Second)
	if head > 0 {
		if err := s.Wait(ctx, head-1); err != nil {
			t.Fatalf("Wait below the head: %v", err)
		}
	}
	stream := newStream("wait")
	appended := make(chan []domain.Recorded, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		recs, err := s.Append(ctx, stream, domain.NoStream, posted(1))
		if err != nil {
			t.Errorf("Append: %v", err)
		}
		appended <- recs
	}()
	start := time.Now()
	if err := s.Wait(ctx, head); err != nil {
		t.Fatalf("Wait(%d) while another goroutine appends: %v", head, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Wait returned %v after the append began, want promptly", d)
	}
	recs := <-appended
	if h := mustHead(t, s); h <= head || (len(recs) == 1 && h < recs[0].Position) {
		t.Errorf("Head after Wait = %d, want above %d", h, head)
	}
	// Now the log is above head, Wait returns at once.
	if err := s.Wait(ctx, head); err != nil {
		t.Errorf("Wait below the head: %v", err)
	}
}

// testWaitAnswersFromOwnAppends: an event the store itself committed is
// in its memory, so Wait reports it without asking the database (the live
// projector's wake-up after each append): with a context already done, it
// still does; at the head, it asks, and fails.
func testWaitAnswersFromOwnAppends(t *testing.T, s Store) {
	if noTail {
		t.Skip("the store keeps no appends in memory")
	}
	recs := mustAppend(t, s, newStream("tail"), domain.NoStream, posted(1))
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Wait(done, recs[0].Position-1); err != nil {
		t.Fatalf("Wait below its own append, with a done context: %v", err)
	}
	if err := s.Wait(done, recs[0].Position); err == nil {
		t.Fatal("Wait at the head with a done context: nil")
	}
}

func testWaitCancelled(t *testing.T, s Store) {
	head := mustHead(t, s)
	tests := []struct {
		name string
		ctx  func(t *testing.T) context.Context
		want error
	}{
		{"cancelled", func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx
		}, context.Canceled},
		{"deadline", func(t *testing.T) context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := s.Wait(tt.ctx(t), head)
			if !errors.Is(err, tt.want) {
				t.Errorf("Wait: got %v, want %v", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Wait returned %v after the cancel, want promptly", d)
			}
		})
	}
}

func testConcurrentAppendsToOneStream(t *testing.T, s Store) {
	const writers, each = 16, 4
	stream := newStream("race")
	ctx := ctxFor(t, 30*time.Second)
	var mu sync.Mutex
	acked := make(map[string]int64) // event id → version Append returned
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < each; {
				recs, err := s.ReadStream(ctx, stream)
				if err != nil {
					t.Errorf("writer %d: ReadStream: %v", w, err)
					return
				}
				got, err := s.Append(ctx, stream, int64(len(recs)), posted(1))
				if errors.Is(err, commands.ErrConflict) {
					continue
				}
				if err != nil {
					t.Errorf("writer %d: Append: %v", w, err)
					return
				}
				mu.Lock()
				acked[got[0].EventID] = got[0].Version
				mu.Unlock()
				i++
			}
		})
	}
	wg.Wait()
	recs := mustReadStream(t, s, stream)
	if len(recs) != writers*each || len(acked) != writers*each {
		t.Fatalf("got %d events in the stream and %d acknowledged, want %d", len(recs), len(acked), writers*each)
	}
	for i, r := range recs {
		if r.Version != int64(i+1) {
			t.Errorf("event %d: version %d, want %d", i, r.Version, i+1)
		}
		if v, ok := acked[r.EventID]; !ok || v != r.Version {
			t.Errorf("event %s at version %d: acknowledged %t at version %d", r.EventID, r.Version, ok, v)
		}
	}
}

func testFollowerSeesEveryEventOnce(t *testing.T, s Store) {
	const writers, each = 32, 50
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	head := mustHead(t, s)
	prefix := newStream("follow")
	type seen struct {
		stream  string
		version int64
	}
	got := make(map[string]seen) // by event id
	followed := make(chan error, 1)
	go func() {
		followed <- func() error {
			checkpoint := head
			versions := make(map[string]int64)
			for len(got) < writers*each {
				recs, err := s.ReadAll(ctx, checkpoint, 100)
				if err != nil {
					return fmt.Errorf("ReadAll(%d): %w", checkpoint, err)
				}
				if len(recs) == 0 {
					if err := s.Wait(ctx, checkpoint); err != nil {
						return fmt.Errorf("Wait(%d) with %d of %d events seen: %w", checkpoint, len(got), writers*each, err)
					}
					continue
				}
				for _, r := range recs {
					if r.Position <= checkpoint {
						return fmt.Errorf("position %d after %d", r.Position, checkpoint)
					}
					checkpoint = r.Position
					if len(r.Stream) < len(prefix) || r.Stream[:len(prefix)] != prefix {
						continue // another test's
					}
					if _, dup := got[r.EventID]; dup {
						return fmt.Errorf("event %s seen twice", r.EventID)
					}
					if want := versions[r.Stream] + 1; r.Version != want {
						return fmt.Errorf("%s: version %d after %d", r.Stream, r.Version, want-1)
					}
					versions[r.Stream] = r.Version
					got[r.EventID] = seen{r.Stream, r.Version}
				}
			}
			return nil
		}()
	}()

	want := make(map[string]seen)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			stream := fmt.Sprintf("%s-%d", prefix, w)
			for i := range each {
				evs := posted(1)
				recs, err := s.Append(ctx, stream, int64(i), evs)
				if err != nil {
					t.Errorf("Append(%s, %d): %v", stream, i, err)
					return
				}
				mu.Lock()
				want[recs[0].EventID] = seen{stream, recs[0].Version}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		cancel() // the follower would wait for events never appended
	}
	if err := <-followed; err != nil {
		t.Fatalf("follower: %v", err)
	}
	if len(got) != len(want) {
		t.Errorf("follower saw %d events, want %d", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("event %s: follower saw %+v, want %+v", id, got[id], w)
		}
	}
}

// InstallationID checks the random id a log's database names itself with
// (postgres.DB.Installation, sqlite.DB.Installation): made once, the same
// at every opening of one database, another for another. newPlace makes a
// database and returns where it is; id opens the one at place and returns
// its id.
func InstallationID(t *testing.T, newPlace func(t *testing.T) string, id func(place string) (string, error)) {
	t.Helper()
	mustID := func(place string) string {
		t.Helper()
		got, err := id(place)
		if err != nil || len(got) != 32 {
			t.Fatalf("installation id %q (%v)", got, err)
		}
		return got
	}
	place := newPlace(t)
	first := mustID(place)
	if again := mustID(place); again != first {
		t.Errorf("reopened: %s, was %s", again, first)
	}
	if other := mustID(newPlace(t)); other == first {
		t.Errorf("two databases share the id %s", first)
	}
}
