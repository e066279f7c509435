// Package readmodel adapts the portable read-model SQL of package
// projections to each SQL engine.
package readmodel

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/helpdesk/messenger/projections"
)

// SQLite is the dialect of the embedded store: FTS5 over search_docs as an
// external-content index kept in step by triggers.
type SQLite struct {
	// SearchWalkFrom is how many documents a search word must match for
	// the search to walk the conversations in the inbox's order, asking
	// the index about each, rather than to start from the documents
	// (see PlanSearch); 0 means 50,000.
	SearchWalkFrom int
}

var (
	_ projections.Dialect       = SQLite{}
	_ projections.SearchPlanner = SQLite{}
	_ projections.Compactor     = SQLite{}
	_ projections.FlushDeferrer = SQLite{}

	_ projections.ItemSearchPlanner = SQLite{}
)

// DeferFlush lets the projector commit with synchronous=NORMAL: in WAL
// mode its commits reach the WAL at once, and the event store's next
// commit in the same file (synchronous=FULL) flushes them with its own.
// A projector's commit waited for the disk while it held the file's one
// writer, so every append behind it waited too: at 1,000 posts a second a
// post's median fell from 7.7-8.0 ms to 5.6-6.1 ms.
func (SQLite) DeferFlush() (relax, restore string) {
	return `PRAGMA synchronous = NORMAL`, `PRAGMA synchronous = FULL`
}

// Compact merges the full-text index into one segment. A rebuild commits a
// batch at a time, each adding a segment that FTS5 merges only level by
// level, and a search probing a conversation seeks every segment: on the
// seeded dataset two common words took 19 ms, 1.3 ms once merged (1.6 s).
// It first sets FTS5's merging back to its defaults (automerge 4,
// crisismerge 16), which Bulk turned off.
func (SQLite) Compact() []string {
	return []string{`INSERT INTO search_fts (search_fts, rank) VALUES ('automerge', 4)`,
		`INSERT INTO search_fts (search_fts, rank) VALUES ('crisismerge', 16)`,
		`INSERT INTO search_fts (search_fts) VALUES ('optimize')`,
		`INSERT INTO items_titles (items_titles) VALUES ('optimize')`}
}

// Bulk keeps FTS5 from merging the segments a rebuild adds until Compact
// merges them all: it merged each four of a level as they came
// (automerge), so that every document's words were written again at each
// level, a fifth of the writer's time in the rebuild of the seeded dataset
// (1.45M events), which now takes 17-22 % less. Past 64 segments on one
// level FTS5 still merges them (crisismerge), which bounds their number
// (FTS5 refuses 2,000) for a log of any length; at 1,000 the final merge
// of hundreds took longer. The settings are kept in the index's own table:
// a rebuild that stops before Compact leaves them, and the next one
// recreates the index anew.
func (SQLite) Bulk() []string {
	return []string{`INSERT INTO search_fts (search_fts, rank) VALUES ('automerge', 0)`,
		`INSERT INTO search_fts (search_fts, rank) VALUES ('crisismerge', 64)`}
}

// Rebind returns q as it is: SQLite takes ? placeholders.
func (SQLite) Rebind(q string) string { return q }

