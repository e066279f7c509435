package item_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/item"
)

// FuzzItemDecide reads a script of commands: an opcode byte ('C' create, 'A'
// assign, 'F' follow; any other byte modulo 3), then for create a kind byte,
// an assignee mask, and title and description each up to ';'; for assign and
// follow a user byte (0 is the empty id, any other names "u<byte>").
func FuzzItemDecide(f *testing.F) {
	f.Add([]byte("Ct\x03  Fix login ;Users cannot log in.;A\x05A\x05F\x05F\x06Ck\x00x;"))
	f.Add([]byte("A\x01F\x01Cb\x00bug;;Cs\x80T;;Ck\x00 \t;;Ct\x00T;\xff;"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			s   item.State
			log []item.Event
		)
		for n := 1; len(data) > 0 && n <= 300; n++ {
			next := func() byte {
				if len(data) == 0 {
					return 0
				}
				b := data[0]
				data = data[1:]
				return b
			}
			text := func() string {
				i := slices.Index(data, ';')
				if i < 0 {
					i = len(data)
				}
				t := string(data[:i])
				data = data[min(i+1, len(data)):]
				return t
			}
			user := func(b byte) string {
				if b == 0 {
					return ""
				}
				return fmt.Sprintf("u%d", b)
			}
			m := meta(ann, n)
			var cmd item.Command
			op := next()
			switch i := strings.IndexByte("CAF", op); {
			case i == 0 || i < 0 && op%3 == 0:
				kinds := map[byte]item.Kind{'t': item.Ticket, 'k': item.Task, 'b': "bug"}
				kind, ok := kinds[next()]
				if !ok {
					kind = ""
				}
				mask := next()
				var as []string
				for bit := range 8 {
					if mask&(1<<bit) != 0 {
						as = append(as, user(byte(bit)), user(byte(bit+1))) // overlapping: duplicates, and "" for bit 0
					}
				}
				title := text()
				cmd = item.Create{Meta: m, ItemID: itemID, Kind: kind, Title: title, Description: text(), Assignees: as}
			case i == 1 || i < 0 && op%3 == 1:
				cmd = item.Assign{Meta: m, UserID: user(next())}
			default:
				cmd = item.Follow{Meta: m, UserID: user(next())}
			}

			evs, err := item.Decide(s, cmd)
			if err != nil {
				if len(evs) != 0 {
					t.Fatalf("%#v: events %#v with error %v", cmd, evs, err)
				}
				if !errors.Is(err, domain.ErrInvalid) && !errors.Is(err, item.ErrNotFound) &&
					!errors.Is(err, item.ErrExists) && !errors.Is(err, item.ErrTooManyPeople) {
					t.Fatalf("%#v: unexpected error %v", cmd, err)
				}
				continue
			}
			for _, e := range evs {
				if e.EventMeta() != m {
					t.Fatalf("%#v: event meta %+v, want %+v", cmd, e.EventMeta(), m)
				}
				s = item.Evolve(s, e)
				log = append(log, e)
			}
			checkItem(t, s)
			switch cmd := cmd.(type) {
			case item.Assign:
				if !slices.Contains(s.Assignees, cmd.UserID) || !s.InterestedIn(cmd.UserID) {
					t.Fatalf("Assign(%q) left assignees %q", cmd.UserID, s.Assignees)
				}
			case item.Follow:
				if !slices.Contains(s.Followers, cmd.UserID) || !s.InterestedIn(cmd.UserID) {
					t.Fatalf("Follow(%q) left followers %q", cmd.UserID, s.Followers)
				}
			}
			if again, err := item.Decide(s, cmd); len(again) != 0 || err != nil && !errors.Is(err, item.ErrExists) {
				t.Fatalf("%#v given again: got %#v, %v, want nothing", cmd, again, err)
			}
		}
		if folded := item.Fold(log); !reflect.DeepEqual(folded, s) {
			t.Fatalf("Fold(log) differs from the state evolved step by step:\n fold %#v\n step %#v", folded, s)
		}
	})
}

func checkItem(t *testing.T, s item.State) {
	t.Helper()
	if !s.Exists() || s.Status != "open" || s.CreatedBy != ann.ID || !s.InterestedIn(ann.ID) {
		t.Fatalf("state after an event: %#v", s)
	}
	if s.Kind != item.Ticket && s.Kind != item.Task {
		t.Fatalf("Kind %q", s.Kind)
	}
	if s.Title != strings.TrimSpace(s.Title) || s.Title == "" {
		t.Fatalf("Title %q is not trimmed and non-empty", s.Title)
	}
	if err := domain.CheckLen("title", s.Title, domain.MaxTitleLen); err != nil {
		t.Fatalf("Title: %v", err)
	}
	if err := domain.CheckLen("description", s.Description, domain.MaxDescriptionLen); err != nil {
		t.Fatalf("Description: %v", err)
	}
	for _, people := range [][]string{s.Assignees, s.Followers} {
		if len(people) > item.MaxPeople || slices.Contains(people, "") {
			t.Fatalf("people: %q", people)
		}
		seen := map[string]bool{}
		for _, p := range people {
			if seen[p] {
				t.Fatalf("%q twice in %q", p, people)
			}
			seen[p] = true
		}
	}
}
