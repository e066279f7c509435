package readmodel

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/helpdesk/messenger/projections"
)

// Postgres is the dialect of PostgreSQL: $n placeholders and a tsvector
// column over search_docs with a GIN index. Text is split into words on
// every character that is not a letter or a digit, as SQLite's unicode61
// tokenizer does, so that both engines find the same conversations.
type Postgres struct{}

var (
	_ projections.Dialect       = Postgres{}
	_ projections.Pipeliner     = Postgres{}
	_ projections.Maintainer    = Postgres{}
	_ projections.Bulker        = Postgres{}
	_ projections.SearchWorder  = Postgres{}
	_ projections.SearchPlanner = Postgres{}
	_ projections.Copier        = Postgres{}
)

// Maintenance vacuums the read-model tables whose rows every post
// rewrites. Autovacuum may be off, or wake too late for tables of a few
// hundred hot rows that gather thousands of dead versions a second; their
// index lookups then slow the projector down within seconds.
//
// First it moves the search index's pending list (GIN's fast update: new
// documents' words appended unsorted) into the index proper. Left alone,
// the list is merged by the insert that finds it past its limit (4 MB):
// the live projector's, with a batch of posts waiting on it. Merged here,
// beside the projector, at 3,000 posts/s: posts p99 97-103 -> 50 ms,
// deliveries p99 130-135 -> 75-82 ms, the median unchanged (turning fast
// update off instead: p99 59-62 ms, but the median 15 -> 18-20 ms).
//
// Then the tables that only grow are vacuumed without their indexes (a few
// milliseconds: only their new pages are read; with their indexes, 230 ms
// for the messages of the seeded dataset, with nothing to do). Besides
// marking the new pages all-visible, for index-only scans, a vacuum
// records the table's size, which makes every connection plan its
// statements on it again: a generic plan made while the messages were few
// would otherwise be kept as they grow, until the connection is renewed.
func (Postgres) Maintenance() []string {
	return []string{
		`SELECT gin_clean_pending_list('search_docs_tsv')`,
		`VACUUM conversations, members, reads, caught_up, counters, checkpoints`,
		`VACUUM (INDEX_CLEANUP OFF, TRUNCATE OFF) messages, participants`,
	}
}

// Statistics analyzes tables: without statistics (a rebuilt or
// never-analyzed database when autovacuum is off) the planner guesses row
// counts from table sizes alone. Of the messages, only the columns queries
// filter or join on: the text and the rest, which none does, took a third
// of the time.
func (Postgres) Statistics(tables []string) []string {
	list := make([]string, len(tables))
	for i, t := range tables {
		list[i] = t + analyzed[t]
	}
	return []string{`ANALYZE ` + strings.Join(list, ", ")}
}

// analyzed lists the columns to analyze of the tables not analyzed whole.
var analyzed = map[string]string{
	"messages": " (id, conversation_id, seq, deleted, author_kind, author_id)",
}

// Send runs stmts in one round trip as a pipeline of pgx's extended
// protocol, each statement prepared once per connection and kept (pgx's
// statement cache; a batch with a statement the connection has not
// prepared yet takes one more round trip, to prepare it), so that the
// server neither parses a batch's text nor
// plans its statements anew every time (a fifth of the live projector's
// time on the server went to planning when the arguments were written
// into one simple-protocol text). The arguments travel as parameters.
func (p Postgres) Send(ctx context.Context, conn *sql.Conn, stmts []projections.Statement) (int64, error) {
	var last int64
	err := withPgx(conn, func(c *pgx.Conn) error {
		b := &pgx.Batch{}
		for _, s := range stmts {
			b.Queue(p.Rebind(s.Query), s.Args...)
		}
		br := c.SendBatch(ctx, b)
		for _, s := range stmts {
			var err error
			if s.Read == nil {
				var tag pgconn.CommandTag
				tag, err = br.Exec()
				last = tag.RowsAffected()
			} else {
				last, err = readRows(br, s.Read)
			}
			if err != nil {
				br.Close()
				q, _, _ := strings.Cut(strings.TrimSpace(s.Query), "\n")
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return br.Close()
	})
	return last, err
}

// readRows gives read the rows of br's next result, and returns how many.
func readRows(br pgx.BatchResults, read func(scan func(dest ...any) error) error) (int64, error) {
	rows, err := br.Query()
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		if err := read(rows.Scan); err != nil {
			return 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return rows.CommandTag().RowsAffected(), nil
}

// withPgx calls f with the pgx connection under conn.
func withPgx(conn *sql.Conn, f func(*pgx.Conn) error) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("%T is not a pgx connection", dc)
		}
		return f(c.Conn())
	})
}

