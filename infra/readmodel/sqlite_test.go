package readmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/helpdesk/messenger/infra/sqlite"
	"github.com/helpdesk/messenger/projections"
)

// TestPlanItemSearchShortTerms: a term of one or two letters (ASCII,
// accented, without case as Chinese, Japanese, Korean) is looked up
// through the trigrams it begins, and lists exactly the titles holding it,
// wherever it stands in them (the last letter included); one that no
// title holds narrows to nothing; one that begins too many trigrams, or
// holds a letter the index folds to another (ς), walks the newest.
// (FindItems's results are compared with a read of every title in
// projections' tests and fuzzing.)
func TestPlanItemSearchShortTerms(t *testing.T) {
	titles := []string{"Quiz night", "a quote", "FAQ", "Über alles", "über", "x", "雪の日", "東京雪祭り", "한국어", "斿泳", "旀", "雫", "Λόγος"}
	const marks = "0123456789+-#"
	for _, a := range marks {
		for _, b := range marks {
			titles = append(titles, "k"+string(a)+string(b)) // 169 trigrams begin with k
		}
	}
	plan := itemTitles(t, titles)
	for q, want := range map[string][]int{
		"qu": {1, 2},    // at a title's start and in its middle
		"q":  {1, 2, 3}, // and as its last letter
		"x":  {6},       // a title of one letter
		"e":  {2, 4, 5}, // twice in "Über alles"; last in "a quote"
		"雪":  {7, 8},    // a title's first letter, and its third; not 雫, the next rune
		"雪の": {7},
		"京雪": {8},
		"어":  {9},  // the last letter
		"斿":  {10}, // its UTF-8 ends in 0xbf: the range's bound carries no rune
		"旀":  {11}, // one letter after it
		"ü":  {4, 5},
		"üb": {4, 5},
		"όγ": {13},
	} {
		if clause, got := plan(q); !strings.Contains(clause, "json_each") || !slices.Equal(got, want) {
			t.Errorf("%q: %q listing %v, want the positions %v", q, clause, got, want)
		}
	}
	for _, q := range []string{"zq", "火", "雪火"} {
		if clause, _ := plan(q); clause != "0" {
			t.Errorf(`%q, in no title: %q, want nothing to test`, q, clause)
		}
	}
	// The index holds "λόγοσ" and "über alles": σ and ς list the first,
	// ſ (folded to s) the second, which FindItems's test then refuses
	// when they do not hold the term; no title holds γς (γσ folded).
	for q, want := range map[string][]int{"σ": {13}, "ς": {13}, "ſ": {4}} {
		if clause, got := plan(q); !strings.Contains(clause, "json_each") || !slices.Equal(got, want) {
			t.Errorf("%q: %q listing %v, want the positions %v", q, clause, got, want)
		}
	}
	if clause, _ := plan("γς"); clause != "0" {
		t.Errorf(`γς, in no title: %q, want nothing to test`, clause)
	}
	// Too many trigrams; not lowered.
	for _, q := range []string{"k", "Ü"} {
		if clause, _ := plan(q); clause != "" {
			t.Errorf("%q: %q, want a walk of the newest", q, clause)
		}
	}
}

// TestShortTermsFoldAsTheIndex holds foldedByIndex to the trigram
// tokenizer: every character that Go's lower case keeps and that has
// another case, or every 997th of those without case, is a title of its
// own; a term of that one character finds its title through the index,
// those foldedByIndex lists through the form it gives. A newer SQLite
// whose tokenizer folds more, or otherwise, fails it.
func TestShortTermsFoldAsTheIndex(t *testing.T) {
	var letters []rune
	caseless := 0
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		switch {
		case !utf8.ValidRune(r) || unicode.ToLower(r) != r || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S):
		case unicode.SimpleFold(r) != r:
			letters = append(letters, r)
		default:
			if caseless++; caseless%997 == 0 {
				letters = append(letters, r)
			}
		}
	}
	titles := make([]string, len(letters))
	for i, r := range letters {
		titles[i] = string(r)
	}
	plan := itemTitles(t, titles)
	folded := 0
	for i, r := range letters {
		if _, ok := foldedByIndex[r]; ok {
			folded++
		}
		if clause, positions := plan(string(r)); !slices.Contains(positions, i+1) {
			t.Errorf("%U %q: %q %v, want its title (%d) listed", r, r, clause, positions, i+1)
		}
	}
	if folded != len(foldedByIndex) {
		t.Errorf("%d of foldedByIndex's characters tried, want all %d", folded, len(foldedByIndex))
	}
	t.Logf("%d characters, %d of them with case", len(letters), len(letters)-caseless/997)
}

// itemTitles returns PlanItemSearch over read models holding an item of
// each title, the first at position 1, the next at 2, …; it returns the
// clause and the positions it lists, in order.
func itemTitles(t *testing.T, titles []string) func(q string) (string, []int) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := projections.Migrate(ctx, db.Writer(), SQLite{}); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Writer().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, title := range titles {
		if _, err := tx.ExecContext(ctx, `INSERT INTO items (id, kind, title, description, status, requester_id,
			created_by, created_at, position) VALUES (?, 'ticket', ?, '', 'open', '', '', ?, ?)`,
			fmt.Sprintf("it-%d", i), title, 1_700_000_000_000+i, i+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return func(q string) (string, []int) {
		t.Helper()
		clause, args, err := SQLite{}.PlanItemSearch(ctx, db.Reader(), q)
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		var positions []int
		if len(args) == 1 {
			if err := json.Unmarshal([]byte(args[0].(string)), &positions); err != nil {
				t.Fatal(err)
			}
			slices.Sort(positions)
		}
		return clause, positions
	}
}

// TestFoldAsIndex: the letters the tokenizer folds are replaced wherever
// they stand, the rest kept; a term Go did not lower is not folded.
func TestFoldAsIndex(t *testing.T) {
	for in, want := range map[string]string{"": "", "ab": "ab", "é": "é", "ς": "σ", "ςa": "σa", "aς": "aσ",
		"ſſ": "ss", "µ雪": "μ雪", "雪ϐé": "雪βé"} {
		if got, ok := foldAsIndex(in); !ok || got != want {
			t.Errorf("foldAsIndex(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"É", "aÜ", "ςΣ"} {
		if got, ok := foldAsIndex(in); ok {
			t.Errorf("foldAsIndex(%q) = %q, want refused (not lowered)", in, got)
		}
	}
}
