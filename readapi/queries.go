package readapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/infra/httpkit"
	"github.com/helpdesk/messenger/projections"
)

func init() {
	httpkit.Register(projections.ErrBadCursor, http.StatusBadRequest, httpkit.CodeInvalid)
}

// API holds the query routes.
type API struct {
	rm  *projections.ReadModels
	log Log
}

// New returns the query routes over the read models and the log.
func New(rm *projections.ReadModels, log Log) *API { return &API{rm: rm, log: log} }

// Register mounts the routes that need a caller on authed, and the public
// ones on public.
func (a *API) Register(public, authed gin.IRouter) {
	public.GET("/v1/widget/status", a.widgetStatus)
	authed.GET("/v1/helpdesk", a.helpdesk)
	authed.GET("/v1/me", a.me)
	authed.GET("/v1/users", a.users)
	authed.GET("/v1/users/:id", a.user)
	authed.GET("/v1/customers/:id", a.customer)
	authed.GET("/v1/items", a.findItems)
	authed.GET("/v1/items/:id", a.item)
	authed.GET("/v1/inbox", a.inbox)
	authed.GET("/v1/unread", a.unread)
	authed.GET("/v1/conversations/:id", a.conversation)
	authed.GET("/v1/conversations/:id/history", a.history)
	authed.GET("/v1/widget/conversations", a.widgetConversations)
	authed.GET("/v1/audit/events", a.auditEvents)
}

func staffOnly(c *gin.Context) (directory.Principal, bool) {
	p := httpkit.Caller(c)
	if !p.IsStaff() {
		httpkit.Fail(c, httpkit.Forbidden("only staff may do this"))
		return p, false
	}
	return p, true
}

// helpdesk answers the helpdesk's status and both of its messages, as an
// admin edits them (the widget's status shows only the one in force).
func (a *API) helpdesk(c *gin.Context) {
	if _, ok := staffOnly(c); !ok {
		return
	}
	h, err := a.rm.Helpdesk(c.Request.Context())
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, h)
}

// staffList checks that the caller is staff and reads the list's ?limit=;
// it has answered the request when ok is false.
func staffList(c *gin.Context) (limit int, ok bool) {
	if _, ok := staffOnly(c); !ok {
		return 0, false
	}
	limit, err := httpkit.Limit(c)
	if err != nil {
		httpkit.Fail(c, err)
		return 0, false
	}
	return limit, true
}

func (a *API) widgetStatus(c *gin.Context) {
	h, err := a.rm.Helpdesk(c.Request.Context())
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"online": h.Online, "message": h.Message()})
}

func (a *API) me(c *gin.Context) {
	p := httpkit.Caller(c)
	ctx := c.Request.Context()
	if p.IsCustomer() {
		cu, _, err := a.rm.Customer(ctx, p.ID)
		if err != nil {
			httpkit.Fail(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"kind": "customer", "id": cu.ID, "name": cu.Name, "email": cu.Email, "created_at": cu.CreatedAt})
		return
	}
	u, _, err := a.rm.User(ctx, p.ID)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"kind": "user", "id": u.ID, "name": u.Name, "email": u.Email, "role": u.Role, "support": u.Support})
}

func (a *API) user(c *gin.Context) {
	if _, ok := staffOnly(c); !ok {
		return
	}
	u, ok, err := a.rm.User(c.Request.Context(), c.Param("id"))
	one(c, u, ok, err, "user")
}

// users lists the team, a page at a time: whom an agent may add to a
// conversation, assign or make follow an item.
func (a *API) users(c *gin.Context) {
	limit, ok := staffList(c)
	if !ok {
		return
	}
	us, next, err := a.rm.Users(c.Request.Context(), limit, c.Query("cursor"))
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"users": us, "next_cursor": nextCursor(next)})
}

// maxFindLen bounds the text an item search looks for.
const maxFindLen = 200

// findItems finds tickets and tasks by their title or id, newest first:
// what an agent links to a conversation.
func (a *API) findItems(c *gin.Context) {
	limit, ok := staffList(c)
	if !ok {
		return
	}
	q := c.Query("q")
	if !domain.IsText(q) || utf8.RuneCountInString(q) > maxFindLen {
		httpkit.Fail(c, invalid("q", fmt.Sprintf("q must be text of at most %d characters, without U+0000", maxFindLen)))
		return
	}
	items, err := a.rm.FindItems(c.Request.Context(), q, limit)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"items": items})
}

func one[T any](c *gin.Context, v T, ok bool, err error, what string) {
	switch {
	case err != nil:
		httpkit.Fail(c, err)
	case !ok:
		httpkit.Fail(c, httpkit.NotFound(what, c.Param("id")))
	default:
		c.JSON(http.StatusOK, v)
	}
}

func (a *API) customer(c *gin.Context) {
	if p := httpkit.Caller(c); !p.SeesCustomers() {
		httpkit.Fail(c, httpkit.Forbidden("only support staff and auditors may read customers"))
		return
	}
	cu, ok, err := a.rm.Customer(c.Request.Context(), c.Param("id"))
	one(c, cu, ok, err, "customer")
}

