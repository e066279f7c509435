package projections

import (
	"strconv"
	"time"

	"github.com/helpdesk/messenger/domain/conversation"
)

// Time is a moment rendered as RFC 3339 with milliseconds, in UTC.
type Time time.Time

// MarshalJSON renders t as "2006-01-02T15:04:05.000Z".
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(TimeFormat) + `"`), nil
}

// UnmarshalJSON parses an RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	*t = Time(v)
	return err
}

// TimeFormat is how the API writes times.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

func millis(t time.Time) int64 { return t.UnixMilli() }
func fromMillis(ms int64) Time { return Time(time.UnixMilli(ms).UTC()) }

// Position is an event's place in the log as the API shows it: an opaque
// string token.
type Position uint64

// String returns the token.
func (p Position) String() string { return strconv.FormatUint(uint64(p), 10) }

// MarshalJSON renders the token as a JSON string.
func (p Position) MarshalJSON() ([]byte, error) { return []byte(`"` + p.String() + `"`), nil }

// ParsePosition reads a token made by Position.String.
func ParsePosition(s string) (Position, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	return Position(n), true
}

// Person is a user as other records show it.
type Person struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Author is who wrote a message.
type Author struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name"`
}

// CustomerRef is a customer as other records show it.
type CustomerRef struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// User is a staff member.
type User struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Email   string `json:"email"`
	Role    string `json:"role"`
	Support bool   `json:"support"`
}

// Customer is a widget visitor.
type Customer struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	CreatedAt Time   `json:"created_at"`
}

// Link is an item linked to a conversation.
type Link struct {
	ItemID string `json:"item_id"`
	Kind   string `json:"kind"`
	Title  string `json:"title"`
	Status string `json:"status"`
}

// Message is a message of a thread; a deleted one keeps its place with an
// empty body.
type Message struct {
	ID             string   `json:"id"`
	ConversationID string   `json:"conversation_id"`
	Author         Author   `json:"author"`
	Body           string   `json:"body"`
	CreatedAt      Time     `json:"created_at"`
	Edited         bool     `json:"edited"`
	Deleted        bool     `json:"deleted"`
	Position       Position `json:"position"`

	Seq int `json:"-"`
}

// PostedMessage renders message m of conversation conv, new at log position
// pos and written by the principal named authorName, as the read models
// hold it once they have applied pos: the answer to its post, which need
// not read it back.
func PostedMessage(conv string, m conversation.Message, authorName string, pos uint64) Message {
	return Message{ID: m.ID, ConversationID: conv, Author: Author{Kind: string(m.Author.Kind), ID: m.Author.ID, Name: authorName},
		Body: m.Body, CreatedAt: fromMillis(millis(m.CreatedAt)), Edited: m.Edited, Deleted: m.Deleted, Position: Position(pos),
		Seq: m.Seq}
}

// Conversation is a conversation without its messages.
type Conversation struct {
	ID           string       `json:"id"`
	Channel      string       `json:"channel"`
	Subject      string       `json:"subject"`
	Status       string       `json:"status"`
	Customer     *CustomerRef `json:"customer"`
	Participants []Person     `json:"participants"`
	Links        []Link       `json:"links"`
	CreatedAt    Time         `json:"created_at"`
	UpdatedAt    Time         `json:"updated_at"`
	Position     Position     `json:"position"`
}

// LastMessage is the newest message as an inbox row shows it.
type LastMessage struct {
	ID        string `json:"id"`
	Author    Author `json:"author"`
	Excerpt   string `json:"excerpt"`
	CreatedAt Time   `json:"created_at"`
}

// InboxRow is a conversation as a list shows it to one viewer.
type InboxRow struct {
	ID          string       `json:"id"`
	Channel     string       `json:"channel"`
	Subject     string       `json:"subject"`
	Status      string       `json:"status"`
	Customer    *CustomerRef `json:"customer"`
	LastMessage *LastMessage `json:"last_message"`
	Unread      int          `json:"unread"`
	Links       []Link       `json:"links"`
	UpdatedAt   Time         `json:"updated_at"`
}

// Item is a ticket or a task.
type Item struct {
	ID            string       `json:"id"`
	Kind          string       `json:"kind"`
	Title         string       `json:"title"`
	Description   string       `json:"description"`
	Status        string       `json:"status"`
	Requester     *CustomerRef `json:"requester"`
	CreatedBy     Person       `json:"created_by"`
	Assignees     []Person     `json:"assignees"`
	Followers     []Person     `json:"followers"`
	Conversations []string     `json:"conversations"`
	CreatedAt     Time         `json:"created_at"`
}

// ItemSummary is a ticket or task as a list of them shows it.
type ItemSummary struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Title     string `json:"title"`
	Status    string `json:"status"`
	CreatedAt Time   `json:"created_at"`
}

// Helpdesk is the helpdesk's switch and widget messages.
type Helpdesk struct {
	Online         bool     `json:"online"`
	OnlineMessage  string   `json:"online_message"`
	OfflineMessage string   `json:"offline_message"`
	Position       Position `json:"position"`
}

// ExcerptLen is how many characters of a message an inbox row shows.
const ExcerptLen = 140

// Excerpt cuts s to n characters, adding "…" when it was longer. It
// walks s without copying it: a body may be 10,000 characters long.
func Excerpt(s string, n int) string {
	chars := 0
	for at := range s {
		if chars == n {
			return s[:at] + "…"
		}
		chars++
	}
	return s
}