// Rows carries each column of rows in one array, text, bigint or tsvector, written
// as an array literal and unnested on the server: a handful of values to
// parse instead of one per cell (a third of the time of a VALUES list on
// 5,000 messages). Columns hold strings, integers or SearchWords; any other
// value, or a column of two kinds, makes it decline.
func (Postgres) Rows(rows [][]any, width int) (string, []any, bool) {
	var from strings.Builder
	from.WriteString("unnest(")
	args := make([]any, width, width+1)
	// Every column's literal goes into one buffer, sized for the whole
	// batch up front (escapes and search documents may still grow it:
	// the literals taken before keep the old one).
	var lit strings.Builder
	lit.Grow(literalSize(rows, width))
	var num [20]byte
	for col := range width {
		start := lit.Len()
		lit.WriteByte('{')
		typ := ""
		for i, r := range rows {
			if i > 0 {
				lit.WriteByte(',')
			}
			var t string
			switch v := r[col].(type) {
			case string:
				t = "TEXT"
				quoteElement(&lit, v)
			case tsvector:
				t = "TSVECTOR"
				quoteElement(&lit, v.text())
			case int:
				t = "BIGINT"
				lit.Write(strconv.AppendInt(num[:0], int64(v), 10))
			case int64:
				t = "BIGINT"
				lit.Write(strconv.AppendInt(num[:0], v, 10))
			case int32:
				t = "BIGINT"
				lit.Write(strconv.AppendInt(num[:0], int64(v), 10))
			default:
				return "", nil, false
			}
			if i == 0 {
				typ = t
			} else if t != typ {
				return "", nil, false
			}
		}
		lit.WriteByte('}')
		args[col] = lit.String()[start:]
		if col > 0 {
			from.WriteString(", ")
		}
		from.WriteString("CAST(? AS ")
		from.WriteString(typ)
		from.WriteString("[])")
	}
	from.WriteString(") AS u(")
	for col := range width {
		if col > 0 {
			from.WriteString(", ")
		}
		from.WriteString("column")
		from.Write(strconv.AppendInt(num[:0], int64(col+1), 10))
	}
	// LIMIT, which keeps every row, is for the plan the server keeps: with
	// a bound it cannot see, it expects a tenth of the 10 rows it guesses
	// for an array it cannot see, so the kept (generic) plan looks each
	// row's matches up by index, right at any size, and costs less than a
	// plan for the rows at hand. Without it the server weighed its guess
	// of 10 rows against the few a live batch mostly has and planned the
	// members' update anew at nearly every batch (0.18 ms each, as much as
	// running it).
	from.WriteString(") LIMIT ?) AS v")
	args = append(args, len(rows))
	return "(SELECT * FROM " + from.String(), args, true
}

// literalSize is about the size of the array literals of rows' first width
// columns: a string's bytes and its quotes, twenty digits for a number,
// a separator each.
func literalSize(rows [][]any, width int) int {
	n := 2 * width
	for _, r := range rows {
		for _, v := range r[:width] {
			if s, ok := v.(string); ok {
				n += len(s) + 3
			} else {
				n += 21
			}
		}
	}
	return n
}

// quoteElement writes v as an element of an array literal: in double
// quotes, with double quotes and backslashes escaped by a backslash.
func quoteElement(b *strings.Builder, v string) { quote(b, v, '"', '\\') }

