package conversation_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	c "github.com/helpdesk/messenger/domain/conversation"
)

const convID = "conv-1"

var (
	t0 = time.Date(2025, 1, 2, 9, 0, 0, 0, time.UTC)

	cust  = domain.Actor{Kind: domain.ActorCustomer, ID: "cust-1"}
	cust2 = domain.Actor{Kind: domain.ActorCustomer, ID: "cust-2"}
	ann   = domain.Actor{Kind: domain.ActorUser, ID: "ann"}
	bob   = domain.Actor{Kind: domain.ActorUser, ID: "bob"}
	carl  = domain.Actor{Kind: domain.ActorUser, ID: "carl"}
	sys   = domain.Actor{Kind: domain.ActorSystem, ID: "importer"}
)

// at is minute n of the test's clock.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }

// meta is what actor a does at minute n.
func meta(a domain.Actor, n int) domain.Meta { return domain.Meta{At: at(n), Actor: a} }

// livechat is a conversation cust started at minute 0 with message m1.
func livechat() []c.Event {
	return []c.Event{
		c.Started{Meta: meta(cust, 0), ConversationID: convID, Channel: c.LiveChat, Subject: "Order 42", CustomerID: cust.ID},
		c.MessagePosted{Meta: meta(cust, 0), MessageID: "m1", Body: "Where is my order?"},
	}
}

// internal is a conversation ann started with bob at minute 0 with message m1.
func internal() []c.Event {
	return []c.Event{
		c.Started{Meta: meta(ann, 0), ConversationID: convID, Channel: c.Internal, Participants: []string{ann.ID, bob.ID}},
		c.MessagePosted{Meta: meta(ann, 0), MessageID: "m1", Body: "Can you look at this?"},
	}
}

// with returns base followed by more, in a new slice.
func with(base []c.Event, more ...c.Event) []c.Event {
	return append(append([]c.Event(nil), base...), more...)
}

func posted(a domain.Actor, n int, id, body string) c.MessagePosted {
	return c.MessagePosted{Meta: meta(a, n), MessageID: id, Body: body}
}

func closed(a domain.Actor, n int) c.Closed { return c.Closed{Meta: meta(a, n)} }

func linked(n int, item string) c.ItemLinked { return c.ItemLinked{Meta: meta(ann, n), ItemID: item} }

// decideTest is one given/when/then case. Exactly one of then, err, field
// and anyErr describes the outcome; none of them means "no events, no error".
type decideTest struct {
	name   string
	given  []c.Event
	when   c.Command
	then   []c.Event
	err    error  // a sentinel, compared with errors.Is
	field  string // the field of the expected *domain.FieldError
	anyErr bool   // some error that is neither a sentinel above nor a FieldError
}

func runDecide(t *testing.T, tests []decideTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decide(c.Fold(tt.given), tt.when)
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("error: got %v, want %v", err, tt.err)
				}
			case tt.field != "":
				var fe *domain.FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("error: got %v, want a FieldError for %q", err, tt.field)
				}
				if fe.Field != tt.field {
					t.Fatalf("FieldError.Field: got %q (%v), want %q", fe.Field, err, tt.field)
				}
				if !errors.Is(err, domain.ErrInvalid) {
					t.Errorf("errors.Is(%v, ErrInvalid) = false, want true", err)
				}
			case tt.anyErr:
				if err == nil {
					t.Fatalf("error: got nil, want one")
				}
			default:
				if err != nil {
					t.Fatalf("error: got %v, want nil", err)
				}
			}
			if err != nil {
				if len(got) != 0 {
					t.Errorf("events with an error: got %#v, want none", got)
				}
				return
			}
			if len(tt.then) == 0 {
				if len(got) != 0 {
					t.Errorf("events: got %#v, want none", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.then) {
				t.Errorf("events:\n got %#v\nwant %#v", got, tt.then)
			}
		})
	}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

