package projections

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Name identifies the read models' shape. Changing it (with the schema or
// the way events are projected) makes the next start rebuild them. A
// variable only so that tests can build a binary of another version
// (-ldflags -X); nothing changes it at run time.
var Name = "readmodel/v15"

// Schema is the PostgreSQL schema that holds the read models of Name. Each
// version has its own: replicas of the build before an upgrade go on
// serving from theirs, and projecting into it, while the new build fills
// its own (a rolling upgrade), and neither version sees the other's tables.
func Schema() string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(Name))
}

// Dialect is what differs between the SQL engines holding read models. The
// row changes and the queries are written once, in portable SQL with ?
// placeholders; a Dialect adapts them.
type Dialect interface {
	// Rebind rewrites ? placeholders into the engine's own.
	Rebind(query string) string
	// SearchSchema returns the statements that create the table
	// search_docs (id, body), or (id, tsv) for a SearchWorder, whose id
	// the projection sets (the conversation's num above the low 24 bits,
	// which tell its documents apart), and a full-text index over it that
	// follows its inserts, updates and deletes by itself.
	SearchSchema() []string
	// SearchDrop returns the statements that drop them.
	SearchDrop() []string
	// SearchMatch returns a boolean SQL expression over the conversation
	// number column c.num that holds when any search_docs row of the
	// conversation matches term (a word or a phrase, matched as a prefix),
	// and its one argument. A document's conversation number is its id
	// shifted right by 24 bits, which spares reading the documents.
	SearchMatch(term string) (clause string, arg string)
}

// SearchPlanner is implemented by a Dialect that chooses how to match a
// term from what the engine knows of it, asking db: PlanSearch returns a
// clause and its arguments, in order, that hold for the same conversations
// as SearchMatch's, and may differ only in how the engine finds them.
type SearchPlanner interface {
	PlanSearch(ctx context.Context, db *sql.DB, term string) (clause string, args []any, err error)
}

// ItemSearchPlanner is implemented by a Dialect with an index of item
// titles that its engine's own planner does not weigh: PlanItemSearch
// returns, for a search of titles holding q (in lower case), a clause and
// its arguments that hold for a few items among which are all those whose
// title holds q, when the index finds few enough that reading them is
// cheaper than walking the newest items until enough match; else an empty
// clause. FindItems tests each item it finds so exactly as without it.
type ItemSearchPlanner interface {
	PlanItemSearch(ctx context.Context, db *sql.DB, q string) (clause string, args []any, err error)
}

// Pipeliner is implemented by a Dialect whose engine is a round trip away:
// the projector then sends the row changes of a batch together.
type Pipeliner interface {
	// Send runs stmts, in order, on conn, in one round trip, and returns
	// the count of rows the last one changed or read. A statement's ?
	// placeholders number its own arguments; a statement with Read is a
	// query whose rows Read gets. The projector sends BEGIN and COMMIT
	// among them: on a failure, the engine skips the statements after the
	// one that failed (so a COMMIT among them), and the caller rolls back.
	Send(ctx context.Context, conn *sql.Conn, stmts []Statement) (int64, error)
}

// Bulker is implemented by a Dialect that has a cheaper way to send many
// rows than a list of VALUES, whose every value the engine parses and
// types one by one. Rows returns a FROM item named v with the columns
// column1 … columnN (N = width) that yields rows, in order, and its
// arguments; ok is false for values it cannot carry, and the projector
// then writes a VALUES list.
type Bulker interface {
	Rows(rows [][]any, width int) (from string, args []any, ok bool)
}

// Copier is implemented by a Pipeliner Dialect whose engine loads many new
// rows faster through a bulk-load protocol than through statements
// (PostgreSQL's COPY: neither a statement's text to build and parse nor
// its per-row execution). Copy appends rows, their values as Bulker's
// Rows takes them, to table's columns, through conn, in the transaction
// open on it; a row that conflicts with one already there fails it whole.
type Copier interface {
	Copy(ctx context.Context, conn *sql.Conn, table string, columns []string, rows [][]any) error
}

