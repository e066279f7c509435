package conversation_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/helpdesk/messenger/domain"
	c "github.com/helpdesk/messenger/domain/conversation"
)

// The fuzz input is a script of commands, one after another. Each command is
// an opcode byte, an actor byte and its operands; text operands run up to ';'
// or the end of the input. Letters make seeds readable, but any byte is some
// command, so every input is a script:
//
//	S actor mask subject; body;   start (mask: bit i adds fuzzUsers[i] as a participant; 0x80 adds "")
//	P actor clientID; body;       post
//	E actor target body;          edit  (target: index into the messages; past the end: an unknown id)
//	D actor target mod            delete (mod: odd means moderator)
//	C actor / R actor / M actor   close / reopen / mark read
//	L actor item / U actor item   link / unlink (item: "" for '_' or 0, else "item-<byte>")
//
// Actors are picked by a digit (or any byte, modulo): see fuzzActors.
const fuzzOps = "SPEDCRMLU"

var (
	fuzzActors = []domain.Actor{cust, ann, bob, carl, cust2, sys}
	fuzzUsers  = []string{ann.ID, bob.ID, carl.ID, "dora", "ed", "fay", "gus"}
)

type script struct {
	data []byte
}

func (s *script) more() bool { return len(s.data) > 0 }

func (s *script) byte() byte {
	if len(s.data) == 0 {
		return 0
	}
	b := s.data[0]
	s.data = s.data[1:]
	return b
}

// pick maps b to an index below n: a digit is its value, any other byte its remainder.
func pick(b byte, n int) int {
	if b >= '0' && b <= '9' {
		return int(b-'0') % n
	}
	return int(b) % n
}

func (s *script) text() string {
	i := slices.Index(s.data, ';')
	if i < 0 {
		t := string(s.data)
		s.data = nil
		return t
	}
	t := string(s.data[:i])
	s.data = s.data[i+1:]
	return t
}

func (s *script) actor() domain.Actor { return fuzzActors[pick(s.byte(), len(fuzzActors))] }

// command reads the next command; n numbers it, for its time and message id.
func (s *script) command(n int, st c.State) c.Command {
	op := s.byte()
	i := strings.IndexByte(fuzzOps, op)
	if i < 0 {
		i = int(op) % len(fuzzOps)
	}
	m := meta(s.actor(), n)
	msgID := fmt.Sprintf("m-%d", n) // server-chosen, unique like a UUIDv7
	target := func() string {
		t := int(s.byte())
		if t < len(st.Messages) {
			return st.Messages[t].ID
		}
		return "m-unknown"
	}
	item := func() string {
		b := s.byte()
		if b == 0 || b == '_' {
			return ""
		}
		return fmt.Sprintf("item-%d", b)
	}
	switch fuzzOps[i] {
	case 'S':
		mask := s.byte()
		var ps []string
		for bit, u := range fuzzUsers {
			if mask&(1<<bit) != 0 {
				ps = append(ps, u)
			}
		}
		if mask&0x80 != 0 {
			ps = append(ps, "")
		}
		subject := s.text()
		return c.Start{Meta: m, ConversationID: convID, MessageID: msgID, Subject: subject, Body: s.text(), Participants: ps}
	case 'P':
		clientID := s.text()
		return c.Post{Meta: m, MessageID: msgID, ClientID: clientID, Body: s.text()}
	case 'E':
		id := target()
		return c.Edit{Meta: m, MessageID: id, Body: s.text()}
	case 'D':
		id := target()
		return c.Delete{Meta: m, MessageID: id, Moderator: s.byte()%2 == 1}
	case 'C':
		return c.Close{Meta: m}
	case 'R':
		return c.Reopen{Meta: m}
	case 'M':
		return c.MarkRead{Meta: m}
	case 'L':
		return c.Link{Meta: m, ItemID: item()}
	default: // 'U'
		return c.Unlink{Meta: m, ItemID: item()}
	}
}

// knownErrors are the errors Decide may return besides FieldErrors and the
// refusal of a start by the system.
var knownErrors = []error{
	c.ErrNotFound, c.ErrExists, c.ErrMessageNotFound, c.ErrMessageDeleted, c.ErrNotAuthor,
	c.ErrNotLinked, c.ErrTooManyLinks, c.ErrCustomerParticipants, domain.ErrInvalid,
}