func TestDecideStart(t *testing.T) {
	start := func(a domain.Actor, subject, body string, participants ...string) c.Start {
		return c.Start{Meta: meta(a, 0), ConversationID: convID, MessageID: "m1", Subject: subject, Body: body, Participants: participants}
	}
	fifty := ids("user-", domain.MaxParticipants)
	runDecide(t, []decideTest{
		{
			name: "a customer starts a live chat with itself as the customer",
			when: start(cust, "Order 42", "Where is my order?"),
			then: livechat(),
		},
		{
			name: "a customer may leave out the subject",
			when: start(cust, "", "Hello"),
			then: []c.Event{
				c.Started{Meta: meta(cust, 0), ConversationID: convID, Channel: c.LiveChat, CustomerID: cust.ID},
				posted(cust, 0, "m1", "Hello"),
			},
		},
		{
			name: "the subject is trimmed, the body stored as sent",
			when: start(cust, "  Order 42 \t", "  Where is my order?\n"),
			then: []c.Event{
				c.Started{Meta: meta(cust, 0), ConversationID: convID, Channel: c.LiveChat, Subject: "Order 42", CustomerID: cust.ID},
				posted(cust, 0, "m1", "  Where is my order?\n"),
			},
		},
		{
			name: "a customer cannot name participants",
			when: start(cust, "", "Hello", ann.ID),
			err:  c.ErrCustomerParticipants,
		},
		{
			name: "a user starts an internal conversation, first among the participants",
			when: start(ann, "", "Can you look at this?", bob.ID),
			then: internal(),
		},
		{
			name: "a user may start a conversation with nobody else",
			when: start(ann, "Notes", "To self"),
			then: []c.Event{
				c.Started{Meta: meta(ann, 0), ConversationID: convID, Channel: c.Internal, Subject: "Notes", Participants: []string{ann.ID}},
				posted(ann, 0, "m1", "To self"),
			},
		},
		{
			name: "duplicate participants and the starter among them are removed",
			when: start(ann, "", "Hi", bob.ID, ann.ID, carl.ID, bob.ID),
			then: []c.Event{
				c.Started{Meta: meta(ann, 0), ConversationID: convID, Channel: c.Internal, Participants: []string{ann.ID, bob.ID, carl.ID}},
				posted(ann, 0, "m1", "Hi"),
			},
		},
		{
			name: "50 participants are allowed",
			when: start(ann, "", "Hi", fifty...),
			then: []c.Event{
				c.Started{Meta: meta(ann, 0), ConversationID: convID, Channel: c.Internal, Participants: append([]string{ann.ID}, fifty...)},
				posted(ann, 0, "m1", "Hi"),
			},
		},
		{
			name:  "51 participants are too many",
			when:  start(ann, "", "Hi", ids("user-", domain.MaxParticipants+1)...),
			field: "participants",
		},
		{
			name:  "an empty participant id",
			when:  start(ann, "", "Hi", bob.ID, ""),
			field: "participants",
		},
		{
			name:  "empty body",
			when:  start(cust, "", ""),
			field: "body",
		},
		{
			name:  "whitespace body",
			when:  start(ann, "", " \n\t ", bob.ID),
			field: "body",
		},
		{
			name: "a body of 10,000 characters, 20,000 bytes",
			when: start(cust, "", strings.Repeat("é", domain.MaxBodyLen)),
			then: []c.Event{
				c.Started{Meta: meta(cust, 0), ConversationID: convID, Channel: c.LiveChat, CustomerID: cust.ID},
				posted(cust, 0, "m1", strings.Repeat("é", domain.MaxBodyLen)),
			},
		},
		{
			name:  "a body of 10,001 characters",
			when:  start(cust, "", strings.Repeat("é", domain.MaxBodyLen+1)),
			field: "body",
		},
		{
			name:  "a body that is not UTF-8",
			when:  start(cust, "", "caf\xe9"),
			field: "body",
		},
		{
			name: "a subject of 200 characters",
			when: start(cust, strings.Repeat("ü", domain.MaxSubjectLen), "Hi"),
			then: []c.Event{
				c.Started{Meta: meta(cust, 0), ConversationID: convID, Channel: c.LiveChat, Subject: strings.Repeat("ü", domain.MaxSubjectLen), CustomerID: cust.ID},
				posted(cust, 0, "m1", "Hi"),
			},
		},
		{
			name:  "a subject of 201 characters",
			when:  start(cust, strings.Repeat("ü", domain.MaxSubjectLen+1), "Hi"),
			field: "subject",
		},
		{
			name:  "a subject on two lines",
			when:  start(cust, "Order\n42", "Hi"),
			field: "subject",
		},
		{
			name:  "a subject with a carriage return",
			when:  start(ann, "Order\r42", "Hi"),
			field: "subject",
		},
		{
			name:   "the system cannot start a conversation",
			when:   start(sys, "", "Hi"),
			anyErr: true,
		},
		{
			name:  "starting an existing conversation",
			given: livechat(),
			when:  start(cust, "", "Again"),
			err:   c.ErrExists,
		},
		{
			name:  "starting an existing conversation is refused before the input is checked",
			given: internal(),
			when:  start(ann, "", ""),
			err:   c.ErrExists,
		},
	})
}

func TestDecideNotFound(t *testing.T) {
	m := meta(ann, 1)
	var tests []decideTest
	for _, cmd := range []c.Command{
		c.Post{Meta: m, MessageID: "m1", Body: "Hi"},
		c.Edit{Meta: m, MessageID: "m1", Body: "Hi"},
		c.Delete{Meta: m, MessageID: "m1", Moderator: true},
		c.Close{Meta: m},
		c.Reopen{Meta: m},
		c.MarkRead{Meta: m},
		c.Link{Meta: m, ItemID: "item-1"},
		c.Unlink{Meta: m, ItemID: "item-1"},
		unknownCommand{},
	} {
		tests = append(tests, decideTest{name: fmt.Sprintf("%T", cmd), when: cmd, err: c.ErrNotFound})
	}
	runDecide(t, tests)
}

// unknownCommand satisfies c.Command through the embedded interface, which
// promotes the unexported marker method; Decide must not accept it.
type unknownCommand struct{ c.Command }

func TestDecideUnknownCommand(t *testing.T) {
	runDecide(t, []decideTest{{name: "an existing conversation", given: livechat(), when: unknownCommand{}, anyErr: true}})
}

