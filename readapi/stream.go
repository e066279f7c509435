package readapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/infra/httpkit"
	"github.com/helpdesk/messenger/projections"
)

// StreamConfig tunes Streams; its zero value works.
type StreamConfig struct {
	// Heartbeat is the interval of the ": ping" comment (default 15s).
	Heartbeat time.Duration
	// MaxReplay is how many log events a resuming stream may replay at most;
	// a token further behind gets "event: reset" (default 10000).
	MaxReplay int
	// WriteTimeout is how long writing one event to a client may take (or
	// up to 64 kB of events queued together); a client that reads nothing
	// for that long is cut off, at most a 64th of it later (default 1 min).
	WriteTimeout time.Duration
}

// replayPage is how many log events a resume reads at a time.
const replayPage = 500

// Streams serves the Server-Sent Events of agents (Agent) and of the widget
// (Widget). Every event's id is the log position of the event that caused
// it, a resume token: a client reconnecting with it gets what it missed,
// replayed from the log, then the live changes of the hub, none twice.
//
// What a change looks like is read from the read models once for all the
// streams of the process (see renderings); each stream then only decides,
// in memory, what its principal may see of it and writes bytes.
type Streams struct {
	rm       *projections.ReadModels
	log      Log
	progress Progress
	hub      *Hub
	cfg      StreamConfig
	shared   *renderings
	routes   *routing // of the staff streams routed (see route)
	watch    *writeWatch

	clients atomic.Int64

	// ctx ends, through stop, the streams taken from net/http; running
	// counts their goroutines (not a WaitGroup: a request in flight may
	// start one while Wait waits).
	ctx     context.Context
	stop    context.CancelFunc
	running gang
}

// gang counts goroutines, and tells when none is left.
type gang struct {
	mu   sync.Mutex
	n    int
	none chan struct{} // closed while n is 0
}

func (g *gang) add(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 {
		g.none = make(chan struct{})
	}
	g.n += n
}

func (g *gang) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 {
		close(g.none)
	}
}

