package readapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

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
	// WriteTimeout is how long writing one event to a client may take; a
	// client that reads nothing for that long is cut off (default 1 min).
	WriteTimeout time.Duration
}

// replayPage is how many log events a resume reads at a time.
const replayPage = 500

// Streams serves the Server-Sent Events of agents (Agent) and of the widget
// (Widget). Every event's id is the log position of the event that caused
// it, a resume token: a client reconnecting with it gets what it missed,
// replayed from the log, then the live changes of the hub, none twice.
type Streams struct {
	rm       *projections.ReadModels
	log      Log
	progress Progress
	hub      *Hub
	cfg      StreamConfig

	clients atomic.Int64
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
	return &Streams{rm: rm, log: log, progress: progress, hub: hub, cfg: cfg}
}

// Clients returns how many streams are open.
func (s *Streams) Clients() int { return int(s.clients.Load()) }

// Agent serves GET /v1/stream, the stream of staff; others get 403.
func (s *Streams) Agent(c *gin.Context) {
	p := httpkit.Caller(c)
	if !p.IsStaff() {
		httpkit.Fail(c, httpkit.Forbidden("the agent stream is for staff; the widget uses /v1/widget/stream"))
		return
	}
	s.serve(c, p, false)
}

// Widget serves GET /v1/widget/stream, the stream of customers; others get 403.
func (s *Streams) Widget(c *gin.Context) {
	p := httpkit.Caller(c)
	if !p.IsCustomer() {
		httpkit.Fail(c, httpkit.Forbidden("the widget stream is for customers; staff use /v1/stream"))
		return
	}
	s.serve(c, p, true)
}

// The SSE event names.
const (
	eventReset    = "reset"
	eventUnread   = "unread.changed"
	eventHelpdesk = "helpdesk.status_changed"
)

// stream is one open stream.
type stream struct {
	*Streams
	p      directory.Principal
	widget bool
	out    *sseWriter

	cur  uint64 // the position of the last log event whose changes were taken
	done uint64 // every log event up to here has been sent, or was not for p

	seen struct { // CanSee of the last conversation asked, at position pos
		pos  uint64
		conv string
		ok   bool
	}
}

func (s *Streams) serve(c *gin.Context, p directory.Principal, widget bool) {
	ctx := c.Request.Context()
	// Subscribe before reading where the log stands: every change past that
	// point then reaches the subscription, and nothing falls in between.
	sub := s.hub.Subscribe()
	defer sub.Close()
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
				httpkit.Fail(c, err)
				return
			}
			reset = far
		}
	}

	s.clients.Add(1)
	defer s.clients.Add(-1)
	st := &stream{Streams: s, p: p, widget: widget, out: startSSE(c, s.cfg.WriteTimeout)}
	defer st.out.end()
	st.cur, st.done = now, now
	switch {
	case reset:
		st.out.frame(now, eventReset, []byte("{}"))
	case resume:
		if err := st.replay(ctx, from, now); err != nil {
			if ctx.Err() == nil {
				slog.ErrorContext(ctx, "stream replay failed", "principal", p.Actor().Key(), "after", from, "err", err)
			}
			return
		}
	default:
		// No event, only the token of where the stream starts, so that a
		// client reconnecting before its first event misses nothing.
		st.out.id(now)
	}
	if st.out.flush() != nil {
		return
	}

	tick := time.NewTicker(s.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ch, ok := <-sub.C:
			if !ok {
				return // cut off for falling behind: the client resumes from its last id
			}
			if ch.Position <= st.done {
				continue // replayed, or from before the stream began
			}
			st.send(ctx, ch)
			if ctx.Err() != nil || st.out.flush() != nil {
				return
			}
		case <-tick.C:
			// Let the client's token move past what it may not see, so that
			// a resume does not replay it (nor trip MaxReplay). cur is done
			// once the hub has delivered nothing beyond it and the
			// subscription holds nothing more: Head first, as it waits for a
			// Deliver under way, which may still be queueing changes at cur.
			if s.hub.Head() == st.cur && len(sub.C) == 0 {
				st.done = st.cur
			}
			if st.done > st.out.last {
				st.out.id(st.done)
			}
			st.out.comment("ping")
			if st.out.flush() != nil {
				return
			}
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
				return nil
			}
			for _, ch := range projections.ChangesOf(rec) {
				st.send(ctx, ch)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := st.out.flush(); err != nil {
				return err
			}
			cursor = rec.Position
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
	frames, err := st.render(ctx, ch)
	if err != nil {
		if ctx.Err() == nil {
			slog.WarnContext(ctx, "stream skips a change it cannot render", "principal", st.p.Actor().Key(),
				"kind", ch.Kind, "position", ch.Position, "conversation", ch.ConversationID, "err", err)
		}
		return
	}
	for _, f := range frames {
		data, err := json.Marshal(f.data)
		if err != nil {
			slog.ErrorContext(ctx, "stream cannot encode an event", "event", f.event, "position", ch.Position, "err", err)
			continue
		}
		st.out.frame(ch.Position, f.event, data)
	}
}

