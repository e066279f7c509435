package readmodel

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/helpdesk/messenger/infra/postgres/pgtest"
)

// searchTexts are documents and terms for the tsvector tests: words of
// several scripts, digits, punctuation, repeats, and a word too long for a
// tsvector.
var searchTexts = []string{
	"", "   ", "!!!", "Hello, World! hello again", "Order #4521 — delivery on 2026-11-26 at 10:30",
	"it's a customer's \"quoted\" back\\slash", "e-mail: ana.silva+test@example.com", "1e5 3.14 0x1F abc123 123abc",
	"Ångström ÜNÏCØDÉ straße", "日本語のテキスト 中文", "Привет мир", "emoji 🙂 between words",
	"tab\tnew\nline\rcarriage", strings.Repeat("word ", 300), strings.Repeat("x", 3000) + " short",
	"O'Brien's order ''quoted'' ", "a\u2028b\u2029c", "ǅemal ﬁne Ⅻ ½ ²", "under_score snake_case_word",
}

// connect opens a connection to a database of the test's own.
func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestSearchWordsMatchPostgresParser checks that the tsvector SearchWords
// computes in Go is the one PostgreSQL's own pipeline (lower, non-words to
// spaces, the simple parser) gave the documents before, so that a search
// finds the same documents as when the server computed it.
func TestSearchWordsMatchPostgresParser(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	for _, text := range searchTexts {
		words := string(Postgres{}.SearchWords(text).(tsvectorText))
		var same bool
		var ours, theirs string
		err := conn.QueryRow(ctx, `SELECT CAST($1 AS tsvector) = to_tsvector('simple', regexp_replace(lower($2), '[^[:alnum:]]+', ' ', 'g')),
			CAST($1 AS tsvector)::text, to_tsvector('simple', regexp_replace(lower($2), '[^[:alnum:]]+', ' ', 'g'))::text`,
			words, text).Scan(&same, &ours, &theirs)
		if err != nil {
			t.Fatalf("%.40q: %v", text, err)
		}
		if !same {
			t.Errorf("%.40q:\n ours   %.200s\n theirs %.200s", text, ours, theirs)
		}
	}
}

// TestSearchMatchFindsTheWords runs SearchMatch's query against the
// documents' tsvectors: every word, phrase and prefix of a document finds
// it; a word it lacks, or words out of order, do not.
func TestSearchMatchFindsTheWords(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	const doc = "Ana O'Brien: the Ångström delivery #4521 arrives on 2026-11-26 back\\slash"
	cases := map[string]bool{
		"ana": true, "o'brien": true, "O'BRIEN": true, "ångström delivery": true, "ÅNGSTR": true, "4521": true,
		"2026-11": true, "delivery #45": true, "back\\slash": true, "arrives on 2026": true,
		"delivery ana": false, "parcel": false, "brienx": false, "!!!": false, "": false, strings.Repeat("y", 3000): false,
	}
	words := string(Postgres{}.SearchWords(doc).(tsvectorText))
	for term, want := range cases {
		clause, arg := Postgres{}.SearchMatch(term)
		// The clause's tsquery, without its conversation's id range.
		query := clause[strings.Index(clause, "CAST(?"):strings.LastIndex(clause, ")")]
		query = strings.Replace(query, "?", "$2", 1)
		var got bool
		if err := conn.QueryRow(ctx, `SELECT CAST($1 AS tsvector) @@ `+query, words, arg).Scan(&got); err != nil {
			t.Fatalf("%.40q: %v", term, err)
		}
		if got != want {
			t.Errorf("search %.40q in %q = %v, want %v", term, doc, got, want)
		}
	}
}

// BenchmarkSearchWords computes the tsvector of a typical chat message.
func BenchmarkSearchWords(b *testing.B) {
	body := "Hello, my parcel #4521 never arrived: the tracking page says it was delivered on Tuesday, but it wasn't. Can you check?"
	for b.Loop() {
		Postgres{}.SearchWords(body)
	}
}
