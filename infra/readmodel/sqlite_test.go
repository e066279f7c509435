package readmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/helpdesk/messenger/infra/sqlite"
	"github.com/helpdesk/messenger/projections"
)

// TestPlanItemSearchShortTerms: a term of one or two ASCII letters, or of
// letters without case (Chinese, Japanese, Korean), is looked up through
// the trigrams it begins, and lists exactly the titles holding it,
// wherever it stands in them (the last letter included); one that no
// title holds narrows to nothing; one that begins too many trigrams, or
// holds a letter with case beyond ASCII, walks the newest. (FindItems's results are compared with a
// read of every title in projections' tests and fuzzing.)
func TestPlanItemSearchShortTerms(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := projections.Migrate(ctx, db.Writer(), SQLite{}); err != nil {
		t.Fatal(err)
	}
	titles := []string{"Quiz night", "a quote", "FAQ", "Über alles", "über", "x", "雪の日", "東京雪祭り", "한국어", "斿泳", "旀", "雫"}
	const marks = "0123456789+-#"
	for _, a := range marks {
		for _, b := range marks {
			titles = append(titles, "k"+string(a)+string(b)) // 169 trigrams begin with k
		}
	}
	for i, title := range titles {
		if _, err := db.Writer().ExecContext(ctx, `INSERT INTO items (id, kind, title, description, status, requester_id,
			created_by, created_at, position) VALUES (?, 'ticket', ?, '', 'open', '', '', ?, ?)`,
			fmt.Sprintf("it-%d", i), title, 1_700_000_000_000+i, i+1); err != nil {
			t.Fatal(err)
		}
	}
	plan := func(q string) (string, []int) {
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
	for _, q := range []string{"k", "ü", "üb"} {
		if clause, _ := plan(q); clause != "" {
			t.Errorf("%q: %q, want a walk of the newest", q, clause)
		}
	}
}