// wait returns once none is left, or with ctx's error.
func (g *gang) wait(ctx context.Context) error {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return nil
	}
	none := g.none
	g.mu.Unlock()
	select {
	case <-none:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewStreams returns the stream handlers over the read models rm, the log,
// the read models' progress and the hub of live changes.
func NewStreams(rm *projections.ReadModels, log Log, progress Progress, hub *Hub, cfg StreamConfig) *Streams {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.MaxReplay <= 0 {
		cfg.MaxReplay = 10000
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	s := &Streams{rm: rm, log: log, progress: progress, hub: hub, cfg: cfg, routes: newRouting(), watch: newWriteWatch(cfg.WriteTimeout)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.shared = newRenderings(rm, func() uint64 { return max(hub.Head(), progress.Applied()) })
	return s
}

// Deliver hands a batch of changes of the projector to the hub, once what
// they look like has been read for all the streams together.
func (s *Streams) Deliver(changes []projections.Change) {
	if s.hub.Subscribers() > 0 {
		s.shared.prefetch(context.Background(), changes)
	}
	s.hub.DeliverRouted(changes, s.route)
}

// Clients returns how many streams are open.
func (s *Streams) Clients() int { return int(s.clients.Load()) }

// Agent serves GET /v1/stream, the stream of staff; others get 403.
func (s *Streams) Agent(c *gin.Context) { s.serve(c, false) }

// Widget serves GET /v1/widget/stream, the stream of customers; others get 403.
func (s *Streams) Widget(c *gin.Context) { s.serve(c, true) }

// The SSE event names.
const (
	eventReset    = "reset"
	eventUnread   = "unread.changed"
	eventHelpdesk = "helpdesk.status_changed"
)

// convSet is a set of conversations.
type convSet map[unique.Handle[string]]struct{}

// stream is one open stream.
type stream struct {
	*Streams
	p      directory.Principal
	widget bool
	sub    *Subscription
	// routeKey is the actor key of staff who see only their own
	// conversations (see route), "" for others; loaded is set once their
	// unread My conversations are counted in Streams.routes.
	routeKey string
	loaded   bool
	out      *sseWriter

	cur  uint64 // the position of the last log event whose changes were taken
	done uint64 // every log event up to here has been sent, or was not for p

	// What unread.changed counts, agents only. The customers section's
	// count is liveChats less caughtUp (see projections.Counts), read at
	// connection, then kept from the projector's CountsChanged: a stream
	// holds two numbers, however many chats wait. mine is the set of
	// conversations of My conversations with messages p has not read,
	// read at connection, then kept from the changes' snapshots.
	liveChats, caughtUp int
	mine                convSet

	// What see said of the last conversation view it was given, and the
	// position it was asked for: the changes of one log event mostly
	// concern one conversation.
	seen struct {
		cv     *convView
		unread int
		ok     bool
		pos    uint64
	}
}

// serve runs a stream. Its work is in open and live, so that an idle
// stream waits on a shallow stack: the runtime halves a stack only while
// a quarter of it is enough, and thousands of idle streams add up.
func (s *Streams) serve(c *gin.Context, widget bool) {
	st := s.open(c, widget)
	if st == nil {
		return
	}
	if conn := st.out.conn; conn != nil {
		// Taken from net/http: the request's goroutine returns, and the
		// stream goes on in one of its own, with a shallow stack, until the
		// client leaves, a write fails, the hub cuts it off or End.
		ctx, cancel := context.WithCancel(s.ctx)
		s.running.add(2)
		go func() {
			defer s.running.done()
			watchClose(conn, cancel)
		}()
		go func() {
			defer s.running.done()
			// No middleware's recovery out here: a fault ends the stream
			// (its client resumes), not the process.
			defer func() {
				if r := recover(); r != nil {
					slog.Error("stream panicked", "principal", st.p.Actor().Key(), "panic", r, "stack", string(debug.Stack()))
				}
			}()
			defer cancel()
			defer st.close()
			st.live(ctx)
		}()
		return
	}
	defer st.close()
	st.live(c.Request.Context())
}

// liveHook, when a test sets it, runs as a stream goes live.
var liveHook atomic.Pointer[func(*stream)]

// End ends the streams that run apart from their requests (see serve), as
// a server's shutdown ends the requests of the others; Wait waits for
// them to be over.
func (s *Streams) End() { s.stop() }

// Wait returns once every stream that End ended is over, or with ctx's
// error.
func (s *Streams) Wait(ctx context.Context) error { return s.running.wait(ctx) }

// open answers the request: an error, or the stream's headers and what it
// starts with (its token, a reset, or the replay of what the client
// missed). It returns the stream to go on with, or nil.
func (s *Streams) open(c *gin.Context, widget bool) *stream {
	p := httpkit.Caller(c)
	switch {
	case widget && !p.IsCustomer():
		httpkit.Fail(c, httpkit.Forbidden("the widget stream is for customers; staff use /v1/stream"))
		return nil
	case !widget && !p.IsStaff():
		httpkit.Fail(c, httpkit.Forbidden("the agent stream is for staff; the widget uses /v1/widget/stream"))
		return nil
	}
	ctx := c.Request.Context()
	// Subscribe before reading where the log stands: every change past that
	// point then reaches the subscription, and nothing falls in between.
	// A widget is told only of its customer's changes and those for
	// everyone; the stream of staff who see only their own conversations,
	// of those routed to them (see route); other staff's, of every change.
	st := &stream{Streams: s, p: p, widget: widget}
	switch {
	case widget:
		st.sub = s.hub.SubscribeFor(p.ID)
	case !p.SeesCustomers():
		st.routeKey = p.Actor().Key()
		s.routes.startLoading(st.routeKey)
		st.sub = s.hub.SubscribeStaff(st.routeKey)
	default:
		st.sub = s.hub.Subscribe()
	}
	now := max(s.progress.Applied(), s.hub.Head())

	token, resume := resumeToken(c)
	var from uint64
	reset := false
	if resume {
		pos, ok := projections.ParsePosition(token)
		from = uint64(pos)
		reset = !ok || from > now
		if !reset {
			far, err := s.tooFar(ctx, from, now)
			if err != nil {
				st.unsubscribe()
				httpkit.Fail(c, err)
				return nil
			}
			reset = far
		}
	}
	if !widget {
		// After now: the changes since then keep the sets up to date.
		if err := st.loadUnread(ctx); err != nil {
			st.unsubscribe()
			httpkit.Fail(c, err)
			return nil
		}
		if st.routeKey != "" {
			s.routes.loaded(st.routeKey, st.mine)
			st.loaded = true
		}
	}

	out, err := startSSE(c, s.watch)
	if err != nil {
		st.unsubscribe()
		slog.DebugContext(ctx, "stream not started", "principal", p.Actor().Key(), "err", err)
		return nil
	}
	s.clients.Add(1)
	st.out = out
	st.cur, st.done = now, now
	switch {
	case reset:
		st.out.frame(now, eventReset, []byte("{}"))
	case resume:
		if err := st.replay(ctx, from, now); err != nil {
			if ctx.Err() == nil {
				slog.ErrorContext(ctx, "stream replay failed", "principal", p.Actor().Key(), "after", from, "err", err)
			}
			st.close()
			return nil
		}
	default:
		// No event, only the token of where the stream starts, so that a
		// client reconnecting before its first event misses nothing.
		st.out.id(now)
	}
	if st.out.flush() != nil {
		st.close()
		return nil
	}
	return st
}

// close ends a stream that open returned.
func (st *stream) close() {
	st.unsubscribe()
	st.clients.Add(-1)
	st.out.end()
}

// unsubscribe closes the stream's subscription, and takes a routed
// stream out of the routes.
func (st *stream) unsubscribe() {
	st.sub.Close()
	switch {
	case st.routeKey == "":
	case st.loaded:
		st.routes.forget(st.routeKey, st.mine)
	default:
		st.routes.stopLoading(st.routeKey)
	}
}

// live sends the changes of the hub as they come, and a heartbeat, until
// the client leaves, a write fails or the hub cuts the stream off (the
// client then resumes from its last id).
func (st *stream) live(ctx context.Context) {
	if hook := liveHook.Load(); hook != nil {
		(*hook)(st)
	}
	tick := time.NewTicker(st.cfg.Heartbeat)
	defer tick.Stop()
	for {
		// Take all that the hub holds for the stream, and write it at once.
		if !st.takeLive(ctx) || ctx.Err() != nil || st.out.flush() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-st.sub.Ready():
		case <-tick.C:
			// Take what waits first: a widget's subscription passes over
			// what is not for it only when asked.
			if !st.takeLive(ctx) || !st.heartbeat() {
				return
			}
		}
	}
}

// heartbeat sends a ping and lets the client's token move past what it may
// not see, so that a resume does not replay it (nor trip MaxReplay): cur is
// done once the stream has taken every change the hub delivered.
func (st *stream) heartbeat() bool {
	if st.sub.Caught() {
		st.done = st.cur
	}
	if st.done > st.out.last {
		st.out.id(st.done)
	}
	st.out.comment("ping")
	return st.out.flush() == nil
}

// takeBatch is how many changes a stream takes from the hub at a time.
const takeBatch = 64

// batches holds the buffers streams take changes into, so that idle
// streams hold none.
var batches = sync.Pool{New: func() any { b := make([]projections.Change, takeBatch); return &b }}

// takeLive renders every change the subscription holds; it returns false
// when the stream must end.
func (st *stream) takeLive(ctx context.Context) bool {
	bp := batches.Get().(*[]projections.Change)
	buf, used := *bp, 0
	defer func() {
		clear(buf[:used]) // drop the strings the buffer refers to
		batches.Put(bp)
	}()
	for {
		n, ok := st.sub.Next(buf)
		if !ok {
			return false
		}
		if p := st.sub.Passed(); p > st.cur {
			st.done, st.cur = p, p // passed over, as not for this stream
		}
		used = max(used, n)
		for _, ch := range buf[:n] {
			if ch.Position <= st.done {
				continue // replayed, or from before the stream began
			}
			st.send(ctx, ch)
		}
		if n < len(buf) {
			return true // what comes next signals Ready
		}
		if ctx.Err() != nil {
			return false
		}
		if st.out.full() && st.out.flush() != nil {
			return false
		}
	}
}

// resumeToken returns the Last-Event-ID header, else ?last_event_id=; an
// empty one counts as none.
func resumeToken(c *gin.Context) (string, bool) {
	if v := c.GetHeader("Last-Event-ID"); v != "" {
		return v, true
	}
	v := c.Query("last_event_id")
	return v, v != ""
}

// tooFar reports whether more than MaxReplay log events lie in (from, to].
func (s *Streams) tooFar(ctx context.Context, from, to uint64) (bool, error) {
	if to-from <= uint64(s.cfg.MaxReplay) {
		return false, nil // positions grow by at least one an event
	}
	// Stores may leave gaps between positions: count.
	n, cursor := 0, from
	for cursor < to {
		recs, err := s.log.ReadAll(ctx, cursor, replayPage)
		if err != nil {
			return false, fmt.Errorf("count events to replay after %d: %w", cursor, err)
		}
		if len(recs) == 0 {
			return false, nil
		}
		for _, rec := range recs {
			if rec.Position > to {
				return false, nil
			}
			if n++; n > s.cfg.MaxReplay {
				return true, nil
			}
			cursor = rec.Position
		}
	}
	return false, nil
}

// loadUnread reads what the stream's unread counts start from.
func (st *stream) loadUnread(ctx context.Context) error {
	u, err := st.rm.UnreadState(ctx, st.p)
	if err != nil {
		return err
	}
	st.liveChats, st.caughtUp, st.mine = u.LiveChats, u.CaughtUp, nil
	for _, id := range u.Mine {
		st.mine = st.mine.with(unique.Make(id))
	}
	return nil
}

// customers is p's count of unread conversations in From customers.
func (st *stream) customers() int {
	if !st.p.SeesCustomers() {
		return 0
	}
	return max(st.liveChats-st.caughtUp, 0)
}

func (s convSet) with(id unique.Handle[string]) convSet {
	if s == nil {
		s = convSet{}
	}
	s[id] = struct{}{}
	return s
}

// replay sends what the log events in (from, to] changed, as it stands now.
func (st *stream) replay(ctx context.Context, from, to uint64) error {
	cursor := from
	for cursor < to {
		recs, err := st.log.ReadAll(ctx, cursor, replayPage)
		if err != nil {
			return fmt.Errorf("read log after %d: %w", cursor, err)
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			if rec.Position > to {
				st.done = to
				return st.out.flush()
			}
			for _, ch := range projections.ChangesOf(rec) {
				st.send(ctx, ch)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if st.out.full() {
				if err := st.out.flush(); err != nil {
					return err
				}
			}
			cursor = rec.Position
		}
		if err := st.out.flush(); err != nil {
			return err
		}
	}
	st.done = to
	return nil
}

// send renders ch for the stream's principal and queues the events; an
// error is logged and ch skipped.
func (st *stream) send(ctx context.Context, ch projections.Change) {
	if ch.Position > st.cur {
		st.done, st.cur = max(st.done, st.cur), ch.Position
	}
	if err := st.render(ctx, ch); err != nil && ctx.Err() == nil {
		slog.WarnContext(ctx, "stream skips a change it cannot render", "principal", st.p.Actor().Key(),
			"kind", ch.Kind, "position", ch.Position, "conversation", ch.ConversationID, "err", err)
	}
}

type agentUnread struct {
	ConversationID string `json:"conversation_id"`
	Unread         int    `json:"unread"`
	Customers      int    `json:"customers"`
	Mine           int    `json:"mine"`
}

type widgetUnread struct {
	ConversationID string `json:"conversation_id"`
	Unread         int    `json:"unread"`
}

type helpdeskStatus struct {
	Online  bool   `json:"online"`
	Message string `json:"message"`
}

// render queues the events ch makes for the stream's principal, from the
// shared renderings: none for what it may not see or what no longer exists.
func (st *stream) render(ctx context.Context, ch projections.Change) error {
	r := st.shared
	switch ch.Kind {
	case projections.CountsChanged:
		if c := ch.Counts; c != nil && !st.widget {
			st.liveChats = c.LiveChats
			if n, ok := c.CaughtUp[st.p.Actor().Key()]; ok {
				st.caughtUp = n
			}
		}
		return nil
	case projections.HelpdeskChanged:
		data, err := r.helpdesk(ctx, ch.Position)
		if err != nil {
			return err
		}
		st.out.frame(ch.Position, eventHelpdesk, data)
		return nil
	case projections.ItemChanged:
		convs, err := r.conversationsOf(ctx, ch.Position, ch.ItemID)
		if err != nil {
			return err
		}
		for _, id := range convs {
			cv, err := r.conversation(ctx, ch.Position, id)
			if err != nil {
				return err
			}
			// Who the item concerns may count the conversation as theirs now.
			if n, ok := st.see(ch.Position, cv); ok {
				st.row(ch.Position, projections.ConversationUpdated, cv, n)
			}
		}
		return nil
	case projections.ConversationCreated, projections.ConversationUpdated, projections.ReadChanged,
		projections.MessageCreated, projections.MessageUpdated, projections.MessageDeleted:
	default:
		return nil // a kind of change this server does not know yet
	}
	if st.p.IsCustomer() && ch.Customer != "" && ch.Customer != st.p.ID {
		return nil // another customer's conversation: nothing to read
	}

	cv := st.seen.cv // asked for this log event already?
	if cv == nil || st.seen.pos != ch.Position || cv.name != ch.ConversationID {
		var err error
		if cv, err = r.conversation(ctx, ch.Position, ch.ConversationID); err != nil {
			return err
		}
	}
	n, ok := st.see(ch.Position, cv)
	if !ok {
		return nil
	}
	switch ch.Kind {
	case projections.ConversationCreated, projections.ConversationUpdated:
		st.row(ch.Position, ch.Kind, cv, n)
	case projections.MessageCreated, projections.MessageUpdated, projections.MessageDeleted:
		m, err := r.message(ctx, ch.Position, ch.ConversationID, ch.MessageID)
		if m == nil || err != nil {
			return err
		}
		st.out.frame(ch.Position, string(ch.Kind), m)
		if ch.Kind != projections.MessageUpdated {
			// Posting marks the author's own reading too, so the author's
			// counts may change as well as everyone else's.
			st.unread(ch.Position, cv, n)
		}
	case projections.ReadChanged:
		if ch.Actor != st.p.Actor() {
			return nil // another reader's counts are none of p's business
		}
		st.unread(ch.Position, cv, n)
		st.row(ch.Position, projections.ConversationUpdated, cv, n)
	}
	return nil
}

// see reports whether the principal may see cv's conversation, asked for
// the change at pos, and how many of its messages they have not read. It
// keeps the mine set of an agent's stream: the conversation is in it when
// it is p's and p has not read all of it, as its snapshot says.
func (st *stream) see(pos uint64, cv *convView) (unread int, ok bool) {
	if cv == st.seen.cv {
		st.seen.pos = pos
		return st.seen.unread, st.seen.ok
	}
	if cv.snap != nil && cv.snap.CanSee(st.p) {
		unread, ok = cv.snap.Unread(st.p), true
	}
	if !st.widget {
		in := unread > 0 && cv.snap.Mine(st.p)
		if _, was := st.mine[cv.id]; was != in && st.loaded {
			st.routes.set(st.routeKey, cv.id, in)
		}
		st.mine = st.mine.set(cv.id, in)
	}
	st.seen.cv, st.seen.unread, st.seen.ok, st.seen.pos = cv, unread, ok, pos
	return unread, ok
}

// set puts id in s or takes it out.
func (s convSet) set(id unique.Handle[string], in bool) convSet {
	if _, ok := s[id]; ok == in {
		return s
	}
	if in {
		return s.with(id)
	}
	delete(s, id)
	return s
}

// row queues the inbox row of cv as the principal sees it, with unread
// messages they have not read.
func (st *stream) row(pos uint64, kind projections.ChangeKind, cv *convView, unread int) {
	b := st.out.start(pos, string(kind))
	if cv.rowHead == nil { // could not be split: encode it for p
		data, err := json.Marshal(cv.snap.Row(st.p))
		if err != nil {
			st.out.cancel()
			slog.Error("stream cannot encode an inbox row", "conversation", cv.snap.ID(), "err", err)
			return
		}
		st.out.finish(append(b, data...))
		return
	}
	b = append(b, cv.rowHead...)
	b = strconv.AppendInt(b, int64(unread), 10)
	st.out.finish(append(b, cv.rowTail...))
}

// unread queues the unread.changed event of cv for the principal, who
// has not read n of its messages.
func (st *stream) unread(pos uint64, cv *convView, n int) {
	b := st.out.start(pos, eventUnread)
	b = append(b, `{"conversation_id":`...)
	b = append(b, cv.idJSON...)
	b = append(b, `,"unread":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	if !st.widget {
		b = append(b, `,"customers":`...)
		b = strconv.AppendInt(b, int64(st.customers()), 10)
		b = append(b, `,"mine":`...)
		b = strconv.AppendInt(b, int64(len(st.mine)), 10)
	}
	st.out.finish(append(b, '}'))
}

// renderings reads what the changes of the log look like, once for all the
// streams of the process: conversations (a snapshot and its inbox row, with
// the unread count left for each viewer to fill in), messages, the items'
// conversations and the helpdesk, each already encoded.
//
// A rendering asked for a change at position pos is read after the read
// models applied pos, so it shows the change and perhaps later ones: the
// rows "as they stand when sent". Each holds the position up to which it is
// known complete, and serves every later ask at or below it; an ask beyond
// it reads again, once however many streams ask together. So what one
// stream sends of a conversation never goes back in time.
type renderings struct {
	rm *projections.ReadModels
	// applied returns a position the read models have applied, and every
	// position below it.
	applied func() uint64

	convs *flights[string, *convView]
	msgs  *flights[msgKey, []byte]
	items *flights[string, []string]
	desk  *flights[struct{}, []byte]
}

// renderLoadTimeout bounds a read made for many streams, which no single
// client's leaving cancels.
const renderLoadTimeout = 30 * time.Second

func newRenderings(rm *projections.ReadModels, applied func() uint64) *renderings {
	return &renderings{rm: rm, applied: applied,
		convs: newWeighedFlights[string, *convView](4096, 32<<20, (*convView).size),
		msgs:  newWeighedFlights[msgKey, []byte](4096, 32<<20, func(b []byte) int { return len(b) + 64 }),
		items: newFlights[string, []string](256),
		desk:  newFlights[struct{}, []byte](1),
	}
}

// convView is a conversation ready to render for any viewer; snap is nil
// when it does not exist.
type convView struct {
	name   string
	snap   *projections.Snapshot
	id     unique.Handle[string]
	idJSON []byte // the id as a JSON string
	// The inbox row's JSON before and after the value of "unread"; nil if
	// it could not be split.
	rowHead, rowTail []byte
}

// size approximates what v holds (see flights.weigh).
func (v *convView) size() int {
	if v == nil {
		return 0
	}
	n := 64 + len(v.name) + len(v.idJSON) + len(v.rowHead) + len(v.rowTail)
	if v.snap != nil {
		n += v.snap.Size()
	}
	return n
}

type msgKey struct{ conv, id string }

// conversation returns conversation id as it stands after position pos.
func (r *renderings) conversation(ctx context.Context, pos uint64, id string) (*convView, error) {
	return r.convs.get(ctx, pos, r.applied, id, func(ctx context.Context) (*convView, error) {
		snap, _, err := r.rm.Snapshot(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("snapshot of %s: %w", id, err)
		}
		return newConvView(id, snap)
	})
}

// newConvView makes the view of conversation id from its snapshot, nil
// when it does not exist.
func newConvView(id string, snap *projections.Snapshot) (*convView, error) {
	cv := &convView{name: id, id: unique.Make(id)}
	if snap == nil {
		return cv, nil
	}
	cv.snap = snap
	var err error
	if cv.idJSON, err = json.Marshal(id); err != nil {
		return nil, err
	}
	var nobody directory.Principal
	row := snap.Row(nobody)
	data, err := json.Marshal(row)
	if err != nil {
		return nil, fmt.Errorf("encode the inbox row of %s: %w", id, err)
	}
	cv.rowHead, cv.rowTail = splitUnread(data, row.Unread)
	return cv, nil
}

// prefetch reads what the conversations and messages of a batch of changes
// look like with a few statements, before the streams ask for them one by
// one: at a few thousand posts a second, a read per change and
// conversation would cost more than everything else together.
func (r *renderings) prefetch(ctx context.Context, changes []projections.Change) {
	var pos uint64
	var convs []string
	var msgs []msgKey
	for _, ch := range changes {
		switch ch.Kind {
		case projections.MessageCreated, projections.MessageUpdated, projections.MessageDeleted:
			msgs = append(msgs, msgKey{ch.ConversationID, ch.MessageID})
			fallthrough
		case projections.ConversationCreated, projections.ConversationUpdated, projections.ReadChanged:
			convs = append(convs, ch.ConversationID)
			pos = max(pos, ch.Position)
		}
	}
	if pos == 0 {
		return
	}
	// The messages are read beside the conversations, on another
	// connection: the batch's delivery waits for the longer of the two
	// reads, not for both one after the other.
	var wg sync.WaitGroup
	if len(msgs) > 0 {
		wg.Go(func() { r.prefetchMessages(ctx, pos, msgs) })
	}
	defer wg.Wait()
	r.convs.fill(ctx, pos, r.applied, convs, func(ctx context.Context, ids []string) (map[string]*convView, error) {
		snaps, err := r.rm.Snapshots(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("snapshots of %d conversations: %w", len(ids), err)
		}
		out := make(map[string]*convView, len(ids))
		for _, id := range ids {
			if out[id], err = newConvView(id, snaps[id]); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

// prefetchMessages reads the messages msgs of a batch whose changes go up
// to position pos, for all the streams at once.
func (r *renderings) prefetchMessages(ctx context.Context, pos uint64, msgs []msgKey) {
	r.msgs.fill(ctx, pos, r.applied, msgs, func(ctx context.Context, keys []msgKey) (map[msgKey][]byte, error) {
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.id
		}
		found, err := r.rm.MessagesByID(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("%d messages: %w", len(ids), err)
		}
		out := make(map[msgKey][]byte, len(keys))
		for _, k := range keys {
			if m, ok := found[k.id]; ok && m.ConversationID == k.conv {
				if out[k], err = json.Marshal(m); err != nil {
					return nil, err
				}
			} else {
				out[k] = nil // none: the stream sends nothing for it
			}
		}
		return out, nil
	})
}

// splitUnread cuts an inbox row's JSON around the value n of its "unread"
// member. A quote inside a JSON string is escaped, so the first `,"unread":`
// is the member's key; nothing before it has one (see InboxRow).
func splitUnread(data []byte, n int) (head, tail []byte) {
	key := `,"unread":`
	i := bytes.Index(data, []byte(key+strconv.Itoa(n)+","))
	if i < 0 || bytes.Index(data, []byte(key)) != i {
		return nil, nil
	}
	head = data[:i+len(key)]
	return head, data[len(head)+len(strconv.Itoa(n)):]
}

// message returns message id of conversation conv, encoded, as it stands
// after position pos; nil when it does not exist.
func (r *renderings) message(ctx context.Context, pos uint64, conv, id string) ([]byte, error) {
	return r.msgs.get(ctx, pos, r.applied, msgKey{conv, id}, func(ctx context.Context) ([]byte, error) {
		m, ok, err := r.rm.Message(ctx, conv, id)
		if !ok || err != nil {
			return nil, err
		}
		return json.Marshal(m)
	})
}

// conversationsOf returns the conversations that link item id after
// position pos.
func (r *renderings) conversationsOf(ctx context.Context, pos uint64, id string) ([]string, error) {
	return r.items.get(ctx, pos, r.applied, id, func(ctx context.Context) ([]string, error) {
		return r.rm.ConversationsOf(ctx, id)
	})
}

// helpdesk returns the helpdesk.status_changed data after position pos.
func (r *renderings) helpdesk(ctx context.Context, pos uint64) ([]byte, error) {
	return r.desk.get(ctx, pos, r.applied, struct{}{}, func(ctx context.Context) ([]byte, error) {
		h, err := r.rm.Helpdesk(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(helpdeskStatus{Online: h.Online, Message: h.Message()})
	})
}

// flights is a cache of values read at most once at a time per key, each
// valid up to a position: get returns the value read for a key if it was
// read after pos was applied, or reads it again. It keeps the limit keys
// asked for last (and up to as many more, between sweeps).
//
// Every stream asks it for every change it sends, a thousand streams for
// one post: a value already read is found under the read lock, so that
// they do not queue behind one another (with one mutex, the last stream
// of a thousand waited for each of the others to be woken in turn).
type flights[K comparable, V any] struct {
	limit int
	uses  atomic.Uint64 // counts the asks, to tell which keys were asked for last
	// With weigh, the values read hold at most budget bytes in all (twice
	// as much between sweeps) as weigh counts them: a message's rendering
	// holds its text, up to 10,000 characters, six bytes each escaped.
	weigh  func(V) int
	budget int

	mu      sync.RWMutex // held for writing to add or drop entries
	entries map[K]*flight[V]
	weight  int // what the values read and kept weigh
}

// flight is one read of a value.
type flight[V any] struct {
	pos   uint64        // the value shows every change up to pos
	ready chan struct{} // closed once val and err are set
	done  atomic.Bool   // ready is closed
	val   V
	err   error
	used  atomic.Uint64 // the ask that last found it (flights.uses)
	// What val weighs, once counted in flights.weight (guarded by
	// flights.mu).
	weight int
}

func newFlights[K comparable, V any](limit int) *flights[K, V] {
	return &flights[K, V]{limit: limit, entries: map[K]*flight[V]{}}
}

// newWeighedFlights is newFlights bounded also by what the values weigh.
func newWeighedFlights[K comparable, V any](limit, budget int, weigh func(V) int) *flights[K, V] {
	f := newFlights[K, V](limit)
	f.weigh, f.budget = weigh, budget
	return f
}

// weighIn counts what the values of the flights es, just read for keys,
// weigh, those still kept, and sweeps.
func (f *flights[K, V]) weighIn(keys []K, es []*flight[V]) {
	if f.weigh == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, k := range keys {
		if e := es[i]; f.entries[k] == e && e.err == nil {
			e.weight = f.weigh(e.val)
			f.weight += e.weight
		}
	}
	f.sweep()
}

// drop forgets key's entry; f.mu is held for writing.
func (f *flights[K, V]) drop(key K) {
	if e := f.entries[key]; e != nil {
		f.weight -= e.weight
		e.weight = 0
		delete(f.entries, key)
	}
}

// get returns the value of key as read after position pos was applied,
// reading it with load if need be; applied tells how far the read models
// are known to be, for the position the read value stands at.
func (f *flights[K, V]) get(ctx context.Context, pos uint64, applied func() uint64, key K, load func(context.Context) (V, error)) (V, error) {
	f.mu.RLock()
	e := f.entries[key]
	f.mu.RUnlock()
	if e == nil || e.pos < pos {
		f.mu.Lock()
		if e = f.entries[key]; e == nil || e.pos < pos { // not read meanwhile
			return f.read(ctx, pos, applied, key, load)
		}
		f.mu.Unlock()
	}
	e.used.Store(f.uses.Add(1))
	if e.done.Load() {
		return e.val, e.err
	}
	select {
	case <-e.ready:
		return e.val, e.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// peek returns the value of key if it was read, without error, after
// position pos was applied.
func (f *flights[K, V]) peek(key K, pos uint64) (V, bool) {
	f.mu.RLock()
	e := f.entries[key]
	f.mu.RUnlock()
	if e == nil || e.pos < pos || !e.done.Load() || e.err != nil {
		var zero V
		return zero, false
	}
	return e.val, true
}

// read is get's read of key: f.mu is held for writing, and released.
func (f *flights[K, V]) read(ctx context.Context, pos uint64, applied func() uint64, key K, load func(context.Context) (V, error)) (V, error) {
	e := &flight[V]{pos: max(pos, applied()), ready: make(chan struct{})}
	e.used.Store(f.uses.Add(1))
	f.drop(key) // an older read, if any
	f.entries[key] = e
	f.sweep()
	f.mu.Unlock()
	// Read for every stream that asks: one client's leaving cancels nothing.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renderLoadTimeout)
	e.val, e.err = load(lctx)
	cancel()
	e.done.Store(true)
	close(e.ready)
	if e.err != nil {
		f.mu.Lock()
		if f.entries[key] == e {
			f.drop(key)
		}
		f.mu.Unlock()
	} else {
		f.weighIn([]K{key}, []*flight[V]{e})
	}
	return e.val, e.err
}

// fill reads the values of those of keys not known up to position pos
// with one call of load, which returns a value for each key it is given;
// streams asking for them meanwhile wait for it rather than read them too.
// It is get for many keys at once.
func (f *flights[K, V]) fill(ctx context.Context, pos uint64, applied func() uint64, keys []K, load func(context.Context, []K) (map[K]V, error)) {
	f.mu.Lock()
	at := max(pos, applied())
	var todo []K
	var es []*flight[V]
	for _, k := range keys {
		if e := f.entries[k]; e != nil && e.pos >= pos {
			e.used.Store(f.uses.Add(1))
			continue
		}
		e := &flight[V]{pos: at, ready: make(chan struct{})}
		e.used.Store(f.uses.Add(1))
		f.drop(k) // an older read, if any
		f.entries[k] = e
		todo, es = append(todo, k), append(es, e)
	}
	f.sweep()
	f.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renderLoadTimeout)
	vals, err := load(lctx, todo)
	cancel()
	for i, k := range todo {
		e := es[i]
		e.val, e.err = vals[k], err
		e.done.Store(true)
		close(e.ready)
	}
	if err != nil {
		f.mu.Lock()
		for i, k := range todo {
			if f.entries[k] == es[i] {
				f.drop(k)
			}
		}
		f.mu.Unlock()
		return
	}
	f.weighIn(todo, es)
}

// sweep drops the entries asked for longest ago once there are twice the
// limit, or they weigh twice the budget, until there are the limit and
// they weigh the budget, but for the one asked for last, which a thousand
// streams may be about to ask for; f.mu must be held for writing.
func (f *flights[K, V]) sweep() {
	heavy := func() bool { return f.weigh != nil && f.weight > f.budget }
	if len(f.entries) <= 2*f.limit && (f.weigh == nil || f.weight <= 2*f.budget) {
		return
	}
	type aged struct {
		key  K
		used uint64
	}
	all := make([]aged, 0, len(f.entries))
	for k, e := range f.entries {
		all = append(all, aged{k, e.used.Load()})
	}
	slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.used, b.used) })
	for _, a := range all[:len(all)-1] {
		if len(f.entries) <= f.limit && !heavy() {
			break
		}
		f.drop(a.key) // those reading or waiting keep theirs
	}
}

// sseWriter writes SSE frames to a response, a flush at a time. It holds a
// buffer only while frames are queued.
type sseWriter struct {
	sink   sseSink
	conn   net.Conn // set when the connection was taken from net/http (hijack)
	watch  *writeWatch
	buf    *[]byte // nil when nothing is queued
	mark   int     // where the frame being written starts
	markID uint64  // and its id
	last   uint64  // the last id written

	mu      sync.Mutex // guards what follows, between flush and the watch
	writing time.Time  // when the flush under way began; zero between flushes
	expired bool       // the watch cut a flush off: the stream is over
}

// sseBufs holds the buffers of the writers with frames queued.
var sseBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Buffers above this size are not kept for reuse; a stream flushes once it
// has queued more.
const sseBufMax = 256 << 10

// startSSE sends the headers of an event stream and lifts the server's
// write timeout for it; each flush then gets the watch's timeout to reach
// the client. Where it can, it takes the connection from net/http (hijack):
// the stream then runs apart from its request (see Streams.serve).
func startSSE(c *gin.Context, watch *writeWatch) (*sseWriter, error) {
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w := &sseWriter{watch: watch}
	conn, err := hijack(c)
	switch {
	case err != nil:
		return nil, err
	case conn != nil:
		w.sink, w.conn = connSink{conn}, conn
	default:
		h.Set("Connection", "keep-alive")
		rs := responseSink{w: c.Writer, rc: http.NewResponseController(c.Writer)}
		w.sink = rs
		w.deadline(time.Time{})
		c.Status(http.StatusOK)
		c.Writer.WriteHeaderNow()
		rs.rc.Flush() // the headers now, even if no event follows for a while; a failure shows at the next write
	}
	watch.add(w)
	return w, nil
}

func (w *sseWriter) deadline(t time.Time) {
	if err := w.sink.setWriteDeadline(t); err != nil {
		slog.Debug("cannot set a stream's write deadline", "err", err)
	}
}

// bytes returns the queued frames, taking a buffer if there is none.
func (w *sseWriter) bytes() []byte {
	if w.buf == nil {
		w.buf = sseBufs.Get().(*[]byte)
	}
	return *w.buf
}

// start begins a frame with id and event name and returns the buffer to
// append its data to; finish or cancel ends it.
func (w *sseWriter) start(id uint64, name string) []byte {
	b := w.bytes()
	w.mark = len(b)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "\nevent: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	w.markID = id
	return b
}

// finish ends the frame whose buffer, data appended, is b. The data must
// hold no newline: encoding/json writes none.
func (w *sseWriter) finish(b []byte) {
	*w.buf = append(b, "\n\n"...)
	w.last = w.markID
}

// cancel drops the frame begun last.
func (w *sseWriter) cancel() { *w.buf = (*w.buf)[:w.mark] }

// frame queues one event.
func (w *sseWriter) frame(id uint64, name string, data []byte) {
	w.finish(append(w.start(id, name), data...))
}

// id queues a frame holding only an id: clients take it as their resume
// token and dispatch no event.
func (w *sseWriter) id(id uint64) {
	b := append(w.bytes(), "id: "...)
	b = strconv.AppendUint(b, id, 10)
	*w.buf = append(b, "\n\n"...)
	w.last = id
}

// comment queues a comment line.
func (w *sseWriter) comment(text string) {
	b := append(w.bytes(), ": "...)
	b = append(b, text...)
	*w.buf = append(b, "\n\n"...)
}

// full reports whether so much is queued that it is time to flush.
func (w *sseWriter) full() bool { return w.buf != nil && len(*w.buf) >= sseBufMax }

// flush writes what is queued and pushes it to the client, a piece at a
// time: the watch cuts a piece off if it takes longer than its timeout, so
// a client that reads, however slowly, keeps its stream however much is
// queued, as when each event was written on its own.
func (w *sseWriter) flush() error {
	if w.buf == nil {
		return nil
	}
	b := *w.buf
	var err error
	for len(b) > 0 && err == nil {
		piece := b[:min(len(b), ssePiece)]
		b = b[len(piece):]
		err = w.write(func() error { return w.sink.write(piece, len(b) == 0) })
	}
	w.release()
	return err
}

// ssePiece is how much a flush writes at a time.
const ssePiece = 64 << 10

// write calls f, which writes to the client, under the watch.
func (w *sseWriter) write(f func() error) error {
	w.mu.Lock()
	w.writing = time.Now()
	expired := w.expired
	w.mu.Unlock()
	if expired {
		return os.ErrDeadlineExceeded
	}
	err := f()
	w.mu.Lock()
	w.writing = time.Time{}
	expired = w.expired
	w.mu.Unlock()
	if err == nil && expired {
		err = os.ErrDeadlineExceeded // done, but later than the timeout allows
	}
	return err
}

// expire cuts off the flush under way if it began timeout or longer before
// now, by moving the connection's write deadline into the past.
func (w *sseWriter) expire(now time.Time, timeout time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.expired && !w.writing.IsZero() && now.Sub(w.writing) >= timeout {
		w.expired = true
		w.deadline(now.Add(-time.Second))
	}
}

// release returns the buffer, unless it grew too big to keep.
func (w *sseWriter) release() {
	if cap(*w.buf) <= sseBufMax {
		*w.buf = (*w.buf)[:0]
		sseBufs.Put(w.buf)
	}
	w.buf = nil
}

// end leaves the watch and lifts a write deadline it may have set, so that
// it does not outlive the stream on a kept-alive connection, and ends the
// response.
func (w *sseWriter) end() {
	w.watch.remove(w)
	if w.expired {
		w.deadline(time.Time{})
	}
	if w.buf != nil {
		w.release()
	}
	w.sink.end()
}

// writeWatch cuts off the flushes of its writers that take longer than its
// timeout. Setting a write deadline on each flush would do the same, but
// costs the runtime a timer change each time, many thousands a second;
// the watch looks at every writer a 64th of the timeout apart instead, so a
// flush gets its whole timeout and at most a 64th more. Its goroutine runs
// while it has writers.
type writeWatch struct {
	timeout time.Duration

	mu      sync.Mutex
	writers map[*sseWriter]struct{}
	running bool
}

func newWriteWatch(timeout time.Duration) *writeWatch {
	return &writeWatch{timeout: timeout, writers: map[*sseWriter]struct{}{}}
}

func (ww *writeWatch) add(w *sseWriter) {
	ww.mu.Lock()
	defer ww.mu.Unlock()
	ww.writers[w] = struct{}{}
	if !ww.running {
		ww.running = true
		go ww.run()
	}
}

// remove takes w out; the watch touches it no more once it returns.
func (ww *writeWatch) remove(w *sseWriter) {
	ww.mu.Lock()
	defer ww.mu.Unlock()
	delete(ww.writers, w)
}

func (ww *writeWatch) run() {
	tick := time.NewTicker(max(ww.timeout/64, time.Millisecond))
	defer tick.Stop()
	for now := range tick.C {
		ww.mu.Lock()
		if len(ww.writers) == 0 {
			ww.running = false
			ww.mu.Unlock()
			return
		}
		for w := range ww.writers {
			w.expire(now, ww.timeout)
		}
		ww.mu.Unlock()
	}
}
