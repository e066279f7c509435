package item_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/item"
)

const itemID = "item-1"

var (
	t0 = time.Date(2025, 1, 2, 9, 0, 0, 0, time.UTC)

	ann  = domain.Actor{Kind: domain.ActorUser, ID: "ann"}
	bob  = domain.Actor{Kind: domain.ActorUser, ID: "bob"}
	carl = domain.Actor{Kind: domain.ActorUser, ID: "carl"}
)

func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }

func meta(a domain.Actor, n int) domain.Meta { return domain.Meta{At: at(n), Actor: a} }

// ticket is a ticket ann created at minute 0, assigned to bob.
func ticket() []item.Event {
	return []item.Event{item.Created{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Ticket, Title: "Refund order 42",
		Description: "The parcel never arrived.", RequesterID: "cust-1", SourceConversationID: "conv-1", Assignees: []string{bob.ID}}}
}

func with(base []item.Event, more ...item.Event) []item.Event {
	return append(append([]item.Event(nil), base...), more...)
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

// decideTest is one given/when/then case; none of then, err, field and
// anyErr means "no events, no error".
type decideTest struct {
	name   string
	given  []item.Event
	when   item.Command
	then   []item.Event
	err    error
	field  string
	anyErr bool
}

func runDecide(t *testing.T, tests []decideTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := item.Decide(item.Fold(tt.given), tt.when)
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("error: got %v, want %v", err, tt.err)
				}
			case tt.field != "":
				var fe *domain.FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Fatalf("error: got %v, want a FieldError for %q", err, tt.field)
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

func create(kind item.Kind, title, description string, assignees ...string) item.Create {
	return item.Create{Meta: meta(ann, 0), ItemID: itemID, Kind: kind, Title: title, Description: description, Assignees: assignees}
}

func TestDecideCreate(t *testing.T) {
	hundred := ids("user-", item.MaxPeople)
	runDecide(t, []decideTest{
		{
			name: "a ticket from a conversation",
			when: item.Create{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Ticket, Title: "Refund order 42",
				Description: "The parcel never arrived.", RequesterID: "cust-1", SourceConversationID: "conv-1", Assignees: []string{bob.ID}},
			then: ticket(),
		},
		{
			name: "a task with a title only",
			when: create(item.Task, "Update the FAQ", ""),
			then: []item.Event{item.Created{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Task, Title: "Update the FAQ"}},
		},
		{
			name: "the title is trimmed, the description kept as sent",
			when: create(item.Task, "  Update the FAQ\n", " line 1\nline 2 "),
			then: []item.Event{item.Created{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Task, Title: "Update the FAQ", Description: " line 1\nline 2 "}},
		},
		{
			name: "duplicate assignees are removed, in order",
			when: create(item.Task, "T", "", carl.ID, bob.ID, carl.ID, ann.ID, bob.ID),
			then: []item.Event{item.Created{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Task, Title: "T", Assignees: []string{carl.ID, bob.ID, ann.ID}}},
		},
		{
			name: "100 assignees",
			when: create(item.Task, "T", "", hundred...),
			then: []item.Event{item.Created{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Task, Title: "T", Assignees: hundred}},
		},
		{
			name:  "101 assignees",
			when:  create(item.Task, "T", "", ids("user-", item.MaxPeople+1)...),
			field: "assignees",
		},
		{
			name:  "an empty assignee id",
			when:  create(item.Task, "T", "", bob.ID, ""),
			field: "assignees",
		},
		{
			name:  "no kind",
			when:  create("", "T", ""),
			field: "kind",
		},
		{
			name:  "an unknown kind",
			when:  create("bug", "T", ""),
			field: "kind",
		},
		{
			name:  "a kind in capitals",
			when:  create("Ticket", "T", ""),
			field: "kind",
		},
		{
			name:  "no title",
			when:  create(item.Ticket, "", ""),
			field: "title",
		},
		{
			name:  "a whitespace title",
			when:  create(item.Ticket, " \t\n ", ""),
			field: "title",
		},
		{
			name: "a title of 200 characters once trimmed",
			when: create(item.Ticket, "  "+strings.Repeat("é", domain.MaxTitleLen)+"  ", ""),
			then: []item.Event{item.Created{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Ticket, Title: strings.Repeat("é", domain.MaxTitleLen)}},
		},
		{
			name:  "a title of 201 characters",
			when:  create(item.Ticket, strings.Repeat("é", domain.MaxTitleLen+1), ""),
			field: "title",
		},
		{
			name: "a description of 10,000 characters",
			when: create(item.Ticket, "T", strings.Repeat("é", domain.MaxDescriptionLen)),
			then: []item.Event{item.Created{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Ticket, Title: "T", Description: strings.Repeat("é", domain.MaxDescriptionLen)}},
		},
		{
			name:  "a description of 10,001 characters",
			when:  create(item.Ticket, "T", strings.Repeat("é", domain.MaxDescriptionLen+1)),
			field: "description",
		},
		{
			name:  "a description that is not UTF-8",
			when:  create(item.Ticket, "T", "\xff"),
			field: "description",
		},
		{
			name:  "an item that exists",
			given: ticket(),
			when:  create(item.Task, "Another", ""),
			err:   item.ErrExists,
		},
	})
}

func TestDecideAssignFollow(t *testing.T) {
	assign := func(n int, user string) item.Assign { return item.Assign{Meta: meta(ann, n), UserID: user} }
	follow := func(n int, user string) item.Follow { return item.Follow{Meta: meta(ann, n), UserID: user} }
	full := ticket() // bob plus 99 more assignees, and 100 followers
	for i, u := range ids("user-", item.MaxPeople-1) {
		full = append(full, item.Assigned{Meta: meta(ann, i+1), UserID: u})
	}
	for i, u := range ids("user-", item.MaxPeople) {
		full = append(full, item.Followed{Meta: meta(ann, i+1), UserID: u})
	}
	runDecide(t, []decideTest{
		{name: "assign to a missing item", when: assign(1, carl.ID), err: item.ErrNotFound},
		{name: "follow a missing item", when: follow(1, carl.ID), err: item.ErrNotFound},
		{
			name:  "assign a user",
			given: ticket(),
			when:  assign(1, carl.ID),
			then:  []item.Event{item.Assigned{Meta: meta(ann, 1), UserID: carl.ID}},
		},
		{
			name:  "assign a user assigned at creation",
			given: ticket(),
			when:  assign(1, bob.ID),
		},
		{
			name:  "assign a user assigned since",
			given: with(ticket(), item.Assigned{Meta: meta(ann, 1), UserID: carl.ID}),
			when:  assign(2, carl.ID),
		},
		{
			name:  "assign a follower: following and being assigned are independent",
			given: with(ticket(), item.Followed{Meta: meta(ann, 1), UserID: carl.ID}),
			when:  assign(2, carl.ID),
			then:  []item.Event{item.Assigned{Meta: meta(ann, 2), UserID: carl.ID}},
		},
		{
			name:  "assign nobody",
			given: ticket(),
			when:  assign(1, ""),
			field: "user_id",
		},
		{
			name:  "assign one too many",
			given: full,
			when:  assign(200, carl.ID),
			err:   item.ErrTooManyPeople,
		},
		{
			name:  "assign someone already assigned when full",
			given: full,
			when:  assign(200, "user-99"),
		},
		{
			name:  "follow",
			given: ticket(),
			when:  follow(1, carl.ID),
			then:  []item.Event{item.Followed{Meta: meta(ann, 1), UserID: carl.ID}},
		},
		{
			name:  "follow again",
			given: with(ticket(), item.Followed{Meta: meta(carl, 1), UserID: carl.ID}),
			when:  follow(2, carl.ID),
		},
		{
			name:  "the creator follows explicitly",
			given: ticket(),
			when:  follow(1, ann.ID),
			then:  []item.Event{item.Followed{Meta: meta(ann, 1), UserID: ann.ID}},
		},
		{
			name:  "follow by nobody",
			given: ticket(),
			when:  follow(1, ""),
			field: "user_id",
		},
		{
			name:  "follow one too many",
			given: full,
			when:  follow(200, carl.ID),
			err:   item.ErrTooManyPeople,
		},
		{
			name:  "follow again when full",
			given: full,
			when:  follow(200, "user-100"),
		},
	})
}

// unknownCommand satisfies item.Command through the embedded interface.
type unknownCommand struct{ item.Command }

func TestDecideUnknownCommand(t *testing.T) {
	runDecide(t, []decideTest{
		{name: "missing item", when: unknownCommand{}, anyErr: true},
		{name: "existing item", given: ticket(), when: unknownCommand{}, anyErr: true},
	})
}

func TestEvolve(t *testing.T) {
	s := item.Fold(with(ticket(),
		item.Assigned{Meta: meta(ann, 1), UserID: carl.ID},
		item.Followed{Meta: meta(carl, 2), UserID: "dora"},
	))
	want := item.State{
		ID: itemID, Kind: item.Ticket, Title: "Refund order 42", Description: "The parcel never arrived.", Status: "open",
		RequesterID: "cust-1", CreatedBy: ann.ID, SourceConversationID: "conv-1",
		Assignees: []string{bob.ID, carl.ID}, Followers: []string{"dora"}, CreatedAt: at(0),
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("state:\n got %#v\nwant %#v", s, want)
	}
	if !s.Exists() {
		t.Errorf("Exists: got false, want true")
	}
	if item.Fold(nil).Exists() {
		t.Errorf("Fold(nil).Exists: got true, want false")
	}
}

func TestEvolveDoesNotShareTheCreatedAssignees(t *testing.T) {
	created := item.Created{Meta: meta(ann, 0), ItemID: itemID, Kind: item.Task, Title: "T", Assignees: make([]string, 1, 4)}
	created.Assignees[0] = bob.ID
	a := item.Evolve(item.Evolve(item.State{}, created), item.Assigned{Meta: meta(ann, 1), UserID: "x"})
	b := item.Evolve(item.Evolve(item.State{}, created), item.Assigned{Meta: meta(ann, 1), UserID: "y"})
	if a.Assignees[1] != "x" || b.Assignees[1] != "y" {
		t.Errorf("two states evolved from one event share assignees: %q, %q", a.Assignees, b.Assignees)
	}
}

func TestInterestedIn(t *testing.T) {
	s := item.Fold(with(ticket(), item.Followed{Meta: meta(carl, 1), UserID: carl.ID}))
	for _, tt := range []struct {
		user string
		want bool
	}{
		{ann.ID, true},  // created it
		{bob.ID, true},  // assigned
		{carl.ID, true}, // follows
		{"dora", false},
		{"cust-1", false}, // the requester is a customer, not a user
	} {
		if got := s.InterestedIn(tt.user); got != tt.want {
			t.Errorf("InterestedIn(%q): got %v, want %v", tt.user, got, tt.want)
		}
	}
}

func TestStream(t *testing.T) {
	if got, want := item.Stream("0192"), "item-0192"; got != want {
		t.Errorf("Stream: got %q, want %q", got, want)
	}
}

func TestEventTypes(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range item.Events() {
		name := e.EventType()
		if !strings.HasPrefix(name, "item.") || seen[name] {
			t.Errorf("%T: type %q is not a unique item.* name", e, name)
		}
		seen[name] = true
	}
	if len(seen) != 3 {
		t.Errorf("Events: got %d types, want 3", len(seen))
	}
}