func (a *API) item(c *gin.Context) {
	if _, ok := staffOnly(c); !ok {
		return
	}
	it, ok, err := a.rm.Item(c.Request.Context(), c.Param("id"))
	one(c, it, ok, err, "item")
}

func invalid(field, msg string) *httpkit.Error {
	return &httpkit.Error{Status: http.StatusBadRequest, Code: httpkit.CodeInvalid, Message: msg, Field: field}
}

func nextCursor(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *API) inbox(c *gin.Context) {
	p, ok := staffOnly(c)
	if !ok {
		return
	}
	q := projections.InboxQuery{Section: projections.Section(c.DefaultQuery("section", "mine")), Status: c.DefaultQuery("status", "open"),
		Search: c.Query("q"), Cursor: c.Query("cursor")}
	switch q.Section {
	case projections.Customers:
		if !p.SeesCustomers() {
			httpkit.Fail(c, httpkit.Forbidden("the customers section is for support staff"))
			return
		}
	case projections.Mine:
	default:
		httpkit.Fail(c, invalid("section", `section must be "customers" or "mine"`))
		return
	}
	if q.Status != "open" && q.Status != "closed" {
		httpkit.Fail(c, invalid("status", `status must be "open" or "closed"`))
		return
	}
	if len([]rune(q.Search)) > 200 {
		httpkit.Fail(c, invalid("q", "q must be at most 200 characters"))
		return
	}
	var err error
	if q.Limit, err = httpkit.Limit(c); err != nil {
		httpkit.Fail(c, err)
		return
	}
	rows, next, err := a.rm.Inbox(c.Request.Context(), p, q)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"conversations": rows, "next_cursor": nextCursor(next)})
}

func (a *API) unread(c *gin.Context) {
	p, ok := staffOnly(c)
	if !ok {
		return
	}
	customers, mine, err := a.rm.Unread(c.Request.Context(), p)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"customers": customers, "mine": mine})
}

func (a *API) widgetConversations(c *gin.Context) {
	p := httpkit.Caller(c)
	if !p.IsCustomer() {
		httpkit.Fail(c, httpkit.Forbidden("only customers have widget conversations"))
		return
	}
	limit, err := httpkit.Limit(c)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	rows, next, err := a.rm.Inbox(c.Request.Context(), p, projections.InboxQuery{Limit: limit, Cursor: c.Query("cursor")})
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"conversations": rows, "next_cursor": nextCursor(next)})
}

// visibleConversation answers 404 unless p may see conversation :id.
func (a *API) visibleConversation(c *gin.Context, p directory.Principal) (string, bool) {
	id := c.Param("id")
	ok, err := a.rm.CanSee(c.Request.Context(), p, id)
	if err != nil {
		httpkit.Fail(c, err)
		return id, false
	}
	if !ok {
		httpkit.Fail(c, httpkit.NotFound("conversation", id))
	}
	return id, ok
}

func (a *API) conversation(c *gin.Context) {
	p := httpkit.Caller(c)
	id, ok := a.visibleConversation(c, p)
	if !ok {
		return
	}
	limit, err := httpkit.Limit(c)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	d, err := a.detail(c.Request.Context(), id, limit, c.Query("cursor"))
	one(c, d, err == nil, err, "conversation")
}

func (a *API) detail(ctx context.Context, id string, limit int, cursor string) (projections.ConversationDetail, error) {
	conv, ok, err := a.rm.Conversation(ctx, id)
	if err != nil {
		return projections.ConversationDetail{}, err
	}
	if !ok {
		return projections.ConversationDetail{}, httpkit.NotFound("conversation", id)
	}
	msgs, next, err := a.rm.Messages(ctx, id, limit, cursor)
	return projections.ConversationDetail{Conversation: conv, Messages: msgs, NextCursor: nextCursor(next)}, err
}

// Event is a log event as auditors read it.
type Event struct {
	Position projections.Position `json:"position"`
	Stream   string               `json:"stream"`
	Version  int64                `json:"version"`
	Type     string               `json:"type"`
	At       projections.Time     `json:"at"`
	Actor    EventActor           `json:"actor"`
	Data     json.RawMessage      `json:"data"`
}

// EventActor is who caused an event.
type EventActor struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// secretFields are event data fields that no export shows: a token's hash
// is as good as the token to someone who can guess a weak one offline.
var secretFields = []string{"token_hash"}

// ToEvent renders a recorded event for auditors, without secrets.
func ToEvent(r domain.Recorded) Event {
	data := json.RawMessage(r.Data)
	if len(data) == 0 {
		data = json.RawMessage(`{}`)
	}
	if bytes.Contains(data, []byte(`"token_hash"`)) {
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) == nil {
			for _, f := range secretFields {
				if _, ok := m[f]; ok {
					m[f] = json.RawMessage(`"[redacted]"`)
				}
			}
			if b, err := json.Marshal(m); err == nil {
				data = b
			}
		}
	}
	return Event{Position: projections.Position(r.Position), Stream: r.Stream, Version: r.Version, Type: r.Type,
		At: projections.Time(r.At), Actor: EventActor{Kind: string(r.Actor.Kind), ID: r.Actor.ID}, Data: data}
}

