package projections

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/helpdesk"
)

// ErrBadCursor is returned for a cursor that no list handed out.
var ErrBadCursor = errors.New("invalid cursor")

// ReadModels answers queries over the read models.
type ReadModels struct {
	db    *sql.DB
	q     querier // db, or the one connection Warm asks through
	d     Dialect
	stmts *stmtCache // the queries kept prepared; nil with a Pipeliner, whose driver keeps its own
}

// querier is a *sql.DB or a *sql.Conn.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// NewReadModels returns the queries over the read models in db.
func NewReadModels(db *sql.DB, d Dialect) *ReadModels {
	r := &ReadModels{db: db, q: db, d: d}
	if _, pipes := d.(Pipeliner); !pipes {
		r.stmts = newStmtCache(db)
	}
	return r
}

// Warm opens n connections of the read models' pool at once (n at most
// the pool's size) and on each asks, for nobody, what the most frequent
// requests ask: the principal of a token, both inbox sections, the unread
// counts, a conversation's messages and a live stream's snapshot. On a
// new connection the engine loads what a statement needs before it runs
// it: SQLite parses the schema, the search index's with it; a PostgreSQL
// backend loads the catalog entries of the tables and indexes, and their
// statistics, and prepares the statement. The first pages after a start
// waited for that (on the seed, a fresh process's first pages took 4-31
// ms, against 1.5-2 once warm). The connections go back to the pool, idle.
func (r *ReadModels) Warm(ctx context.Context, n int) error {
	// Asking for more connections than the pool has would wait forever.
	if most := r.db.Stats().MaxOpenConnections; most > 0 {
		n = min(n, most)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := r.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("warm the read models: %w", err)
		}
		conns = append(conns, c)
	}
	nobody := directory.Principal{Kind: domain.ActorUser, ID: "-", Role: directory.Agent, Support: true}
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			w := &ReadModels{db: r.db, q: c, d: r.d}
			_, _, _, err := w.Principal(ctx, "-")
			for _, section := range []Section{Customers, Mine} {
				if err == nil {
					_, _, err = w.Inbox(ctx, nobody, InboxQuery{Section: section, Status: "open", Limit: 50})
				}
			}
			if err == nil {
				_, _, err = w.Unread(ctx, nobody)
			}
			if err == nil {
				_, _, err = w.Messages(ctx, "-", 50, "")
			}
			if err == nil {
				_, err = w.Snapshots(ctx, []string{"-"})
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("warm the read models: %w", err)
	}
	return nil
}

func (r *ReadModels) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = r.d.Rebind(q)
	var rows *sql.Rows
	var err error
	if stmt := r.stmts.now(ctx, q); stmt != nil {
		rows, err = stmt.QueryContext(ctx, args...)
	} else {
		rows, err = r.q.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", firstLine(q), err)
	}
	return rows, nil
}

func (r *ReadModels) row(ctx context.Context, q string, args ...any) *sql.Row {
	q = r.d.Rebind(q)
	if stmt := r.stmts.now(ctx, q); stmt != nil {
		return stmt.QueryRowContext(ctx, args...)
	}
	return r.q.QueryRowContext(ctx, q, args...)
}

