// Package readmodel adapts the portable read-model SQL of package
// projections to each SQL engine.
package readmodel

import (
	"strings"

	"github.com/helpdesk/messenger/projections"
)

// SQLite is the dialect of the embedded store: FTS5 over search_docs as an
// external-content index kept in step by triggers.
type SQLite struct{}

var _ projections.Dialect = SQLite{}

// Rebind returns q as it is: SQLite takes ? placeholders.
func (SQLite) Rebind(q string) string { return q }

// SearchSchema creates search_docs, its FTS5 index and the triggers.
func (SQLite) SearchSchema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS search_docs (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`,
		`CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(body, content='search_docs', content_rowid='id',
			tokenize='unicode61 remove_diacritics 2')`,
		`CREATE TRIGGER IF NOT EXISTS search_docs_ai AFTER INSERT ON search_docs BEGIN
			INSERT INTO search_fts (rowid, body) VALUES (new.id, new.body); END`,
		`CREATE TRIGGER IF NOT EXISTS search_docs_ad AFTER DELETE ON search_docs BEGIN
			INSERT INTO search_fts (search_fts, rowid, body) VALUES ('delete', old.id, old.body); END`,
		`CREATE TRIGGER IF NOT EXISTS search_docs_au AFTER UPDATE ON search_docs BEGIN
			INSERT INTO search_fts (search_fts, rowid, body) VALUES ('delete', old.id, old.body);
			INSERT INTO search_fts (rowid, body) VALUES (new.id, new.body); END`,
	}
}

// SearchDrop drops the index and search_docs.
func (SQLite) SearchDrop() []string {
	return []string{`DROP TABLE IF EXISTS search_fts`, `DROP TABLE IF EXISTS search_docs`}
}

// SearchMatch matches term as a quoted FTS5 phrase whose last word may be a prefix.
func (SQLite) SearchMatch(term string) (string, string) {
	return `c.num IN (SELECT rowid >> 24 FROM search_fts WHERE search_fts MATCH ?)`,
		`"` + strings.ReplaceAll(term, `"`, `""`) + `"*`
}
