// Package httpapi serves the write side over HTTP: it decodes and checks
// requests, calls the commands, and answers with the read models' view of
// what changed (the write has been applied to them before it answers).
package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/item"
	"github.com/helpdesk/messenger/infra/httpkit"
)

// Views renders what a write changed, as the read side shows it.
type Views interface {
	// Conversation renders conversation id (without messages) as p sees it.
	Conversation(ctx context.Context, p directory.Principal, id string) (any, error)
	// Message renders message mid of conversation id as it stands after
	// log position at (or later).
	Message(ctx context.Context, id, mid string, at uint64) (any, error)
	// Posted renders the message p just posted to conversation id, new at
	// position at, as the read models hold it.
	Posted(p directory.Principal, id string, m conversation.Message, at uint64) any
	// Item renders item id.
	Item(ctx context.Context, id string) (any, error)
	// WidgetMessage returns the message the widget shows for online.
	HelpdeskMessage(ctx context.Context, online bool) (string, error)
}

func init() {
	httpkit.Register(commands.ErrForbidden, http.StatusForbidden, httpkit.CodeForbidden)
	httpkit.Register(commands.ErrNotFound, http.StatusNotFound, httpkit.CodeNotFound)
	httpkit.Register(commands.ErrConflict, http.StatusConflict, httpkit.CodeConflict)
	httpkit.Register(commands.ErrBusy, http.StatusConflict, httpkit.CodeConflict)
	httpkit.Register(commands.ErrUnavailable, http.StatusServiceUnavailable, httpkit.CodeUnavailable)
}

// API holds the write routes.
type API struct {
	svc   *commands.Service
	views Views
}

// New returns the write routes over svc, answering with views.
func New(svc *commands.Service, views Views) *API { return &API{svc: svc, views: views} }

// Register mounts the routes that need a caller on authed, and the public
// ones on public.
func (a *API) Register(public, authed gin.IRouter) {
	public.POST("/v1/widget/sessions", a.widgetSession)
	authed.POST("/v1/users", a.createUser)
	authed.PUT("/v1/helpdesk/status", a.setStatus)
	authed.PUT("/v1/helpdesk/messages", a.setMessages)
	authed.POST("/v1/conversations", a.startConversation)
	authed.POST("/v1/conversations/:id/messages", a.post)
	authed.PATCH("/v1/conversations/:id/messages/:mid", a.edit)
	authed.DELETE("/v1/conversations/:id/messages/:mid", a.delete)
	authed.POST("/v1/conversations/:id/close", a.close)
	authed.POST("/v1/conversations/:id/reopen", a.reopen)
	authed.POST("/v1/conversations/:id/read", a.read)
	authed.POST("/v1/conversations/:id/items", a.createItemFrom)
	authed.POST("/v1/conversations/:id/links", a.link)
	authed.DELETE("/v1/conversations/:id/links/:item", a.unlink)
	authed.POST("/v1/items", a.createItem)
	authed.POST("/v1/items/:id/assignees", a.assign)
	authed.POST("/v1/items/:id/followers", a.follow)
}

// withPosition adds the write's position token to a rendered view.
func withPosition(v any, pos uint64) any {
	return positioned{v, pos}
}

func answer(c *gin.Context, status int, v any, err error) {
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(status, v)
}

func (a *API) widgetSession(c *gin.Context) {
	var req struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	if c.Request.ContentLength != 0 {
		if err := httpkit.Decode(c, &req); err != nil {
			httpkit.Fail(c, err)
			return
		}
	}
	nu, err := a.svc.RegisterCustomer(c.Request.Context(), req.Name, req.Email)
	answer(c, http.StatusCreated, gin.H{"customer_id": nu.ID, "token": nu.Token, "position": pos(nu.Result.Position)}, err)
}