func (a *API) history(c *gin.Context) {
	p := httpkit.Caller(c)
	if !p.IsStaff() {
		httpkit.Fail(c, httpkit.Forbidden("only staff may read a conversation's history"))
		return
	}
	id, ok := a.visibleConversation(c, p)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	recs, err := a.log.ReadStream(ctx, conversation.Stream(id))
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	events := make([]Event, len(recs))
	for i, r := range recs {
		events[i] = ToEvent(r)
	}
	at := c.Query("at")
	if at == "" {
		c.JSON(http.StatusOK, gin.H{"events": events})
		return
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		httpkit.Fail(c, invalid("at", "at must be an RFC 3339 time"))
		return
	}
	st, positions, last, existed := projections.StateAt(recs, t)
	if !existed {
		c.JSON(http.StatusOK, gin.H{"events": events, "state": nil})
		return
	}
	d, err := a.rm.RenderState(ctx, st, positions, last)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"events": events, "state": d})
}

func (a *API) auditEvents(c *gin.Context) {
	p := httpkit.Caller(c)
	if !p.IsAuditor() && !p.IsAdmin() {
		httpkit.Fail(c, httpkit.Forbidden("only auditors and admins may export the log"))
		return
	}
	after := uint64(0)
	for _, name := range []string{"after", "cursor"} {
		if s := c.Query(name); s != "" {
			pos, ok := projections.ParsePosition(s)
			if !ok {
				httpkit.Fail(c, invalid(name, name+" must be a position token"))
				return
			}
			after = uint64(pos)
		}
	}
	ctx := c.Request.Context()
	if c.GetHeader("Accept") == "application/x-ndjson" {
		a.streamEvents(c, after)
		return
	}
	limit, err := httpkit.Limit(c)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	recs, err := a.log.ReadAll(ctx, after, limit+1)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	var next *string
	if len(recs) > limit {
		recs = recs[:limit]
		next = nextCursor(strconv.FormatUint(recs[len(recs)-1].Position, 10))
	}
	events := make([]Event, len(recs))
	for i, r := range recs {
		events[i] = ToEvent(r)
	}
	c.JSON(http.StatusOK, gin.H{"events": events, "next_cursor": next})
}

// streamEvents writes every event after after, one JSON object a line, up
// to the end of the log as it is when the export reaches it.
func (a *API) streamEvents(c *gin.Context, after uint64) {
	ctx := c.Request.Context()
	c.Header("Content-Type", "application/x-ndjson")
	c.Status(http.StatusOK)
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Time{})
	enc := json.NewEncoder(c.Writer)
	for {
		recs, err := a.log.ReadAll(ctx, after, 1000)
		if err != nil || len(recs) == 0 {
			return // headers are sent: an error can only end the stream
		}
		for _, r := range recs {
			if err := enc.Encode(ToEvent(r)); err != nil {
				return
			}
			after = r.Position
		}
		c.Writer.Flush()
	}
}

// Views renders what writes changed; it is the write routes' view port.
type Views struct {
	rm     *projections.ReadModels
	shared *renderings
}

// Views returns the views over the read models of s, which share with its
// streams what they read: a posted message is read once for its author's
// answer and for every stream.
func (s *Streams) Views() Views { return Views{rm: s.rm, shared: s.shared} }

// Conversation renders conversation id without messages.
func (v Views) Conversation(ctx context.Context, _ directory.Principal, id string) (any, error) {
	c, ok, err := v.rm.Conversation(ctx, id)
	if err == nil && !ok {
		err = httpkit.NotFound("conversation", id)
	}
	return c, err
}

// Message renders message mid of conversation id as it stands after
// position at, or later.
func (v Views) Message(ctx context.Context, id, mid string, at uint64) (any, error) {
	if at > 0 {
		data, err := v.shared.message(ctx, at, id, mid)
		if err == nil && data == nil {
			err = httpkit.NotFound("message", mid)
		}
		return json.RawMessage(data), err
	}
	m, ok, err := v.rm.Message(ctx, id, mid)
	if err == nil && !ok {
		err = httpkit.NotFound("message", mid)
	}
	return m, err
}

// Posted renders the message p just posted to conversation id.
func (v Views) Posted(p directory.Principal, id string, m conversation.Message, at uint64) any {
	return projections.PostedMessage(id, m, p.Name, at)
}

// Item renders item id.
func (v Views) Item(ctx context.Context, id string) (any, error) {
	it, ok, err := v.rm.Item(ctx, id)
	if err == nil && !ok {
		err = httpkit.NotFound("item", id)
	}
	return it, err
}

// HelpdeskMessage returns the configured message for online or offline.
func (v Views) HelpdeskMessage(ctx context.Context, online bool) (string, error) {
	h, err := v.rm.Helpdesk(ctx)
	if online {
		return h.OnlineMessage, err
	}
	return h.OfflineMessage, err
}