func TestDecidePost(t *testing.T) {
	post := func(a domain.Actor, n int, id, body, clientID string) c.Post {
		return c.Post{Meta: meta(a, n), MessageID: id, Body: body, ClientID: clientID}
	}
	withClient := func(a domain.Actor, n int, id, body, clientID string) c.MessagePosted {
		return c.MessagePosted{Meta: meta(a, n), MessageID: id, Body: body, ClientID: clientID}
	}
	closedChat := with(livechat(), posted(ann, 1, "m2", "Shipped today."), closed(ann, 2))
	runDecide(t, []decideTest{
		{
			name:  "the customer replies in an open conversation",
			given: livechat(),
			when:  post(cust, 1, "m2", "Any news?", ""),
			then:  []c.Event{posted(cust, 1, "m2", "Any news?")},
		},
		{
			name:  "a teammate replies in an open conversation",
			given: livechat(),
			when:  post(ann, 1, "m2", "Looking into it.", ""),
			then:  []c.Event{posted(ann, 1, "m2", "Looking into it.")},
		},
		{
			name:  "a post keeps its client id",
			given: livechat(),
			when:  post(cust, 1, "m2", "Any news?", "tab-1:7"),
			then:  []c.Event{withClient(cust, 1, "m2", "Any news?", "tab-1:7")},
		},
		{
			name:  "the customer's reply reopens a closed conversation",
			given: closedChat,
			when:  post(cust, 3, "m3", "It did not arrive.", ""),
			then: []c.Event{
				posted(cust, 3, "m3", "It did not arrive."),
				c.Reopened{Meta: meta(cust, 3), Cause: c.CustomerReplied, MessageID: "m3"},
			},
		},
		{
			name:  "a teammate's reply reopens a closed conversation",
			given: closedChat,
			when:  post(bob, 3, "m3", "One more thing.", "b-1"),
			then: []c.Event{
				withClient(bob, 3, "m3", "One more thing.", "b-1"),
				c.Reopened{Meta: meta(bob, 3), Cause: c.TeammateReplied, MessageID: "m3"},
			},
		},
		{
			name:  "a reply to an internal conversation closed twice reopens it again",
			given: with(internal(), closed(ann, 1), c.Reopened{Meta: meta(ann, 2), Cause: c.ReopenedByHand}, closed(bob, 3)),
			when:  post(bob, 4, "m2", "Still broken.", ""),
			then: []c.Event{
				posted(bob, 4, "m2", "Still broken."),
				c.Reopened{Meta: meta(bob, 4), Cause: c.TeammateReplied, MessageID: "m2"},
			},
		},
		{
			name:  "a retried post with the same client id changes nothing",
			given: with(livechat(), withClient(cust, 1, "m2", "Any news?", "k1")),
			when:  post(cust, 2, "m3", "Any news?", "k1"),
		},
		{
			name:  "a retried post changes nothing whatever its new body",
			given: with(livechat(), withClient(cust, 1, "m2", "Any news?", "k1")),
			when:  post(cust, 2, "m3", "Any news??", "k1"),
		},
		{
			// API: "the first message is returned with 200 and nothing is appended (whatever the new body)".
			name:  "a retried post changes nothing even when its new body is blank",
			given: with(livechat(), withClient(cust, 1, "m2", "Any news?", "k1")),
			when:  post(cust, 2, "m3", "  ", "k1"),
		},
		{
			name:  "a retry of the post that reopened a conversation since closed again does not reopen it",
			given: with(closedChat, withClient(cust, 3, "m3", "Hello?", "k1"), c.Reopened{Meta: meta(cust, 3), Cause: c.CustomerReplied, MessageID: "m3"}, closed(ann, 4)),
			when:  post(cust, 5, "m4", "Hello?", "k1"),
		},
		{
			name:  "a retry of a post since deleted changes nothing",
			given: with(livechat(), withClient(cust, 1, "m2", "Oops", "k1"), c.MessageDeleted{Meta: meta(cust, 2), MessageID: "m2"}),
			when:  post(cust, 3, "m3", "Oops", "k1"),
		},
		{
			name:  "another author's client id does not collide",
			given: with(livechat(), withClient(cust, 1, "m2", "Any news?", "k1")),
			when:  post(ann, 2, "m3", "Yes.", "k1"),
			then:  []c.Event{withClient(ann, 2, "m3", "Yes.", "k1")},
		},
		{
			name:  "a user and a customer with the same id are different authors",
			given: with(livechat(), withClient(cust, 1, "m2", "Any news?", "k1")),
			when:  post(domain.Actor{Kind: domain.ActorUser, ID: cust.ID}, 2, "m3", "Yes.", "k1"),
			then:  []c.Event{withClient(domain.Actor{Kind: domain.ActorUser, ID: cust.ID}, 2, "m3", "Yes.", "k1")},
		},
		{
			name:  "posts without a client id are never duplicates",
			given: with(livechat(), posted(cust, 1, "m2", "Hello?")),
			when:  post(cust, 2, "m3", "Hello?", ""),
			then:  []c.Event{posted(cust, 2, "m3", "Hello?")},
		},
		{
			name:  "a client id of 64 characters",
			given: livechat(),
			when:  post(cust, 1, "m2", "Hi", strings.Repeat("é", domain.MaxClientIDLen)),
			then:  []c.Event{withClient(cust, 1, "m2", "Hi", strings.Repeat("é", domain.MaxClientIDLen))},
		},
		{
			name:  "a client id of 65 characters",
			given: livechat(),
			when:  post(cust, 1, "m2", "Hi", strings.Repeat("k", domain.MaxClientIDLen+1)),
			field: "client_id",
		},
		{
			name:  "empty body",
			given: livechat(),
			when:  post(cust, 1, "m2", "", ""),
			field: "body",
		},
		{
			name:  "whitespace body",
			given: livechat(),
			when:  post(ann, 1, "m2", "\n \t\n", ""),
			field: "body",
		},
		{
			name:  "a body of 10,000 characters",
			given: livechat(),
			when:  post(cust, 1, "m2", strings.Repeat("é", domain.MaxBodyLen), ""),
			then:  []c.Event{posted(cust, 1, "m2", strings.Repeat("é", domain.MaxBodyLen))},
		},
		{
			name:  "a body of 10,001 characters",
			given: livechat(),
			when:  post(cust, 1, "m2", strings.Repeat("é", domain.MaxBodyLen+1), ""),
			field: "body",
		},
		{
			name:  "an invalid body to a closed conversation neither posts nor reopens",
			given: closedChat,
			when:  post(cust, 3, "m3", "", ""),
			field: "body",
		},
	})
}