func FuzzConversationDecide(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzConversationDecide; this one starts,
	// posts, closes and reopens by a reply.
	f.Add([]byte("S0\x00Order 42;Where is my order?;P1;Shipped.;M0C1P0;It did not arrive.;"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &script{data: data}
		var (
			st  c.State
			log []c.Event
		)
		for n := 1; in.more() && n <= 200; n++ {
			cmd := in.command(n, st)
			before := st.Status
			evs, err := c.Decide(st, cmd)
			if err != nil {
				if len(evs) != 0 {
					t.Fatalf("%#v: events %#v with error %v", cmd, evs, err)
				}
				if !known(err, cmd) {
					t.Fatalf("%#v: unexpected error %v", cmd, err)
				}
				continue
			}
			for _, e := range evs {
				if got, want := e.EventMeta(), commandMeta(cmd); got != want {
					t.Fatalf("%#v: event %#v has meta %+v, want the command's %+v", cmd, e, got, want)
				}
				st = c.Evolve(st, e)
				log = append(log, e)
				checkInvariants(t, st)
			}
			checkCommand(t, cmd, evs, before, st)

			// A command given twice in a row is a retry: the second time it changes
			// nothing (a post is a retry only with a client id).
			if len(evs) == 0 {
				continue
			}
			var want error
			switch cmd := cmd.(type) {
			case c.Post:
				if cmd.ClientID == "" {
					continue
				}
			case c.Start:
				want = c.ErrExists
			case c.Unlink:
				want = c.ErrNotLinked
			}
			if again, err := c.Decide(st, cmd); len(again) != 0 || !errors.Is(err, want) {
				t.Fatalf("%#v given again: got %#v, %v, want no events and error %v", cmd, again, err, want)
			}
		}
		if folded := c.Fold(log); !reflect.DeepEqual(folded, st) {
			t.Fatalf("Fold(log) differs from the state evolved step by step:\n fold %#v\n step %#v", folded, st)
		}
	})
}

func known(err error, cmd c.Command) bool {
	for _, k := range knownErrors {
		if errors.Is(err, k) {
			return true
		}
	}
	if s, ok := cmd.(c.Start); ok {
		return s.Actor.Kind != domain.ActorUser && s.Actor.Kind != domain.ActorCustomer
	}
	return false
}

func commandMeta(cmd c.Command) domain.Meta {
	switch cmd := cmd.(type) {
	case c.Start:
		return cmd.Meta
	case c.Post:
		return cmd.Meta
	case c.Edit:
		return cmd.Meta
	case c.Delete:
		return cmd.Meta
	case c.Close:
		return cmd.Meta
	case c.Reopen:
		return cmd.Meta
	case c.MarkRead:
		return cmd.Meta
	case c.Link:
		return cmd.Meta
	case c.Unlink:
		return cmd.Meta
	}
	panic(fmt.Sprintf("unknown command %T", cmd))
}

// checkInvariants fails t unless s is a state a conversation can be in.
func checkInvariants(t *testing.T, s c.State) {
	t.Helper()
	if !s.Exists() {
		t.Fatalf("an event left the conversation not existing: %#v", s)
	}
	if s.Status != c.StatusOpen && s.Status != c.StatusClosed {
		t.Fatalf("Status: got %q, want open or closed", s.Status)
	}
	if s.Channel == c.LiveChat && s.CustomerID == "" || s.Channel == c.Internal && s.CustomerID != "" {
		t.Fatalf("channel %q with customer %q", s.Channel, s.CustomerID)
	}
	if s.Subject != strings.TrimSpace(s.Subject) || strings.ContainsAny(s.Subject, "\r\n") {
		t.Fatalf("Subject %q is not trimmed to one line", s.Subject)
	}
	for i, m := range s.Messages {
		if m.Seq != i+1 {
			t.Fatalf("Messages[%d].Seq: got %d, want %d", i, m.Seq, i+1)
		}
		if m.Deleted && m.Body != "" {
			t.Fatalf("deleted message %s keeps its body %q", m.ID, m.Body)
		}
		if !m.Deleted {
			if err := domain.CheckBody("body", m.Body); err != nil {
				t.Fatalf("message %s holds an invalid body: %v", m.ID, err)
			}
		}
	}
	if dup, ok := duplicate(s.Participants); ok {
		t.Fatalf("participant %q twice in %q", dup, s.Participants)
	}
	if slices.Contains(s.Participants, "") {
		t.Fatalf("an empty participant id in %q", s.Participants)
	}
	if dup, ok := duplicate(s.Links); ok {
		t.Fatalf("link %q twice in %q", dup, s.Links)
	}
	if len(s.Links) > c.MaxLinks {
		t.Fatalf("%d links, want at most %d", len(s.Links), c.MaxLinks)
	}
	for key, seq := range s.ReadUpTo {
		if seq < 0 || seq > s.LastSeq() {
			t.Fatalf("ReadUpTo[%s] = %d, want 0…%d", key, seq, s.LastSeq())
		}
	}
	for _, a := range fuzzActors {
		if u := s.Unread(a); u < 0 || u > len(s.Messages) {
			t.Fatalf("Unread(%s) = %d, want 0…%d", a.Key(), u, len(s.Messages))
		}
	}
}