// FlushDeferrer is implemented by a Dialect whose engine can commit a
// transaction without waiting for the disk, as a setting of the
// connection: SQLite's synchronous=NORMAL in WAL mode, whose commits reach
// the log file at once but are flushed to the disk by the next commit that
// waits for it (the event store's, in the same file) or a checkpoint. The
// projector's transactions may: what they write derives from the event
// log, whose own commits still wait for the disk, and the checkpoint that
// says how far they got commits with them. A power cut then loses at most
// the last batches, which the projector applies again at the next start;
// a crash of the process loses nothing. The projector runs relax on a
// connection of its own before it begins a transaction, and restore
// before it gives the connection back; a connection on which restore
// fails is closed instead.
type FlushDeferrer interface {
	DeferFlush() (relax, restore string)
}

// SearchWorder is implemented by a Dialect whose full-text index does not
// find the words of a document by itself: its search_docs has a column
// tsv instead of body (searches read the words, never the text), into
// which the projector writes SearchWords(body).
type SearchWorder interface {
	SearchWords(body string) any
}

// Maintainer is implemented by a Dialect whose engine needs the projector's
// help, which may not come by itself (autovacuum off or late): Maintenance
// returns the statements, run outside any transaction, that keep the tables
// updated in place from bloating; Statistics those that refresh the
// planner's statistics of tables, the read models' (not the whole
// database's: the log and the catalogs took most of the time), which a
// rebuild and every 20th round of maintenance run.
type Maintainer interface {
	Maintenance() []string
	Statistics(tables []string) []string
}

// CustomPlanner is implemented by a Dialect whose engine may run a
// prepared statement on a plan it made once, for any arguments and for the
// tables as they were then, where one made for the run at hand is far
// better: a query whose best plan depends on its arguments (a common word
// of the item titles is found by walking the newest items, a rare one
// through an index), and a rebuild's statements, whose tables grow from
// nothing in seconds (a plan made for the first batches, reading a table
// through while it was small, served every later batch).
type CustomPlanner interface {
	// CustomPlanArg returns an argument that, put before a query's own,
	// makes the engine plan it for them.
	CustomPlanArg() any
	// CustomPlans returns a statement that, run first in a transaction,
	// makes the engine plan each statement of it for its run.
	CustomPlans() string
}

// ListBinder is implemented by a Dialect whose engine takes a list of
// values as one argument. A statement that looks rows up by a list of ids
// then has one text however many they are, which the engine plans once and
// keeps (PostgreSQL: a generic plan after five runs); with a placeholder
// per id, each length is a statement of its own, planned at nearly every
// run (the live streams' reads of a batch's conversations spent as long
// planning as running).
type ListBinder interface {
	// InList returns a condition that holds when expr is one of values,
	// with its arguments, as many whatever the values.
	InList(expr string, values []string) (clause string, args []any)
}

// LateralJoiner is implemented by a Dialect whose engine runs a subquery
// for each row before it (LATERAL) and keeps prepared statements' plans:
// a join written so is planned as a lookup by key per row, whatever the
// engine guessed of the tables' sizes when it made the plan it keeps.
type LateralJoiner interface {
	// Lateral returns a join of the subquery sub, named as, run for each
	// row before it.
	Lateral(sub, as string) string
}

// Compactor is implemented by a Dialect whose full-text index a rebuild
// leaves in many pieces, which every search then visits: Compact returns
// the statements, run once the rebuilt read models are complete, that
// merge it into one. Too slow for a live projector, which holds the
// writer while they run. Bulk returns those that a rebuild runs when it
// has created the tables, which leave the pieces unmerged until then,
// since Compact merges them all anyway; Compact sets the index back to
// merging as it grows, for the live projector.
type Compactor interface {
	Compact() []string
	Bulk() []string
}

// tables lists the read-model tables in an order safe to drop.
var tables = []string{"search_docs", "members", "caught_up", "counters", "item_people", "items", "links", "reads", "messages", "participants",
	"conversations", "tokens", "customers", "users", "helpdesk", "checkpoints"}