func TestDecideEdit(t *testing.T) {
	edit := func(a domain.Actor, n int, id, body string) c.Edit {
		return c.Edit{Meta: meta(a, n), MessageID: id, Body: body}
	}
	chat := with(livechat(), posted(ann, 1, "m2", "Looking into it."))
	runDecide(t, []decideTest{
		{
			name:  "the customer edits its message",
			given: chat,
			when:  edit(cust, 2, "m1", "Where is order 42?"),
			then:  []c.Event{c.MessageEdited{Meta: meta(cust, 2), MessageID: "m1", Body: "Where is order 42?"}},
		},
		{
			name:  "a teammate edits its message",
			given: chat,
			when:  edit(ann, 2, "m2", "Looking into it now."),
			then:  []c.Event{c.MessageEdited{Meta: meta(ann, 2), MessageID: "m2", Body: "Looking into it now."}},
		},
		{
			name:  "an edit in a closed conversation does not reopen it",
			given: with(chat, closed(ann, 2)),
			when:  edit(ann, 3, "m2", "Fixed."),
			then:  []c.Event{c.MessageEdited{Meta: meta(ann, 3), MessageID: "m2", Body: "Fixed."}},
		},
		{
			name:  "a teammate cannot edit the customer's message",
			given: chat,
			when:  edit(ann, 2, "m1", "Rewritten"),
			err:   c.ErrNotAuthor,
		},
		{
			name:  "another customer cannot edit the customer's message",
			given: chat,
			when:  edit(cust2, 2, "m1", "Rewritten"),
			err:   c.ErrNotAuthor,
		},
		{
			name:  "a user with the customer's id is not its author",
			given: chat,
			when:  edit(domain.Actor{Kind: domain.ActorUser, ID: cust.ID}, 2, "m1", "Rewritten"),
			err:   c.ErrNotAuthor,
		},
		{
			name:  "a deleted message cannot be edited",
			given: with(chat, c.MessageDeleted{Meta: meta(cust, 2), MessageID: "m1"}),
			when:  edit(cust, 3, "m1", "Back again"),
			err:   c.ErrMessageDeleted,
		},
		{
			name:  "an unknown message",
			given: chat,
			when:  edit(cust, 2, "m9", "Hi"),
			err:   c.ErrMessageNotFound,
		},
		{
			name:  "the same body changes nothing",
			given: chat,
			when:  edit(cust, 2, "m1", "Where is my order?"),
		},
		{
			name:  "the body as already edited changes nothing",
			given: with(chat, c.MessageEdited{Meta: meta(cust, 2), MessageID: "m1", Body: "Order 42?"}),
			when:  edit(cust, 3, "m1", "Order 42?"),
		},
		{
			name:  "whitespace body",
			given: chat,
			when:  edit(cust, 2, "m1", "   "),
			field: "body",
		},
		{
			name:  "a body of 10,001 characters",
			given: chat,
			when:  edit(cust, 2, "m1", strings.Repeat("é", domain.MaxBodyLen+1)),
			field: "body",
		},
	})
}

func TestDecideDelete(t *testing.T) {
	del := func(a domain.Actor, n int, id string, moderator bool) c.Delete {
		return c.Delete{Meta: meta(a, n), MessageID: id, Moderator: moderator}
	}
	chat := with(livechat(), posted(ann, 1, "m2", "Looking into it."))
	deleted := with(chat, c.MessageDeleted{Meta: meta(cust, 2), MessageID: "m1"})
	runDecide(t, []decideTest{
		{
			name:  "the author deletes its message",
			given: chat,
			when:  del(cust, 2, "m1", false),
			then:  []c.Event{c.MessageDeleted{Meta: meta(cust, 2), MessageID: "m1"}},
		},
		{
			name:  "a moderator deletes another's message",
			given: chat,
			when:  del(bob, 2, "m1", true),
			then:  []c.Event{c.MessageDeleted{Meta: meta(bob, 2), MessageID: "m1"}},
		},
		{
			name:  "a teammate who is not a moderator cannot delete the customer's message",
			given: chat,
			when:  del(bob, 2, "m1", false),
			err:   c.ErrNotAuthor,
		},
		{
			name:  "the customer cannot delete a teammate's message",
			given: chat,
			when:  del(cust, 2, "m2", false),
			err:   c.ErrNotAuthor,
		},
		{
			name:  "deleting twice changes nothing",
			given: deleted,
			when:  del(cust, 3, "m1", false),
		},
		{
			name:  "a moderator deleting a deleted message changes nothing",
			given: deleted,
			when:  del(ann, 3, "m1", true),
		},
		{
			name:  "an unknown message",
			given: chat,
			when:  del(cust, 2, "m9", false),
			err:   c.ErrMessageNotFound,
		},
		{
			name:  "an unknown message, for a moderator too",
			given: chat,
			when:  del(ann, 2, "m9", true),
			err:   c.ErrMessageNotFound,
		},
	})
}

func TestDecideCloseReopen(t *testing.T) {
	runDecide(t, []decideTest{
		{
			name:  "close an open conversation",
			given: livechat(),
			when:  c.Close{Meta: meta(ann, 1)},
			then:  []c.Event{closed(ann, 1)},
		},
		{
			name:  "close a closed conversation",
			given: with(livechat(), closed(ann, 1)),
			when:  c.Close{Meta: meta(bob, 2)},
		},
		{
			name:  "close a conversation that a reply reopened",
			given: with(livechat(), closed(ann, 1), posted(cust, 2, "m2", "Hello?"), c.Reopened{Meta: meta(cust, 2), Cause: c.CustomerReplied, MessageID: "m2"}),
			when:  c.Close{Meta: meta(ann, 3)},
			then:  []c.Event{closed(ann, 3)},
		},
		{
			name:  "reopen a closed conversation by hand",
			given: with(livechat(), closed(ann, 1)),
			when:  c.Reopen{Meta: meta(bob, 2)},
			then:  []c.Event{c.Reopened{Meta: meta(bob, 2), Cause: c.ReopenedByHand}},
		},
		{
			name:  "reopen an open conversation",
			given: livechat(),
			when:  c.Reopen{Meta: meta(ann, 1)},
		},
		{
			name:  "reopen a conversation reopened by hand",
			given: with(internal(), closed(ann, 1), c.Reopened{Meta: meta(ann, 2), Cause: c.ReopenedByHand}),
			when:  c.Reopen{Meta: meta(bob, 3)},
		},
	})
}

