// Package conversation decides what may happen to a conversation: the live
// chat with a customer, or an internal thread between teammates. Its stream is
// "conversation-<id>".
package conversation

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/helpdesk/messenger/domain"
)

// Channel is where a conversation takes place.
type Channel string

// The channels.
const (
	LiveChat Channel = "livechat"
	Internal Channel = "internal"
)

// Status is whether a conversation is open.
type Status string

// The statuses.
const (
	StatusOpen   Status = "open"
	StatusClosed Status = "closed"
)

// ReopenCause records why a conversation reopened.
type ReopenCause string

// The causes of a reopen.
const (
	// CustomerReplied: the customer wrote to the closed conversation.
	CustomerReplied ReopenCause = "customer_replied"
	// TeammateReplied: a user wrote to the closed conversation.
	TeammateReplied ReopenCause = "teammate_replied"
	// ReopenedByHand: a user reopened it explicitly.
	ReopenedByHand ReopenCause = "reopened"
)

// Stream returns the event stream name of conversation id.
func Stream(id string) string { return "conversation-" + id }

// Errors returned by Decide.
var (
	// ErrNotFound: the conversation does not exist (yet).
	ErrNotFound = errors.New("conversation does not exist")
	// ErrExists: Start was given for a conversation that already exists.
	ErrExists = errors.New("conversation already exists")
	// ErrMessageNotFound: the message is not in this conversation.
	ErrMessageNotFound = errors.New("message does not exist")
	// ErrMessageDeleted: the message was deleted and cannot be edited.
	ErrMessageDeleted = errors.New("message was deleted")
	// ErrNotAuthor: only a message's author may edit it (or delete it, unless a moderator).
	ErrNotAuthor = errors.New("only the author may change this message")
	// ErrNotLinked: the item is not linked to this conversation.
	ErrNotLinked = errors.New("item is not linked to this conversation")
	// ErrTooManyLinks: a conversation links at most MaxLinks items.
	ErrTooManyLinks = errors.New("too many linked items")
	// ErrCustomerParticipants: a customer cannot name participants.
	ErrCustomerParticipants error = &domain.FieldError{Field: "participants", Reason: "a customer cannot add participants"}
)

// MaxLinks bounds the items one conversation links.
const MaxLinks = 100

// Message is a message as the conversation's state holds it.
type Message struct {
	ID        string
	Seq       int // 1, 2, … in order of posting
	Author    domain.Actor
	Body      string // current text; "" once deleted
	ClientID  string
	CreatedAt time.Time
	UpdatedAt time.Time
	Edited    bool
	Deleted   bool
}

// State is a conversation as its events leave it. The zero State is a
// conversation that does not exist yet.
type State struct {
	ID           string
	Channel      Channel
	Subject      string
	Status       Status
	CustomerID   string   // "" for internal conversations
	Participants []string // user ids, in order of joining
	Links        []string // item ids, in order of linking
	Messages     []Message
	ReadUpTo     map[string]int // actor key → Seq of the last message they have read
	CreatedAt    time.Time
	UpdatedAt    time.Time

	// Where each message is in Messages, by id and by author and client
	// id, kept by Evolve: a post asks both, and a busy conversation holds
	// thousands of messages. A State made otherwise has none, and scans.
	byID     map[string]int
	byClient map[clientKey]int
	// texts counts the bytes of the messages' ids, texts and client ids,
	// kept by Evolve (see Size).
	texts int
}

// messageOverhead approximates what a message holds besides its texts: the
// Message and its places in the indexes of a State that Evolve keeps.
const messageOverhead = 224

// Size approximates the bytes s holds, for a cache that keeps states and
// bounds what they hold in all: a long conversation holds its messages'
// texts (up to 10,000 characters each). Only Evolve counts the texts; a
// State made otherwise counts its messages at their overhead.
func (s State) Size() int {
	return 512 + len(s.Subject) + len(s.Messages)*messageOverhead + s.texts + 32*(len(s.Participants)+len(s.Links)+len(s.ReadUpTo))
}

