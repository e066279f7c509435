package commands

import (
	"context"
	"errors"
	"strings"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/item"
)

func convEvolve(s conversation.State, e conversation.Event) conversation.State {
	return conversation.Evolve(s, e)
}

func decideConv(cmd conversation.Command) func(conversation.State) ([]conversation.Event, error) {
	return func(s conversation.State) ([]conversation.Event, error) { return conversation.Decide(s, cmd) }
}

// visible returns a not-found error unless p may see conversation id.
func (s *Service) visible(ctx context.Context, p directory.Principal, id string) error {
	ok, err := s.access.CanSee(ctx, p, id)
	if err != nil {
		return err
	}
	if !ok {
		return notFound("conversation", id)
	}
	return nil
}

// visibleInCache reports whether the state of conversation id this process
// keeps shows already that p may see it, which spares asking the read
// models on every post. Who may see a conversation only grows (its customer
// and channel never change, participants never leave), so a yes from any
// state stands; a no may be out of date and is asked of the read models.
func (s *Service) visibleInCache(p directory.Principal, id string) bool {
	e := s.cache.peek(conversation.Stream(id))
	if e == nil {
		return false
	}
	e.mu.Lock()
	st, ok := e.state.(conversation.State)
	e.mu.Unlock()
	switch {
	case !ok || !st.Exists():
		return false
	case p.IsCustomer():
		return st.CustomerID == p.ID
	case p.IsAuditor() || (p.IsSupport() && st.Channel == conversation.LiveChat):
		return true
	}
	return p.IsStaff() && st.IsParticipant(p.ID)
}

// exists reports whether stream holds any event.
func (s *Service) exists(ctx context.Context, stream string) (bool, error) {
	recs, err := s.store.ReadStream(ctx, stream)
	return len(recs) > 0, err
}

// onConversation runs cmd on conversation id, which p must be able to see.
func (s *Service) onConversation(ctx context.Context, p directory.Principal, id string, cmd conversation.Command,
	eventID func(int, conversation.Event) string, inspect func(conversation.State)) (Result, error) {
	if !s.visibleInCache(p, id) {
		if err := s.visible(ctx, p, id); err != nil {
			return Result{}, err
		}
	}
	res, err := execute(ctx, s, conversation.Stream(id), convEvolve, decideConv(cmd), eventID, inspect)
	if errors.Is(err, conversation.ErrNotFound) {
		return res, notFound("conversation", id)
	}
	return res, err
}

// StartConversation starts a conversation with its first message: a live
// chat when p is a customer, an internal one between teammates otherwise.
func (s *Service) StartConversation(ctx context.Context, p directory.Principal, subject, body string, participants []string) (string, Result, error) {
	if !p.IsCustomer() && !p.CanWrite() {
		return "", Result{}, ErrForbidden
	}
	if p.IsStaff() && len(participants) > 0 && len(participants) <= domain.MaxParticipants {
		missing, err := s.access.MissingUsers(ctx, participants)
		if err != nil {
			return "", Result{}, err
		}
		if len(missing) > 0 {
			return "", Result{}, domain.Invalid("participants", "no user "+strings.Join(missing, ", "))
		}
	}
	id := s.cfg.NewID()
	cmd := conversation.Start{Meta: s.meta(p), ConversationID: id, MessageID: s.cfg.NewID(), Subject: subject, Body: body, Participants: participants}
	res, err := execute(ctx, s, conversation.Stream(id), convEvolve, decideConv(cmd), nil, nil)
	return id, res, err
}

// PostMessage adds a message to conversation id. A post repeating an earlier
// client id of the same author returns the first message, appending nothing.
func (s *Service) PostMessage(ctx context.Context, p directory.Principal, id, body, clientID string) (string, Result, error) {
	posted, err := s.Post(ctx, p, id, body, clientID)
	if err != nil {
		return "", posted.Result, err
	}
	return posted.Message.ID, posted.Result, nil
}

// Posted is what Post did: the message as the conversation held it after
// the write, and the write's result. When Result.First is not 0 the message
// is new, First is its event's position, and the read models hold it as
// Message says (nothing else can have changed it before the answer).
type Posted struct {
	Message conversation.Message
	Result
}

// Post is PostMessage, returning the message itself.
func (s *Service) Post(ctx context.Context, p directory.Principal, id, body, clientID string) (Posted, error) {
	if !p.CanWrite() {
		return Posted{}, ErrForbidden
	}
	cmd := conversation.Post{Meta: s.meta(p), MessageID: s.cfg.NewID(), Body: body, ClientID: clientID}
	var eventID func(int, conversation.Event) string
	if clientID != "" {
		eventID = func(i int, e conversation.Event) string {
			return stableID("post", id, p.Actor().Key(), clientID, e.EventType())
		}
	}
	// A retry (or the store's answer to one) names the first message.
	var posted Posted
	posted.Message.ID = cmd.MessageID
	res, err := s.onConversation(ctx, p, id, cmd, eventID, func(st conversation.State) {
		if m, ok := st.MessageByClientID(p.Actor(), clientID); ok {
			posted.Message = m
		} else if m, ok := st.Message(cmd.MessageID); ok {
			posted.Message = m
		}
	})
	posted.Result = res
	if posted.Message.ID != cmd.MessageID {
		posted.First = 0 // an earlier message: the read models may hold it edited since
	}
	return posted, err
}

// EditMessage replaces the text of p's own message.
func (s *Service) EditMessage(ctx context.Context, p directory.Principal, id, messageID, body string) (Result, error) {
	if !p.CanWrite() {
		return Result{}, ErrForbidden
	}
	res, err := s.onConversation(ctx, p, id, conversation.Edit{Meta: s.meta(p), MessageID: messageID, Body: body}, nil, nil)
	return res, messageErr(err, messageID)
}

