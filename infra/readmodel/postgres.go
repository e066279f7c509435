package readmodel

import (
	"strconv"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"

	"github.com/helpdesk/messenger/projections"
)

// Postgres is the dialect of PostgreSQL: $n placeholders and a tsvector
// column over search_docs with a GIN index. Text is split into words on
// every character that is not a letter or a digit, as SQLite's unicode61
// tokenizer does, so that both engines find the same conversations.
type Postgres struct{}

var (
	_ projections.Dialect    = Postgres{}
	_ projections.Pipeliner  = Postgres{}
	_ projections.Maintainer = Postgres{}
	_ projections.Bulker     = Postgres{}
)

// Maintenance vacuums the read-model tables whose rows every post
// rewrites. Autovacuum may be off, or wake too late for tables of a few
// hundred hot rows that gather thousands of dead versions a second; their
// index lookups then slow the projector down within seconds.
func (Postgres) Maintenance() []string {
	return []string{`VACUUM conversations, members, reads, caught_up, counters, checkpoints`}
}

// Statistics analyzes the database: without statistics (a rebuilt or
// never-analyzed database when autovacuum is off) the planner guesses row
// counts from table sizes alone.
func (Postgres) Statistics() []string { return []string{`ANALYZE`} }

// Pipeline runs the statements of query in one round trip: pgx's simple
// protocol, which takes several statements in one text, with the
// arguments written into it by pgx's own quoting (it insists on
// standard_conforming_strings and UTF-8 for that). database/sql passes the
// mode through to pgx as a first argument. The result's count of rows is
// the last statement's.
func (p Postgres) Pipeline(query string, args []any) (string, []any) {
	return p.Rebind(query), append([]any{pgx.QueryExecModeSimpleProtocol}, args...)
}

// Rows carries each column of rows in one array, text or bigint, written
// as an array literal and unnested on the server: a handful of values to
// parse instead of one per cell (a third of the time of a VALUES list on
// 5,000 messages). Columns hold strings or integers; any other value, or a
// column of both, makes it decline.
func (Postgres) Rows(rows [][]any, width int) (string, []any, bool) {
	var from strings.Builder
	from.WriteString("unnest(")
	args := make([]any, width)
	var lit strings.Builder
	for col := range width {
		lit.Reset()
		lit.WriteByte('{')
		text := false
		for i, r := range rows {
			if i > 0 {
				lit.WriteByte(',')
			}
			var isText bool
			switch v := r[col].(type) {
			case string:
				isText = true
				lit.WriteByte('"')
				for j := 0; j < len(v); j++ {
					if v[j] == '"' || v[j] == '\\' {
						lit.WriteByte('\\')
					}
					lit.WriteByte(v[j])
				}
				lit.WriteByte('"')
			case int:
				lit.WriteString(strconv.FormatInt(int64(v), 10))
			case int64:
				lit.WriteString(strconv.FormatInt(v, 10))
			case int32:
				lit.WriteString(strconv.FormatInt(int64(v), 10))
			default:
				return "", nil, false
			}
			if i == 0 {
				text = isText
			} else if isText != text {
				return "", nil, false
			}
		}
		lit.WriteByte('}')
		args[col] = lit.String()
		if col > 0 {
			from.WriteString(", ")
		}
		if text {
			from.WriteString("CAST(? AS TEXT[])")
		} else {
			from.WriteString("CAST(? AS BIGINT[])")
		}
	}
	from.WriteString(") AS v(")
	for col := range width {
		if col > 0 {
			from.WriteString(", ")
		}
		from.WriteString("column" + strconv.Itoa(col+1))
	}
	from.WriteString(")")
	return from.String(), args, true
}

// Rebind rewrites ? placeholders outside string literals into $1, $2, ….
func (Postgres) Rebind(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		ch := q[i]
		switch {
		case ch == '\'':
			quoted = !quoted
		case ch == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// SearchSchema creates search_docs with a generated tsvector and its GIN index.
func (Postgres) SearchSchema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS search_docs (id BIGINT PRIMARY KEY, body TEXT NOT NULL,
			tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', regexp_replace(lower(body), '[^[:alnum:]]+', ' ', 'g'))) STORED)`,
		`CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING GIN (tsv)`,
	}
}

// SearchDrop drops search_docs and its index.
func (Postgres) SearchDrop() []string { return []string{`DROP TABLE IF EXISTS search_docs`} }

// SearchMatch matches term as a phrase of its words, the last one a prefix.
func (Postgres) SearchMatch(term string) (string, string) {
	words := strings.FieldsFunc(strings.ToLower(term), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	for i, w := range words {
		words[i] = "'" + w + "'"
	}
	query := strings.Join(words, " <-> ")
	if query == "" {
		query = "''"
	}
	// A semi-join the planner can run either way, from the statistics
	// ANALYZE keeps of the words: for a common word, walk the inbox in order
	// and look into each conversation's own documents (its id range) until
	// the page is full; for a rare one, find its few documents through the
	// GIN index once. (A set of all the matching documents' conversations,
	// as on SQLite, costs 200-400 ms here for a word in 200k documents: each
	// is read back from the table to recheck the prefix match.)
	return `EXISTS (SELECT 1 FROM search_docs d WHERE d.id >= c.num * 16777216 AND d.id < (c.num + 1) * 16777216
		AND d.tsv @@ to_tsquery('simple', ?))`, query + ":*"
}
