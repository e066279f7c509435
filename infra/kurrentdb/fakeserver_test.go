package kurrentdb

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeServer stands in for a KurrentDB node in tests that cannot have one:
// it serves the Streams gRPC service of the client's own protos, so the
// adapter runs through the real client, its real wire format and its real
// error values. It models what the adapter relies on, as KurrentDB's source
// does it (KurrentDB.Core IndexWriter.CheckCommit, AllReader,
// ResolvedEvent.CalculatePosition):
//
//   - appends check the expected revision, and are idempotent when the
//     batch's ids are at the revisions after the expected one; at Any, when
//     its cache of ids (here: every id) holds them in the stream, in any
//     order. At the current revision a batch is written again, ids or not;
//   - each event is committed by itself: its commit and prepare positions
//     are the same byte offset, growing by the record's size;
//   - a read of $all forwards includes the event at its start position, a
//     subscription excludes it; a read backwards from a position excludes it;
//   - a read of a missing stream answers "stream not found";
//   - KurrentDB writes events of its own ("$" types and streams).
//
// It is not KurrentDB: what only a real server shows is left to the live
// suite (see TestContract).
type fakeServer struct {
	api.UnimplementedStreamsServer

	mu      sync.Mutex
	log     []*fakeEvent
	streams map[string][]*fakeEvent
	ids     map[uuid.UUID]*fakeEvent
	deleted map[string]bool
	next    uint64        // the next log position
	changed chan struct{} // closed and replaced by every write

	// Settings a test may change under mu.
	systemEvents    bool       // write a system event after each append
	noStreamPos     bool       // stream reads carry no position, as before EventStoreDB 22
	noSubscriptions bool       // subscriptions fail
	dropAfter       int        // a subscription fails after sending this many events; 0: never
	failNext        codes.Code // the next call fails with this status; codes.OK: none

	addr string
	srv  *grpc.Server
}

// fakeEvent is an event in the fake log.
type fakeEvent struct {
	stream      string
	number      uint64
	pos         uint64
	id          uuid.UUID
	typ         string
	contentType string
	data, meta  []byte
	created     time.Time
}

// startFake starts a fake server on a free loopback port and stops it when
// the test ends.
func startFake(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{
		streams: map[string][]*fakeEvent{},
		ids:     map[uuid.UUID]*fakeEvent{},
		deleted: map[string]bool{},
		next:    4096, // the log begins with records that are not events
		changed: make(chan struct{}),
	}
	f.writeSystem("$settings", "$settings")
	f.writeSystem("$$$scavenges", "$metadata")
	f.start(t, "127.0.0.1:0")
	t.Cleanup(f.stop)
	return f
}

func (f *fakeServer) start(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
	api.RegisterStreamsServer(srv, f)
	go srv.Serve(ln)
	f.mu.Lock()
	f.addr, f.srv = ln.Addr().String(), srv
	f.mu.Unlock()
}

// stop stops the server, cutting every call; the log stays for a restart.
func (f *fakeServer) stop() {
	f.mu.Lock()
	srv := f.srv
	f.mu.Unlock()
	srv.Stop()
}

// url is the connection string of the fake: insecure, and quick to give up
// when it is down.
func (f *fakeServer) url() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return "esdb://" + f.addr + "?tls=false&maxDiscoverAttempts=2&discoveryInterval=10&gossipTimeout=1"
}

