// Package domain holds what every aggregate shares: who acts, when, and the
// shape of an event. It imports the standard library only.
package domain

import (
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// ActorKind says what kind of principal performed an action.
type ActorKind string

// The kinds of actor.
const (
	ActorUser     ActorKind = "user"
	ActorCustomer ActorKind = "customer"
	ActorSystem   ActorKind = "system"
)

// Actor identifies who performed an action.
type Actor struct {
	Kind ActorKind
	ID   string
}

// Key is a stable string for the actor, "kind:id", usable as a map key.
func (a Actor) Key() string { return string(a.Kind) + ":" + a.ID }

// Meta is when and by whom a command was given. Every command and every event
// embeds it; the event store keeps it in the envelope, not in the event data.
type Meta struct {
	At    time.Time
	Actor Actor
}

// EventMeta returns m. Being promoted from the embedded Meta, it lets the
// event store read any event's metadata.
func (m Meta) EventMeta() Meta { return m }

// Event is a fact of the domain. Each aggregate seals its own set of events;
// EventType is the stored type name, stable forever.
type Event interface {
	EventType() string
	EventMeta() Meta
}

// Limits on text, shared by every aggregate.
const (
	MaxBodyLen        = 10000
	MaxSubjectLen     = 200
	MaxTitleLen       = 200
	MaxDescriptionLen = 10000
	MaxNameLen        = 200
	MaxEmailLen       = 254
	MaxParticipants   = 50
	MaxClientIDLen    = 64
)

// Validation errors. Each carries the field at fault; see FieldError.
var (
	// ErrInvalid is wrapped by every FieldError.
	ErrInvalid = errors.New("invalid")
)

// FieldError reports which field of a command is invalid and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Invalid returns a FieldError for field.
func Invalid(field, reason string) error { return &FieldError{Field: field, Reason: reason} }

// CheckBody returns a FieldError unless s holds at least one non-whitespace
// character and at most MaxBodyLen characters.
func CheckBody(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return Invalid(field, "must hold at least one non-whitespace character")
	}
	return CheckLen(field, s, MaxBodyLen)
}

// IsText reports whether s is text every store keeps as it is: valid UTF-8
// without U+0000, which PostgreSQL's text columns refuse.
func IsText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// CheckLen returns a FieldError when s is not valid UTF-8, holds the
// character U+0000 or holds more than max characters. An event's text must
// fit every engine's text columns, and PostgreSQL's refuse U+0000: one such
// event in the log would stop its read models at that event.
func CheckLen(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return Invalid(field, "must be valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return Invalid(field, "must not contain the character U+0000")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return Invalid(field, "must be at most "+itoa(max)+" characters")
	}
	return nil
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