type clientKey struct {
	author   domain.Actor
	clientID string
}

// Exists reports whether the conversation has been started.
func (s State) Exists() bool { return s.ID != "" }

// Message returns the message with id, and whether there is one: from the
// index Evolve keeps (a post looks up its new message, the last of
// thousands), else by a scan.
func (s State) Message(id string) (Message, bool) {
	if i := s.index(id); i >= 0 {
		return s.Messages[i], true
	}
	return Message{}, false
}

// MessageByClientID returns the message author posted with clientID, if any.
func (s State) MessageByClientID(author domain.Actor, clientID string) (Message, bool) {
	if clientID == "" {
		return Message{}, false
	}
	if s.byClient != nil && len(s.byID) == len(s.Messages) {
		if i, ok := s.byClient[clientKey{author, clientID}]; ok {
			return s.Messages[i], true
		}
		return Message{}, false
	}
	for _, m := range s.Messages {
		if m.ClientID == clientID && m.Author == author {
			return m, true
		}
	}
	return Message{}, false
}

// IsParticipant reports whether user id takes part in the conversation.
func (s State) IsParticipant(userID string) bool { return slices.Contains(s.Participants, userID) }

// IsLinked reports whether item id is linked.
func (s State) IsLinked(itemID string) bool { return slices.Contains(s.Links, itemID) }

// LastSeq is the Seq of the newest message, 0 when there is none.
func (s State) LastSeq() int { return len(s.Messages) }

// Unread counts the messages by others, not deleted, after reader's last read.
func (s State) Unread(reader domain.Actor) int {
	n := 0
	for _, m := range s.Messages[min(s.ReadUpTo[reader.Key()], len(s.Messages)):] {
		if !m.Deleted && m.Author != reader {
			n++
		}
	}
	return n
}

// Commands.

// Command is one of the commands below.
type Command interface{ isCommand() }

// Start opens a conversation with its first message. A customer's is a live
// chat; a user's is internal between the user and Participants.
type Start struct {
	domain.Meta
	ConversationID string
	MessageID      string
	Subject        string
	Body           string
	Participants   []string // user ids besides the actor; users only
}

// Post adds a message. ClientID, when set, makes a retried post idempotent.
type Post struct {
	domain.Meta
	MessageID string
	Body      string
	ClientID  string
}

// Edit replaces the text of the actor's own message.
type Edit struct {
	domain.Meta
	MessageID string
	Body      string
}

// Delete removes a message's text, leaving a tombstone. Moderator lets
// someone other than the author delete it.
type Delete struct {
	domain.Meta
	MessageID string
	Moderator bool
}

// Close closes the conversation.
type Close struct{ domain.Meta }

// Reopen reopens a closed conversation.
type Reopen struct{ domain.Meta }

// MarkRead records that the actor has read every message so far.
type MarkRead struct{ domain.Meta }

// Link links an existing ticket or task.
type Link struct {
	domain.Meta
	ItemID string
}

// Unlink removes a link.
type Unlink struct {
	domain.Meta
	ItemID string
}

func (Start) isCommand()    {}
func (Post) isCommand()     {}
func (Edit) isCommand()     {}
func (Delete) isCommand()   {}
func (Close) isCommand()    {}
func (Reopen) isCommand()   {}
func (MarkRead) isCommand() {}
func (Link) isCommand()     {}
func (Unlink) isCommand()   {}

// Events.

// Event is one of the events below.
type Event interface {
	domain.Event
	isEvent()
}

// Started is the first event of every conversation; its first message
// follows as MessagePosted.
type Started struct {
	domain.Meta
	ConversationID string
	Channel        Channel
	Subject        string
	CustomerID     string
	Participants   []string
}