// set changes the fake's settings under its lock.
func (f *fakeServer) set(change func(f *fakeServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// fault returns the failure a test asked for, once.
func (f *fakeServer) fault() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.failNext; c != codes.OK {
		f.failNext = codes.OK
		return status.Error(c, "fake failure")
	}
	return nil
}

// write appends an event to the log; f.mu is held.
func (f *fakeServer) write(stream string, id uuid.UUID, typ, contentType string, data, meta []byte) *fakeEvent {
	ev := &fakeEvent{
		stream: stream, number: uint64(len(f.streams[stream])), pos: f.next, id: id,
		typ: typ, contentType: contentType, data: data, meta: meta, created: time.Now(),
	}
	f.next += 96 + uint64(len(stream)+len(typ)+len(data)+len(meta)) // a prepare record's size, roughly
	f.log = append(f.log, ev)
	f.streams[stream] = append(f.streams[stream], ev)
	f.ids[id] = ev
	close(f.changed)
	f.changed = make(chan struct{})
	return ev
}

func (f *fakeServer) writeSystem(stream, typ string) {
	f.write(stream, uuid.New(), typ, "application/json", []byte(`{}`), nil)
}

// Expected revisions as KurrentDB numbers them.
const (
	expectAny    = -2
	expectNone   = -1
	expectExists = -4
)

// decision is the outcome of checkCommit.
type decision int

const (
	commitOK decision = iota
	commitIdempotent
	commitWrong
)

// checkCommit decides an append as KurrentDB's IndexWriter.CheckCommit
// does; f.mu is held. For an idempotent append it returns the revision of
// the batch's last event.
func (f *fakeServer) checkCommit(stream string, expected int64, ids []uuid.UUID) (decision, int64) {
	evs, exists := f.streams[stream]
	if !exists {
		if expected == expectAny || expected == expectNone {
			return commitOK, 0
		}
		return commitWrong, 0
	}
	cur := int64(len(evs)) - 1
	if expected == expectAny || expected == expectExists {
		var end int64
		for i, id := range ids {
			ev, ok := f.ids[id]
			if !ok || ev.stream != stream {
				if i == 0 {
					return commitOK, 0
				}
				return commitWrong, 0 // corrupted idempotency
			}
			end = int64(ev.number)
		}
		return commitIdempotent, end
	}
	if expected < cur {
		n := expected
		for _, id := range ids {
			n++
			if n <= cur && evs[n].id == id {
				continue
			}
			return commitWrong, 0 // on the first or a later event alike
		}
		return commitIdempotent, n
	}
	if expected > cur {
		return commitWrong, 0
	}
	return commitOK, 0
}

func (f *fakeServer) Append(srv api.Streams_AppendServer) error {
	req, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := req.GetOptions()
	stream := string(opts.GetStreamIdentifier().GetStreamName())
	var expected int64
	switch r := opts.GetExpectedStreamRevision().(type) {
	case *api.AppendReq_Options_Revision:
		expected = int64(r.Revision)
	case *api.AppendReq_Options_NoStream:
		expected = expectNone
	case *api.AppendReq_Options_Any:
		expected = expectAny
	case *api.AppendReq_Options_StreamExists:
		expected = expectExists
	}
	var msgs []*api.AppendReq_ProposedMessage
	for {
		req, err := srv.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, req.GetProposedMessage())
	}
	if err := f.fault(); err != nil { // as a server does: once it has the request
		return err
	}
	ids := make([]uuid.UUID, len(msgs))
	for i, m := range msgs {
		s := m.GetId().GetStructured()
		if ids[i], err = esdb.ParseUUIDFromInt64(s.GetMostSignificantBits(), s.GetLeastSignificantBits()); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleted[stream] {
		srv.SetTrailer(grpcmd.Pairs("exception", "stream-deleted", "stream-name", stream))
		return status.Error(codes.FailedPrecondition, "stream deleted")
	}
	d, end := f.checkCommit(stream, expected, ids)
	switch d {
	case commitWrong:
		wrong := &api.AppendResp_WrongExpectedVersion{}
		if evs := f.streams[stream]; len(evs) > 0 {
			wrong.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(len(evs) - 1)}
		} else {
			wrong.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		}
		if expected >= 0 {
			wrong.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: uint64(expected)}
		} else {
			wrong.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
		}
		return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: wrong}})
	case commitIdempotent:
		ev := f.streams[stream][end]
		return srv.SendAndClose(success(ev))
	}
	var last *fakeEvent
	for i, m := range msgs {
		last = f.write(stream, ids[i], m.GetMetadata()["type"], m.GetMetadata()["content-type"], m.GetData(), m.GetCustomMetadata())
	}
	if f.systemEvents {
		f.writeSystem("$stats-127.0.0.1:2113", "$statsCollected")
	}
	return srv.SendAndClose(success(last))
}