// SearchSchema creates search_docs, its FTS5 index and the triggers.
func (SQLite) SearchSchema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS search_docs (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`,
		`CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(body, content='search_docs', content_rowid='id',
			tokenize='unicode61 remove_diacritics 2')`,
		// The words of the index, each with how many documents hold it.
		`CREATE VIRTUAL TABLE IF NOT EXISTS search_words USING fts5vocab(search_fts, 'row')`,
		`CREATE TRIGGER IF NOT EXISTS search_docs_ai AFTER INSERT ON search_docs BEGIN
			INSERT INTO search_fts (rowid, body) VALUES (new.id, new.body); END`,
		`CREATE TRIGGER IF NOT EXISTS search_docs_ad AFTER DELETE ON search_docs BEGIN
			INSERT INTO search_fts (search_fts, rowid, body) VALUES ('delete', old.id, old.body); END`,
		`CREATE TRIGGER IF NOT EXISTS search_docs_au AFTER UPDATE ON search_docs BEGIN
			INSERT INTO search_fts (search_fts, rowid, body) VALUES ('delete', old.id, old.body);
			INSERT INTO search_fts (rowid, body) VALUES (new.id, new.body); END`,
		// The titles of items in lower case (lower() is Go's: package
		// sqlite), by their trigrams, under the items' positions
		// (PlanItemSearch): the index alone, without the titles. Items are
		// never changed nor deleted one by one. Two spaces follow each
		// title, so that every letter of it begins a trigram: a term of one
		// or two letters is found through the trigrams it begins
		// (items_trigrams, the index's vocabulary).
		`CREATE VIRTUAL TABLE IF NOT EXISTS items_titles USING fts5(title, content='', tokenize='trigram')`,
		`CREATE VIRTUAL TABLE IF NOT EXISTS items_trigrams USING fts5vocab(items_titles, 'row')`,
		`CREATE INDEX IF NOT EXISTS items_position ON items (position)`,
		`CREATE TRIGGER IF NOT EXISTS items_titles_ai AFTER INSERT ON items BEGIN
			INSERT INTO items_titles (rowid, title) VALUES (new.position, lower(new.title) || '  '); END`,
	}
}

// SearchDrop drops the indexes and search_docs.
func (SQLite) SearchDrop() []string {
	return []string{`DROP TABLE IF EXISTS search_words`, `DROP TABLE IF EXISTS search_fts`, `DROP TABLE IF EXISTS search_docs`,
		`DROP TABLE IF EXISTS items_trigrams`, `DROP TABLE IF EXISTS items_titles`}
}

// itemCandidates is how many items PlanItemSearch reads at most from the
// index of titles: more, and a walk of the newest is cheaper.
const itemCandidates = 500

// shortTrigrams is how many trigrams a term of one or two letters may begin
// for PlanItemSearch to ask the index for the titles holding any of them:
// more, and the term is common, which a walk of the newest ends soon.
const shortTrigrams = 128

// PlanItemSearch narrows FindItems's search of titles holding q to the
// items that items_titles lists for it, if they are fewer than
// itemCandidates. A title is read through for ~0.7 µs on a walk of the
// newest items, which a common word ends after a few dozen; a rare one
// (no such title) walked 209,000 items in 150 ms. The index finds the
// titles holding q's trigrams side by side, as a phrase, from their
// positions alone (0.2 ms for 500 of a common word; LIKE on the index read
// each candidate's title again, 1.7 ms), and FindItems tests the few it
// lists as it tests every title on a walk. The index holds the titles in
// lower case, as the test compares them, and the tokenizer folds them
// again letter by letter, so the phrase holds for every title the test
// accepts; LIKE's wildcards are only characters to it.
//
// A term of one or two letters makes no trigram, but every place it stands
// in a title begins one (the index pads each title with two spaces): the
// titles holding it hold one of the trigrams of the index's vocabulary
// that begin with it, read as a range of terms. The vocabulary holds the
// trigrams as the tokenizer folded them, which is how Go lowered q but for
// thirteen letters (Greek's final sigma, the long s, …) that the tokenizer
// folds to others: the range is read from q folded the same way
// (foldAsIndex). ("é" walked until the tokenizer's folding was checked
// letter by letter, and ς until it was followed; a term of two letters
// that no title held read 209,000 titles in 150 ms.)
func (SQLite) PlanItemSearch(ctx context.Context, db *sql.DB, q string) (string, []any, error) {
	var match string
	switch n := utf8.RuneCountInString(q); {
	case n >= 3:
		match = phrase(q)
	case n == 0:
		return "", nil, nil
	default:
		var ok bool
		if q, ok = foldAsIndex(q); !ok {
			return "", nil, nil
		}
		// Every term beginning with q sorts (byte by byte) from q up to q
		// with its last byte one more; a UTF-8 byte is never 0xff.
		last := len(q) - 1
		rows, err := db.QueryContext(ctx, `SELECT term FROM items_trigrams WHERE term >= ? AND term < ? LIMIT ?`,
			q, q[:last]+string([]byte{q[last] + 1}), shortTrigrams+1)
		if err != nil {
			return "", nil, err
		}
		var terms []string
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return "", nil, err
			}
			terms = append(terms, phrase(t))
		}
		if err := rows.Close(); err != nil {
			return "", nil, err
		}
		switch {
		case len(terms) > shortTrigrams:
			return "", nil, nil
		case len(terms) == 0:
			// No title holds it: nothing to test.
			return `0`, nil, nil
		}
		match = strings.Join(terms, " OR ")
	}
	// The positions come back as one JSON array, which the statement reads.
	var n int
	var ids string
	if err := db.QueryRowContext(ctx, `SELECT count(*), json_group_array(rowid) FROM
		(SELECT rowid FROM items_titles WHERE items_titles MATCH ? LIMIT ?)`,
		match, itemCandidates).Scan(&n, &ids); err != nil {
		return "", nil, err
	}
	if n >= itemCandidates {
		return "", nil, nil
	}
	return `position IN (SELECT value FROM json_each(?))`, []any{ids}, nil
}

// phrase quotes s as an FTS5 string.
func phrase(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// foldAsIndex returns s, lowered by Go, as the trigram tokenizer folds it:
// the letters foldedByIndex lists in the form the tokenizer gives them,
// the others as they are. It reports false if s holds a letter Go's lower
// case would change (s was not lowered), whose folding it does not know.
func foldAsIndex(s string) (string, bool) {
	for _, r := range s {
		if r >= utf8.RuneSelf && unicode.ToLower(r) != r {
			return "", false
		}
	}
	return strings.Map(func(r rune) rune {
		if to, ok := foldedByIndex[r]; ok {
			return to
		}
		return r
	}, s), true
}

// foldedByIndex maps the characters that Go's lower case keeps and FTS5's
// tokenizers fold to another to that other, as Unicode's case folding
// does (ς to σ, ſ to s, the iota subscript to ι).
// TestShortTermsFoldAsTheIndex checks every character with case against
// the tokenizer.
var foldedByIndex = map[rune]rune{
	'\u00b5': '\u03bc', // µ micro sign: μ
	'\u017f': 's',      // ſ long s
	'\u0345': '\u03b9', // combining ypogegrammeni: ι
	'\u03c2': '\u03c3', // ς final sigma: σ
	'\u03d0': '\u03b2', // ϐ: β
	'\u03d1': '\u03b8', // ϑ: θ
	'\u03d5': '\u03c6', // ϕ: φ
	'\u03d6': '\u03c0', // ϖ: π
	'\u03f0': '\u03ba', // ϰ: κ
	'\u03f1': '\u03c1', // ϱ: ρ
	'\u03f5': '\u03b5', // ϵ: ε
	'\u1e9b': '\u1e61', // ẛ: ṡ
	'\u1fbe': '\u03b9', // prosgegrammeni: ι
}

// SearchMatch matches term as a quoted FTS5 phrase whose last word may be a prefix.
func (SQLite) SearchMatch(term string) (string, string) {
	return `c.num IN (SELECT rowid >> 24 FROM search_fts WHERE search_fts MATCH ?)`,
		`"` + strings.ReplaceAll(term, `"`, `""`) + `"*`
}