// MessagePosted adds a message by the event's actor.
type MessagePosted struct {
	domain.Meta
	MessageID string
	Body      string
	ClientID  string
}

// MessageEdited replaces a message's text.
type MessageEdited struct {
	domain.Meta
	MessageID string
	Body      string
}

// MessageDeleted blanks a message, which stays in the thread as a tombstone.
type MessageDeleted struct {
	domain.Meta
	MessageID string
}

// Closed closes the conversation.
type Closed struct{ domain.Meta }

// Reopened reopens it; Cause says why, MessageID names the reply that did.
type Reopened struct {
	domain.Meta
	Cause     ReopenCause
	MessageID string
}

// Read records that the actor has read up to message UpToSeq.
type Read struct {
	domain.Meta
	UpToSeq int
}

// ItemLinked links a ticket or task.
type ItemLinked struct {
	domain.Meta
	ItemID string
}

// ItemUnlinked removes a link.
type ItemUnlinked struct {
	domain.Meta
	ItemID string
}

func (Started) EventType() string        { return "conversation.started" }
func (MessagePosted) EventType() string  { return "conversation.message_posted" }
func (MessageEdited) EventType() string  { return "conversation.message_edited" }
func (MessageDeleted) EventType() string { return "conversation.message_deleted" }
func (Closed) EventType() string         { return "conversation.closed" }
func (Reopened) EventType() string       { return "conversation.reopened" }
func (Read) EventType() string           { return "conversation.read" }
func (ItemLinked) EventType() string     { return "conversation.item_linked" }
func (ItemUnlinked) EventType() string   { return "conversation.item_unlinked" }

func (Started) isEvent()        {}
func (MessagePosted) isEvent()  {}
func (MessageEdited) isEvent()  {}
func (MessageDeleted) isEvent() {}
func (Closed) isEvent()         {}
func (Reopened) isEvent()       {}
func (Read) isEvent()           {}
func (ItemLinked) isEvent()     {}
func (ItemUnlinked) isEvent()   {}

// Events lists one zero value of every event type, for codecs and tests.
func Events() []Event {
	return []Event{Started{}, MessagePosted{}, MessageEdited{}, MessageDeleted{}, Closed{}, Reopened{}, Read{}, ItemLinked{}, ItemUnlinked{}}
}

