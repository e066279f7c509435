package readmodel

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/helpdesk/messenger/infra/postgres"
	"github.com/helpdesk/messenger/infra/postgres/pgtest"
	"github.com/helpdesk/messenger/projections"
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

// openSQL opens a database of the test's own through the project's pool,
// as database/sql sees it.
func openSQL(t *testing.T) *sql.DB {
	t.Helper()
	pg, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	return pg.SQL()
}

// TestSearchWordsMatchPostgresParser checks that the tsvector SearchWords
// computes in Go is the one PostgreSQL's own pipeline (lower, non-words to
// spaces, the simple parser) gave the documents before, so that a search
// finds the same documents as when the server computed it.
func TestSearchWordsMatchPostgresParser(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	for _, text := range searchTexts {
		words := string(Postgres{}.SearchWords(text).(tsvector).text())
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
	words := string(Postgres{}.SearchWords(doc).(tsvector).text())
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

// TestPlanSearchAgreesWithSearchMatch fills the read models with 60,000
// conversations whose documents all hold a few common words and some hold
// rare ones, and checks that PlanSearch's clause finds the very
// conversations SearchMatch's finds, for every kind of term; and that it
// starts from the documents for an e-mail but not for a common word.
func TestPlanSearchAgreesWithSearchMatch(t *testing.T) {
	ctx := context.Background()
	db := openSQL(t)
	if _, err := projections.Migrate(ctx, db, Postgres{}); err != nil {
		t.Fatal(err)
	}
	const convs = 60_000
	var convIDs, words []string
	var nums, docIDs []int64
	for c := 1; c <= convs; c++ {
		body := fmt.Sprintf("order %d shipped to the customer", c)
		switch {
		case c%20_000 == 0:
			body += " ana.silva@example.com"
		case c%1000 == 0:
			body += " ana.silva@example.org"
		case c == 7:
			body = "zebra crossing near the warehouse, order 7"
		}
		convIDs, nums = append(convIDs, fmt.Sprint("conv-", c)), append(nums, int64(c*10))
		docIDs = append(docIDs, int64(c*10)<<24|2)
		words = append(words, Postgres{}.SearchWords(body).(tsvector).text())
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO conversations (id, channel, subject, status, customer_id, created_at,
		updated_at, last_seq, last_live_seq, last_message_id, first_message_id, position, version, num)
		SELECT id, 'livechat', '', 'open', '', 0, num, 0, 0, '', '', num, 1, num FROM unnest($1::text[], $2::bigint[]) AS u(id, num)`,
		convIDs, nums); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO search_docs (id, tsv)
		SELECT * FROM unnest($1::bigint[], $2::tsvector[])`, docIDs, words); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `ANALYZE conversations, search_docs`); err != nil {
		t.Fatal(err)
	}
	ids := func(clause string, args ...any) []string {
		t.Helper()
		rows, err := db.QueryContext(ctx, Postgres{}.Rebind(`SELECT c.id FROM conversations c WHERE `+clause+` ORDER BY c.id`), args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	fromDocs, exactFirst := map[string]bool{}, map[string]bool{}
	for _, term := range []string{"shipped", "ship", "customer", "zebra", "zeb", "ana.silva@example.com", "ana.silva@example.co",
		"ana.silva@example", "silva ana", "zebra crossing near", "zebra cross", "crossing zebra", "warehouse", "nothing",
		"order 7", "7", "!!!"} {
		clause, args, err := Postgres{}.PlanSearch(ctx, db, term)
		if err != nil {
			t.Fatal(err)
		}
		fromDocs[term] = strings.HasPrefix(clause, "c.num IN")
		exactFirst[term] = strings.Contains(clause, "ts_match_vq")
		wantClause, wantArg := Postgres{}.SearchMatch(term)
		got, want := ids(clause, args...), ids(wantClause, wantArg)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("search %q: PlanSearch finds %d conversations, SearchMatch %d", term, len(got), len(want))
		}
		if term == "ana.silva@example.com" && len(want) != 3 {
			t.Errorf("search %q finds %d conversations, want 3", term, len(want))
		}
	}
	if !fromDocs["ana.silva@example.com"] || fromDocs["shipped"] {
		t.Errorf("starts from the documents: %v; want it for the e-mail, not for the common word", fromDocs)
	}
	// The index looks for the exact words alone when they are rare, not
	// when they are common, nor for one word.
	if !exactFirst["ana.silva@example.com"] || !exactFirst["zebra cross"] || exactFirst["order 7"] || exactFirst["zebra"] {
		t.Errorf("looks for the exact words first: %v; want it for the e-mail and zebra cross, not order 7 or zebra", exactFirst)
	}
}

// FuzzSearchWords checks the ASCII path of searchWords against the
// general one, on every input.
func FuzzSearchWords(f *testing.F) {
	for _, s := range []string{"", "Hello, World!", "a", "  lead and trail  ", "x1 Y2_z3", "Ab\x00cD\x7f", "ünïcødé and ASCII", "ORDER#48213"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, want := searchWords(text), strings.FieldsFunc(strings.ToLower(text), notWordRune)
		if !slices.Equal(got, want) {
			t.Fatalf("searchWords(%q) = %q, want %q", text, got, want)
		}
	})
}

// TestSendRunsInOrderAndFailsWhole sends batches through Send inside
// transactions: the statements run in order, each with its own arguments
// and the count of the last one returned; a statement that fails names
// itself, nothing of its transaction stays, and the connection serves the
// next transaction, its statements still prepared.
func TestSendRunsInOrderAndFailsWhole(t *testing.T) {
	ctx := context.Background()
	db := openSQL(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(stmts ...projections.Statement) (int64, error) {
		t.Helper()
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := Postgres{}.Send(ctx, conn, stmts)
		if err != nil {
			tx.Rollback()
			return n, err
		}
		return n, tx.Commit()
	}
	insert := func(k string, v int) projections.Statement {
		return projections.Statement{Query: `INSERT INTO kv (k, v) VALUES (?, ?)`, Args: []any{k, v}}
	}
	bump := projections.Statement{Query: `UPDATE kv SET v = v + ? WHERE v >= ?`, Args: []any{10, 2}}
	n, err := send(insert("a", 1), insert("b", 2), insert("c", 3), bump)
	if err != nil || n != 2 {
		t.Fatalf("Send = %d, %v; want the update's 2 rows", n, err)
	}
	// The second insert repeats a key: the batch fails on it, and the
	// insert before it is rolled back with it.
	_, err = send(insert("d", 4), insert("a", 5), bump)
	if err == nil || !strings.Contains(err.Error(), "INSERT INTO kv") || !strings.Contains(err.Error(), "23505") {
		t.Fatalf("Send = %v, want the duplicate key, naming the insert", err)
	}
	if n, err := send(insert("e", 6), bump); err != nil || n != 3 {
		t.Fatalf("the next batch on the connection: %d, %v; want 3 rows updated", n, err)
	}
	got := map[string]int64{}
	rows, err := db.QueryContext(ctx, `SELECT k, v FROM kv`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		got[k] = v
	}
	want := map[string]int64{"a": 1, "b": 22, "c": 23, "e": 16}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows %v, want %v", got, want)
	}

	// As the projector sends a batch: BEGIN and COMMIT among the
	// statements, and a query whose rows Read gets.
	var read []string
	readKV := projections.Statement{Query: `SELECT k, v FROM kv WHERE v > ? ORDER BY k`, Args: []any{10},
		Read: func(scan func(...any) error) error {
			var k string
			var v int64
			if err := scan(&k, &v); err != nil {
				return err
			}
			read = append(read, fmt.Sprintf("%s=%d", k, v))
			return nil
		}}
	begin, commit := projections.Statement{Query: `BEGIN`}, projections.Statement{Query: `COMMIT`}
	if _, err := (Postgres{}).Send(ctx, conn, []projections.Statement{begin, insert("f", 7), bump, readKV, commit}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(read) != "[b=32 c=33 e=26 f=17]" {
		t.Errorf("read %v, want the rows as the batch left them", read)
	}
	// A failure after the query: the COMMIT after it does not run, and
	// the transaction waits for the caller's rollback.
	read = nil
	_, err = Postgres{}.Send(ctx, conn, []projections.Statement{begin, insert("g", 8), readKV, insert("a", 9), commit})
	if err == nil || !strings.Contains(err.Error(), "23505") || len(read) != 4 {
		t.Fatalf("Send = %v, read %v; want the duplicate key after the four rows read", err, read)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	var n64 int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM kv WHERE k IN ('f', 'g')`).Scan(&n64); err != nil || n64 != 1 {
		t.Errorf("%d of f and g kept, %v; want f only", n64, err)
	}
}

// TestRowsRoundTrip unnests what Rows builds on the server and reads back
// every value: text that needs escaping in an array literal (enough of it
// to outgrow the literals' buffer midway), integers of every size, and
// search documents.
func TestRowsRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := openSQL(t)
	texts := append(slices.Clone(searchTexts), `{"x","y"}`, `NULL`, `\"`, `}{,`, strings.Repeat(`"\\`, 500), "")
	var rows [][]any
	for i, text := range texts {
		rows = append(rows, []any{text, int64(-1) << (i % 64), i, Postgres{}.SearchWords(text)})
	}
	from, args, ok := Postgres{}.Rows(rows, 3) // the search documents' column left out
	if !ok {
		t.Fatal("Rows declined")
	}
	q := Postgres{}.Rebind(`SELECT v.column1, v.column2, v.column3 FROM ` + from)
	got, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	var i int
	for ; got.Next(); i++ {
		var text string
		var big, small int64
		if err := got.Scan(&text, &big, &small); err != nil {
			t.Fatal(err)
		}
		if text != texts[i] || big != int64(-1)<<(i%64) || small != int64(i) {
			t.Errorf("row %d: got %q, %d, %d", i, text, big, small)
		}
	}
	if err := got.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(texts) {
		t.Errorf("got %d rows, want %d", i, len(texts))
	}
	docs, args, ok := Postgres{}.Rows(rows, 4)
	if !ok {
		t.Fatal("Rows declined the search documents")
	}
	read, err := db.QueryContext(ctx, Postgres{}.Rebind(`SELECT v.column4::text FROM `+docs), args...)
	if err != nil {
		t.Fatal(err)
	}
	defer read.Close()
	for i = 0; read.Next(); i++ {
		var doc, want string
		if err := read.Scan(&doc); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, `SELECT CAST($1 AS tsvector)::text`, rows[i][3].(tsvector).text()).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if doc != want {
			t.Errorf("search document %d: got %q, want %q", i, doc, want)
		}
	}
	if err := read.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(texts) {
		t.Errorf("got %d search documents, want %d", i, len(texts))
	}
}

// BenchmarkRows builds the arguments of a live batch's messages: 32 rows
// of a message's eleven columns, text and integers, as the projector sends
// them.
func BenchmarkRows(b *testing.B) {
	rows := make([][]any, 32)
	for i := range rows {
		rows[i] = []any{fmt.Sprintf("01a21f1c-d604-76db-b71b-dadbac4e%04d", i), "01a21f1c-d604-76d2-a8b8-ff3cba96c845", i + 1,
			"customer", "01a21f1c-d469-7d84-a7fe-bade21c562ab", strings.Repeat("parcel ", 11) + `"late"`, "",
			int64(1764282313220 + i), 0, 0, int64(100_000 + i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := (Postgres{}).Rows(rows, 11); !ok {
			b.Fatal("declined")
		}
	}
}