// quote writes v between two q, with every q in it preceded by escape and
// every backslash by a backslash.
func quote(b *strings.Builder, v string, q, escape byte) {
	b.WriteByte(q)
	if strings.IndexByte(v, q) < 0 && strings.IndexByte(v, '\\') < 0 {
		b.WriteString(v)
	} else {
		for j := 0; j < len(v); j++ {
			switch v[j] {
			case q:
				b.WriteByte(escape)
			case '\\':
				b.WriteByte('\\')
			}
			b.WriteByte(v[j])
		}
	}
	b.WriteByte(q)
}

// Lateral joins sub for each row before it; OFFSET 0 keeps the server
// from merging it into the query as a join of its own choosing.
func (Postgres) Lateral(sub, as string) string {
	return `CROSS JOIN LATERAL (` + sub + ` OFFSET 0) ` + as
}

// CustomPlanArg sends the query as an unnamed statement, which the server
// plans for the values bound to it (pgx would otherwise keep it prepared,
// and PostgreSQL moves a prepared statement to one generic plan after five
// runs).
func (Postgres) CustomPlanArg() any { return pgx.QueryExecModeExec }

// InList binds the values as one text[] argument, and their count:
// expr IN (SELECT unnest(?) LIMIT ?). The LIMIT, which keeps every value,
// is for the plan the server keeps, as in Rows: with expr = ANY(?) it
// guessed ten values, weighed that plan against plans for the one or few
// a live batch mostly reads, and planned the statement anew at nearly
// every run; bounded by a count it cannot see, it expects one value, and
// keeps a plan of lookups by key from the sixth run.
func (Postgres) InList(expr string, values []string) (string, []any) {
	return expr + ` IN (SELECT unnest(CAST(? AS TEXT[])) LIMIT ?)`, []any{values, len(values)}
}

// CustomPlans makes the transaction's prepared statements planned at each
// run, for the tables as they are (the statements stay prepared, parsed
// once). A rebuild's members update took, from its sixth batch on, the
// generic plan made while the table was small: a hash join reading the
// whole table, 30 ms a batch by the middle of the seeded rebuild.
func (Postgres) CustomPlans() string { return `SET LOCAL plan_cache_mode = force_custom_plan` }

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

// SearchSchema creates search_docs with the words of each document, a
// tsvector the projector computes (SearchWords), not its text, which no
// search reads (it was a third of the table, read again by the index's
// build after a rebuild); their GIN index; and an index of the
// conversations by number.
func (Postgres) SearchSchema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS search_docs (id BIGINT PRIMARY KEY, tsv tsvector NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING GIN (tsv)`,
		// For searches that start from their few documents (PlanSearch).
		`CREATE INDEX IF NOT EXISTS conversations_num ON conversations (num)`,
		// For the link form's search of item titles (FindItems: lower(title)
		// LIKE '%…%'), a trigram index, and one of the titles with each
		// letter tripled for terms of one or two (PlanItemSearch), where
		// pg_trgm can be had: it comes
		// with PostgreSQL (contrib) and is trusted, so a database's owner may
		// create it; without it, titles are read through. It goes to the
		// public schema, not to the read models' (the first on their
		// search path), which an upgrade's clean-up drops with everything
		// in it; its operator class is named in the extension's schema,
		// which is not on the read models' search path.
		`DO $$
		DECLARE s name;
		BEGIN
			BEGIN
				CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
			EXCEPTION WHEN OTHERS THEN
				RAISE WARNING 'no pg_trgm (%): item titles are searched without an index', SQLERRM;
			END;
			SELECT n.nspname INTO s FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
			IF FOUND THEN
				EXECUTE format('CREATE INDEX IF NOT EXISTS items_title ON items USING GIN (lower(title) %I.gin_trgm_ops)', s);
				EXECUTE format('CREATE INDEX IF NOT EXISTS items_title_short ON items USING GIN (` + strings.ReplaceAll(tripledTitle, `'`, `''`) + ` %I.gin_trgm_ops)', s);
			END IF;
		END $$`,
	}
}

// tripledTitle is the expression of the index items_title_short: the
// title in lower case with each letter written three times. pg_trgm finds
// the titles holding a term through the trigrams it holds, and a term of
// one or two letters holds none; tripled, it does ("zq" is "zzzqqq", "q"
// "qqq"), and a title holds the term exactly where its tripled form holds
// the term's tripled (a match off the letters' boundaries would need the
// two letters to be one and the same, which the title then holds).
const tripledTitle = `regexp_replace(lower(title), '(.)', '\1\1\1', 'g')`

// PlanItemSearch narrows FindItems's search of titles holding q, a term
// of one or two letters (lower case), to those whose tripled form holds
// q's tripled (see tripledTitle). The statement is planned for its
// arguments (FindItems sends it unnamed), and the planner weighs the
// index's statistics of the tripled titles: a term in few titles is looked
// up in the index (209,000 items: a pair in no title 64 ms walking, 0.2 ms
// through it), one in many walks the newest, which it soon ends. The clause
// holds for every title the search accepts, so without the index (no
// pg_trgm) it only costs its test of the titles that already matched.
// Terms without a letter or digit, of which pg_trgm takes no trigram,
// and longer ones, which the index of lower(title) serves, are not narrowed.
func (Postgres) PlanItemSearch(_ context.Context, _ *sql.DB, q string) (string, []any, error) {
	if n := utf8.RuneCountInString(q); n == 0 || n > 2 || !strings.ContainsFunc(q, isWordRune) {
		return "", nil, nil
	}
	var tripled strings.Builder
	for _, r := range q {
		for range 3 {
			tripled.WriteRune(r)
		}
	}
	pattern := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(tripled.String()) + "%"
	return tripledTitle + ` LIKE ? ESCAPE '\'`, []any{pattern}, nil
}