func found(err error) (bool, error) {
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Principal returns who holds the token with hash, if anyone, and the hash
// stored for them.
func (r *ReadModels) Principal(ctx context.Context, hash string) (directory.Principal, string, bool, error) {
	// Asked on every request: one statement.
	var kind, id, stored, name, role string
	var support, exists int
	ok, err := found(r.row(ctx, `SELECT t.kind, t.id, t.hash, COALESCE(u.name, c.name, ''), COALESCE(u.role, ''),
		COALESCE(u.support, 0), CASE WHEN u.id IS NULL AND c.id IS NULL THEN 0 ELSE 1 END
		FROM tokens t LEFT JOIN users u ON t.kind = 'user' AND u.id = t.id LEFT JOIN customers c ON t.kind = 'customer' AND c.id = t.id
		WHERE t.hash = ?`, hash).Scan(&kind, &id, &stored, &name, &role, &support, &exists))
	if !ok || exists == 0 {
		return directory.Principal{}, "", false, err
	}
	if kind == "customer" {
		return directory.Principal{Kind: domain.ActorCustomer, ID: id, Name: name}, stored, true, nil
	}
	return directory.Principal{Kind: domain.ActorUser, ID: id, Name: name, Role: directory.Role(role), Support: support == 1}, stored, true, nil
}

// User returns user id.
func (r *ReadModels) User(ctx context.Context, id string) (User, bool, error) {
	u, err := scanUser(r.row(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
	ok, err := found(err)
	return u, ok, err
}

// userCols are the columns of users that scanUser reads.
const userCols = `id, name, email, role, support`

// scanUser reads a user from a row of userCols.
func scanUser(row interface{ Scan(dest ...any) error }) (User, error) {
	var u User
	var support int
	err := row.Scan(&u.ID, &u.Name, &u.Email, &u.Role, &support)
	u.Support = support == 1
	return u, err
}

// Users returns a page of at most limit users, in the order of their ids
// (the order they were created in), after cursor (a page's next cursor;
// "" for the first page), and the next page's cursor ("" after the last).
func (r *ReadModels) Users(ctx context.Context, limit int, cursor string) ([]User, string, error) {
	after := ""
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		// The client's to forge: the id it holds must be text PostgreSQL takes.
		if err != nil || len(b) == 0 || !domain.IsText(string(b)) {
			return nil, "", ErrBadCursor
		}
		after = string(b)
	}
	rows, err := r.query(ctx, `SELECT `+userCols+` FROM users WHERE id > ? ORDER BY id LIMIT ?`, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	users := make([]User, 0, min(limit, 200)+1)
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, "", err
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(users) > limit {
		users = users[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(users[limit-1].ID))
	}
	return users, next, nil
}

// UserByEmail returns the user with email, if any.
func (r *ReadModels) UserByEmail(ctx context.Context, email string) (User, bool, error) {
	var id string
	ok, err := found(r.row(ctx, `SELECT id FROM users WHERE lower(email) = lower(?)`, email).Scan(&id))
	if !ok {
		return User{}, false, err
	}
	return r.User(ctx, id)
}

// MissingUsers returns those of ids that name no user.
func (r *ReadModels) MissingUsers(ctx context.Context, ids []string) ([]string, error) {
	names, err := r.userNames(ctx, ids)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, id := range ids {
		if _, ok := names[id]; !ok {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// Customer returns customer id.
func (r *ReadModels) Customer(ctx context.Context, id string) (Customer, bool, error) {
	var c Customer
	var at int64
	ok, err := found(r.row(ctx, `SELECT id, name, email, created_at FROM customers WHERE id = ?`, id).Scan(&c.ID, &c.Name, &c.Email, &at))
	c.CreatedAt = fromMillis(at)
	return c, ok, err
}

// Helpdesk returns the helpdesk's switch and messages, with the defaults
// filled in.
func (r *ReadModels) Helpdesk(ctx context.Context) (Helpdesk, error) {
	var h Helpdesk
	var online int
	var pos int64
	ok, err := found(r.row(ctx, `SELECT online, online_message, offline_message, position FROM helpdesk WHERE id = 1`).
		Scan(&online, &h.OnlineMessage, &h.OfflineMessage, &pos))
	if err != nil {
		return h, err
	}
	_ = ok
	h.Online, h.Position = online == 1, Position(pos)
	if h.OnlineMessage == "" {
		h.OnlineMessage = helpdesk.DefaultOnlineMessage
	}
	if h.OfflineMessage == "" {
		h.OfflineMessage = helpdesk.DefaultOfflineMessage
	}
	return h, nil
}

// Message returns what the widget shows now.
func (h Helpdesk) Message() string {
	if h.Online {
		return h.OnlineMessage
	}
	return h.OfflineMessage
}

// in returns a condition that holds when expr is one of ids, and its
// arguments: as many for any list where the dialect binds lists (see
// ListBinder), else one per id.
func (r *ReadModels) in(expr string, ids []string) (string, []any) { return inList(r.d, expr, ids) }

// inList is in for dialect d.
func inList(d Dialect, expr string, ids []string) (string, []any) {
	if b, ok := d.(ListBinder); ok {
		return b.InList(expr, ids)
	}
	return expr + ` IN (` + placeholders(len(ids)) + `)`, anys(ids)
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func (r *ReadModels) userNames(ctx context.Context, ids []string) (map[string]string, error) {
	names := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return names, nil
	}
	in, args := r.in(`id`, ids)
	rows, err := r.query(ctx, `SELECT id, name FROM users WHERE `+in, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		names[id] = name
	}
	return names, rows.Err()
}

func (r *ReadModels) customerRefs(ctx context.Context, ids []string) (map[string]*CustomerRef, error) {
	refs := make(map[string]*CustomerRef, len(ids))
	if len(ids) == 0 {
		return refs, nil
	}
	in, args := r.in(`id`, ids)
	rows, err := r.query(ctx, `SELECT id, name, email FROM customers WHERE `+in, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c CustomerRef
		if err := rows.Scan(&c.ID, &c.Name, &c.Email); err != nil {
			return nil, err
		}
		refs[c.ID] = &c
	}
	return refs, rows.Err()
}

// authorName names a message's author.
func (r *ReadModels) authors(ctx context.Context, actors []domain.Actor) (map[domain.Actor]Author, error) {
	var users, customers []string
	for _, a := range actors {
		if a.Kind == domain.ActorCustomer {
			customers = append(customers, a.ID)
		} else {
			users = append(users, a.ID)
		}
	}
	names, err := r.userNames(ctx, uniq(users))
	if err != nil {
		return nil, err
	}
	refs, err := r.customerRefs(ctx, uniq(customers))
	if err != nil {
		return nil, err
	}
	out := make(map[domain.Actor]Author, len(actors))
	for _, a := range actors {
		au := Author{Kind: string(a.Kind), ID: a.ID}
		if a.Kind == domain.ActorCustomer {
			if c := refs[a.ID]; c != nil {
				au.Name = c.Name
			}
		} else {
			au.Name = names[a.ID]
		}
		out[a] = au
	}
	return out, nil
}

func uniq(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := ss[:0:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// links returns the linked items of each conversation, in linking order.
func (r *ReadModels) links(ctx context.Context, convs []string) (map[string][]Link, error) {
	out := map[string][]Link{} // most conversations link nothing
	if len(convs) == 0 {
		return out, nil
	}
	in, args := r.in(`l.conversation_id`, convs)
	// Each link's item is looked up by its key where the engine keeps
	// plans (LateralJoiner): a plan the server kept, made when the tables
	// were small, hashed every item (read through) for each call, and
	// neither table is vacuumed often enough to make the server plan it
	// again; planning it at each call instead took 18 times as long as
	// running it.
	join := `JOIN items i ON i.id = l.item_id`
	if lj, ok := r.d.(LateralJoiner); ok {
		join = lj.Lateral(`SELECT i.id, i.kind, i.title, i.status FROM items i WHERE i.id = l.item_id`, `i`)
	}
	rows, err := r.query(ctx, `SELECT l.conversation_id, i.id, i.kind, i.title, i.status FROM links l
		`+join+` WHERE `+in+` ORDER BY l.linked`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var conv string
		var l Link
		if err := rows.Scan(&conv, &l.ItemID, &l.Kind, &l.Title, &l.Status); err != nil {
			return nil, err
		}
		out[conv] = append(out[conv], l)
	}
	return out, rows.Err()
}

type convRow struct {
	id, channel, subject, status, customerID, lastMessageID string
	createdAt, updatedAt, position                          int64
	unread                                                  int

	// With joined, the query read the customer and the last message too
	// (nil when there is none), and hydrate does not look them up.
	joined   bool
	customer *CustomerRef
	last     *LastMessage
}

// joinedCols are the columns, and joinedFrom(x) the joins after a
// conversation row named x, that read its customer and its last message
// with its author's name in the conversation's statement (see convRow's
// joined): one round trip instead of three. joinedRow scans them.
// Of the body, only what the excerpt shows travels: one character more
// than it keeps, so that Excerpt still sees a longer body cut (a message
// holds up to 10,000).
var joinedCols = `cu.id, cu.name, cu.email, m.id, m.author_kind, m.author_id, substr(m.body, 1, ` + strconv.Itoa(ExcerptLen+1) + `),
	m.created_at, COALESCE(u.name, mc.name, '')`

func joinedFrom(x string) string {
	return `LEFT JOIN customers cu ON cu.id = ` + x + `.customer_id
		LEFT JOIN messages m ON m.id = ` + x + `.last_message_id
		LEFT JOIN users u ON m.author_kind <> 'customer' AND u.id = m.author_id
		LEFT JOIN customers mc ON m.author_kind = 'customer' AND mc.id = m.author_id`
}

// joinedRow holds joinedCols as scanned.
type joinedRow struct {
	cuID, cuName, cuEmail, mID, mKind, mAuthor, mBody sql.NullString
	mAt                                               sql.NullInt64
	mName                                             string
}

func (j *joinedRow) dest() []any {
	return []any{&j.cuID, &j.cuName, &j.cuEmail, &j.mID, &j.mKind, &j.mAuthor, &j.mBody, &j.mAt, &j.mName}
}

// joinedDest returns the destinations of a conversation's row read with
// joinedCols: its columns id to updated_at into c, the next one into
// extra, then j's.
func joinedDest(c *convRow, extra any, j *joinedRow) []any {
	return append([]any{&c.id, &c.channel, &c.subject, &c.status, &c.customerID, &c.lastMessageID, &c.updatedAt, extra}, j.dest()...)
}

// fill marks c joined, with the customer and the last message j read,
// replacing those of a row scanned into c before.
func (j *joinedRow) fill(c *convRow) {
	c.joined, c.customer, c.last = true, nil, nil
	if j.cuID.Valid {
		c.customer = &CustomerRef{ID: j.cuID.String, Name: j.cuName.String, Email: j.cuEmail.String}
	}
	if j.mID.Valid {
		c.last = &LastMessage{ID: j.mID.String, Author: Author{Kind: j.mKind.String, ID: j.mAuthor.String, Name: j.mName},
			Excerpt: Excerpt(j.mBody.String, ExcerptLen), CreatedAt: fromMillis(j.mAt.Int64)}
	}
}

// Conversation returns conversation id without its messages.
func (r *ReadModels) Conversation(ctx context.Context, id string) (Conversation, bool, error) {
	var c convRow
	ok, err := found(r.row(ctx, `SELECT id, channel, subject, status, customer_id, created_at, updated_at, position
		FROM conversations WHERE id = ?`, id).Scan(&c.id, &c.channel, &c.subject, &c.status, &c.customerID, &c.createdAt, &c.updatedAt, &c.position))
	if !ok {
		return Conversation{}, false, err
	}
	conv := Conversation{ID: c.id, Channel: c.channel, Subject: c.subject, Status: c.status,
		CreatedAt: fromMillis(c.createdAt), UpdatedAt: fromMillis(c.updatedAt), Position: Position(c.position),
		Participants: []Person{}, Links: []Link{}}
	if c.customerID != "" {
		refs, err := r.customerRefs(ctx, []string{c.customerID})
		if err != nil {
			return conv, false, err
		}
		conv.Customer = refs[c.customerID]
	}
	rows, err := r.query(ctx, `SELECT p.user_id, COALESCE(u.name, '') FROM participants p LEFT JOIN users u ON u.id = p.user_id
		WHERE p.conversation_id = ? ORDER BY p.joined, p.user_id`, id)
	if err != nil {
		return conv, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var p Person
		if err := rows.Scan(&p.ID, &p.Name); err != nil {
			return conv, false, err
		}
		conv.Participants = append(conv.Participants, p)
	}
	if err := rows.Err(); err != nil {
		return conv, false, err
	}
	rows.Close() // before the next query: a connection at a time, or a full pool deadlocks
	links, err := r.links(ctx, []string{id})
	if err != nil {
		return conv, false, err
	}
	if l := links[id]; l != nil {
		conv.Links = l
	}
	return conv, true, nil
}

// messagesFrom selects messages m with their authors' names, for
// scanMessages; the query goes on with a WHERE clause on m.
const messagesFrom = `SELECT m.id, m.conversation_id, m.seq, m.author_kind, m.author_id, m.body, m.created_at, m.edited, m.deleted,
	m.position, COALESCE(u.name, cu.name, '') FROM messages m
	LEFT JOIN users u ON m.author_kind <> 'customer' AND u.id = m.author_id
	LEFT JOIN customers cu ON m.author_kind = 'customer' AND cu.id = m.author_id `

func (r *ReadModels) scanMessages(rows *sql.Rows) ([]Message, error) {
	defer rows.Close()
	var msgs []Message
	for rows.Next() {
		var m Message
		var at, pos int64
		var edited, deleted int
		if err := rows.Scan(&m.ID, &m.ConversationID, &m.Seq, &m.Author.Kind, &m.Author.ID, &m.Body, &at, &edited, &deleted, &pos,
			&m.Author.Name); err != nil {
			return nil, err
		}
		m.CreatedAt, m.Edited, m.Deleted, m.Position = fromMillis(at), edited == 1, deleted == 1, Position(pos)
		msgs = append(msgs, m)
	}
	return msgs, rows.Err()
}

// Message returns message id of conversation conv.
func (r *ReadModels) Message(ctx context.Context, conv, id string) (Message, bool, error) {
	rows, err := r.query(ctx, messagesFrom+`WHERE m.id = ? AND m.conversation_id = ?`, id, conv)
	if err != nil {
		return Message{}, false, err
	}
	msgs, err := r.scanMessages(rows)
	if err != nil || len(msgs) == 0 {
		return Message{}, false, err
	}
	return msgs[0], true, nil
}

// MessagesByID returns the messages ids, whichever conversations hold
// them, with a statement per 500 (and their authors' names); those that do
// not exist are not in the map.
func (r *ReadModels) MessagesByID(ctx context.Context, ids []string) (map[string]Message, error) {
	out := make(map[string]Message, len(ids))
	ids = uniq(ids)
	for start := 0; start < len(ids); start += snapshotChunk {
		part := ids[start:min(start+snapshotChunk, len(ids))]
		in, args := r.in(`m.id`, part)
		rows, err := r.query(ctx, messagesFrom+`WHERE `+in, args...)
		if err != nil {
			return nil, err
		}
		msgs, err := r.scanMessages(rows)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			out[m.ID] = m
		}
	}
	return out, nil
}

// Messages returns the newest limit messages of conv before cursor (all when
// cursor is ""), oldest first, and the cursor of the page before them ("" if
// none).
func (r *ReadModels) Messages(ctx context.Context, conv string, limit int, cursor string) ([]Message, string, error) {
	before := int64(math.MaxInt32) // seq is an INTEGER column
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil || n < 1 || n > math.MaxInt32 {
			return nil, "", ErrBadCursor
		}
		before = n
	}
	rows, err := r.query(ctx, messagesFrom+`WHERE m.conversation_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?`,
		conv, before, limit)
	if err != nil {
		return nil, "", err
	}
	msgs, err := r.scanMessages(rows)
	if err != nil {
		return nil, "", err
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	next := ""
	if len(msgs) > 0 && msgs[0].Seq > 1 {
		next = strconv.Itoa(msgs[0].Seq)
	}
	if msgs == nil {
		msgs = []Message{}
	}
	return msgs, next, nil
}

// visible returns a condition on conversations c that holds when p may see
// c, and its arguments.
func visible(p directory.Principal) (string, []any) {
	switch {
	case p.IsCustomer():
		return `c.customer_id = ?`, []any{p.ID}
	case p.IsAuditor():
		return `1 = 1`, nil
	case p.IsSupport():
		m, args := mine(p)
		return `(c.channel = 'livechat' OR ` + m + `)`, args
	case p.IsStaff():
		return mine(p)
	}
	return `1 = 0`, nil
}

// mine returns the condition of the "My conversations" section: p takes
// part, or c links an item p created, is assigned to or follows. The
// projection keeps those pairs in members (see batch.join, interest).
func mine(p directory.Principal) (string, []any) {
	return `c.id IN (SELECT mb.conversation_id FROM members mb WHERE mb.user_id = ?)`, []any{p.ID}
}

// unreadExpr counts the messages of c that p has not read. Every message
// after p's read mark is by someone else (posting marks one's own reading),
// so it is the messages after the mark less the deleted ones; see
// Snapshot.Unread.
func unreadExpr(p directory.Principal) (string, []any) {
	key := p.Actor().Key()
	return `(c.last_seq - COALESCE((SELECT r.seq FROM reads r WHERE r.conversation_id = c.id AND r.reader = ?), 0)
		- (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.deleted = 1
			AND m.seq > COALESCE((SELECT r.seq FROM reads r WHERE r.conversation_id = c.id AND r.reader = ?), 0)))`,
		[]any{key, key}
}

// CanSee reports whether p may see conversation id; false too when it does not exist.
func (r *ReadModels) CanSee(ctx context.Context, p directory.Principal, id string) (bool, error) {
	cond, args := visible(p)
	var one int
	return found(r.row(ctx, `SELECT 1 FROM conversations c WHERE c.id = ? AND `+cond, append([]any{id}, args...)...).Scan(&one))
}

// Section is a part of the staff inbox.
type Section string

// The inbox sections.
const (
	Customers Section = "customers"
	Mine      Section = "mine"
)

// InboxQuery selects inbox rows.
type InboxQuery struct {
	Section Section // "" for every conversation p may see (the widget's list)
	Status  string  // "open", "closed" or "" for both
	Search  string
	Limit   int
	Cursor  string
}

// MaxSearchTerms bounds the words of one search.
const MaxSearchTerms = 8

// SearchTerms splits q into the words and phrases a search matches, at most
// MaxSearchTerms.
func SearchTerms(q string) []string {
	words := strings.FieldsFunc(q, unicode.IsSpace)
	var out []string
	for _, w := range words {
		w = strings.Trim(w, `"'`)
		if strings.IndexFunc(w, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) < 0 {
			continue
		}
		out = append(out, w)
		if len(out) == MaxSearchTerms {
			break
		}
	}
	return out
}

func encodeCursor(updated int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(updated, 10) + ":" + id))
}

func decodeCursor(s string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	at, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(at, 10, 64)
	// A cursor is the client's to forge: its id, which the page's query
	// compares, must be text PostgreSQL takes.
	if !ok || err != nil || id == "" || !domain.IsText(id) {
		return 0, "", ErrBadCursor
	}
	return n, id, nil
}

// Inbox returns p's rows of a section, newest activity first, and the
// cursor of the next page ("" when there is none).
func (r *ReadModels) Inbox(ctx context.Context, p directory.Principal, q InboxQuery) ([]InboxRow, string, error) {
	unread, uargs := unreadExpr(p)
	var where []string
	var args []any
	args = append(args, uargs...)
	// "My conversations" reads p's rows of members, kept in the inbox's
	// order; the other lists read conversations.
	from, order, at, id := `conversations c`, `c.updated_at DESC, c.id DESC`, `c.updated_at`, `c.id`
	status := `c.status = ?`
	switch q.Section {
	case Customers:
		where = append(where, `c.channel = 'livechat'`)
	case Mine:
		from, order, at, id = `members mb JOIN conversations c ON c.id = mb.conversation_id`, `mb.updated_at DESC, mb.conversation_id DESC`,
			`mb.updated_at`, `mb.conversation_id`
		status = `mb.status = ?`
		where, args = append(where, `mb.user_id = ?`), append(args, p.ID)
	default:
		v, vargs := visible(p)
		where, args = append(where, v), append(args, vargs...)
	}
	if q.Status != "" {
		where, args = append(where, status), append(args, q.Status)
	}
	clauses, searchArgs, err := r.planSearch(ctx, SearchTerms(q.Search))
	if err != nil {
		return nil, "", err
	}
	where, args = append(where, clauses...), append(args, searchArgs...)
	if q.Cursor != "" {
		after, afterID, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		where, args = append(where, `(`+at+` < ? OR (`+at+` = ? AND `+id+` < ?))`), append(args, after, after, afterID)
	}
	args = append(args, q.Limit+1)
	// The page first, then, for its rows only, the customer and the last
	// message with its author's name: one round trip instead of three.
	rows, err := r.query(ctx, `SELECT x.id, x.channel, x.subject, x.status, x.customer_id, x.last_message_id, x.updated_at, x.unread, `+joinedCols+`
		FROM (SELECT c.id, c.channel, c.subject, c.status, c.customer_id, c.last_message_id, c.updated_at, `+unread+` AS unread,
				`+at+` AS sort_at, `+id+` AS sort_id
			FROM `+from+` WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT ?) x
		`+joinedFrom("x")+`
		ORDER BY x.sort_at DESC, x.sort_id DESC`, args...)
	if err != nil {
		return nil, "", err
	}
	// One row to scan into, and one list of destinations, for the page:
	// Scan sets every column of c and j, and fill the rest.
	cs := make([]convRow, 0, min(max(q.Limit, 0), 200)+1) // the API's limits
	var c convRow
	var j joinedRow
	dest := joinedDest(&c, &c.unread, &j)
	func() {
		defer rows.Close()
		for rows.Next() {
			if err = rows.Scan(dest...); err != nil {
				return
			}
			j.fill(&c)
			cs = append(cs, c)
		}
		err = rows.Err()
	}()
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(cs) > q.Limit {
		cs = cs[:q.Limit]
		last := cs[len(cs)-1]
		next = encodeCursor(last.updatedAt, last.id)
	}
	out, err := r.hydrate(ctx, cs)
	return out, next, err
}

// planSearch returns the clauses that match terms, and their arguments:
// planned by the dialect if it is a SearchPlanner, the terms at once, since
// each asks the engine.
func (r *ReadModels) planSearch(ctx context.Context, terms []string) ([]string, []any, error) {
	clauses := make([]string, len(terms))
	sp, ok := r.d.(SearchPlanner)
	if !ok {
		args := make([]any, len(terms))
		for i, term := range terms {
			clauses[i], args[i] = r.d.SearchMatch(term)
		}
		return clauses, args, nil
	}
	termArgs, errs := make([][]any, len(terms)), make([]error, len(terms))
	var wg sync.WaitGroup
	for i, term := range terms {
		wg.Go(func() { clauses[i], termArgs[i], errs[i] = sp.PlanSearch(ctx, r.db, term) })
	}
	wg.Wait()
	return clauses, slices.Concat(termArgs...), errors.Join(errs...)
}

// InboxRow returns conversation id as p's inbox shows it.
func (r *ReadModels) InboxRow(ctx context.Context, p directory.Principal, id string) (InboxRow, bool, error) {
	unread, args := unreadExpr(p)
	var c convRow
	ok, err := found(r.row(ctx, `SELECT c.id, c.channel, c.subject, c.status, c.customer_id, c.last_message_id, c.updated_at, `+unread+`
		FROM conversations c WHERE c.id = ?`, append(args, id)...).
		Scan(&c.id, &c.channel, &c.subject, &c.status, &c.customerID, &c.lastMessageID, &c.updatedAt, &c.unread))
	if !ok {
		return InboxRow{}, false, err
	}
	rows, err := r.hydrate(ctx, []convRow{c})
	if err != nil {
		return InboxRow{}, false, err
	}
	return rows[0], true, nil
}

func (r *ReadModels) hydrate(ctx context.Context, cs []convRow) ([]InboxRow, error) {
	out := make([]InboxRow, 0, len(cs))
	if len(cs) == 0 {
		return out, nil
	}
	var ids, customers, lasts []string
	for _, c := range cs {
		ids = append(ids, c.id)
		if c.joined {
			continue
		}
		if c.customerID != "" {
			customers = append(customers, c.customerID)
		}
		if c.lastMessageID != "" {
			lasts = append(lasts, c.lastMessageID)
		}
	}
	refs, err := r.customerRefs(ctx, uniq(customers))
	if err != nil {
		return nil, err
	}
	links, err := r.links(ctx, ids)
	if err != nil {
		return nil, err
	}
	last, err := r.MessagesByID(ctx, lasts)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		row := InboxRow{ID: c.id, Channel: c.channel, Subject: c.subject, Status: c.status, Unread: c.unread,
			UpdatedAt: fromMillis(c.updatedAt), Links: links[c.id]}
		if row.Links == nil {
			row.Links = []Link{}
		}
		switch {
		case c.joined:
			row.Customer, row.LastMessage = c.customer, c.last
		default:
			if c.customerID != "" {
				row.Customer = refs[c.customerID]
			}
			if m, ok := last[c.lastMessageID]; ok {
				row.LastMessage = &LastMessage{ID: m.ID, Author: m.Author, Excerpt: Excerpt(m.Body, ExcerptLen), CreatedAt: m.CreatedAt}
			}
		}
		out = append(out, row)
	}
	return out, nil
}

// Unread counts, per section, the conversations with messages p has not read.
// customers is 0 for those who do not see that section. A conversation
// has unread messages when its newest message not deleted is after p's
// read mark; the customers section's count comes from counters kept by
// the projection (see countPost).
func (r *ReadModels) Unread(ctx context.Context, p directory.Principal) (customers, mineN int, err error) {
	key := p.Actor().Key()
	if p.SeesCustomers() {
		if err := r.row(ctx, `SELECT COALESCE((SELECT value FROM counters WHERE name = 'livechat'), 0)
			- COALESCE((SELECT livechat FROM caught_up WHERE reader = ?), 0)`, key).Scan(&customers); err != nil {
			return 0, 0, fmt.Errorf("count unread customers: %w", err)
		}
	}
	// The projection keeps members.unread in step (see memberUnread).
	if err := r.row(ctx, `SELECT COUNT(*) FROM members WHERE user_id = ? AND unread = 1`, p.ID).Scan(&mineN); err != nil {
		return 0, 0, fmt.Errorf("count unread mine: %w", err)
	}
	return customers, mineN, nil
}

// UnreadState is what a live stream starts counting from: the counters of
// the customers section (its count is LiveChats less CaughtUp; both 0 for
// those who do not see that section) and the ids of the conversations of
// My conversations with messages the principal has not read. The stream
// then follows the counters from the projector's CountsChanged, and the
// set from the conversations' snapshots.
type UnreadState struct {
	LiveChats, CaughtUp int
	Mine                []string
}

// UnreadState returns p's UnreadState.
func (r *ReadModels) UnreadState(ctx context.Context, p directory.Principal) (UnreadState, error) {
	var u UnreadState
	if p.SeesCustomers() {
		if err := r.row(ctx, `SELECT COALESCE((SELECT value FROM counters WHERE name = 'livechat'), 0),
			COALESCE((SELECT livechat FROM caught_up WHERE reader = ?), 0)`, p.Actor().Key()).Scan(&u.LiveChats, &u.CaughtUp); err != nil {
			return u, fmt.Errorf("read unread counters: %w", err)
		}
	}
	var err error
	u.Mine, err = r.strings(ctx, `SELECT conversation_id FROM members WHERE user_id = ? AND unread = 1`, p.ID)
	if err != nil {
		return u, fmt.Errorf("unread conversations of mine: %w", err)
	}
	return u, nil
}

// UnreadIn counts the messages of conversation id that p has not read.
func (r *ReadModels) UnreadIn(ctx context.Context, p directory.Principal, id string) (int, error) {
	unread, args := unreadExpr(p)
	var n int
	err := r.row(ctx, `SELECT `+unread+` FROM conversations c WHERE c.id = ?`, append(args, id)...).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// FindItems returns at most limit tickets and tasks, newest first: those
// whose title holds q, whatever its case (lower(), on SQLite Go's: package
// sqlite), and the one whose id is q; every one when q is blank. On PostgreSQL a
// trigram index of the titles finds them, where pg_trgm is available
// (readmodel.Postgres's schema), or a walk of the newest until enough
// match, as the planner judges from the words asked (so it plans each
// search for its words: CustomPlanner); on SQLite the dialect judges the
// same from its trigram index (ItemSearchPlanner).
func (r *ReadModels) FindItems(ctx context.Context, q string, limit int) ([]ItemSummary, error) {
	query, args, err := r.findItemsPlan(ctx, q, limit)
	if err != nil {
		return nil, err
	}
	rows, err := r.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	items := []ItemSummary{}
	for rows.Next() {
		var it ItemSummary
		var at int64
		if err := rows.Scan(&it.ID, &it.Kind, &it.Title, &it.Status, &at); err != nil {
			return nil, err
		}
		it.CreatedAt = fromMillis(at)
		items = append(items, it)
	}
	return items, rows.Err()
}

// findItemsPlan returns FindItems's statement, not rebound, and its
// arguments.
func (r *ReadModels) findItemsPlan(ctx context.Context, q string, limit int) (string, []any, error) {
	q = strings.TrimSpace(q)
	var narrow string
	var narrowArgs []any
	if p, ok := r.d.(ItemSearchPlanner); ok && q != "" {
		var err error
		if narrow, narrowArgs, err = p.PlanItemSearch(ctx, r.db, strings.ToLower(q)); err != nil {
			return "", nil, fmt.Errorf("plan the search of items: %w", err)
		}
	}
	query, args := findItemsQuery(q, limit, narrow, narrowArgs...)
	if cp, ok := r.d.(CustomPlanner); ok {
		args = append([]any{cp.CustomPlanArg()}, args...)
	}
	return query, args, nil
}

// findItemsQuery returns FindItems's statement and its arguments. The
// title's test is lower(title) LIKE, which the trigram index's expression
// is, and the newest come from the index items_created. A narrow clause,
// with its arguments, restricts the items whose titles are tested.
func findItemsQuery(q string, limit int, narrow string, narrowArgs ...any) (string, []any) {
	q = strings.TrimSpace(q)
	where, args := ``, []any{}
	if q != "" {
		// LIKE's wildcards and its escape character match themselves.
		pattern := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(q)) + "%"
		where, args = `WHERE lower(title) LIKE ? ESCAPE '\' OR id = ?`, []any{pattern, q}
		if narrow != "" {
			// The title's test first: on a walk of the newest, the narrow
			// clause, whose index was not used, is tested only on the
			// titles that match.
			where, args = `WHERE (lower(title) LIKE ? ESCAPE '\' AND `+narrow+`) OR id = ?`, slices.Concat([]any{pattern}, narrowArgs, []any{q})
		}
	}
	return `SELECT id, kind, title, status, created_at FROM items ` + where + ` ORDER BY created_at DESC, id DESC LIMIT ?`,
		append(args, limit)
}

// Item returns ticket or task id.
func (r *ReadModels) Item(ctx context.Context, id string) (Item, bool, error) {
	var it Item
	var requester, creator string
	var at int64
	ok, err := found(r.row(ctx, `SELECT id, kind, title, description, status, requester_id, created_by, created_at FROM items WHERE id = ?`, id).
		Scan(&it.ID, &it.Kind, &it.Title, &it.Description, &it.Status, &requester, &creator, &at))
	if !ok {
		return it, false, err
	}
	it.CreatedAt = fromMillis(at)
	it.Assignees, it.Followers, it.Conversations = []Person{}, []Person{}, []string{}
	if requester != "" {
		refs, err := r.customerRefs(ctx, []string{requester})
		if err != nil {
			return it, false, err
		}
		it.Requester = refs[requester]
	}
	rows, err := r.query(ctx, `SELECT ip.user_id, ip.role, COALESCE(u.name, '') FROM item_people ip LEFT JOIN users u ON u.id = ip.user_id
		WHERE ip.item_id = ? ORDER BY ip.added, ip.user_id`, id)
	if err != nil {
		return it, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var p Person
		var role string
		if err := rows.Scan(&p.ID, &role, &p.Name); err != nil {
			return it, false, err
		}
		switch role {
		case "creator":
			it.CreatedBy = p
		case "assignee":
			it.Assignees = append(it.Assignees, p)
		case "follower":
			it.Followers = append(it.Followers, p)
		}
	}
	if err := rows.Err(); err != nil {
		return it, false, err
	}
	rows.Close() // before the next query: a connection at a time, or a full pool deadlocks
	it.Conversations, err = r.ConversationsOf(ctx, id)
	return it, err == nil, err
}

// ConversationsOf returns the ids of the conversations that link item id.
func (r *ReadModels) ConversationsOf(ctx context.Context, id string) ([]string, error) {
	rows, err := r.query(ctx, `SELECT conversation_id FROM links WHERE item_id = ? ORDER BY linked`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// EmailTaken reports whether a user already has email (case-insensitively).
func (r *ReadModels) EmailTaken(ctx context.Context, email string) (bool, error) {
	_, ok, err := r.UserByEmail(ctx, email)
	return ok, err
}
