// Package helpdesk decides the helpdesk-wide online/offline switch and the
// messages the widget shows for each. Its stream is "helpdesk".
package helpdesk

import (
	"errors"

	"github.com/helpdesk/messenger/domain"
)

// Stream is the one stream of the helpdesk.
const Stream = "helpdesk"

// The messages shown until an admin configures others.
const (
	DefaultOnlineMessage  = "We're online. Ask us anything!"
	DefaultOfflineMessage = "We're away right now. Leave a message and we'll get back to you."
)

// MaxMessageLen bounds each configured message.
const MaxMessageLen = 1000

// State is the helpdesk as its events leave it. The zero State is offline
// with the default messages.
type State struct {
	Online         bool
	OnlineMessage  string // "" means the default
	OfflineMessage string // "" means the default
}

// Message is what the widget shows now.
func (s State) Message() string {
	if s.Online {
		if s.OnlineMessage == "" {
			return DefaultOnlineMessage
		}
		return s.OnlineMessage
	}
	if s.OfflineMessage == "" {
		return DefaultOfflineMessage
	}
	return s.OfflineMessage
}

// Command is one of the commands below.
type Command interface{ isCommand() }

// SetStatus switches the helpdesk online or offline.
type SetStatus struct {
	domain.Meta
	Online bool
}

// ConfigureMessages sets both widget messages.
type ConfigureMessages struct {
	domain.Meta
	OnlineMessage  string
	OfflineMessage string
}

func (SetStatus) isCommand()         {}
func (ConfigureMessages) isCommand() {}

// Event is one of the events below.
type Event interface {
	domain.Event
	isEvent()
}

// StatusChanged switches the helpdesk online or offline.
type StatusChanged struct {
	domain.Meta
	Online bool
}

// MessagesConfigured sets the widget's messages.
type MessagesConfigured struct {
	domain.Meta
	OnlineMessage  string
	OfflineMessage string
}

func (StatusChanged) EventType() string      { return "helpdesk.status_changed" }
func (MessagesConfigured) EventType() string { return "helpdesk.messages_configured" }
func (StatusChanged) isEvent()               {}
func (MessagesConfigured) isEvent()          {}

// Events lists one zero value of every event type.
func Events() []Event { return []Event{StatusChanged{}, MessagesConfigured{}} }

// Decide returns the events cmd causes in s; none when nothing changes.
func Decide(s State, cmd Command) ([]Event, error) {
	switch c := cmd.(type) {
	case SetStatus:
		if s.Online == c.Online {
			return nil, nil
		}
		return []Event{StatusChanged{Meta: c.Meta, Online: c.Online}}, nil
	case ConfigureMessages:
		for _, f := range [...]struct{ name, text string }{{"online_message", c.OnlineMessage}, {"offline_message", c.OfflineMessage}} {
			if err := domain.CheckBody(f.name, f.text); err != nil {
				return nil, err
			}
			if err := domain.CheckLen(f.name, f.text, MaxMessageLen); err != nil {
				return nil, err
			}
		}
		if c.OnlineMessage == s.OnlineMessage && c.OfflineMessage == s.OfflineMessage {
			return nil, nil
		}
		return []Event{MessagesConfigured{Meta: c.Meta, OnlineMessage: c.OnlineMessage, OfflineMessage: c.OfflineMessage}}, nil
	}
	return nil, errors.New("helpdesk: unknown command")
}

// Evolve returns the state after e.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case StatusChanged:
		s.Online = e.Online
	case MessagesConfigured:
		s.OnlineMessage, s.OfflineMessage = e.OnlineMessage, e.OfflineMessage
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