// searchWords splits text into the words a search matches: runs of
// letters and digits (and letter-like numerals, as Ⅻ), lower-cased: what
// PostgreSQL's [[:alnum:]] and its parser made of them before the words
// were computed here. Documents and search terms go through it alike.
func searchWords(text string) []string {
	for i := 0; i < len(text); i++ {
		if text[i] >= utf8.RuneSelf {
			return strings.FieldsFunc(strings.ToLower(text), notWordRune)
		}
	}
	// ASCII, most text: one lower-cased copy, cut where words end.
	var lower strings.Builder
	lower.Grow(len(text))
	n := 0 // words
	in := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if w := wordByte[c]; w && !in {
			n++
			in = true
		} else if !w {
			in = false
		}
		lower.WriteByte(c)
	}
	s := lower.String()
	words := make([]string, 0, n)
	start := -1
	for i := 0; i <= len(s); i++ {
		switch w := i < len(s) && wordByte[s[i]]; {
		case w && start < 0:
			start = i
		case !w && start >= 0:
			words = append(words, s[start:i])
			start = -1
		}
	}
	return words
}

// wordByte tells the ASCII letters and digits, of which ASCII words are.
var wordByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c < utf8.RuneSelf && !notWordRune(rune(c))
	}
	return t
}()

// isWordRune reports whether r is of words: a letter, a digit or a
// letter-like numeral.
func isWordRune(r rune) bool { return !notWordRune(r) }

// notWordRune reports whether r separates words: neither a letter, a digit
// nor a letter-like numeral. ASCII is decided without the Unicode tables.
func notWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}
	return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Nl, r)
}

// Limits of a tsvector: a lexeme's bytes, a position, the positions kept
// per lexeme. PostgreSQL refuses longer lexemes (its own parser drops
// such words) and folds the rest as these bounds say.
const (
	maxLexeme       = 2046
	maxPosition     = 16383
	maxLexemePlaces = 255
)

// tsvector is a document's words, each at the positions it holds, as
// SearchWords leaves them: grouped by word in byte order, which is
// PostgreSQL's, each word's positions rising. The projector carries it to
// the server as the text of a tsvector in statements (see Rows, Value)
// and in PostgreSQL's binary form in a copy (TSVectorValue).
type tsvector []place

type place struct {
	word string
	at   uint16
}