func success(last *fakeEvent) *api.AppendResp {
	return &api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: last.number},
		PositionOption: &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{
			CommitPosition: last.pos, PreparePosition: last.pos,
		}},
	}}}
}

func (f *fakeServer) Read(req *api.ReadReq, srv api.Streams_ReadServer) error {
	if err := f.fault(); err != nil {
		return err
	}
	o := req.GetOptions()
	if o.GetSubscription() != nil {
		return f.subscribe(o, srv)
	}
	backwards := o.GetReadDirection() == api.ReadReq_Options_Backwards
	count := o.GetCount()
	f.mu.Lock()
	var evs []*fakeEvent
	noPos := false
	if s := o.GetStream(); s != nil {
		name := string(s.GetStreamIdentifier().GetStreamName())
		all, exists := f.streams[name]
		deleted := f.deleted[name]
		noPos = f.noStreamPos
		f.mu.Unlock()
		switch {
		case deleted:
			srv.SetTrailer(grpcmd.Pairs("exception", "stream-deleted", "stream-name", name))
			return status.Error(codes.FailedPrecondition, "stream deleted")
		case !exists:
			return srv.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{
				StreamNotFound: &api.ReadResp_StreamNotFound{StreamIdentifier: s.GetStreamIdentifier()},
			}})
		}
		var from int
		switch {
		case s.GetEnd() != nil:
			from = len(all) - 1
			if !backwards {
				from = len(all)
			}
		case s.GetStart() != nil:
			from = 0
		default:
			from = int(min(s.GetRevision(), uint64(len(all))))
		}
		evs = walk(all, from, backwards)
	} else {
		all := f.log
		f.mu.Unlock()
		a := o.GetAll()
		var start int
		switch {
		case a.GetStart() != nil:
			start = 0
			if backwards {
				start = -1
			}
		case a.GetEnd() != nil:
			start = len(all)
			if backwards {
				start = len(all) - 1
			}
		default:
			p := a.GetPosition().GetCommitPosition()
			if !f.boundary(p) {
				return errInvalidPosition
			}
			start = len(all)
			for i, ev := range all {
				if ev.pos >= p {
					start = i
					break
				}
			}
			if backwards {
				start-- // a read backwards excludes its start
			}
		}
		evs = walk(all, start, backwards)
	}
	for i, ev := range evs {
		if uint64(i) >= count {
			break
		}
		if err := srv.Send(readEvent(ev, noPos)); err != nil {
			return err
		}
	}
	return nil
}

// errInvalidPosition is KurrentDB's answer to a read of $all from a
// position in the middle of a record (RpcExceptions.InvalidPositionException).
var errInvalidPosition = status.Error(codes.InvalidArgument, "Trying to read from an invalid position.")

// boundary reports whether a read of $all may start at p: the position of
// a record, or the end of the log.
func (f *fakeServer) boundary(p uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boundaryLocked(p)
}

func (f *fakeServer) boundaryLocked(p uint64) bool {
	if p == f.next {
		return true
	}
	for _, ev := range f.log {
		if ev.pos == p {
			return true
		}
	}
	return false
}

// walk returns the events of evs from index i on, forwards or backwards.
func walk(evs []*fakeEvent, i int, backwards bool) []*fakeEvent {
	step := 1
	if backwards {
		step = -1
	}
	var out []*fakeEvent
	for ; i >= 0 && i < len(evs); i += step {
		out = append(out, evs[i])
	}
	return out
}