// maxSearchWords bounds the words a prefix is replaced with (see
// PlanSearch); a prefix of more keeps FTS5's own prefix query.
const maxSearchWords = 32

// walkFrom is SearchWalkFrom's default.
const walkFrom = 50_000

// PlanSearch matches term as SearchMatch does, planned from the index's
// vocabulary. FTS5 answers a prefix query by merging, in full, the
// documents of every word with that prefix before it returns the first:
// 30 ms for a common word of the seeded dataset, however few documents
// the page needs, and as much again for each conversation a clause probes.
// A term of one word in ASCII letters and digits is matched instead as its
// words (what search_words lists from the prefix, up to maxSearchWords),
// which FTS5 reads lazily, and by what they number: a common one (at least
// SearchWalkFrom documents) walks the conversations in the page's order
// and stops at its end; a rarer one starts from its documents, as
// SearchMatch. Any other term, or a prefix of more words, is SearchMatch's.
func (s SQLite) PlanSearch(ctx context.Context, db *sql.DB, term string) (string, []any, error) {
	clause, match := s.SearchMatch(term)
	prefix, ok := asciiWord(term)
	if !ok {
		return clause, []any{match}, nil
	}
	// Words are folded to lower case: those with the prefix sort from it
	// up to the prefix with its last letter moved one up.
	upper := prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
	rows, err := db.QueryContext(ctx, `SELECT term, doc FROM search_words WHERE term >= ? AND term < ? LIMIT ?`,
		prefix, upper, maxSearchWords+1)
	if err != nil {
		return "", nil, fmt.Errorf("plan the search of %q: %w", term, err)
	}
	defer rows.Close()
	var words []string
	docs := 0
	for rows.Next() {
		var w string
		var n int
		if err := rows.Scan(&w, &n); err != nil {
			return "", nil, fmt.Errorf("plan the search of %q: %w", term, err)
		}
		words, docs = append(words, `"`+strings.ReplaceAll(w, `"`, `""`)+`"`), docs+n
	}
	if err := rows.Err(); err != nil {
		return "", nil, fmt.Errorf("plan the search of %q: %w", term, err)
	}
	if len(words) == 0 || len(words) > maxSearchWords {
		return clause, []any{match}, nil
	}
	match = strings.Join(words, " OR ")
	walk := s.SearchWalkFrom
	if walk <= 0 {
		walk = walkFrom
	}
	if docs >= walk {
		return `EXISTS (SELECT 1 FROM search_fts WHERE search_fts MATCH ? AND rowid >= c.num * 16777216 AND rowid < (c.num + 1) * 16777216)`, []any{match}, nil
	}
	return clause, []any{match}, nil
}

// asciiWord returns term in lower case if it is one word of ASCII letters
// and digits, which FTS5's unicode61 tokenizer keeps as one word, folded to
// lower case and otherwise unchanged.
func asciiWord(term string) (string, bool) {
	if term == "" {
		return "", false
	}
	b := []byte(term)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		default:
			return "", false
		}
	}
	return string(b), true
}