// text returns the tsvector's text form.
func (t tsvector) text() string {
	var b strings.Builder
	t.each(func(word string, at []place) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		quoteLexeme(&b, word)
		b.WriteByte(':')
		for k, p := range at {
			if k > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(int(p.at)))
		}
	})
	return b.String()
}

// each calls f with each word and its places, at most maxLexemePlaces.
func (t tsvector) each(f func(word string, at []place)) {
	for i := 0; i < len(t); {
		j := i
		for j < len(t) && t[j].word == t[i].word {
			j++
		}
		f(t[i].word, t[i:min(j, i+maxLexemePlaces)])
		i = j
	}
}

// Value makes it an argument like a string: its text.
func (t tsvector) Value() (driver.Value, error) { return t.text(), nil }

// TSVectorValue gives it to pgx's binary encoding.
func (t tsvector) TSVectorValue() (pgtype.TSVector, error) {
	words := 0
	t.each(func(string, []place) { words++ })
	v := pgtype.TSVector{Valid: true, Lexemes: make([]pgtype.TSVectorLexeme, 0, words)}
	positions := make([]pgtype.TSVectorPosition, 0, len(t))
	t.each(func(word string, at []place) {
		start := len(positions)
		for _, p := range at {
			positions = append(positions, pgtype.TSVectorPosition{Position: p.at})
		}
		v.Lexemes = append(v.Lexemes, pgtype.TSVectorLexeme{Word: word, Positions: positions[start:len(positions):len(positions)]})
	})
	return v, nil
}

// SearchWords returns the tsvector of body: each word of searchWords at
// the positions it holds. Computing it here, once, costs the server a
// parse of the result instead of lower(), a regular expression and its
// text-search parser (9 µs a document against 4 µs). Past maxPosition,
// words share the last position, which a word holds once.
func (Postgres) SearchWords(body string) any {
	words := searchWords(body)
	places := make(tsvector, 0, len(words))
	n := 0 // words kept so far
	for _, w := range words {
		if len(w) > maxLexeme {
			continue // nor does it take a position
		}
		n++
		places = append(places, place{w, uint16(min(n, maxPosition))})
	}
	// Grouped by word, each word's positions in order.
	slices.SortFunc(places, func(a, b place) int {
		if c := strings.Compare(a.word, b.word); c != 0 {
			return c
		}
		return cmp.Compare(a.at, b.at)
	})
	return slices.Compact(places)
}

// Copy copies rows into table with pgx's CopyFrom, in binary: the values
// of Rows, a tsvector in its binary form.
func (Postgres) Copy(ctx context.Context, conn *sql.Conn, table string, columns []string, rows [][]any) error {
	err := withPgx(conn, func(c *pgx.Conn) error {
		n, err := c.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(rows))
		if err != nil {
			return err
		}
		if n != int64(len(rows)) {
			return fmt.Errorf("%d rows of %d", n, len(rows))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	return nil
}

// quoteLexeme writes w quoted for a tsvector or tsquery: in single
// quotes, with single quotes doubled and backslashes escaped.
func quoteLexeme(b *strings.Builder, w string) { quote(b, w, '\'', '\'') }

// SearchDrop drops search_docs and its index.
func (Postgres) SearchDrop() []string { return []string{`DROP TABLE IF EXISTS search_docs`} }

// SearchMatch matches term as a phrase of its words, the last one a prefix.
// The query is a tsquery literal of the words of searchWords, as the
// documents' words are: no text-search parser on either side.
func (Postgres) SearchMatch(term string) (string, string) {
	query, _ := searchQueries(term)
	return matchClause, query
}

// matchClause is SearchMatch's clause: a semi-join the planner can run
// either way, from the statistics ANALYZE keeps of the words: for a common
// word, walk the inbox in order and look into each conversation's own
// documents (its id range) until the page is full; for a rare one, find its
// few documents through the GIN index once. (A set of all the matching
// documents' conversations, as on SQLite, costs 200-400 ms here for a word
// in 200k documents: each is read back from the table to recheck the
// prefix match.)
const matchClause = `EXISTS (SELECT 1 FROM search_docs d WHERE d.id >= c.num * 16777216 AND d.id < (c.num + 1) * 16777216
		AND d.tsv @@ CAST(? AS tsquery))`

// searchQueries returns the tsquery literals of term: the phrase of its
// words, the last one a prefix ("" matches nothing); and, when it has more
// than one word, its words but the last, all of them exact, in any order
// ("" if none), which every document the phrase matches holds.
func searchQueries(term string) (phrase, exact string) {
	var words []string
	for _, w := range searchWords(term) {
		if len(w) <= maxLexeme { // a longer one is in no document
			words = append(words, w)
		}
	}
	if len(words) == 0 {
		return "", ""
	}
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteString(" <-> ")
		}
		quoteLexeme(&b, w)
	}
	phrase = b.String() + ":*"
	b.Reset()
	for i, w := range words[:len(words)-1] {
		if i > 0 {
			b.WriteString(" & ")
		}
		quoteLexeme(&b, w)
	}
	return phrase, b.String()
}

