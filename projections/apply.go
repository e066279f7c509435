package projections

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/helpdesk"
	"github.com/helpdesk/messenger/domain/item"
)

// ChangeKind says what a log event changed, as the live streams care.
type ChangeKind string

// The kinds of change.
const (
	ConversationCreated ChangeKind = "conversation.created"
	ConversationUpdated ChangeKind = "conversation.updated"
	MessageCreated      ChangeKind = "message.created"
	MessageUpdated      ChangeKind = "message.updated"
	MessageDeleted      ChangeKind = "message.deleted"
	ReadChanged         ChangeKind = "read"
	ItemChanged         ChangeKind = "item.changed"
	HelpdeskChanged     ChangeKind = "helpdesk.changed"
	// TokenIssued: a user's token was replaced; streams send nothing of
	// it, servers forget the principals they keep (see httpkit.AuthCache).
	TokenIssued ChangeKind = "token.issued"
	// CountsChanged carries the unread counters of the customers section
	// as a batch left them (Change.Counts); the projector publishes it
	// first among the batch's changes, for streams to count with.
	CountsChanged ChangeKind = "counts"
	// FeedGap is no change of the read models: a change feed's consumer
	// puts it, at the first position of the batch it delivers, when it
	// gave up waiting for that batch's predecessor. The changes between
	// the last it delivered and Position were lost on their way: a hub
	// cuts its streams off, so that they resume from the log.
	FeedGap ChangeKind = "feed.gap"
)

// Change is one thing a log event changed in the read models. Live streams
// render what their client may see of it, as it stands when sent.
type Change struct {
	Position       uint64       `json:"position"`
	Kind           ChangeKind   `json:"kind"`
	ConversationID string       `json:"conversation_id,omitempty"`
	MessageID      string       `json:"message_id,omitempty"`
	ItemID         string       `json:"item_id,omitempty"`
	Actor          domain.Actor `json:"actor"`
	// Customer is the customer of the conversation, "" for an internal one.
	// The projector sets it on the changes it publishes, so that a hub can
	// skip widget streams of other customers without reading anything;
	// ChangesOf, a function of the event alone, leaves it unset.
	Customer string `json:"customer,omitempty"`
	// Counts is set on a CountsChanged change only.
	Counts *Counts `json:"counts,omitempty"`
}

// Counts are the counters that the customers section's unread count of
// each reader comes from (see ReadModels.Unread): that count is LiveChats
// less the reader's caught-up count. CaughtUp holds the readers whose
// count a batch moved, by actor key, with their new count.
type Counts struct {
	LiveChats int            `json:"live_chats"`
	CaughtUp  map[string]int `json:"caught_up,omitempty"`
}

// ChangesOf returns what rec changes, in the order streams send it. It is a
// pure function of the event, so a stream resuming from the log derives the
// same changes as the projector published live.
func ChangesOf(rec domain.Recorded) []Change {
	base := Change{Position: rec.Position, Actor: rec.Actor}
	with := func(k ChangeKind, conv, msg string) Change {
		c := base
		c.Kind, c.ConversationID, c.MessageID = k, conv, msg
		return c
	}
	conv := conversationID(rec.Stream)
	switch e := rec.Event.(type) {
	case conversation.Started:
		return []Change{with(ConversationCreated, conv, "")}
	case conversation.MessagePosted:
		if rec.Version == 2 { // the first message: conversation.created went just before
			return []Change{with(MessageCreated, conv, e.MessageID)}
		}
		return []Change{with(MessageCreated, conv, e.MessageID), with(ConversationUpdated, conv, "")}
	case conversation.MessageEdited:
		return []Change{with(MessageUpdated, conv, e.MessageID), with(ConversationUpdated, conv, "")}
	case conversation.MessageDeleted:
		return []Change{with(MessageDeleted, conv, e.MessageID), with(ConversationUpdated, conv, "")}
	case conversation.Reopened:
		if e.MessageID != "" { // the reply's own change already carries the row
			return nil
		}
		return []Change{with(ConversationUpdated, conv, "")}
	case conversation.Closed, conversation.ItemLinked, conversation.ItemUnlinked:
		return []Change{with(ConversationUpdated, conv, "")}
	case conversation.Read:
		return []Change{with(ReadChanged, conv, "")}
	case item.Assigned, item.Followed:
		c := base
		c.Kind, c.ItemID = ItemChanged, itemID(rec.Stream)
		return []Change{c}
	case helpdesk.StatusChanged, helpdesk.MessagesConfigured:
		c := base
		c.Kind = HelpdeskChanged
		return []Change{c}
	case directory.UserTokenIssued:
		c := base
		c.Kind = TokenIssued
		return []Change{c}
	}
	return nil
}