func TestDecideMarkRead(t *testing.T) {
	read := func(a domain.Actor, n int) c.MarkRead { return c.MarkRead{Meta: meta(a, n)} }
	runDecide(t, []decideTest{
		{
			name:  "a teammate reads the customer's message",
			given: livechat(),
			when:  read(ann, 1),
			then:  []c.Event{c.Read{Meta: meta(ann, 1), UpToSeq: 1}},
		},
		{
			name:  "the customer has read its own last message",
			given: livechat(),
			when:  read(cust, 1),
		},
		{
			name:  "the customer reads a reply",
			given: with(livechat(), posted(ann, 1, "m2", "Shipped."), posted(ann, 2, "m3", "Tracking: 123.")),
			when:  read(cust, 3),
			then:  []c.Event{c.Read{Meta: meta(cust, 3), UpToSeq: 3}},
		},
		{
			name:  "reading again with nothing new",
			given: with(livechat(), c.Read{Meta: meta(ann, 1), UpToSeq: 1}),
			when:  read(ann, 2),
		},
		{
			name:  "reading after posting, with nothing newer",
			given: with(livechat(), posted(ann, 1, "m2", "Hi")),
			when:  read(ann, 2),
		},
		{
			name:  "reading up to the newest after an earlier read",
			given: with(livechat(), c.Read{Meta: meta(ann, 1), UpToSeq: 1}, posted(cust, 2, "m2", "Hello?"), posted(bob, 3, "m3", "Hi")),
			when:  read(ann, 4),
			then:  []c.Event{c.Read{Meta: meta(ann, 4), UpToSeq: 3}},
		},
		{
			name:  "reading a closed conversation",
			given: with(livechat(), closed(bob, 1)),
			when:  read(ann, 2),
			then:  []c.Event{c.Read{Meta: meta(ann, 2), UpToSeq: 1}},
		},
	})
}

func TestDecideLink(t *testing.T) {
	link := func(n int, item string) c.Link { return c.Link{Meta: meta(ann, n), ItemID: item} }
	unlink := func(n int, item string) c.Unlink { return c.Unlink{Meta: meta(ann, n), ItemID: item} }
	full := livechat()
	for i, item := range ids("item-", c.MaxLinks) {
		full = append(full, linked(i+1, item))
	}
	runDecide(t, []decideTest{
		{
			name:  "link an item",
			given: livechat(),
			when:  link(1, "item-1"),
			then:  []c.Event{linked(1, "item-1")},
		},
		{
			name:  "link an item already linked",
			given: with(livechat(), linked(1, "item-1")),
			when:  link(2, "item-1"),
		},
		{
			name:  "link an item again after unlinking it",
			given: with(livechat(), linked(1, "item-1"), c.ItemUnlinked{Meta: meta(ann, 2), ItemID: "item-1"}),
			when:  link(3, "item-1"),
			then:  []c.Event{linked(3, "item-1")},
		},
		{
			name:  "link a closed conversation",
			given: with(livechat(), closed(ann, 1)),
			when:  link(2, "item-1"),
			then:  []c.Event{linked(2, "item-1")},
		},
		{
			name:  "link without an item id",
			given: livechat(),
			when:  link(1, ""),
			field: "item_id",
		},
		{
			name:  "link one item too many",
			given: full,
			when:  link(200, "item-101"),
			err:   c.ErrTooManyLinks,
		},
		{
			name:  "link an item already linked when the links are full",
			given: full,
			when:  link(200, "item-100"),
		},
		{
			name:  "unlink an item",
			given: with(livechat(), linked(1, "item-1"), linked(2, "item-2")),
			when:  unlink(3, "item-1"),
			then:  []c.Event{c.ItemUnlinked{Meta: meta(ann, 3), ItemID: "item-1"}},
		},
		{
			name:  "unlink an item that is not linked",
			given: with(livechat(), linked(1, "item-1")),
			when:  unlink(2, "item-2"),
			err:   c.ErrNotLinked,
		},
		{
			name:  "unlink an item twice",
			given: with(livechat(), linked(1, "item-1"), c.ItemUnlinked{Meta: meta(ann, 2), ItemID: "item-1"}),
			when:  unlink(3, "item-1"),
			err:   c.ErrNotLinked,
		},
		{
			name:  "unlink without an item id",
			given: livechat(),
			when:  unlink(1, ""),
			err:   c.ErrNotLinked,
		},
	})
}