// DeleteMessage blanks a message of p's own, or any message when p is an admin.
func (s *Service) DeleteMessage(ctx context.Context, p directory.Principal, id, messageID string) (Result, error) {
	if !p.CanWrite() {
		return Result{}, ErrForbidden
	}
	res, err := s.onConversation(ctx, p, id, conversation.Delete{Meta: s.meta(p), MessageID: messageID, Moderator: p.IsAdmin()}, nil, nil)
	return res, messageErr(err, messageID)
}

func messageErr(err error, id string) error {
	if errors.Is(err, conversation.ErrMessageNotFound) {
		return notFound("message", id)
	}
	return err
}

// staffOn checks that p is staff who may write, then runs cmd.
func (s *Service) staffOn(ctx context.Context, p directory.Principal, id string, cmd conversation.Command) (Result, error) {
	if !p.IsStaff() || !p.CanWrite() {
		return Result{}, ErrForbidden
	}
	return s.onConversation(ctx, p, id, cmd, nil, nil)
}

// Close closes conversation id; closing a closed one changes nothing.
func (s *Service) Close(ctx context.Context, p directory.Principal, id string) (Result, error) {
	return s.staffOn(ctx, p, id, conversation.Close{Meta: s.meta(p)})
}

// Reopen reopens conversation id; reopening an open one changes nothing.
func (s *Service) Reopen(ctx context.Context, p directory.Principal, id string) (Result, error) {
	return s.staffOn(ctx, p, id, conversation.Reopen{Meta: s.meta(p)})
}

// MarkRead records that p has read conversation id up to now.
func (s *Service) MarkRead(ctx context.Context, p directory.Principal, id string) (Result, error) {
	if !p.CanWrite() {
		return Result{}, ErrForbidden
	}
	return s.onConversation(ctx, p, id, conversation.MarkRead{Meta: s.meta(p)}, nil, nil)
}

// Link links existing item itemID to conversation id.
func (s *Service) Link(ctx context.Context, p directory.Principal, id, itemID string) (Result, error) {
	if !p.IsStaff() || !p.CanWrite() {
		return Result{}, ErrForbidden
	}
	if itemID == "" {
		return Result{}, domain.Invalid("item_id", "is required")
	}
	if err := s.visible(ctx, p, id); err != nil {
		return Result{}, err
	}
	exists, err := s.exists(ctx, item.Stream(itemID))
	if err != nil {
		return Result{}, err
	}
	if !exists {
		return Result{}, domain.Invalid("item_id", "no item "+itemID)
	}
	return s.staffOn(ctx, p, id, conversation.Link{Meta: s.meta(p), ItemID: itemID})
}

// Unlink removes the link of item itemID from conversation id; an item not
// linked changes nothing.
func (s *Service) Unlink(ctx context.Context, p directory.Principal, id, itemID string) (Result, error) {
	if !p.IsStaff() || !p.CanWrite() {
		return Result{}, ErrForbidden
	}
	if err := s.visible(ctx, p, id); err != nil {
		return Result{}, err
	}
	if exists, err := s.exists(ctx, item.Stream(itemID)); err != nil || !exists {
		if err == nil {
			err = notFound("item", itemID)
		}
		return Result{}, err
	}
	res, err := s.staffOn(ctx, p, id, conversation.Unlink{Meta: s.meta(p), ItemID: itemID})
	if errors.Is(err, conversation.ErrNotLinked) {
		return res, nil // DELETE is idempotent: what is not linked stays unlinked
	}
	return res, err
}

// TitleLen is how much of the first message a title made from it keeps.
const TitleLen = 80

// CreateItemFrom creates a ticket or task from conversation id and links it.
// Title and description left empty are filled from the conversation: the
// subject (else the first message cut at TitleLen characters) and the first
// message; the requester is the conversation's customer.
func (s *Service) CreateItemFrom(ctx context.Context, p directory.Principal, id string, kind item.Kind, title, description string) (string, Result, error) {
	if !p.IsStaff() || !p.CanWrite() {
		return "", Result{}, ErrForbidden
	}
	if err := s.visible(ctx, p, id); err != nil {
		return "", Result{}, err
	}
	recs, err := s.store.ReadStream(ctx, conversation.Stream(id))
	if err != nil {
		return "", Result{}, err
	}
	var st conversation.State
	for _, r := range recs {
		if e, ok := r.Event.(conversation.Event); ok {
			st = conversation.Evolve(st, e)
		}
	}
	if !st.Exists() {
		return "", Result{}, notFound("conversation", id)
	}
	first := ""
	if len(st.Messages) > 0 {
		first = st.Messages[0].Body
	}
	if strings.TrimSpace(title) == "" {
		title = st.Subject
		if title == "" {
			title = cut(strings.Join(strings.Fields(first), " "), TitleLen)
		}
	}
	if description == "" {
		description = first
	}
	itemID := s.cfg.NewID()
	create := item.Create{Meta: s.meta(p), ItemID: itemID, Kind: kind, Title: title, Description: description,
		RequesterID: st.CustomerID, SourceConversationID: id}
	if _, err := execute(ctx, s, item.Stream(itemID), item.Evolve, decideItem(create), nil, nil); err != nil {
		return "", Result{}, err
	}
	res, err := execute(ctx, s, conversation.Stream(id), convEvolve, decideConv(conversation.Link{Meta: s.meta(p), ItemID: itemID}), nil, nil)
	return itemID, res, err
}

func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
