// Package item decides what may happen to a ticket or a task. Its stream is
// "item-<id>". Links to conversations are facts of the conversation stream.
package item

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/helpdesk/messenger/domain"
)

// Kind is ticket or task.
type Kind string

// The kinds of item.
const (
	Ticket Kind = "ticket"
	Task   Kind = "task"
)

// Stream returns the event stream name of item id.
func Stream(id string) string { return "item-" + id }

// MaxPeople bounds the assignees and the followers of one item.
const MaxPeople = 100

// Errors returned by Decide.
var (
	// ErrNotFound: the item does not exist.
	ErrNotFound = errors.New("item does not exist")
	// ErrExists: Create was given for an item that already exists.
	ErrExists = errors.New("item already exists")
	// ErrTooManyPeople: an item has at most MaxPeople assignees, and as many followers.
	ErrTooManyPeople = errors.New("too many assignees or followers")
)

// State is an item as its events leave it; the zero State does not exist.
type State struct {
	ID                   string
	Kind                 Kind
	Title                string
	Description          string
	Status               string // "open"; no command changes it yet
	RequesterID          string // customer id, "" if none
	CreatedBy            string // user id
	SourceConversationID string // the conversation it was made from, if any
	Assignees            []string
	Followers            []string
	CreatedAt            time.Time
}

// Exists reports whether the item has been created.
func (s State) Exists() bool { return s.ID != "" }

// InterestedIn reports whether user id created, is assigned to, or follows the item.
func (s State) InterestedIn(userID string) bool {
	return s.CreatedBy == userID || slices.Contains(s.Assignees, userID) || slices.Contains(s.Followers, userID)
}

// Command is one of the commands below.
type Command interface{ isCommand() }

// Create makes a ticket or task. The actor is its creator.
type Create struct {
	domain.Meta
	ItemID               string
	Kind                 Kind
	Title                string
	Description          string
	RequesterID          string
	SourceConversationID string
	Assignees            []string
}

// Assign adds an assignee.
type Assign struct {
	domain.Meta
	UserID string
}

// Follow adds a follower.
type Follow struct {
	domain.Meta
	UserID string
}

func (Create) isCommand() {}
func (Assign) isCommand() {}
func (Follow) isCommand() {}

// Event is one of the events below.
type Event interface {
	domain.Event
	isEvent()
}

// Created is the first event of every item.
type Created struct {
	domain.Meta
	ItemID               string
	Kind                 Kind
	Title                string
	Description          string
	RequesterID          string
	SourceConversationID string
	Assignees            []string
}

// Assigned adds an assignee.
type Assigned struct {
	domain.Meta
	UserID string
}

// Followed adds a follower.
type Followed struct {
	domain.Meta
	UserID string
}

func (Created) EventType() string  { return "item.created" }
func (Assigned) EventType() string { return "item.assigned" }
func (Followed) EventType() string { return "item.followed" }
func (Created) isEvent()           {}
func (Assigned) isEvent()          {}
func (Followed) isEvent()          {}

// Events lists one zero value of every event type.
func Events() []Event { return []Event{Created{}, Assigned{}, Followed{}} }

// Decide returns the events cmd causes in s, or why it may not happen; no
// events and no error mean nothing changes.
func Decide(s State, cmd Command) ([]Event, error) {
	switch c := cmd.(type) {
	case Create:
		if s.Exists() {
			return nil, ErrExists
		}
		if c.Kind != Ticket && c.Kind != Task {
			return nil, domain.Invalid("kind", `must be "ticket" or "task"`)
		}
		title := strings.TrimSpace(c.Title)
		if title == "" {
			return nil, domain.Invalid("title", "is required")
		}
		if err := domain.CheckLen("title", title, domain.MaxTitleLen); err != nil {
			return nil, err
		}
		if err := domain.CheckLen("description", c.Description, domain.MaxDescriptionLen); err != nil {
			return nil, err
		}
		if len(c.Assignees) > MaxPeople {
			return nil, domain.Invalid("assignees", "at most 100 assignees")
		}
		var assignees []string
		for _, a := range c.Assignees {
			if a == "" {
				return nil, domain.Invalid("assignees", "ids must not be empty")
			}
			if !slices.Contains(assignees, a) {
				assignees = append(assignees, a)
			}
		}
		return []Event{Created{Meta: c.Meta, ItemID: c.ItemID, Kind: c.Kind, Title: title, Description: c.Description,
			RequesterID: c.RequesterID, SourceConversationID: c.SourceConversationID, Assignees: assignees}}, nil
	case Assign:
		if !s.Exists() {
			return nil, ErrNotFound
		}
		if c.UserID == "" {
			return nil, domain.Invalid("user_id", "is required")
		}
		if slices.Contains(s.Assignees, c.UserID) {
			return nil, nil
		}
		if len(s.Assignees) >= MaxPeople {
			return nil, ErrTooManyPeople
		}
		return []Event{Assigned{Meta: c.Meta, UserID: c.UserID}}, nil
	case Follow:
		if !s.Exists() {
			return nil, ErrNotFound
		}
		if c.UserID == "" {
			return nil, domain.Invalid("user_id", "is required")
		}
		if slices.Contains(s.Followers, c.UserID) {
			return nil, nil
		}
		if len(s.Followers) >= MaxPeople {
			return nil, ErrTooManyPeople
		}
		return []Event{Followed{Meta: c.Meta, UserID: c.UserID}}, nil
	}
	return nil, errors.New("item: unknown command")
}

// Evolve returns the state after e; it may reuse s's slices.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case Created:
		return State{ID: e.ItemID, Kind: e.Kind, Title: e.Title, Description: e.Description, Status: "open",
			RequesterID: e.RequesterID, CreatedBy: e.Actor.ID, SourceConversationID: e.SourceConversationID,
			Assignees: slices.Clone(e.Assignees), CreatedAt: e.At}
	case Assigned:
		s.Assignees = append(s.Assignees, e.UserID)
	case Followed:
		s.Followers = append(s.Followers, e.UserID)
	}
	return s
}

// Fold applies events in order to the zero State.
func Fold(events []Event) State {
	var s State
	for _, e := range events {
		s = Evolve(s, e)
	}
	return s
}
