package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/projections"
)

// TestUnstorableTextInTheLog appends, past the domain's checks, events
// whose text holds U+0000, which PostgreSQL's text columns refuse: the
// projector must apply them, with U+FFFD in its place, on every engine
// and both ways of writing rows, and go on with the events after them,
// live and in a rebuild. Before, one such event stopped PostgreSQL's read
// models at it for good.
func TestUnstorableTextInTheLog(t *testing.T) {
	cases := append(engines[:len(engines):len(engines)], struct {
		name string
		open func(testing.TB) engine
	}{"postgres-copying", postgresEngine})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "postgres-copying" {
				t.Cleanup(projections.CopyAll())
			}
			e := c.open(t)
			proj, stop := startProjector(t, e)
			rm := projections.NewReadModels(e.reader, e.dialect)
			ctx := context.Background()
			at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
			cust, conv, first, second := "00000000-0000-7000-8000-0000000000c1", "00000000-0000-7000-8000-0000000000c2",
				"00000000-0000-7000-8000-0000000000c3", "00000000-0000-7000-8000-0000000000c4"
			by := domain.Meta{At: at, Actor: domain.Actor{Kind: domain.ActorCustomer, ID: cust}}
			var last uint64
			n := 0
			appendAll := func(stream string, events ...domain.Event) {
				t.Helper()
				pending := make([]domain.Pending, len(events))
				for i, ev := range events {
					n++
					pending[i] = domain.Pending{EventID: fmt.Sprintf("event-%d", n), Event: ev}
				}
				recs, err := e.store.Append(ctx, stream, domain.AnyVersion, pending)
				if err != nil {
					t.Fatal(err)
				}
				last = recs[len(recs)-1].Position
			}
			appendAll(directory.CustomerStream(cust), directory.CustomerRegistered{
				Meta:       domain.Meta{At: at, Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}},
				CustomerID: cust, Name: "Nul\x00Name", Email: "nul@example.com", TokenHash: "hash-c1"})
			appendAll(conversation.Stream(conv),
				conversation.Started{Meta: by, ConversationID: conv, Channel: conversation.LiveChat, Subject: "Sub\x00ject", CustomerID: cust},
				conversation.MessagePosted{Meta: by, MessageID: first, Body: "hello\x00world zanzibar", ClientID: "c\x001"},
				conversation.MessagePosted{Meta: by, MessageID: second, Body: "to edit"},
				conversation.MessageEdited{Meta: by, MessageID: second, Body: "edited\x00 quokka"},
			)
			wait := func() {
				t.Helper()
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := proj.WaitFor(wctx, last); err != nil {
					t.Fatalf("the read models did not reach position %d: %v", last, err)
				}
			}
			wait()
			check := func(stage string) {
				t.Helper()
				cv, ok, err := rm.Conversation(ctx, conv)
				if err != nil || !ok || cv.Subject != "Sub\uFFFDject" {
					t.Errorf("%s: conversation %+v, %v, %v; want the subject with U+FFFD", stage, cv, ok, err)
				}
				if cu, ok, err := rm.Customer(ctx, cust); err != nil || !ok || cu.Name != "Nul\uFFFDName" {
					t.Errorf("%s: customer %+v, %v, %v; want the name with U+FFFD", stage, cu, ok, err)
				}
				msgs, _, err := rm.Messages(ctx, conv, 10, "")
				if err != nil || len(msgs) != 2 || msgs[0].Body != "hello\uFFFDworld zanzibar" || msgs[1].Body != "edited\uFFFD quokka" {
					t.Errorf("%s: messages %+v, %v", stage, msgs, err)
				}
				support := directory.Principal{Kind: domain.ActorUser, ID: "someone", Role: directory.Admin, Support: true}
				for _, term := range []string{"zanzibar", "quokka", "nul"} {
					rows, _, err := rm.Inbox(ctx, support, projections.InboxQuery{Section: projections.Customers, Search: term, Limit: 10})
					if err != nil || len(rows) != 1 || rows[0].ID != conv {
						t.Errorf("%s: search %q found %+v, %v", stage, term, rows, err)
					}
				}
			}
			check("live")
			// The events after them are applied too.
			appendAll(conversation.Stream(conv), conversation.Closed{Meta: by})
			wait()
			if cv, _, err := rm.Conversation(ctx, conv); err != nil || cv.Status != "closed" {
				t.Errorf("after: conversation %+v, %v; want it closed", cv, err)
			}
			stop()
			if err := projections.Rebuild(ctx, e.writer, e.dialect, e.store, nil); err != nil {
				t.Fatalf("rebuild: %v", err)
			}
			check("rebuilt")
		})
	}
}

// TestStorableArgs checks what the projector sends in place of text the
// engines refuse, invalid UTF-8 included, which a log written by other
// means than this codec could hold; and that it leaves the caller's
// arguments as they were.
func TestStorableArgs(t *testing.T) {
	args := []any{int64(1), "fine", "a\x00b", "bad \xff\xfe byte", "\x00"}
	got := projections.StorableArgs(args)
	want := []any{int64(1), "fine", "a\uFFFDb", "bad \uFFFD byte", "\uFFFD"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("arg %d: %q, want %q", i, got[i], want[i])
		}
	}
	if args[2] != "a\x00b" {
		t.Errorf("the caller's arguments changed: %q", args[2])
	}
	clean := []any{"x", 2}
	if got := projections.StorableArgs(clean); &got[0] != &clean[0] {
		t.Errorf("storable arguments were copied")
	}
}