// checkCommand fails t unless the events of cmd did what cmd asked, leaving s.
func checkCommand(t *testing.T, cmd c.Command, evs []c.Event, before c.Status, s c.State) {
	t.Helper()
	switch cmd := cmd.(type) {
	case c.Start:
		if s.Channel == c.Internal && (len(s.Participants) == 0 || s.Participants[0] != cmd.Actor.ID) {
			t.Fatalf("internal conversation started by %s: participants %q", cmd.Actor.ID, s.Participants)
		}
		if s.Channel == c.LiveChat && s.CustomerID != cmd.Actor.ID {
			t.Fatalf("live chat started by %s: customer %q", cmd.Actor.ID, s.CustomerID)
		}
	case c.Post:
		if len(evs) == 0 {
			if m, ok := s.MessageByClientID(cmd.Actor, cmd.ClientID); !ok {
				t.Fatalf("post %#v appended nothing, yet no message has its client id", cmd)
			} else if m.ID == cmd.MessageID {
				t.Fatalf("post %#v appended nothing, yet it is the message with its client id", cmd)
			}
			return
		}
		if last := s.Messages[len(s.Messages)-1]; last.ID != cmd.MessageID || last.Body != cmd.Body || last.Author != cmd.Actor {
			t.Fatalf("post %#v: last message is %#v", cmd, last)
		}
		if s.Status != c.StatusOpen {
			t.Fatalf("a post to a %s conversation left it %s", before, s.Status)
		}
		if before == c.StatusClosed {
			want := c.CustomerReplied
			if cmd.Actor.Kind != domain.ActorCustomer {
				want = c.TeammateReplied
			}
			r, ok := evs[len(evs)-1].(c.Reopened)
			if !ok || r.Cause != want || r.MessageID != cmd.MessageID {
				t.Fatalf("a post to a closed conversation: events %#v, want a Reopened{%s, %s} last", evs, want, cmd.MessageID)
			}
		}
		if cmd.Actor.Kind == domain.ActorUser && !s.IsParticipant(cmd.Actor.ID) {
			t.Fatalf("user %s posted but is not a participant", cmd.Actor.ID)
		}
		if u := s.Unread(cmd.Actor); u != 0 {
			t.Fatalf("Unread of the author right after its post: got %d, want 0", u)
		}
	case c.Edit:
		if m, _ := s.Message(cmd.MessageID); m.Body != cmd.Body || m.Author != cmd.Actor {
			t.Fatalf("edit %#v left %#v", cmd, m)
		}
	case c.Delete:
		if m, _ := s.Message(cmd.MessageID); !m.Deleted || !cmd.Moderator && m.Author != cmd.Actor {
			t.Fatalf("delete %#v left %#v", cmd, m)
		}
	case c.Close:
		if s.Status != c.StatusClosed {
			t.Fatalf("Close left the conversation %s", s.Status)
		}
	case c.Reopen:
		if s.Status != c.StatusOpen {
			t.Fatalf("Reopen left the conversation %s", s.Status)
		}
	case c.MarkRead:
		if u := s.Unread(cmd.Actor); u != 0 {
			t.Fatalf("Unread after MarkRead: got %d, want 0", u)
		}
		if got := s.ReadUpTo[cmd.Actor.Key()]; got != s.LastSeq() {
			t.Fatalf("ReadUpTo after MarkRead: got %d, want %d", got, s.LastSeq())
		}
	case c.Link:
		if !s.IsLinked(cmd.ItemID) {
			t.Fatalf("Link(%q) left it unlinked", cmd.ItemID)
		}
	case c.Unlink:
		if s.IsLinked(cmd.ItemID) {
			t.Fatalf("Unlink(%q) left it linked", cmd.ItemID)
		}
	}
}

func duplicate(xs []string) (string, bool) {
	seen := make(map[string]bool, len(xs))
	for _, x := range xs {
		if seen[x] {
			return x, true
		}
		seen[x] = true
	}
	return "", false
}