// event is one SSE event before encoding.
type event struct {
	event string
	data  any
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

// render returns the events ch makes for the stream's principal, read from
// the read models now: none for what it may not see or what no longer exists.
func (st *stream) render(ctx context.Context, ch projections.Change) ([]event, error) {
	switch ch.Kind {
	case projections.HelpdeskChanged:
		h, err := st.rm.Helpdesk(ctx)
		if err != nil {
			return nil, err
		}
		return []event{{eventHelpdesk, helpdeskStatus{Online: h.Online, Message: h.Message()}}}, nil
	case projections.ItemChanged:
		convs, err := st.rm.ConversationsOf(ctx, ch.ItemID)
		if err != nil {
			return nil, err
		}
		var out []event
		for _, conv := range convs {
			row, err := st.row(ctx, ch.Position, conv)
			if err != nil {
				return out, err
			}
			if row != nil {
				out = append(out, event{string(projections.ConversationUpdated), row})
			}
		}
		return out, nil
	}

	if ok, err := st.canSee(ctx, ch.Position, ch.ConversationID); !ok || err != nil {
		return nil, err
	}
	switch ch.Kind {
	case projections.ConversationCreated, projections.ConversationUpdated:
		row, err := st.row(ctx, ch.Position, ch.ConversationID)
		if row == nil || err != nil {
			return nil, err
		}
		return []event{{string(ch.Kind), row}}, nil
	case projections.MessageCreated, projections.MessageUpdated, projections.MessageDeleted:
		m, ok, err := st.rm.Message(ctx, ch.ConversationID, ch.MessageID)
		if !ok || err != nil {
			return nil, err
		}
		out := []event{{string(ch.Kind), m}}
		if ch.Kind != projections.MessageUpdated {
			// Posting marks the author's own reading too, so the author's
			// counts may change as well as everyone else's.
			u, err := st.unread(ctx, ch.ConversationID)
			if err != nil {
				return out, err
			}
			out = append(out, u)
		}
		return out, nil
	case projections.ReadChanged:
		if ch.Actor != st.p.Actor() {
			return nil, nil // another reader's counts are none of p's business
		}
		u, err := st.unread(ctx, ch.ConversationID)
		if err != nil {
			return nil, err
		}
		out := []event{u}
		row, err := st.row(ctx, ch.Position, ch.ConversationID)
		if row != nil {
			out = append(out, event{string(projections.ConversationUpdated), row})
		}
		return out, err
	}
	return nil, nil // a kind of change this server does not know yet
}

// canSee reports whether the principal may see conv, asking once per log event.
func (st *stream) canSee(ctx context.Context, pos uint64, conv string) (bool, error) {
	if st.seen.pos == pos && st.seen.conv == conv && pos != 0 {
		return st.seen.ok, nil
	}
	ok, err := st.rm.CanSee(ctx, st.p, conv)
	if err != nil {
		return false, fmt.Errorf("can %s see %s: %w", st.p.Actor().Key(), conv, err)
	}
	st.seen.pos, st.seen.conv, st.seen.ok = pos, conv, ok
	return ok, nil
}

// row returns conv's inbox row as the principal sees it, or nil when the
// principal may not see it or it does not exist.
func (st *stream) row(ctx context.Context, pos uint64, conv string) (*projections.InboxRow, error) {
	if ok, err := st.canSee(ctx, pos, conv); !ok || err != nil {
		return nil, err
	}
	row, ok, err := st.rm.InboxRow(ctx, st.p, conv)
	if !ok || err != nil {
		return nil, err
	}
	return &row, nil
}

// unread returns the unread.changed event of conv for the principal.
func (st *stream) unread(ctx context.Context, conv string) (event, error) {
	n, err := st.rm.UnreadIn(ctx, st.p, conv)
	if err != nil {
		return event{}, err
	}
	if st.widget {
		return event{eventUnread, widgetUnread{ConversationID: conv, Unread: n}}, nil
	}
	customers, mine, err := st.rm.Unread(ctx, st.p)
	if err != nil {
		return event{}, err
	}
	return event{eventUnread, agentUnread{ConversationID: conv, Unread: n, Customers: customers, Mine: mine}}, nil
}

// sseWriter writes SSE frames to a response, a flush at a time.
type sseWriter struct {
	w       gin.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
	last    uint64 // the last id written
}

// startSSE sends the headers of an event stream and lifts the server's
// write timeout for it; each flush then gets timeout to reach the client.
func startSSE(c *gin.Context, timeout time.Duration) *sseWriter {
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w := &sseWriter{w: c.Writer, rc: http.NewResponseController(c.Writer), timeout: timeout}
	w.deadline(time.Time{})
	c.Status(http.StatusOK)
	c.Writer.WriteHeaderNow()
	w.rc.Flush() // the headers now, even if no event follows for a while; a failure shows at the next write
	return w
}

func (w *sseWriter) deadline(t time.Time) {
	if err := w.rc.SetWriteDeadline(t); err != nil && !errors.Is(err, http.ErrNotSupported) {
		slog.Debug("cannot set a stream's write deadline", "err", err)
	}
}

// frame queues one event.
func (w *sseWriter) frame(id uint64, name string, data []byte) {
	w.buf.WriteString("id: ")
	w.buf.WriteString(strconv.FormatUint(id, 10))
	w.buf.WriteString("\nevent: ")
	w.buf.WriteString(name)
	w.buf.WriteString("\ndata: ")
	w.buf.Write(data) // encoding/json writes no newline
	w.buf.WriteString("\n\n")
	w.last = id
}

// id queues a frame holding only an id: clients take it as their resume
// token and dispatch no event.
func (w *sseWriter) id(id uint64) {
	w.buf.WriteString("id: ")
	w.buf.WriteString(strconv.FormatUint(id, 10))
	w.buf.WriteString("\n\n")
	w.last = id
}

// comment queues a comment line.
func (w *sseWriter) comment(text string) {
	w.buf.WriteString(": ")
	w.buf.WriteString(text)
	w.buf.WriteString("\n\n")
}

// flush writes what is queued and pushes it to the client.
func (w *sseWriter) flush() error {
	if w.buf.Len() == 0 {
		return nil
	}
	w.deadline(time.Now().Add(w.timeout))
	_, err := w.w.Write(w.buf.Bytes())
	w.buf.Reset()
	if err != nil {
		return err
	}
	return w.rc.Flush()
}

// end lifts the last write deadline, so that it does not outlive the stream
// on a kept-alive connection.
func (w *sseWriter) end() { w.deadline(time.Time{}) }
