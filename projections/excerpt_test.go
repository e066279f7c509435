package projections_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/projections"
)

func TestExcerpt(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"Ångström", 8, "Ångström"},
		{"Ångström!", 8, "Ångström…"},
		{"日本語のテキスト", 2, "日本…"},
		{"a😀b", 2, "a😀…"},
		{"abc", 0, "…"},
	} {
		if got := projections.Excerpt(c.in, c.n); got != c.want {
			t.Errorf("Excerpt(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// TestLongLastMessageExcerpt posts a last message of several thousand
// characters, many of them beyond one byte, and reads its excerpt the
// three ways the read models give it: an inbox page (which reads only the
// start of the body), one inbox row and a live stream's snapshot (which
// read the whole message). All three cut it alike, after ExcerptLen
// characters.
func TestLongLastMessageExcerpt(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			ctx := context.Background()
			en := e.open(t)
			proj := project(t, en)
			rm := projections.NewReadModels(en.reader, en.dialect)
			svc := commands.NewService(en.store, rm, proj, commands.Config{})
			if _, err := svc.EnsureAdmin(ctx, "admin-token"); err != nil {
				t.Fatal(err)
			}
			admin := directory.Principal{Kind: domain.ActorUser, ID: commands.BootstrapAdminID, Role: directory.Admin, Support: true}
			cust, err := svc.RegisterCustomer(ctx, "Zoë", "")
			if err != nil {
				t.Fatal(err)
			}
			customer := directory.Principal{Kind: domain.ActorCustomer, ID: cust.ID}
			cases := map[string]string{
				"long":  strings.Repeat("Ångström 日本 ", 800),           // 9,600 characters
				"edge":  strings.Repeat("é", projections.ExcerptLen+1), // one character too many
				"fits":  strings.Repeat("é", projections.ExcerptLen),   // exactly what an excerpt holds
				"short": "Hello 👋",
			}
			for name, body := range cases {
				id, _, err := svc.StartConversation(ctx, customer, name, body, nil)
				if err != nil {
					t.Fatal(err)
				}
				want := projections.Excerpt(body, projections.ExcerptLen)
				if n := utf8.RuneCountInString(strings.TrimSuffix(want, "…")); n != min(utf8.RuneCountInString(body), projections.ExcerptLen) {
					t.Fatalf("%s: the excerpt holds %d characters", name, n)
				}
				rows, _, err := rm.Inbox(ctx, admin, projections.InboxQuery{Section: projections.Customers, Status: "open", Limit: 1})
				if err != nil || len(rows) != 1 || rows[0].ID != id || rows[0].LastMessage == nil {
					t.Fatalf("%s: inbox %+v, %v", name, rows, err)
				}
				if got := rows[0].LastMessage.Excerpt; got != want {
					t.Errorf("%s: the inbox page's excerpt is %q, want %q", name, got, want)
				}
				row, ok, err := rm.InboxRow(ctx, admin, id)
				if err != nil || !ok || row.LastMessage == nil || row.LastMessage.Excerpt != want {
					t.Errorf("%s: the inbox row's excerpt is %+v (%v, %v), want %q", name, row.LastMessage, ok, err, want)
				}
				snap, ok, err := rm.Snapshot(ctx, id)
				if err != nil || !ok {
					t.Fatalf("%s: snapshot: %v, %v", name, ok, err)
				}
				if last := snap.Row(admin).LastMessage; last == nil || last.Excerpt != want {
					t.Errorf("%s: the snapshot's excerpt is %+v, want %q", name, last, want)
				}
			}
		})
	}
}