func conversationID(stream string) string { return trimPrefix(stream, "conversation-") }
func itemID(stream string) string         { return trimPrefix(stream, "item-") }

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return ""
}

// txn runs portable SQL inside one read-model transaction. With a
// Pipeliner dialect, the statements that change rows are held until the
// next read or the end of the batch, and then sent together: one round
// trip for all of them.
//
// The transaction begins with the first statement that must run: a batch
// applied in memory while the one before it commits waits for that commit
// only if it has to read or write before its own end. With a Pipeliner,
// BEGIN and COMMIT travel with the statements (see commitWith): a batch
// that reads nothing is one round trip.
type txn struct {
	ctx     context.Context
	begin   func() (*sql.Conn, *sql.Tx, error)
	conn    *sql.Conn // the connection the transaction runs on with a Pipeliner or a FlushDeferrer; else nil
	restore string    // what conn runs before it is given back (a FlushDeferrer's restore), or ""
	tx      *sql.Tx   // nil until begun, and always with a Pipeliner
	begun   bool      // with a Pipeliner: BEGIN was sent on conn, and neither COMMIT nor ROLLBACK since
	first   string    // with a Pipeliner: a statement sent right after BEGIN, or ""
	d       Dialect
	pipe    Pipeliner  // nil: each statement runs at once
	copier  Copier     // nil: rows are never copied
	cache   *stmtCache // nil: statements are not kept prepared

	pending      []Statement // the statements held, in order
	pendingBytes int         // the length of their texts
	pendingArgs  int         // and the count of their arguments
	copies       []heldCopy  // copies held among them, in order
}

// heldCopy is a copy of new rows held in a txn with its statements: it
// runs once the statements held before it are sent, the last of them a
// savepoint it rolls back to if a row conflicts after all, writing the
// rows with statements instead.
type heldCopy struct {
	at      int // how many statements were held before it
	table   string
	cols    []string
	rows    [][]any
	instead func() []Statement
}

// Statement is a statement's text, with ? placeholders, and its
// arguments.
type Statement struct {
	Query string
	Args  []any
	// Read, if set, makes the statement a query: it is called with each
	// row, which scan copies into dest as database/sql's Rows.Scan does.
	Read func(scan func(dest ...any) error) error
}

// copyMinRows is the fewest new rows a txn copies rather than inserts:
// a copy takes two more round trips than the statements sent together,
// which only a rebuild's or a catch-up's batches make up for. Tests
// lower it (see export_test.go).
var copyMinRows = 500

// Bounds of what a txn holds before sending it.
const (
	pipelineBytes = 4 << 20
	pipelineArgs  = 50_000
)

// newTxn returns a txn whose transaction begin begins, returning with it
// the connection it runs on if the dialect is a Pipeliner (else nil).
func newTxn(ctx context.Context, begin func() (*sql.Conn, *sql.Tx, error), d Dialect) *txn {
	t := &txn{ctx: ctx, begin: begin, d: d}
	t.pipe, _ = d.(Pipeliner)
	if t.pipe != nil {
		t.copier, _ = d.(Copier)
	} else if fd, ok := d.(FlushDeferrer); ok {
		_, t.restore = fd.DeferFlush()
	}
	return t
}

