package projections_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/projections"
)

// FuzzFindItemsAsWalked adds an item of any title and searches for any
// text on SQLite: FindItems, which may start from the trigram index of
// titles, must find what reading every title finds. The index folds case
// beyond ASCII and reads a term as a phrase of its trigrams; LIKE folds
// ASCII letters only and knows wildcards: the index must list every title
// LIKE accepts.
func FuzzFindItemsAsWalked(f *testing.F) {
	for _, seed := range [][2]string{{"Refund for order 42", "refund"}, {"ÉCOLE fermée", "école"}, {"Straße", "STRASSE"},
		{"İstanbul trip", "i̇stanbul"}, {"a_b%c\\d", "_b%"}, {"ﬁne print", "fine"}, {"K for Kelvin", "k for"},
		{"Ǆemal", "ǅem"}, {`say "hi" twice`, `"hi"`}, {"ab", "abc"},
		{"東京雪祭り", "雪"}, {"한국어 문의", "어"}, {"雫", "雪"},
		{"Λόγος", "ς"}, {"ΛΟΓΟΣ", "σ"}, {"µ-meter", "µ"}, {"Über", "ü"}} {
		f.Add(seed[0], seed[1])
	}
	e := sqliteEngine(f)
	ctx := context.Background()
	if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
		f.Fatal(err)
	}
	rm := projections.NewReadModels(e.reader, e.dialect)
	n := 0
	f.Fuzz(func(t *testing.T, title, q string) {
		if !domain.IsText(title) || !domain.IsText(q) || utf8.RuneCountInString(q) > 200 || len(title) > 1000 {
			return
		}
		n++
		if _, err := e.writer.ExecContext(ctx, `INSERT INTO items (id, kind, title, description, status, requester_id,
			created_by, created_at, position) VALUES (?, 'ticket', ?, '', 'open', '', '', ?, ?)`,
			fmt.Sprintf("item-%d", n), title, 1_700_000_000_000+n, n); err != nil {
			t.Fatal(err)
		}
		for _, term := range []string{q, title} {
			items, err := rm.FindItems(ctx, term, 1000)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range items {
				got = append(got, it.ID)
			}
			want, err := projections.FindItemsWalked(rm, term, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%q: found %v, walking the titles finds %v", term, got, want)
			}
		}
	})
}