// subscribe serves a catch-up subscription to $all.
func (f *fakeServer) subscribe(o *api.ReadReq_Options, srv api.Streams_ReadServer) error {
	f.mu.Lock()
	refuse, dropAfter := f.noSubscriptions, f.dropAfter
	f.mu.Unlock()
	if refuse || o.GetAll() == nil {
		return status.Error(codes.Unimplemented, "fake: no subscriptions")
	}
	keep := func(*fakeEvent) bool { return true }
	if fo := o.GetFilter(); fo != nil {
		expr, onType := fo.GetEventType(), true
		if expr == nil {
			expr, onType = fo.GetStreamIdentifier(), false
		}
		re := regexp.MustCompile(expr.GetRegex())
		keep = func(ev *fakeEvent) bool {
			s := ev.stream
			if onType {
				s = ev.typ
			}
			if expr.GetRegex() != "" {
				return re.MatchString(s)
			}
			for _, p := range expr.GetPrefix() {
				if strings.HasPrefix(s, p) {
					return true
				}
			}
			return false
		}
	}
	if err := srv.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{
		Confirmation: &api.ReadResp_SubscriptionConfirmation{SubscriptionId: "fake"},
	}}); err != nil {
		return err
	}
	a := o.GetAll()
	f.mu.Lock()
	next := 0 // index in f.log of the next event to consider
	switch {
	case a.GetEnd() != nil:
		next = len(f.log)
	case a.GetPosition() != nil:
		p := a.GetPosition().GetCommitPosition()
		if !f.boundaryLocked(p) {
			f.mu.Unlock()
			return errInvalidPosition
		}
		next = len(f.log)
		for i, ev := range f.log {
			if ev.pos > p { // a subscription excludes its start
				next = i
				break
			}
		}
	}
	f.mu.Unlock()
	sent, caughtUp := 0, false
	for {
		f.mu.Lock()
		pending, changed := f.log[next:], f.changed
		f.mu.Unlock()
		next += len(pending)
		for _, ev := range pending {
			if !keep(ev) {
				continue
			}
			if err := srv.Send(readEvent(ev, false)); err != nil {
				return err
			}
			if sent++; dropAfter > 0 && sent >= dropAfter {
				return status.Error(codes.Unavailable, "fake: subscription dropped")
			}
		}
		if !caughtUp {
			caughtUp = true
			if err := srv.Send(&api.ReadResp{Content: &api.ReadResp_CaughtUp_{CaughtUp: &api.ReadResp_CaughtUp{}}}); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-srv.Context().Done():
			return status.FromContextError(srv.Context().Err()).Err()
		}
	}
}

// readEvent is ev as a read or a subscription sends it. noPos leaves out
// its log position (math.MaxUint64 on the wire), as servers before
// EventStoreDB 22 did in stream reads.
func readEvent(ev *fakeEvent, noPos bool) *api.ReadResp {
	most, least := esdb.UUIDAsInt64(ev.id)
	pos := ev.pos
	if noPos {
		pos = ^uint64(0)
	}
	re := &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id: &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
				MostSignificantBits: most, LeastSignificantBits: least,
			}}},
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(ev.stream)},
			StreamRevision:   ev.number,
			PreparePosition:  pos,
			CommitPosition:   pos,
			Metadata: map[string]string{
				"type":         ev.typ,
				"content-type": ev.contentType,
				"created":      strconv.FormatInt(ev.created.UnixNano()/100, 10), // .NET ticks since the Unix epoch
			},
			CustomMetadata: ev.meta,
			Data:           ev.data,
		},
	}
	if noPos {
		re.Position = &api.ReadResp_ReadEvent_NoPosition{NoPosition: &shared.Empty{}}
	} else {
		re.Position = &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: ev.pos}
	}
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: re}}
}

// openFake opens a Store on f and closes it when the test ends.
func openFake(t *testing.T, f *fakeServer) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, f.url())
	if err != nil {
		t.Fatalf("Open(%s): %v", f.url(), err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// String describes an event for test failures.
func (ev *fakeEvent) String() string {
	return fmt.Sprintf("%s@%d at %d (%s)", ev.stream, ev.number, ev.pos, ev.typ)
}