// Decide returns the events that cmd causes in state s, or an error saying
// why it may not happen. An empty slice with a nil error means the command
// changes nothing (closing a closed conversation, a retried post).
func Decide(s State, cmd Command) ([]Event, error) {
	if st, ok := cmd.(Start); ok {
		return decideStart(s, st)
	}
	if !s.Exists() {
		return nil, ErrNotFound
	}
	switch c := cmd.(type) {
	case Post:
		if err := domain.CheckLen("client_id", c.ClientID, domain.MaxClientIDLen); err != nil {
			return nil, err
		}
		// A retry returns the first message whatever its new body.
		if _, dup := s.MessageByClientID(c.Actor, c.ClientID); dup {
			return nil, nil
		}
		if err := domain.CheckBody("body", c.Body); err != nil {
			return nil, err
		}
		if c.MessageID == "" || s.index(c.MessageID) >= 0 {
			return nil, errors.New("conversation: a post needs a new message id")
		}
		evs := []Event{MessagePosted{Meta: c.Meta, MessageID: c.MessageID, Body: c.Body, ClientID: c.ClientID}}
		if s.Status == StatusClosed {
			cause := TeammateReplied
			if c.Actor.Kind == domain.ActorCustomer {
				cause = CustomerReplied
			}
			evs = append(evs, Reopened{Meta: c.Meta, Cause: cause, MessageID: c.MessageID})
		}
		return evs, nil
	case Edit:
		m, err := ownMessage(s, c.MessageID, c.Actor, false)
		if err != nil {
			return nil, err
		}
		if m.Deleted {
			return nil, ErrMessageDeleted
		}
		if err := domain.CheckBody("body", c.Body); err != nil {
			return nil, err
		}
		if m.Body == c.Body {
			return nil, nil
		}
		return []Event{MessageEdited{Meta: c.Meta, MessageID: c.MessageID, Body: c.Body}}, nil
	case Delete:
		m, err := ownMessage(s, c.MessageID, c.Actor, c.Moderator)
		if err != nil {
			return nil, err
		}
		if m.Deleted {
			return nil, nil
		}
		return []Event{MessageDeleted{Meta: c.Meta, MessageID: c.MessageID}}, nil
	case Close:
		if s.Status == StatusClosed {
			return nil, nil
		}
		return []Event{Closed{Meta: c.Meta}}, nil
	case Reopen:
		if s.Status == StatusOpen {
			return nil, nil
		}
		return []Event{Reopened{Meta: c.Meta, Cause: ReopenedByHand}}, nil
	case MarkRead:
		if s.ReadUpTo[c.Actor.Key()] >= s.LastSeq() {
			return nil, nil
		}
		return []Event{Read{Meta: c.Meta, UpToSeq: s.LastSeq()}}, nil
	case Link:
		if c.ItemID == "" {
			return nil, domain.Invalid("item_id", "is required")
		}
		if s.IsLinked(c.ItemID) {
			return nil, nil
		}
		if len(s.Links) >= MaxLinks {
			return nil, ErrTooManyLinks
		}
		return []Event{ItemLinked{Meta: c.Meta, ItemID: c.ItemID}}, nil
	case Unlink:
		if !s.IsLinked(c.ItemID) {
			return nil, ErrNotLinked
		}
		return []Event{ItemUnlinked{Meta: c.Meta, ItemID: c.ItemID}}, nil
	}
	return nil, errors.New("conversation: unknown command")
}

func decideStart(s State, c Start) ([]Event, error) {
	if s.Exists() {
		return nil, ErrExists
	}
	if c.ConversationID == "" || c.MessageID == "" {
		return nil, errors.New("conversation: start needs a conversation id and a message id")
	}
	if err := domain.CheckBody("body", c.Body); err != nil {
		return nil, err
	}
	subject := strings.TrimSpace(c.Subject)
	if err := domain.CheckLen("subject", subject, domain.MaxSubjectLen); err != nil {
		return nil, err
	}
	if strings.ContainsAny(subject, "\r\n") {
		return nil, domain.Invalid("subject", "must be one line")
	}
	st := Started{Meta: c.Meta, ConversationID: c.ConversationID, Subject: subject}
	switch c.Actor.Kind {
	case domain.ActorCustomer:
		if len(c.Participants) > 0 {
			return nil, ErrCustomerParticipants
		}
		st.Channel, st.CustomerID = LiveChat, c.Actor.ID
	case domain.ActorUser:
		if len(c.Participants) > domain.MaxParticipants {
			return nil, domain.Invalid("participants", "at most 50 participants")
		}
		st.Channel = Internal
		st.Participants = []string{c.Actor.ID}
		for _, p := range c.Participants {
			if p == "" {
				return nil, domain.Invalid("participants", "ids must not be empty")
			}
			if !slices.Contains(st.Participants, p) {
				st.Participants = append(st.Participants, p)
			}
		}
	default:
		return nil, errors.New("conversation: only a customer or a user can start a conversation")
	}
	return []Event{st, MessagePosted{Meta: c.Meta, MessageID: c.MessageID, Body: c.Body}}, nil
}

func ownMessage(s State, id string, actor domain.Actor, moderator bool) (Message, error) {
	m, ok := s.Message(id)
	if !ok {
		return Message{}, ErrMessageNotFound
	}
	if m.Author != actor && !moderator {
		return Message{}, ErrNotAuthor
	}
	return m, nil
}