var schema = []string{
	`CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, position BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
		role TEXT NOT NULL, support INTEGER NOT NULL, token_hash TEXT NOT NULL, created_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
		token_hash TEXT NOT NULL, created_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, channel TEXT NOT NULL, subject TEXT NOT NULL,
		status TEXT NOT NULL, customer_id TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
		last_seq INTEGER NOT NULL, last_live_seq INTEGER NOT NULL, last_message_id TEXT NOT NULL, first_message_id TEXT NOT NULL,
		position BIGINT NOT NULL, version BIGINT NOT NULL, num BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS conversations_inbox ON conversations (channel, status, updated_at, id, num)`,
	`CREATE INDEX IF NOT EXISTS conversations_customer ON conversations (customer_id, updated_at, id)`,
	`CREATE TABLE IF NOT EXISTS participants (conversation_id TEXT NOT NULL, user_id TEXT NOT NULL, joined BIGINT NOT NULL,
		PRIMARY KEY (conversation_id, user_id))`,
	`CREATE INDEX IF NOT EXISTS participants_user ON participants (user_id, conversation_id)`,
	`CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,
		author_kind TEXT NOT NULL, author_id TEXT NOT NULL, body TEXT NOT NULL, client_id TEXT NOT NULL,
		created_at BIGINT NOT NULL, edited INTEGER NOT NULL, deleted INTEGER NOT NULL, position BIGINT NOT NULL,
		UNIQUE (conversation_id, seq))`,
	`CREATE INDEX IF NOT EXISTS messages_deleted ON messages (conversation_id, seq) WHERE deleted = 1`,
	`CREATE TABLE IF NOT EXISTS reads (conversation_id TEXT NOT NULL, reader TEXT NOT NULL, seq INTEGER NOT NULL,
		PRIMARY KEY (conversation_id, reader))`,
	`CREATE INDEX IF NOT EXISTS reads_reader ON reads (reader, conversation_id)`,
	`CREATE TABLE IF NOT EXISTS members (user_id TEXT NOT NULL, conversation_id TEXT NOT NULL, status TEXT NOT NULL,
		updated_at BIGINT NOT NULL, unread INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (conversation_id, user_id))`,
	`CREATE INDEX IF NOT EXISTS members_unread ON members (user_id, unread)`,
	`CREATE INDEX IF NOT EXISTS members_inbox ON members (user_id, status, updated_at, conversation_id)`,
	`CREATE TABLE IF NOT EXISTS caught_up (reader TEXT PRIMARY KEY, livechat INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS links (conversation_id TEXT NOT NULL, item_id TEXT NOT NULL, linked BIGINT NOT NULL,
		PRIMARY KEY (conversation_id, item_id))`,
	`CREATE INDEX IF NOT EXISTS links_item ON links (item_id, conversation_id)`,
	`CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL,
		description TEXT NOT NULL, status TEXT NOT NULL, requester_id TEXT NOT NULL, created_by TEXT NOT NULL,
		created_at BIGINT NOT NULL, position BIGINT NOT NULL)`,
	// The newest items first, for the link form's list (FindItems).
	`CREATE INDEX IF NOT EXISTS items_created ON items (created_at, id)`,
	`CREATE TABLE IF NOT EXISTS item_people (item_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
		added BIGINT NOT NULL, PRIMARY KEY (item_id, role, user_id))`,
	`CREATE INDEX IF NOT EXISTS item_people_user ON item_people (user_id, item_id)`,
	`CREATE TABLE IF NOT EXISTS helpdesk (id INTEGER PRIMARY KEY, online INTEGER NOT NULL, online_message TEXT NOT NULL,
		offline_message TEXT NOT NULL, position BIGINT NOT NULL)`,
}

// Migrate creates the read-model tables if they are missing. When they hold
// read models of another Name, it drops them first, so that they are rebuilt.
// It reports whether the tables were (re)created empty.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) (fresh bool, err error) {
	return MigrateOver(ctx, db, d, 0)
}

// MigrateOver is Migrate for the read models of a log that holds head
// events. Tables it (re)creates beside a log that is not empty are marked
// unfinished in the same transaction, as a rebuild marks the tables it
// fills: every replica then refuses requests (Unfinished) until a rebuild
// has applied the log, rather than serve read models that hold its start.
func MigrateOver(ctx context.Context, db *sql.DB, d Dialect, head uint64) (fresh bool, err error) {
	var name string
	err = db.QueryRowContext(ctx, `SELECT name FROM checkpoints WHERE name LIKE 'readmodel/%'`).Scan(&name)
	switch {
	case err == nil && name == Name:
		if unfinished, err := marked(ctx, db, d); err != nil || !unfinished {
			return false, err
		}
		// A rebuild stopped before its end: the tables lack the query
		// indexes and statistics it makes last. Recreated below.
	case err == nil || err == sql.ErrNoRows:
		// Read models of another Name, or none: recreated below.
	default:
		// No checkpoints table yet: a fresh database.
		if !strings.Contains(strings.ToLower(err.Error()), "checkpoints") {
			return false, fmt.Errorf("read checkpoint: %w", err)
		}
	}
	if _, err := recreate(ctx, db, d, false, head > 0); err != nil {
		return false, err
	}
	return true, nil
}