// rareDocuments is the most documents the planner may expect a search term
// to match for the search to start from those documents. It underestimates
// prefix matches up to eightfold on the seeded dataset, so a term past the
// bound finds at most some 10,000 documents, which takes ~20 ms.
const rareDocuments = 1000

// PlanSearch matches term as SearchMatch does, but asks the planner first
// how many documents the term matches. When it expects few (a name, an
// e-mail, an order number), the clause starts from them and looks their
// conversations up by number: an e-mail found in one conversation took
// 35 ms walking the 60k open conversations of the seeded dataset one by
// one, and takes 8 ms so. For more, it keeps SearchMatch's walk, which
// stops at the page's end; starting from the documents of a common word
// (200k) takes 400 ms. The planner cannot make this choice itself:
// SearchMatch's range has no equality to start from, and given one it
// picks the hash of all documents for common words, from underestimates.
//
// Starting from the documents, the GIN index unites the documents of every
// word that begins with a prefix before it intersects them with the other
// words' (an e-mail ending in "com" took 27 ms on the seeded dataset, all
// of it in the index). So when the term's exact words are rare too, the
// index looks for them alone, and the documents it finds are checked
// against the whole phrase (1.7 ms).
func (Postgres) PlanSearch(ctx context.Context, db *sql.DB, term string) (string, []any, error) {
	query, exact := searchQueries(term)
	rows, err := estimateDocuments(ctx, db, query)
	if err != nil {
		return "", nil, fmt.Errorf("plan the search of %q: %w", term, err)
	}
	if rows > rareDocuments {
		return matchClause, []any{query}, nil
	}
	if exact != "" {
		rows, err := estimateDocuments(ctx, db, exact)
		if err != nil {
			return "", nil, fmt.Errorf("plan the search of %q: %w", term, err)
		}
		if rows <= rareDocuments {
			// ts_match_vq is @@, called so that no index takes it.
			return `c.num IN (SELECT d.id >> 24 FROM search_docs d WHERE d.tsv @@ CAST(? AS tsquery)
				AND ts_match_vq(d.tsv, CAST(? AS tsquery)))`, []any{exact, query}, nil
		}
	}
	return `c.num IN (SELECT d.id >> 24 FROM search_docs d WHERE d.tsv @@ CAST(? AS tsquery))`, []any{query}, nil
}

// estimateDocuments returns how many documents the planner expects the
// tsquery literal query to match.
func estimateDocuments(ctx context.Context, db *sql.DB, query string) (float64, error) {
	var plan []byte
	// The simple protocol puts the value in the text, so that the plan is
	// made for it, not a generic one for any term.
	if err := db.QueryRowContext(ctx, `EXPLAIN (FORMAT JSON) SELECT 1 FROM search_docs WHERE tsv @@ CAST($1 AS tsquery)`,
		pgx.QueryExecModeSimpleProtocol, query).Scan(&plan); err != nil {
		return 0, err
	}
	var explained []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		}
	}
	if err := json.Unmarshal(plan, &explained); err != nil || len(explained) != 1 {
		return 0, fmt.Errorf("unexpected plan %.200s (%v)", plan, err)
	}
	return explained[0].Plan.Rows, nil
}