func (a *API) createUser(c *gin.Context) {
	p := httpkit.Caller(c)
	if !p.IsAdmin() {
		httpkit.Fail(c, commands.ErrForbidden)
		return
	}
	var req struct {
		Name    string `json:"name"`
		Email   string `json:"email"`
		Role    string `json:"role"`
		Support bool   `json:"support"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	nu, err := a.svc.CreateUser(c.Request.Context(), p, req.Name, req.Email, directory.Role(req.Role), req.Support)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"id": nu.ID, "name": trim(req.Name), "email": trim(req.Email), "role": req.Role,
		"support": req.Support, "token": nu.Token, "position": pos(nu.Result.Position)})
}

func (a *API) setStatus(c *gin.Context) {
	var req struct {
		Online *bool `json:"online"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	if req.Online == nil {
		httpkit.Fail(c, &httpkit.Error{Status: http.StatusBadRequest, Code: httpkit.CodeInvalid, Message: "online is required", Field: "online"})
		return
	}
	st, res, err := a.svc.SetHelpdeskStatus(c.Request.Context(), httpkit.Caller(c), *req.Online)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	msg, err := a.views.HelpdeskMessage(c.Request.Context(), st.Online)
	answer(c, http.StatusOK, gin.H{"online": st.Online, "message": msg, "position": pos(res.Position)}, err)
}

func (a *API) setMessages(c *gin.Context) {
	var req struct {
		Online  *string `json:"online_message"`
		Offline *string `json:"offline_message"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	for _, f := range [...]struct {
		name string
		v    *string
	}{{"online_message", req.Online}, {"offline_message", req.Offline}} {
		if f.v == nil {
			httpkit.Fail(c, &httpkit.Error{Status: http.StatusBadRequest, Code: httpkit.CodeInvalid, Message: f.name + " is required", Field: f.name})
			return
		}
	}
	st, res, err := a.svc.ConfigureHelpdesk(c.Request.Context(), httpkit.Caller(c), *req.Online, *req.Offline)
	answer(c, http.StatusOK, gin.H{"online_message": st.OnlineMessage, "offline_message": st.OfflineMessage, "position": pos(res.Position)}, err)
}

func (a *API) startConversation(c *gin.Context) {
	p := httpkit.Caller(c)
	var req struct {
		Body         string   `json:"body"`
		Subject      string   `json:"subject"`
		Participants []string `json:"participants"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	id, res, err := a.svc.StartConversation(c.Request.Context(), p, req.Subject, req.Body, req.Participants)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	v, err := a.views.Conversation(c.Request.Context(), p, id)
	answer(c, http.StatusCreated, withPosition(v, res.Position), err)
}

func (a *API) post(c *gin.Context) {
	var req struct {
		Body     string `json:"body"`
		ClientID string `json:"client_id"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	id := c.Param("id")
	p := httpkit.Caller(c)
	posted, err := a.svc.Post(c.Request.Context(), p, id, req.Body, req.ClientID)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	if !posted.Appended {
		v, err := a.views.Message(c.Request.Context(), id, posted.Message.ID, posted.Position)
		answer(c, http.StatusOK, v, err)
		return
	}
	if posted.First != 0 { // new: no need to read it back
		answer(c, http.StatusCreated, a.views.Posted(p, id, posted.Message, posted.First), nil)
		return
	}
	v, err := a.views.Message(c.Request.Context(), id, posted.Message.ID, posted.Position)
	answer(c, http.StatusCreated, v, err)
}

func (a *API) edit(c *gin.Context) {
	var req struct {
		Body string `json:"body"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	id, mid := c.Param("id"), c.Param("mid")
	res, err := a.svc.EditMessage(c.Request.Context(), httpkit.Caller(c), id, mid, req.Body)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	v, err := a.views.Message(c.Request.Context(), id, mid, res.Position)
	answer(c, http.StatusOK, v, err)
}

func (a *API) delete(c *gin.Context) {
	id, mid := c.Param("id"), c.Param("mid")
	res, err := a.svc.DeleteMessage(c.Request.Context(), httpkit.Caller(c), id, mid)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	v, err := a.views.Message(c.Request.Context(), id, mid, res.Position)
	answer(c, http.StatusOK, v, err)
}

// conversationAfter runs a write on conversation :id and answers with the conversation.
func (a *API) conversationAfter(c *gin.Context, write func(ctx context.Context, p directory.Principal, id string) (commands.Result, error)) {
	p, id := httpkit.Caller(c), c.Param("id")
	res, err := write(c.Request.Context(), p, id)
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	v, err := a.views.Conversation(c.Request.Context(), p, id)
	answer(c, http.StatusOK, withPosition(v, res.Position), err)
}

func (a *API) close(c *gin.Context)  { a.conversationAfter(c, a.svc.Close) }
func (a *API) reopen(c *gin.Context) { a.conversationAfter(c, a.svc.Reopen) }

func (a *API) read(c *gin.Context) {
	var req struct{}
	if c.Request.ContentLength != 0 {
		if err := httpkit.Decode(c, &req); err != nil {
			httpkit.Fail(c, err)
			return
		}
	}
	id := c.Param("id")
	res, err := a.svc.MarkRead(c.Request.Context(), httpkit.Caller(c), id)
	answer(c, http.StatusOK, gin.H{"conversation_id": id, "unread": 0, "position": pos(res.Position)}, err)
}

func (a *API) link(c *gin.Context) {
	var req struct {
		ItemID string `json:"item_id"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	a.conversationAfter(c, func(ctx context.Context, p directory.Principal, id string) (commands.Result, error) {
		return a.svc.Link(ctx, p, id, req.ItemID)
	})
}

func (a *API) unlink(c *gin.Context) {
	a.conversationAfter(c, func(ctx context.Context, p directory.Principal, id string) (commands.Result, error) {
		return a.svc.Unlink(ctx, p, id, c.Param("item"))
	})
}

type itemRequest struct {
	Kind        string   `json:"kind"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Assignees   []string `json:"assignees"`
}

func (a *API) createItemFrom(c *gin.Context) {
	var req struct {
		Kind        string `json:"kind"`
		Title       string `json:"title"`
		Description string `json:"description"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	id, res, err := a.svc.CreateItemFrom(c.Request.Context(), httpkit.Caller(c), c.Param("id"), item.Kind(req.Kind), req.Title, req.Description)
	a.itemAnswer(c, http.StatusCreated, id, res, err)
}

func (a *API) createItem(c *gin.Context) {
	var req itemRequest
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	id, res, err := a.svc.CreateItem(c.Request.Context(), httpkit.Caller(c), item.Kind(req.Kind), req.Title, req.Description, req.Assignees)
	a.itemAnswer(c, http.StatusCreated, id, res, err)
}

func (a *API) itemAnswer(c *gin.Context, status int, id string, res commands.Result, err error) {
	if err != nil {
		httpkit.Fail(c, err)
		return
	}
	v, err := a.views.Item(c.Request.Context(), id)
	answer(c, status, withPosition(v, res.Position), err)
}

func (a *API) itemPerson(c *gin.Context, write func(ctx context.Context, p directory.Principal, id, user string) (commands.Result, error)) {
	var req struct {
		UserID string `json:"user_id"`
	}
	if err := httpkit.Decode(c, &req); err != nil {
		httpkit.Fail(c, err)
		return
	}
	id := c.Param("id")
	res, err := write(c.Request.Context(), httpkit.Caller(c), id, req.UserID)
	a.itemAnswer(c, http.StatusOK, id, res, err)
}

func (a *API) assign(c *gin.Context) { a.itemPerson(c, a.svc.Assign) }
func (a *API) follow(c *gin.Context) { a.itemPerson(c, a.svc.Follow) }