// queryIndexes names the indexes that only queries use, not the
// projector's own statements: a rebuild creates them after the rows.
var queryIndexes = map[string]bool{
	"conversations_inbox": true, "conversations_customer": true, "participants_user": true, "reads_reader": true,
	"members_unread": true, "members_inbox": true, "links_item": true, "item_people_user": true,
	"search_docs_tsv": true, "conversations_num": true, "items_created": true,
}

// rebuilding names a row of checkpoints that a rebuild writes with the
// tables it recreates and deletes at its end: a rebuild that stopped
// before (a crash, a cancel) left read models without their query
// indexes, which the next start would have gone on with for good.
const rebuilding = "rebuild/unfinished"

// Unfinished reports whether the read models are marked as a rebuild
// leaves them until its end: a rebuild is under way (messengerd rebuild,
// or a replica's bulk build at its start), or stopped before its end and
// not redone yet. Their tables then hold part of the log, from its start.
func (r *ReadModels) Unfinished(ctx context.Context) (bool, error) { return marked(ctx, r.q, r.d) }

// marked reports whether the checkpoints, read through q, hold the mark
// of a rebuild (rebuilding).
func marked(ctx context.Context, q querier, d Dialect) (bool, error) {
	var n int
	if err := q.QueryRowContext(ctx, d.Rebind(`SELECT count(*) FROM checkpoints WHERE name = ?`), rebuilding).Scan(&n); err != nil {
		return false, fmt.Errorf("read the rebuild's mark: %w", err)
	}
	return n > 0, nil
}

// recreate drops the read-model tables and creates them empty, with a
// checkpoint at the log's start, in one transaction. With later, for a
// rebuild, it leaves out the query indexes and returns the statements
// that create them, and runs a Compactor's Bulk. With
// mark, it marks the read models unfinished (rebuilding) until
// finishRebuild.
func recreate(ctx context.Context, db *sql.DB, d Dialect, later, mark bool) ([]string, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if err := drop(ctx, tx, d); err != nil {
		return nil, err
	}
	var left []string
	for _, s := range append(append([]string{}, schema...), d.SearchSchema()...) {
		if rest, ok := strings.CutPrefix(s, "CREATE INDEX IF NOT EXISTS "); ok && later {
			if name, _, _ := strings.Cut(rest, " "); queryIndexes[name] {
				left = append(left, s)
				continue
			}
		}
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return nil, fmt.Errorf("create read models: %s: %w", firstLine(s), err)
		}
	}
	if c, ok := d.(Compactor); ok && later {
		for _, s := range c.Bulk() {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return nil, fmt.Errorf("create read models: %s: %w", firstLine(s), err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO checkpoints (name, position) VALUES (?, 0)`), Name); err != nil {
		return nil, fmt.Errorf("create checkpoint: %w", err)
	}
	if mark {
		if _, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO checkpoints (name, position) VALUES (?, 0)`), rebuilding); err != nil {
			return nil, fmt.Errorf("mark the rebuild: %w", err)
		}
	}
	return left, tx.Commit()
}

// Drop removes every read-model table, in one transaction.
func Drop(ctx context.Context, db *sql.DB, d Dialect) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := drop(ctx, tx, d); err != nil {
		return err
	}
	return tx.Commit()
}

// drop removes every read-model table in tx.
func drop(ctx context.Context, tx *sql.Tx, d Dialect) error {
	for _, s := range d.SearchDrop() {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("drop search index: %w", err)
		}
	}
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, `DROP TABLE IF EXISTS `+t); err != nil {
			return fmt.Errorf("drop %s: %w", t, err)
		}
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