func TestEvolve(t *testing.T) {
	custKey, annKey, bobKey := cust.Key(), ann.Key(), bob.Key()
	tests := []struct {
		name  string
		given []c.Event
		check func(t *testing.T, s c.State)
	}{
		{
			name:  "nothing: the conversation does not exist",
			given: nil,
			check: func(t *testing.T, s c.State) {
				if s.Exists() {
					t.Errorf("Exists: got true, want false")
				}
				if got := s.Unread(ann); got != 0 {
					t.Errorf("Unread: got %d, want 0", got)
				}
			},
		},
		{
			name:  "a live chat after its start",
			given: livechat(),
			check: func(t *testing.T, s c.State) {
				want := c.State{
					ID: convID, Channel: c.LiveChat, Subject: "Order 42", Status: c.StatusOpen, CustomerID: cust.ID,
					Messages: []c.Message{{ID: "m1", Seq: 1, Author: cust, Body: "Where is my order?", CreatedAt: at(0), UpdatedAt: at(0)}},
					ReadUpTo: map[string]int{custKey: 1}, CreatedAt: at(0), UpdatedAt: at(0),
				}
				if got := exported(s); !reflect.DeepEqual(got, want) {
					t.Errorf("state:\n got %#v\nwant %#v", got, want)
				}
			},
		},
		{
			name:  "an internal conversation after its start",
			given: internal(),
			check: func(t *testing.T, s c.State) {
				if s.Channel != c.Internal || s.CustomerID != "" {
					t.Errorf("channel, customer: got %q, %q, want internal, none", s.Channel, s.CustomerID)
				}
				if want := []string{ann.ID, bob.ID}; !reflect.DeepEqual(s.Participants, want) {
					t.Errorf("Participants: got %q, want %q", s.Participants, want)
				}
				if got := s.Unread(bob); got != 1 {
					t.Errorf("Unread(bob): got %d, want 1", got)
				}
			},
		},
		{
			name:  "users who post become participants, once; customers never do",
			given: with(livechat(), posted(ann, 1, "m2", "Hi"), posted(cust, 2, "m3", "Hi"), posted(bob, 3, "m4", "Hello"), posted(ann, 4, "m5", "Bye")),
			check: func(t *testing.T, s c.State) {
				if want := []string{ann.ID, bob.ID}; !reflect.DeepEqual(s.Participants, want) {
					t.Errorf("Participants: got %q, want %q", s.Participants, want)
				}
				if !s.IsParticipant(bob.ID) || s.IsParticipant(cust.ID) || s.IsParticipant(carl.ID) {
					t.Errorf("IsParticipant(bob, cust, carl): got %v %v %v, want true false false",
						s.IsParticipant(bob.ID), s.IsParticipant(cust.ID), s.IsParticipant(carl.ID))
				}
			},
		},
		{
			name:  "a participant who posts is not added twice",
			given: with(internal(), posted(bob, 1, "m2", "On it")),
			check: func(t *testing.T, s c.State) {
				if want := []string{ann.ID, bob.ID}; !reflect.DeepEqual(s.Participants, want) {
					t.Errorf("Participants: got %q, want %q", s.Participants, want)
				}
			},
		},
		{
			name:  "messages are numbered in order and posting reads up to one's own message",
			given: with(livechat(), posted(ann, 1, "m2", "Hi"), posted(cust, 2, "m3", "Thanks"), posted(bob, 3, "m4", "Closing")),
			check: func(t *testing.T, s c.State) {
				for i, m := range s.Messages {
					if m.Seq != i+1 {
						t.Errorf("Messages[%d].Seq: got %d, want %d", i, m.Seq, i+1)
					}
				}
				if s.LastSeq() != 4 {
					t.Errorf("LastSeq: got %d, want 4", s.LastSeq())
				}
				want := map[string]int{custKey: 3, annKey: 2, bobKey: 4}
				if !reflect.DeepEqual(s.ReadUpTo, want) {
					t.Errorf("ReadUpTo: got %v, want %v", s.ReadUpTo, want)
				}
				for _, u := range []struct {
					who  domain.Actor
					want int
				}{{cust, 1}, {ann, 2}, {bob, 0}, {carl, 4}} {
					if got := s.Unread(u.who); got != u.want {
						t.Errorf("Unread(%s): got %d, want %d", u.who.Key(), got, u.want)
					}
				}
			},
		},
		{
			name: "unread counts others' messages after the last read, except deleted ones",
			given: with(livechat(),
				c.Read{Meta: meta(ann, 1), UpToSeq: 1},
				posted(cust, 2, "m2", "Hello?"),
				posted(cust, 3, "m3", "Anyone?"),
				posted(cust, 4, "m4", "Wrong chat, sorry"),
				c.MessageDeleted{Meta: meta(cust, 5), MessageID: "m4"},
				posted(bob, 6, "m5", "Hi there"),
			),
			check: func(t *testing.T, s c.State) {
				if got := s.Unread(ann); got != 3 { // m2, m3, m5
					t.Errorf("Unread(ann): got %d, want 3", got)
				}
				if got := s.Unread(cust); got != 1 { // bob's m5 is newer than its last post, m4
					t.Errorf("Unread(cust): got %d, want 1", got)
				}
			},
		},
		{
			name: "a customer's unread counts teammates' replies after its own post",
			given: with(livechat(),
				posted(ann, 1, "m2", "Hi"),
				posted(bob, 2, "m3", "Hello"),
				c.MessageDeleted{Meta: meta(bob, 3), MessageID: "m3"},
			),
			check: func(t *testing.T, s c.State) {
				if got := s.Unread(cust); got != 1 {
					t.Errorf("Unread(cust): got %d, want 1", got)
				}
			},
		},
		{
			name: "an older read does not move the read mark back",
			given: with(livechat(),
				posted(cust, 1, "m2", "Hello?"),
				c.Read{Meta: meta(ann, 2), UpToSeq: 2},
				c.Read{Meta: meta(ann, 3), UpToSeq: 1},
			),
			check: func(t *testing.T, s c.State) {
				if got := s.ReadUpTo[annKey]; got != 2 {
					t.Errorf("ReadUpTo[ann]: got %d, want 2", got)
				}
				if got := s.Unread(ann); got != 0 {
					t.Errorf("Unread(ann): got %d, want 0", got)
				}
			},
		},
		{
			name:  "reading does not make the conversation more recent",
			given: with(livechat(), posted(ann, 1, "m2", "Hi"), c.Read{Meta: meta(cust, 5), UpToSeq: 2}),
			check: func(t *testing.T, s c.State) {
				if !s.UpdatedAt.Equal(at(1)) {
					t.Errorf("UpdatedAt: got %v, want %v", s.UpdatedAt, at(1))
				}
				if got := s.Unread(cust); got != 0 {
					t.Errorf("Unread(cust): got %d, want 0", got)
				}
			},
		},
		{
			name:  "an edit replaces the text and marks the message edited",
			given: with(livechat(), posted(ann, 1, "m2", "Hi"), c.MessageEdited{Meta: meta(cust, 2), MessageID: "m1", Body: "Where is order 42?"}),
			check: func(t *testing.T, s c.State) {
				m, ok := s.Message("m1")
				if !ok {
					t.Fatalf("Message(m1): not found")
				}
				want := c.Message{ID: "m1", Seq: 1, Author: cust, Body: "Where is order 42?", CreatedAt: at(0), UpdatedAt: at(2), Edited: true}
				if !reflect.DeepEqual(m, want) {
					t.Errorf("m1:\n got %#v\nwant %#v", m, want)
				}
				if m2, _ := s.Message("m2"); m2.Edited {
					t.Errorf("m2.Edited: got true, want false")
				}
				if !s.UpdatedAt.Equal(at(2)) {
					t.Errorf("UpdatedAt: got %v, want %v", s.UpdatedAt, at(2))
				}
			},
		},
		{
			name: "a deleted message stays in place as a tombstone",
			given: with(livechat(),
				c.MessagePosted{Meta: meta(ann, 1), MessageID: "m2", Body: "Hi", ClientID: "k1"},
				posted(cust, 2, "m3", "Thanks"),
				c.MessageEdited{Meta: meta(ann, 3), MessageID: "m2", Body: "Hi!"},
				c.MessageDeleted{Meta: meta(ann, 4), MessageID: "m2"},
			),
			check: func(t *testing.T, s c.State) {
				if len(s.Messages) != 3 {
					t.Fatalf("Messages: got %d, want 3", len(s.Messages))
				}
				want := c.Message{ID: "m2", Seq: 2, Author: ann, Body: "", ClientID: "k1", CreatedAt: at(1), UpdatedAt: at(4), Edited: true, Deleted: true}
				if !reflect.DeepEqual(s.Messages[1], want) {
					t.Errorf("m2:\n got %#v\nwant %#v", s.Messages[1], want)
				}
				if m, ok := s.MessageByClientID(ann, "k1"); !ok || m.ID != "m2" {
					t.Errorf("MessageByClientID(ann, k1): got %q, %v, want m2, true", m.ID, ok)
				}
			},
		},
		{
			name:  "closing and reopening change the status and the activity time",
			given: with(livechat(), closed(ann, 1)),
			check: func(t *testing.T, s c.State) {
				if s.Status != c.StatusClosed || !s.UpdatedAt.Equal(at(1)) {
					t.Errorf("status, updated: got %q, %v, want closed, %v", s.Status, s.UpdatedAt, at(1))
				}
				s = c.Evolve(s, c.Reopened{Meta: meta(bob, 2), Cause: c.ReopenedByHand})
				if s.Status != c.StatusOpen || !s.UpdatedAt.Equal(at(2)) {
					t.Errorf("after reopen: got %q, %v, want open, %v", s.Status, s.UpdatedAt, at(2))
				}
			},
		},
		{
			name:  "a reply to a closed conversation leaves it open",
			given: with(livechat(), closed(ann, 1), posted(cust, 2, "m2", "Hello?"), c.Reopened{Meta: meta(cust, 2), Cause: c.CustomerReplied, MessageID: "m2"}),
			check: func(t *testing.T, s c.State) {
				if s.Status != c.StatusOpen {
					t.Errorf("Status: got %q, want open", s.Status)
				}
			},
		},
		{
			name: "links keep their order and an unlink removes one",
			given: with(livechat(),
				linked(1, "item-1"), linked(2, "item-2"), linked(3, "item-3"),
				c.ItemUnlinked{Meta: meta(ann, 4), ItemID: "item-2"},
				linked(5, "item-2"),
			),
			check: func(t *testing.T, s c.State) {
				if want := []string{"item-1", "item-3", "item-2"}; !reflect.DeepEqual(s.Links, want) {
					t.Errorf("Links: got %q, want %q", s.Links, want)
				}
				if !s.IsLinked("item-3") || s.IsLinked("item-4") {
					t.Errorf("IsLinked(item-3, item-4): got %v %v, want true false", s.IsLinked("item-3"), s.IsLinked("item-4"))
				}
				if !s.UpdatedAt.Equal(at(5)) {
					t.Errorf("UpdatedAt: got %v, want %v", s.UpdatedAt, at(5))
				}
			},
		},
		{
			name:  "a repeated link event does not duplicate the link",
			given: with(livechat(), linked(1, "item-1"), linked(2, "item-1")),
			check: func(t *testing.T, s c.State) {
				if want := []string{"item-1"}; !reflect.DeepEqual(s.Links, want) {
					t.Errorf("Links: got %q, want %q", s.Links, want)
				}
			},
		},
		{
			name:  "an edit or delete of an unknown message changes no message",
			given: with(livechat(), c.MessageEdited{Meta: meta(cust, 1), MessageID: "m9", Body: "x"}, c.MessageDeleted{Meta: meta(cust, 2), MessageID: "m8"}),
			check: func(t *testing.T, s c.State) {
				want := []c.Message{{ID: "m1", Seq: 1, Author: cust, Body: "Where is my order?", CreatedAt: at(0), UpdatedAt: at(0)}}
				if !reflect.DeepEqual(s.Messages, want) {
					t.Errorf("Messages:\n got %#v\nwant %#v", s.Messages, want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, c.Fold(tt.given))
		})
	}
}

func TestEvolveDoesNotShareTheStartedParticipants(t *testing.T) {
	// A decoded event may hold a slice with room to spare; two states evolved
	// from it must not write into that room (or into each other).
	ps := make([]string, 1, 8)
	ps[0] = ann.ID
	started := c.Started{Meta: meta(ann, 0), ConversationID: convID, Channel: c.Internal, Participants: ps}
	a := c.Evolve(c.Evolve(c.State{}, started), posted(bob, 1, "m1", "Hi"))
	b := c.Evolve(c.Evolve(c.State{}, started), posted(carl, 1, "m1", "Hi"))
	if !reflect.DeepEqual(a.Participants, []string{ann.ID, bob.ID}) || !reflect.DeepEqual(b.Participants, []string{ann.ID, carl.ID}) {
		t.Errorf("two states evolved from one event share participants: %q, %q", a.Participants, b.Participants)
	}
	if !reflect.DeepEqual(started.Participants, []string{ann.ID}) {
		t.Errorf("Evolve changed the event: Participants %q", started.Participants)
	}
}

func TestStateLookups(t *testing.T) {
	s := c.Fold(with(livechat(), c.MessagePosted{Meta: meta(ann, 1), MessageID: "m2", Body: "Hi", ClientID: "k"}))
	if _, ok := s.Message("m9"); ok {
		t.Errorf("Message(m9): got found, want not found")
	}
	if m, ok := s.Message("m2"); !ok || m.Body != "Hi" {
		t.Errorf("Message(m2): got %q, %v, want Hi, true", m.Body, ok)
	}
	if _, ok := s.MessageByClientID(cust, "k"); ok {
		t.Errorf("MessageByClientID(cust, k): got found, want not found (ann's key)")
	}
	if _, ok := s.MessageByClientID(cust, ""); ok {
		t.Errorf("MessageByClientID(cust, \"\"): got found, want not found (no client id is no key)")
	}
}

func TestStream(t *testing.T) {
	if got, want := c.Stream("0192"), "conversation-0192"; got != want {
		t.Errorf("Stream: got %q, want %q", got, want)
	}
}

func TestEventTypes(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range c.Events() {
		name := e.EventType()
		if !strings.HasPrefix(name, "conversation.") {
			t.Errorf("%T: type %q, want the prefix conversation.", e, name)
		}
		if seen[name] {
			t.Errorf("%T: type %q is used twice", e, name)
		}
		seen[name] = true
	}
	if got, want := len(seen), 9; got != want {
		t.Errorf("Events: got %d types, want %d", got, want)
	}
}

// exported returns s without what Evolve keeps to find messages fast.
func exported(s c.State) c.State {
	return c.State{ID: s.ID, Channel: s.Channel, Subject: s.Subject, Status: s.Status, CustomerID: s.CustomerID,
		Participants: s.Participants, Links: s.Links, Messages: s.Messages, ReadUpTo: s.ReadUpTo,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

// TestIndexedLookupsMatchScans: the state Evolve keeps finds messages by id
// and by client id as a scan of Messages does, the first of a client id.
func TestIndexedLookupsMatchScans(t *testing.T) {
	events := livechat()
	authors := []domain.Actor{cust, ann}
	for i := range 300 {
		a := authors[i%2]
		events = append(events, c.MessagePosted{Meta: meta(a, i+1), MessageID: fmt.Sprintf("m%d", i+2), Body: "hi",
			ClientID: fmt.Sprintf("client-%d", i%7)}) // client ids repeat: the first counts
	}
	indexed := c.Fold(events)
	scanned := exported(indexed)
	for _, a := range authors {
		for k := range 9 {
			id := fmt.Sprintf("client-%d", k)
			m1, ok1 := indexed.MessageByClientID(a, id)
			m2, ok2 := scanned.MessageByClientID(a, id)
			if ok1 != ok2 || m1.ID != m2.ID {
				t.Errorf("MessageByClientID(%v, %s): indexed %s %v, scanned %s %v", a, id, m1.ID, ok1, m2.ID, ok2)
			}
		}
	}
	for _, id := range []string{"m1", "m150", "m301", "m999"} {
		_, err1 := c.Decide(indexed, c.Post{Meta: meta(cust, 400), MessageID: id, Body: "again"})
		_, err2 := c.Decide(scanned, c.Post{Meta: meta(cust, 400), MessageID: id, Body: "again"})
		if (err1 == nil) != (err2 == nil) {
			t.Errorf("posting id %s: indexed %v, scanned %v", id, err1, err2)
		}
		_, err1 = c.Decide(indexed, c.Edit{Meta: meta(cust, 400), MessageID: id, Body: "edited"})
		_, err2 = c.Decide(scanned, c.Edit{Meta: meta(cust, 400), MessageID: id, Body: "edited"})
		if fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Errorf("editing %s: indexed %v, scanned %v", id, err1, err2)
		}
	}
}

// TestSizeCountsTheTexts: a state's size grows with what its messages
// say and falls back as they are edited shorter or deleted, so that a
// cache of states can bound what they hold.
func TestSizeCountsTheTexts(t *testing.T) {
	long := strings.Repeat("x", 9000)
	base := c.Fold(livechat())
	withLong := c.Fold(with(livechat(), posted(ann, 1, "m2", long)))
	withShort := c.Fold(with(livechat(), posted(ann, 1, "m2", "")))
	if got := withLong.Size() - withShort.Size(); got != len(long) {
		t.Errorf("a message of %d bytes makes the state %d bytes larger than an empty one, want %d", len(long), got, len(long))
	}
	if withShort.Size() <= base.Size() {
		t.Errorf("an empty message adds nothing: %d after %d", withShort.Size(), base.Size())
	}
	edited := c.Fold(with(livechat(), posted(ann, 1, "m2", long), c.MessageEdited{Meta: meta(ann, 2), MessageID: "m2", Body: "short"}))
	if got, want := withLong.Size()-edited.Size(), len(long)-len("short"); got != want {
		t.Errorf("edited shorter: %d bytes less, want %d", got, want)
	}
	deleted := c.Fold(with(livechat(), posted(ann, 1, "m2", long), c.MessageDeleted{Meta: meta(ann, 2), MessageID: "m2"}))
	if deleted.Size() != withShort.Size() {
		t.Errorf("deleted: %d bytes, want those of an empty message, %d", deleted.Size(), withShort.Size())
	}
}

// BenchmarkMessageOfALongConversation looks up the newest message of a
// conversation of 10,000, as each post does for its answer.
func BenchmarkMessageOfALongConversation(b *testing.B) {
	evs := livechat()
	for i := range 10_000 {
		evs = append(evs, posted(ann, 1, fmt.Sprintf("m-%d", i), "text"))
	}
	s := c.Fold(evs)
	for b.Loop() {
		if _, ok := s.Message("m-9999"); !ok {
			b.Fatal("not found")
		}
	}
}