// open begins the transaction unless it has begun; with a Pipeliner, it
// takes a connection, and the first statements sent begin it.
func (t *txn) open() error {
	if t.tx != nil || t.conn != nil {
		return nil
	}
	conn, tx, err := t.begin()
	if err != nil {
		return fmt.Errorf("begin projection: %w", err)
	}
	t.conn, t.tx = conn, tx
	return nil
}

// rollback ends the transaction, if it began, without its changes.
func (t *txn) rollback() {
	if t.tx != nil {
		t.tx.Rollback()
	}
	if t.conn != nil && t.begun {
		// The pool closes a connection given back in a transaction (pgx's
		// ResetSession), as it must when this fails; else it is kept.
		t.conn.ExecContext(t.ctx, `ROLLBACK`)
		t.begun = false
	}
	t.release()
}

// release gives the transaction's connection back, if it has one, once
// restore has run on it.
func (t *txn) release() {
	if t.conn != nil {
		giveBack(t.conn, t.restore)
		t.conn = nil
	}
}

// giveBack runs restore on conn, unless it is "", and gives conn back to
// its pool; if restore fails, the pool closes conn instead of keeping it.
func giveBack(conn *sql.Conn, restore string) {
	if restore != "" {
		// Even when the batch's context is done: the connection must not
		// go back to the pool as it is.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(ctx, restore); err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}
	conn.Close()
}

// commit sends what is held and commits.
func (t *txn) commit() error { return t.commitWith(nil) }

// commitWith sends what is held, then last (queries among them read their
// rows), and commits: with a Pipeliner, in one round trip. On an error,
// the caller rolls back.
func (t *txn) commitWith(last []Statement) error {
	if t.pipe == nil {
		if err := t.runAll(last); err != nil {
			return err
		}
		if err := t.open(); err != nil {
			return err
		}
		if err := t.tx.Commit(); err != nil {
			return fmt.Errorf("commit projection: %w", err)
		}
		t.release()
		return nil
	}
	if len(t.copies) > 0 {
		if err := t.runCopies(); err != nil {
			return err
		}
	}
	stmts := append(t.pending, last...)
	t.pending, t.pendingBytes, t.pendingArgs = nil, 0, 0
	if len(stmts) > 0 || t.begun {
		if _, err := t.send(append(stmts, Statement{Query: `COMMIT`})); err != nil {
			return fmt.Errorf("commit projection: %w", err)
		}
		t.begun = false
	}
	t.release()
	return nil
}

// runAll runs stmts at once, reading the rows of the queries among them;
// for a dialect that is not a Pipeliner.
func (t *txn) runAll(stmts []Statement) error {
	for _, s := range stmts {
		if s.Read == nil {
			if err := t.exec(s.Query, s.Args...); err != nil {
				return err
			}
			continue
		}
		rows, err := t.query(s.Query, s.Args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err = s.Read(rows.Scan); err != nil {
				break
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", firstLine(s.Query), err)
		}
	}
	return nil
}

// insertNew inserts rows into table's columns, rows a batch made and
// expects to be new: as statements head (naming the table and columns)
// and tail (its ON CONFLICT clause) would, but copied when the dialect
// copies and there are enough of them. A copy fails as a whole on a row
// that is there already (a batch re-applied after a crash between the
// commits of Config.SplitSearch, say), and the statements then run
// instead.
func (t *txn) insertNew(table string, cols []string, tail string, rows [][]any) error {
	head := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `)`
	if t.copier == nil || len(rows) < copyMinRows {
		return t.execAll(bulkStatements(t.d, head, tail, len(cols), rows))
	}
	if err := t.exec(`SAVEPOINT copy_rows`); err != nil {
		return err
	}
	t.copies = append(t.copies, heldCopy{at: len(t.pending), table: table, cols: cols, rows: rows,
		instead: func() []Statement { return bulkStatements(t.d, head, tail, len(cols), rows) }})
	return nil
}

// execAll runs the statements, or holds them.
func (t *txn) execAll(stmts []Statement) error {
	for _, s := range stmts {
		if err := t.exec(s.Query, s.Args...); err != nil {
			return err
		}
	}
	return nil
}

// runCopies sends the statements held before each copy held, and runs
// it; the statements after the last one stay held.
func (t *txn) runCopies() error {
	copies, held := t.copies, t.pending
	t.copies, t.pending, t.pendingBytes, t.pendingArgs = nil, nil, 0, 0
	if err := t.open(); err != nil {
		return err
	}
	done := 0
	for _, c := range copies {
		if _, err := t.send(held[done:c.at]); err != nil {
			return err
		}
		done = c.at
		for _, r := range c.rows {
			storableRow(r)
		}
		err := t.copier.Copy(t.ctx, t.conn, c.table, c.cols, c.rows)
		if err != nil && t.ctx.Err() != nil {
			return err
		}
		after := `RELEASE SAVEPOINT copy_rows`
		if err != nil {
			after = `ROLLBACK TO SAVEPOINT copy_rows`
		}
		if _, err := t.send([]Statement{{Query: after}}); err != nil {
			return fmt.Errorf("after copying into %s: %w", c.table, err)
		}
		if err != nil {
			// Sent apart: the engine may refuse to prepare statements in
			// the transaction the copy failed in until it is rolled back.
			if _, err := t.send(c.instead()); err != nil {
				return fmt.Errorf("instead of copying into %s: %w", c.table, err)
			}
		}
	}
	for _, s := range held[done:] {
		t.hold(s)
	}
	return nil
}

func (t *txn) exec(q string, args ...any) error {
	if t.pipe == nil {
		if err := t.open(); err != nil {
			return err
		}
		if _, err := t.execNow(q, args); err != nil {
			return fmt.Errorf("%s: %w", firstLine(q), err)
		}
		return nil
	}
	t.hold(Statement{Query: q, Args: args})
	if t.pendingBytes > pipelineBytes || t.pendingArgs > pipelineArgs {
		_, err := t.sync()
		return err
	}
	return nil
}

// hold adds s to the statements held.
func (t *txn) hold(s Statement) {
	t.pending = append(t.pending, s)
	t.pendingBytes += len(s.Query)
	t.pendingArgs += len(s.Args)
}

// execCount runs q after every statement held, and returns how many rows
// q changed.
func (t *txn) execCount(q string, args ...any) (int64, error) {
	if t.pipe == nil {
		if err := t.open(); err != nil {
			return 0, err
		}
		res, err := t.execNow(q, args)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", firstLine(q), err)
		}
		return res.RowsAffected()
	}
	if err := t.exec(q, args...); err != nil {
		return 0, err
	}
	return t.sync() // q is the last statement: its count is the result's
}

// sync sends the statements held, and returns the count of rows the last
// one changed.
func (t *txn) sync() (int64, error) {
	if len(t.copies) > 0 {
		if err := t.runCopies(); err != nil {
			return 0, err
		}
	}
	held := t.pending
	t.pending, t.pendingBytes, t.pendingArgs = nil, 0, 0
	return t.send(held)
}

// send runs stmts in one call through the Pipeliner, and returns the
// count of rows the last one changed; none, 0.
func (t *txn) send(stmts []Statement) (int64, error) {
	if len(stmts) == 0 {
		return 0, nil
	}
	if err := t.open(); err != nil {
		return 0, err
	}
	if !t.begun {
		// Set first: a failure may leave the transaction begun.
		t.begun = true
		head := []Statement{{Query: `BEGIN`}}
		if t.first != "" {
			head = append(head, Statement{Query: t.first})
		}
		stmts = append(head, stmts...)
	}
	for i := range stmts {
		stmts[i].Args = storableArgs(stmts[i].Args)
	}
	n, err := t.pipe.Send(t.ctx, t.conn, stmts)
	if err != nil {
		return 0, fmt.Errorf("%d statements sent together: %w", len(stmts), err)
	}
	return n, nil
}

// query reads, after the statements held have run.
func (t *txn) query(q string, args ...any) (*sql.Rows, error) {
	if _, err := t.sync(); err != nil {
		return nil, err
	}
	if err := t.open(); err != nil {
		return nil, err
	}
	q, args = t.d.Rebind(q), storableArgs(args)
	var rows *sql.Rows
	var err error
	if t.tx == nil {
		// On the Pipeliner's connection: in the transaction if it began,
		// else before it, which reads the same at READ COMMITTED.
		rows, err = t.conn.QueryContext(t.ctx, q, args...)
	} else if stmt := t.cache.get(q); stmt != nil {
		rows, err = t.tx.StmtContext(t.ctx, stmt).QueryContext(t.ctx, args...)
	} else {
		rows, err = t.tx.QueryContext(t.ctx, q, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", firstLine(q), err)
	}
	return rows, nil
}

// scan reads one row into dest, after the statements held have run; it
// returns sql.ErrNoRows when there is none.
func (t *txn) scan(q string, args []any, dest ...any) error {
	if _, err := t.sync(); err != nil {
		return err
	}
	if err := t.open(); err != nil {
		return err
	}
	q, args = t.d.Rebind(q), storableArgs(args)
	if t.tx == nil {
		return t.conn.QueryRowContext(t.ctx, q, args...).Scan(dest...)
	}
	if stmt := t.cache.get(q); stmt != nil {
		return t.tx.StmtContext(t.ctx, stmt).QueryRowContext(t.ctx, args...).Scan(dest...)
	}
	return t.tx.QueryRowContext(t.ctx, q, args...).Scan(dest...)
}

// execNow runs q in the transaction, begun, prepared if the cache has it.
func (t *txn) execNow(q string, args []any) (sql.Result, error) {
	q, args = t.d.Rebind(q), storableArgs(args)
	if stmt := t.cache.get(q); stmt != nil {
		return t.tx.StmtContext(t.ctx, stmt).ExecContext(t.ctx, args...)
	}
	return t.tx.ExecContext(t.ctx, q, args...)
}

// The read models hold text every engine stores: PostgreSQL's text columns
// refuse U+0000 and invalid UTF-8, which a statement's text arguments (the
// array literals of a Bulker among them) and the rows copied then hold
// with U+FFFD in their place. The domain refuses such text now, but a log
// may hold it from before, or from another writer, and the projector must
// not stop at its event: the log keeps the event as it came, for the
// auditors; the read models show it replaced, on every engine alike.
// Every statement and copy of a txn goes through storableArgs or
// storableRow on its way to the engine.

// storableText returns s with U+FFFD for each invalid byte and U+0000.
func storableText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// storableArgs returns args, or a copy of them with storable text in place
// of text that is not.
func storableArgs(args []any) []any {
	for i, a := range args {
		if s, ok := a.(string); ok && !domain.IsText(s) {
			out := append([]any(nil), args...)
			storableRow(out[i:])
			return out
		}
	}
	return args
}

// storableRow makes the text of row storable, in place.
func storableRow(row []any) {
	for i, a := range row {
		if s, ok := a.(string); ok && !domain.IsText(s) {
			row[i] = storableText(s)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// apply changes the read-model rows for rec. It is the one place that
// decides row changes; every SQL engine applies the same statements. The
// events of conversations go through b, which writes them at its flush.
func apply(t *txn, b *batch, rec domain.Recorded) error {
	at := millis(rec.At)
	pos := int64(rec.Position)
	switch e := rec.Event.(type) {
	case directory.UserCreated:
		b.users = append(b.users, []any{e.UserID, e.Name, e.Email, string(e.Role), b2i(e.Support), e.TokenHash, at})
		b.tokens = append(b.tokens, []any{e.TokenHash, "user", e.UserID})
		return nil
	case directory.UserTokenIssued:
		if err := b.flush(); err != nil { // the user's row and token may be pending
			return err
		}
		id := trimPrefix(rec.Stream, "user-")
		if err := t.exec(`DELETE FROM tokens WHERE kind = 'user' AND id = ?`, id); err != nil {
			return err
		}
		if err := t.exec(`UPDATE users SET token_hash = ? WHERE id = ?`, e.TokenHash, id); err != nil {
			return err
		}
		return t.exec(`INSERT INTO tokens (hash, kind, id) VALUES (?, 'user', ?) ON CONFLICT (hash) DO NOTHING`, e.TokenHash, id)
	case directory.CustomerRegistered:
		b.customers = append(b.customers, []any{e.CustomerID, e.Name, e.Email, e.TokenHash, at})
		b.customerDoc[e.CustomerID] = e.Name + " " + e.Email
		b.tokens = append(b.tokens, []any{e.TokenHash, "customer", e.CustomerID})
		return nil

	case helpdesk.StatusChanged:
		if err := ensureHelpdesk(t); err != nil {
			return err
		}
		return t.exec(`UPDATE helpdesk SET online = ?, position = ? WHERE id = 1`, b2i(e.Online), pos)
	case helpdesk.MessagesConfigured:
		if err := ensureHelpdesk(t); err != nil {
			return err
		}
		return t.exec(`UPDATE helpdesk SET online_message = ?, offline_message = ?, position = ? WHERE id = 1`,
			e.OnlineMessage, e.OfflineMessage, pos)

	case item.Created:
		// Written at the flush, with the item's creator and assignees.
		b.items = append(b.items, []any{e.ItemID, string(e.Kind), e.Title, e.Description, e.RequesterID, rec.Actor.ID, at, pos})
		b.itemPeople = append(b.itemPeople, []any{e.ItemID, rec.Actor.ID, "creator", pos})
		for _, a := range e.Assignees {
			b.itemPeople = append(b.itemPeople, []any{e.ItemID, a, "assignee", pos})
		}
		return nil
	case item.Assigned:
		return interest(t, b, itemID(rec.Stream), e.UserID, "assignee", pos)
	case item.Followed:
		return interest(t, b, itemID(rec.Stream), e.UserID, "follower", pos)
	}

	if conv := conversationID(rec.Stream); conv != "" {
		return b.applyConversation(conv, rec)
	}
	return nil // an event of no read model, e.g. of a newer kind of stream
}

func ensureHelpdesk(t *txn) error {
	return t.exec(`INSERT INTO helpdesk (id, online, online_message, offline_message, position) VALUES (1, 0, '', '', 0)
		ON CONFLICT (id) DO NOTHING`)
}

func addPerson(t *txn, item, user, role string, pos int64) error {
	return t.exec(`INSERT INTO item_people (item_id, user_id, role, added) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, item, user, role, pos)
}

// interest records that user is assignee or follower of item, which makes
// the conversations linking it the user's own.
func interest(t *txn, b *batch, item, user, role string, pos int64) error {
	if err := addPerson(t, item, user, role, pos); err != nil {
		return err
	}
	if err := b.flush(); err != nil { // the conversations' rows may be pending
		return err
	}
	if err := t.exec(`INSERT INTO members (user_id, conversation_id, status, updated_at)
		SELECT ?, c.id, c.status, c.updated_at FROM links l JOIN conversations c ON c.id = l.conversation_id
		WHERE l.item_id = ? ON CONFLICT DO NOTHING`, user, item); err != nil {
		return err
	}
	return t.exec(`UPDATE members SET unread = `+memberUnread+` WHERE user_id = ? AND conversation_id IN
		(SELECT conversation_id FROM links WHERE item_id = ?)`, user, item)
}