// Evolve returns the state after e. It may reuse s's slices and map, so the
// caller must not keep using s.
func Evolve(s State, e Event) State {
	meta := e.EventMeta()
	switch e := e.(type) {
	case Started:
		s = State{
			ID: e.ConversationID, Channel: e.Channel, Subject: e.Subject, Status: StatusOpen,
			CustomerID: e.CustomerID, Participants: slices.Clone(e.Participants),
			ReadUpTo: map[string]int{}, CreatedAt: meta.At,
		}
	case MessagePosted:
		s.texts += len(e.MessageID) + len(e.Body) + len(e.ClientID)
		s.Messages = append(s.Messages, Message{
			ID: e.MessageID, Seq: len(s.Messages) + 1, Author: meta.Actor, Body: e.Body,
			ClientID: e.ClientID, CreatedAt: meta.At, UpdatedAt: meta.At,
		})
		if s.byID == nil || len(s.byID) != len(s.Messages)-1 {
			s.reindex()
		} else {
			s.byID[e.MessageID] = len(s.Messages) - 1
			if e.ClientID != "" {
				if _, ok := s.byClient[clientKey{meta.Actor, e.ClientID}]; !ok {
					s.byClient[clientKey{meta.Actor, e.ClientID}] = len(s.Messages) - 1
				}
			}
		}
		if meta.Actor.Kind == domain.ActorUser && !s.IsParticipant(meta.Actor.ID) {
			s.Participants = append(s.Participants, meta.Actor.ID)
		}
		// Writing implies having read everything before and including one's own message.
		if s.ReadUpTo == nil {
			s.ReadUpTo = map[string]int{}
		}
		s.ReadUpTo[meta.Actor.Key()] = len(s.Messages)
	case MessageEdited:
		if i := s.index(e.MessageID); i >= 0 {
			s.texts += len(e.Body) - len(s.Messages[i].Body)
			s.Messages[i].Body, s.Messages[i].Edited, s.Messages[i].UpdatedAt = e.Body, true, meta.At
		}
	case MessageDeleted:
		if i := s.index(e.MessageID); i >= 0 {
			s.texts -= len(s.Messages[i].Body)
			s.Messages[i].Body, s.Messages[i].Deleted, s.Messages[i].UpdatedAt = "", true, meta.At
		}
	case Closed:
		s.Status = StatusClosed
	case Reopened:
		s.Status = StatusOpen
	case Read:
		if s.ReadUpTo == nil {
			s.ReadUpTo = map[string]int{}
		}
		if e.UpToSeq > s.ReadUpTo[meta.Actor.Key()] {
			s.ReadUpTo[meta.Actor.Key()] = e.UpToSeq
		}
		return s // reading does not make a conversation more recent
	case ItemLinked:
		if !s.IsLinked(e.ItemID) {
			s.Links = append(s.Links, e.ItemID)
		}
	case ItemUnlinked:
		s.Links = slices.DeleteFunc(s.Links, func(id string) bool { return id == e.ItemID })
	}
	s.UpdatedAt = meta.At
	return s
}

func (s State) index(messageID string) int {
	if s.byID != nil && len(s.byID) == len(s.Messages) {
		if i, ok := s.byID[messageID]; ok {
			return i
		}
		return -1
	}
	return slices.IndexFunc(s.Messages, func(m Message) bool { return m.ID == messageID })
}

// reindex builds the maps of where messages are from Messages; the first
// message of an author and client id is the one a retry finds.
func (s *State) reindex() {
	s.byID = make(map[string]int, len(s.Messages))
	s.byClient = map[clientKey]int{}
	for i, m := range s.Messages {
		s.byID[m.ID] = i
		if k := (clientKey{m.Author, m.ClientID}); m.ClientID != "" {
			if _, ok := s.byClient[k]; !ok {
				s.byClient[k] = i
			}
		}
	}
}

// Fold applies events in order to the zero State.
func Fold(events []Event) State {
	var s State
	for _, e := range events {
		s = Evolve(s, e)
	}
	return s
}
