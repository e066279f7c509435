package helpdesk_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/helpdesk"
)

var (
	t0  = time.Date(2025, 1, 2, 9, 0, 0, 0, time.UTC)
	ann = domain.Actor{Kind: domain.ActorUser, ID: "ann"}
)

func meta(n int) domain.Meta {
	return domain.Meta{At: t0.Add(time.Duration(n) * time.Minute), Actor: ann}
}

func online(n int) helpdesk.StatusChanged {
	return helpdesk.StatusChanged{Meta: meta(n), Online: true}
}

func offline(n int) helpdesk.StatusChanged {
	return helpdesk.StatusChanged{Meta: meta(n), Online: false}
}

func configured(n int, on, off string) helpdesk.MessagesConfigured {
	return helpdesk.MessagesConfigured{Meta: meta(n), OnlineMessage: on, OfflineMessage: off}
}

func TestDecide(t *testing.T) {
	setStatus := func(n int, on bool) helpdesk.SetStatus { return helpdesk.SetStatus{Meta: meta(n), Online: on} }
	configure := func(n int, on, off string) helpdesk.ConfigureMessages {
		return helpdesk.ConfigureMessages{Meta: meta(n), OnlineMessage: on, OfflineMessage: off}
	}
	long := strings.Repeat("é", helpdesk.MaxMessageLen)
	tests := []struct {
		name   string
		given  []helpdesk.Event
		when   helpdesk.Command
		then   []helpdesk.Event
		field  string
		anyErr bool
	}{
		{name: "go online from the start", when: setStatus(1, true), then: []helpdesk.Event{online(1)}},
		{name: "go offline from the start: it is offline already", when: setStatus(1, false)},
		{name: "go online when online", given: []helpdesk.Event{online(1)}, when: setStatus(2, true)},
		{name: "go offline when online", given: []helpdesk.Event{online(1)}, when: setStatus(2, false), then: []helpdesk.Event{offline(2)}},
		{name: "go online again", given: []helpdesk.Event{online(1), offline(2)}, when: setStatus(3, true), then: []helpdesk.Event{online(3)}},
		{
			name: "configure both messages",
			when: configure(1, "Hi!", "Back soon."),
			then: []helpdesk.Event{configured(1, "Hi!", "Back soon.")},
		},
		{
			name:  "configure the same messages again",
			given: []helpdesk.Event{configured(1, "Hi!", "Back soon.")},
			when:  configure(2, "Hi!", "Back soon."),
		},
		{
			name:  "change one of the messages",
			given: []helpdesk.Event{configured(1, "Hi!", "Back soon.")},
			when:  configure(2, "Hi!", "Back on Monday."),
			then:  []helpdesk.Event{configured(2, "Hi!", "Back on Monday.")},
		},
		{
			name: "configure the default texts explicitly",
			when: configure(1, helpdesk.DefaultOnlineMessage, helpdesk.DefaultOfflineMessage),
			then: []helpdesk.Event{configured(1, helpdesk.DefaultOnlineMessage, helpdesk.DefaultOfflineMessage)},
		},
		{
			name: "messages of 1,000 characters, kept as sent",
			when: configure(1, " "+long[:len(long)-2], long),
			then: []helpdesk.Event{configured(1, " "+long[:len(long)-2], long)},
		},
		{name: "an empty online message", when: configure(1, "", "Back soon."), field: "online_message"},
		{name: "a whitespace online message", when: configure(1, " \n", "Back soon."), field: "online_message"},
		{name: "an online message of 1,001 characters", when: configure(1, long+"!", "Back soon."), field: "online_message"},
		{name: "an online message that is not UTF-8", when: configure(1, "Hi \xff", "Back soon."), field: "online_message"},
		{name: "an empty offline message", when: configure(1, "Hi!", ""), field: "offline_message"},
		{name: "a whitespace offline message", when: configure(1, "Hi!", "\t"), field: "offline_message"},
		{name: "an offline message of 1,001 characters", when: configure(1, "Hi!", long+"!"), field: "offline_message"},
		{name: "an unknown command", when: unknownCommand{}, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := helpdesk.Decide(helpdesk.Fold(tt.given), tt.when)
			switch {
			case tt.field != "":
				var fe *domain.FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Fatalf("error: got %v, want a FieldError for %q", err, tt.field)
				}
			case tt.anyErr:
				if err == nil {
					t.Fatalf("error: got nil, want one")
				}
			case err != nil:
				t.Fatalf("error: got %v, want nil", err)
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

// unknownCommand satisfies helpdesk.Command through the embedded interface.
type unknownCommand struct{ helpdesk.Command }

func TestMessage(t *testing.T) {
	tests := []struct {
		name  string
		given []helpdesk.Event
		want  string
	}{
		{"offline with the default message", nil, helpdesk.DefaultOfflineMessage},
		{"online with the default message", []helpdesk.Event{online(1)}, helpdesk.DefaultOnlineMessage},
		{"offline with a configured message", []helpdesk.Event{configured(1, "Hi!", "Back soon.")}, "Back soon."},
		{"online with a configured message", []helpdesk.Event{configured(1, "Hi!", "Back soon."), online(2)}, "Hi!"},
		{"offline again", []helpdesk.Event{online(1), configured(2, "Hi!", "Back soon."), offline(3)}, "Back soon."},
		{"only the offline message configured, online", []helpdesk.Event{configured(1, "", "Back soon."), online(2)}, helpdesk.DefaultOnlineMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := helpdesk.Fold(tt.given).Message(); got != tt.want {
				t.Errorf("Message: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFold(t *testing.T) {
	got := helpdesk.Fold([]helpdesk.Event{online(1), configured(2, "Hi!", "Back soon."), offline(3), online(4)})
	want := helpdesk.State{Online: true, OnlineMessage: "Hi!", OfflineMessage: "Back soon."}
	if got != want {
		t.Errorf("state: got %+v, want %+v", got, want)
	}
	if (helpdesk.Fold(nil) != helpdesk.State{}) {
		t.Errorf("Fold(nil): got %+v, want the zero State", helpdesk.Fold(nil))
	}
}

func TestEventTypes(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range helpdesk.Events() {
		name := e.EventType()
		if !strings.HasPrefix(name, "helpdesk.") || seen[name] {
			t.Errorf("%T: type %q is not a unique helpdesk.* name", e, name)
		}
		seen[name] = true
	}
	if len(seen) != 2 {
		t.Errorf("Events: got %d types, want 2", len(seen))
	}
}
