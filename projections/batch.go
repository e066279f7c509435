package projections

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
)

// batch gathers the row changes of the conversation events of one
// transaction in memory and writes them with a few multi-row statements:
// a conversation's row once however many events touched it, its new
// messages, participants, read marks, search documents and unread counters
// each in one statement. Row changes are still decided here once, in
// portable SQL, for every engine.
type batch struct {
	t     *txn
	docsT *txn                  // nil: the search documents go through t too (see Config.SplitSearch)
	convs map[string]*convState // every conversation the batch has touched (and more), as it stands
	dirty []*convState          // those whose rows to write, each once

	messages []messageRow   // new messages, in order
	inserted map[string]int // message id → index in messages
	joined   []participantRow
	isJoined map[[2]string]bool
	read     map[[2]string]int // (conversation, reader) → new read mark
	readKeys [][2]string
	docs     map[[2]string]*docChange // (conversation, ref) → its change
	docKeys  [][2]string
	caught   map[string]int // reader → change of caught_up.livechat
	readers  []string
	livechat int // change of counters.livechat

	// The readers whose caught_up the batch's flushes changed, when the
	// counters it leaves are to be told (see counts; nil: not), and whether
	// any counter moved.
	movedReaders map[string]bool
	countsMoved  bool

	added [][]any // new members: user, conversation
	links [][]any // new links: conversation, item, position

	items      [][]any // new items: id, kind, title, description, requester, creator, created at, position
	itemPeople [][]any // their creators and assignees: item, user, role, position

	users, customers, tokens [][]any           // new rows
	customerDoc              map[string]string // customer id → "name email", of customers met in this batch and before
}

// convState is one conversation's row and read marks, as the batch has
// left them.
type convState struct {
	id, channel, subject, status, customerID, lastMessageID, firstMessageID string
	createdAt, updatedAt, position, version, num                            int64
	lastSeq, lastLive                                                       int
	reads                                                                   map[string]int // reader → seq, all of them
	dirty                                                                   bool
}

// docChange is a search document to write: with a body, a new one when
// id is known, else (id 0) a new body for the document of message msgID
// of the conversation numbered num, whose id the rows know; without, the
// deletion of document id.
type docChange struct {
	id    int64
	num   int64
	msgID string
	body  *string
}

// A search document's id holds its conversation's number (the position of
// the event that started it) above docIDBits bits that tell the documents of
// a conversation apart: its subject 0, its customer 1, message seq s at
// s+1. A search then finds the conversations from the full-text index
// alone, without reading the documents (see Dialect.SearchMatch).
const (
	docIDBits   = 24
	docSubject  = 0
	docCustomer = 1
)

// docID returns the id of document k of the conversation numbered num; 0
// when k does not fit (messages past the 16,777,214th are not searchable).
func docID(num int64, k int) int64 {
	if k < 0 || k >= 1<<docIDBits {
		return 0
	}
	return num<<docIDBits | int64(k)
}

// messageCols are the columns of a messages row, as a messageRow fills them.
var messageCols = []string{"id", "conversation_id", "seq", "author_kind", "author_id", "body", "client_id", "created_at",
	"edited", "deleted", "position"}

type messageRow struct {
	id, conv, authorKind, authorID, body, clientID string
	seq                                            int
	createdAt, position                            int64
	edited, deleted                                bool
}

type participantRow struct {
	conv, user string
	joined     int64
}

// newBatch starts a batch in t over the conversations states known
// already (which it adds to).
func newBatch(t *txn, convs map[string]*convState, customers map[string]string) *batch {
	b := &batch{t: t, convs: convs, customerDoc: customers}
	b.reset()
	return b
}

func (b *batch) reset() {
	b.messages, b.inserted = nil, map[string]int{}
	b.joined, b.isJoined = nil, map[[2]string]bool{}
	b.read, b.readKeys = map[[2]string]int{}, nil
	b.docs, b.docKeys = map[[2]string]*docChange{}, nil
	b.caught, b.readers = map[string]int{}, nil
	b.livechat = 0
	b.users, b.customers, b.tokens = nil, nil, nil
	b.added, b.links = nil, nil
	b.items, b.itemPeople = nil, nil
}

// prefetch loads, with a few statements, the rows and read marks of the
// conversations of recs the batch does not know yet, and the customers of
// the conversations recs start, so that applying recs asks nothing more
// (but for rare events: a deleted message's seq, an item's people).
func (b *batch) prefetch(recs []domain.Recorded) error {
	var ids, customers []string
	seen, registered := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		if id := conversationID(r.Stream); id != "" && !seen[id] {
			seen[id] = true
			// A conversation the batch starts has no rows yet.
			if _, starts := r.Event.(conversation.Started); !starts && b.convs[id] == nil {
				ids = append(ids, id)
			}
		}
		switch e := r.Event.(type) {
		case directory.CustomerRegistered:
			registered[e.CustomerID] = true
		case conversation.Started:
			if _, known := b.customerDoc[e.CustomerID]; e.CustomerID != "" && !known && !registered[e.CustomerID] {
				customers = append(customers, e.CustomerID)
			}
		}
	}
	// The customers of new conversations, for their search documents, but
	// those known already or registered in this batch (apply adds them).
	customers = uniq(customers)
	for start := 0; start < len(customers); start += 500 {
		if err := b.loadCustomers(customers[start:min(start+500, len(customers))]); err != nil {
			return err
		}
	}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		if err := b.load(chunk); err != nil {
			return err
		}
	}
	return nil
}

func (b *batch) loadCustomers(ids []string) error {
	in, args := inList(b.t.d, `id`, ids)
	rows, err := b.t.query(`SELECT id, name, email FROM customers WHERE `+in, args...)
	if err != nil {
		return fmt.Errorf("load customers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, name, email string
		if err := rows.Scan(&id, &name, &email); err != nil {
			return err
		}
		b.customerDoc[id] = name + " " + email
	}
	return rows.Err()
}

func (b *batch) load(ids []string) error {
	in, args := inList(b.t.d, `id`, ids)
	rows, err := b.t.query(`SELECT id, channel, subject, status, customer_id, created_at, updated_at,
		last_seq, last_live_seq, last_message_id, first_message_id, position, version, num FROM conversations WHERE `+in, args...)
	if err != nil {
		return fmt.Errorf("load conversations: %w", err)
	}
	for rows.Next() {
		c := &convState{reads: map[string]int{}}
		if err := rows.Scan(&c.id, &c.channel, &c.subject, &c.status, &c.customerID, &c.createdAt, &c.updatedAt,
			&c.lastSeq, &c.lastLive, &c.lastMessageID, &c.firstMessageID, &c.position, &c.version, &c.num); err != nil {
			rows.Close()
			return err
		}
		b.convs[c.id] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	in, args = inList(b.t.d, `conversation_id`, ids)
	rows, err = b.t.query(`SELECT conversation_id, reader, seq FROM reads WHERE `+in, args...)
	if err != nil {
		return fmt.Errorf("load read marks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var conv, reader string
		var seq int
		if err := rows.Scan(&conv, &reader, &seq); err != nil {
			return err
		}
		if c := b.convs[conv]; c != nil {
			c.reads[reader] = seq
		}
	}
	return rows.Err()
}

// touch marks c's row to be written at the next flush.
func (b *batch) touch(c *convState) {
	if !c.dirty {
		c.dirty = true
		b.dirty = append(b.dirty, c)
	}
}

func (b *batch) join(conv, user string, pos int64) {
	k := [2]string{conv, user}
	if !b.isJoined[k] {
		b.isJoined[k] = true
		b.joined = append(b.joined, participantRow{conv, user, pos})
		b.added = append(b.added, []any{user, conv})
	}
}

func (b *batch) markRead(c *convState, reader string, seq int) {
	if seq <= c.reads[reader] {
		return
	}
	c.reads[reader] = seq
	k := [2]string{c.id, reader}
	if _, ok := b.read[k]; !ok {
		b.readKeys = append(b.readKeys, k)
	}
	b.read[k] = seq
}

// index records the change d of search document ref of conv, over any
// the batch holds for it.
func (b *batch) index(conv, ref string, d docChange) {
	k := [2]string{conv, ref}
	old, ok := b.docs[k]
	if !ok {
		b.docKeys = append(b.docKeys, k)
		b.docs[k] = &d
		return
	}
	old.body = d.body // a document new in the batch stays new
	if old.id == 0 {
		old.id = d.id
	}
}

// catchUp moves reader's count of the live chats they are caught up with
// by n. Only staff see the customers section that counts it: a customer's
// would never be read, and customers never become staff.
func (b *batch) catchUp(reader string, n int) {
	if strings.HasPrefix(reader, string(domain.ActorCustomer)+":") {
		return
	}
	if _, ok := b.caught[reader]; !ok {
		b.readers = append(b.readers, reader)
	}
	b.caught[reader] += n
}

// applyConversation applies one event of conversation stream conv.
func (b *batch) applyConversation(conv string, rec domain.Recorded) error {
	at, pos := millis(rec.At), int64(rec.Position)
	if e, ok := rec.Event.(conversation.Started); ok {
		if b.convs[conv] != nil {
			return nil // projected already
		}
		c := &convState{id: conv, channel: string(e.Channel), subject: e.Subject, status: "open", customerID: e.CustomerID,
			createdAt: at, updatedAt: at, position: pos, version: rec.Version, num: pos, reads: map[string]int{}}
		b.touch(c)
		b.convs[conv] = c
		for _, p := range e.Participants {
			b.join(conv, p, pos)
		}
		if e.Subject != "" {
			b.index(conv, "subject", docChange{id: docID(c.num, docSubject), body: &e.Subject})
		}
		if e.CustomerID != "" {
			doc, ok := b.customerDoc[e.CustomerID]
			if !ok {
				var name, email string
				err := b.t.scan(`SELECT name, email FROM customers WHERE id = ?`, []any{e.CustomerID}, &name, &email)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				doc = name + " " + email
			}
			b.index(conv, "customer", docChange{id: docID(c.num, docCustomer), body: &doc})
		}
		return nil
	}
	c := b.convs[conv]
	if c == nil {
		return fmt.Errorf("conversation %s has no row", conv)
	}
	if rec.Version <= c.version {
		return nil // projected already
	}
	c.position, c.version = pos, rec.Version
	b.touch(c)
	if _, isRead := rec.Event.(conversation.Read); !isRead {
		c.updatedAt = at // reading does not make a conversation more recent
	}
	switch e := rec.Event.(type) {
	case conversation.MessagePosted:
		seq := c.lastSeq + 1
		author := rec.Actor.Key()
		if c.channel == "livechat" {
			b.countPost(c, author, seq)
		}
		b.inserted[e.MessageID] = len(b.messages)
		b.messages = append(b.messages, messageRow{id: e.MessageID, conv: conv, seq: seq, authorKind: string(rec.Actor.Kind),
			authorID: rec.Actor.ID, body: e.Body, clientID: e.ClientID, createdAt: at, position: pos})
		c.lastSeq, c.lastLive, c.lastMessageID = seq, seq, e.MessageID
		if c.firstMessageID == "" {
			c.firstMessageID = e.MessageID
		}
		if rec.Actor.Kind == domain.ActorUser {
			b.join(conv, rec.Actor.ID, pos)
		}
		b.markRead(c, author, seq)
		if id := docID(c.num, seq+1); id != 0 {
			b.index(conv, "m:"+e.MessageID, docChange{id: id, body: &e.Body})
		}
	case conversation.MessageEdited:
		if i, ok := b.inserted[e.MessageID]; ok {
			b.messages[i].body, b.messages[i].edited, b.messages[i].position = e.Body, true, pos
		} else if err := b.t.exec(`UPDATE messages SET body = ?, edited = 1, position = ? WHERE id = ? AND conversation_id = ?`,
			e.Body, pos, e.MessageID, conv); err != nil {
			return err
		}
		d := docChange{num: c.num, msgID: e.MessageID, body: &e.Body}
		if _, ok := b.inserted[e.MessageID]; !ok && b.docsT != nil {
			// The documents' transaction cannot see a message this batch
			// wrote before a flush: find its document here.
			var seq int
			if err := b.t.scan(`SELECT seq FROM messages WHERE id = ?`, []any{e.MessageID}, &seq); err != nil {
				return fmt.Errorf("message %s: %w", e.MessageID, err)
			}
			d.id = docID(c.num, seq+1)
		}
		b.index(conv, "m:"+e.MessageID, d)
	case conversation.MessageDeleted:
		var seq int
		if i, ok := b.inserted[e.MessageID]; ok {
			seq = b.messages[i].seq
			b.messages[i].body, b.messages[i].deleted, b.messages[i].position = "", true, pos
		} else {
			if err := b.t.scan(`SELECT seq FROM messages WHERE id = ?`, []any{e.MessageID}, &seq); err != nil {
				return fmt.Errorf("message %s: %w", e.MessageID, err)
			}
			if err := b.t.exec(`UPDATE messages SET body = '', deleted = 1, position = ? WHERE id = ? AND conversation_id = ?`,
				pos, e.MessageID, conv); err != nil {
				return err
			}
		}
		if err := b.countDelete(c, seq); err != nil {
			return err
		}
		if id := docID(c.num, seq+1); id != 0 {
			b.index(conv, "m:"+e.MessageID, docChange{id: id})
		}
	case conversation.Closed:
		c.status = "closed"
	case conversation.Reopened:
		c.status = "open"
	case conversation.Read:
		if c.channel == "livechat" && c.lastLive > 0 && e.UpToSeq >= c.lastLive && c.reads[rec.Actor.Key()] < c.lastLive {
			b.catchUp(rec.Actor.Key(), 1)
		}
		b.markRead(c, rec.Actor.Key(), e.UpToSeq)
	case conversation.ItemLinked:
		// Written at the flush: the link, and a members row for each person
		// of the item, which the update of the touched conversations' rows
		// then brings in step.
		b.links = append(b.links, []any{conv, e.ItemID, pos})
	case conversation.ItemUnlinked:
		if err := b.flush(); err != nil {
			return err
		}
		if err := b.t.exec(`DELETE FROM links WHERE conversation_id = ? AND item_id = ?`, conv, e.ItemID); err != nil {
			return err
		}
		// Those to whom only that item made it theirs leave "My conversations".
		return b.t.exec(`DELETE FROM members WHERE conversation_id = ? AND user_id NOT IN (
			SELECT user_id FROM participants WHERE conversation_id = ?
			UNION SELECT ip.user_id FROM links l JOIN item_people ip ON ip.item_id = l.item_id WHERE l.conversation_id = ?)`, conv, conv, conv)
	}
	return nil
}

// The unread counts of the customers section are kept as counters, so that
// asking them costs the same with a hundred conversations or a million:
// counters "livechat" is the number of live chats with a message not
// deleted, and caught_up(reader) the number of those whose newest such
// message (last_live_seq) the reader has read. A reader's count of unread
// live chats is their difference.

// countPost counts a new message seq by author: readers who had read the
// newest live message are no longer caught up, except the author, who is now.
func (b *batch) countPost(c *convState, author string, seq int) {
	if c.lastLive == 0 {
		b.livechat++
		b.catchUp(author, 1)
		return
	}
	for reader, read := range c.reads {
		if read >= c.lastLive && reader != author {
			b.catchUp(reader, -1)
		}
	}
	if c.reads[author] < c.lastLive {
		b.catchUp(author, 1)
	}
}

// countDelete counts the deletion of message seq of c: when it was the
// newest live message, the one before it becomes the newest, and readers
// between the two are caught up now; with none left, the chat no longer
// counts.
func (b *batch) countDelete(c *convState, seq int) error {
	if seq != c.lastLive {
		return nil
	}
	// The newest message left: among the batch's own, which all come after
	// the rows' of the conversation, else among the rows.
	prev := -1
	for i := len(b.messages) - 1; i >= 0 && prev < 0; i-- {
		if m := b.messages[i]; m.conv == c.id && m.seq < seq && !m.deleted {
			prev = m.seq
		}
	}
	if prev < 0 {
		if err := b.t.scan(`SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ? AND deleted = 0 AND seq < ?`,
			[]any{c.id, seq}, &prev); err != nil {
			return err
		}
	}
	old := c.lastLive
	c.lastLive = prev
	b.touch(c)
	if c.channel != "livechat" {
		return nil
	}
	if prev == 0 {
		b.livechat--
	}
	for reader, read := range c.reads {
		switch {
		case prev == 0 && read >= old:
			b.catchUp(reader, -1)
		case prev > 0 && read >= prev && read < old:
			b.catchUp(reader, 1)
		}
	}
	return nil
}

// bulk writes rows, each followed by the SQL expressions constants, with
// the statements of bulkStatements.
func (b *batch) bulk(head, tail string, width int, rows [][]any, constants ...string) error {
	return b.bulkIn(b.t, head, tail, width, rows, constants...)
}

// bulkIn is bulk through t.
func (b *batch) bulkIn(t *txn, head, tail string, width int, rows [][]any, constants ...string) error {
	return t.execAll(bulkStatements(t.d, head, tail, width, rows, constants...))
}

// bulkStatements returns the statements that write rows, each followed by
// the SQL expressions constants: head SELECT … FROM the dialect's row
// source tail, with a Bulker dialect that can carry the values, else head
// VALUES (…), (…) tail, one statement per chunk. head ends with a column
// list or "FROM (", and tail goes on with an ON CONFLICT clause or ") AS
// v WHERE …"; both forms name the columns v.column1, v.column2, ….
func bulkStatements(d Dialect, head, tail string, width int, rows [][]any, constants ...string) []Statement {
	if len(rows) == 0 {
		return nil
	}
	if bk, ok := d.(Bulker); ok {
		if from, args, ok := bk.Rows(rows, width); ok {
			var q strings.Builder
			q.WriteString(head)
			q.WriteString(" SELECT ")
			for i := 1; i <= width; i++ {
				if i > 1 {
					q.WriteString(", ")
				}
				q.WriteString("v.column" + strconv.Itoa(i))
			}
			for _, c := range constants {
				q.WriteString(", " + c)
			}
			q.WriteString(" FROM " + from + " " + tail)
			return []Statement{{Query: q.String(), Args: args}}
		}
	}
	const chunk = 400
	var stmts []Statement
	for start := 0; start < len(rows); start += chunk {
		part := rows[start:min(start+chunk, len(rows))]
		var q strings.Builder
		q.WriteString(head)
		q.WriteString(" VALUES ")
		one := "(" + placeholders(width) + ")"
		if len(constants) > 0 {
			one = "(" + placeholders(width) + ", " + strings.Join(constants, ", ") + ")"
		}
		args := make([]any, 0, len(part)*width)
		for i, r := range part {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(one)
			args = append(args, r...)
		}
		q.WriteString(" ")
		q.WriteString(tail)
		stmts = append(stmts, Statement{Query: q.String(), Args: args})
	}
	return stmts
}

// flush writes every pending change and starts afresh; the conversations'
// states stay, now matching their rows.
func (b *batch) flush() error {
	if err := b.bulk(`INSERT INTO users (id, name, email, role, support, token_hash, created_at)`, `ON CONFLICT (id) DO NOTHING`, 7, b.users); err != nil {
		return err
	}
	if err := b.bulk(`INSERT INTO customers (id, name, email, token_hash, created_at)`, `ON CONFLICT (id) DO NOTHING`, 5, b.customers); err != nil {
		return err
	}
	if err := b.bulk(`INSERT INTO tokens (hash, kind, id)`, `ON CONFLICT (hash) DO NOTHING`, 3, b.tokens); err != nil {
		return err
	}
	// Before the links, whose members come from item_people.
	if err := b.bulk(`INSERT INTO items (id, kind, title, description, requester_id, created_by, created_at, position, status)`,
		`ON CONFLICT (id) DO NOTHING`, 8, b.items, `'open'`); err != nil {
		return err
	}
	if err := b.bulk(`INSERT INTO item_people (item_id, user_id, role, added)`, `ON CONFLICT DO NOTHING`, 4, b.itemPeople); err != nil {
		return err
	}
	var convs, touched [][]any
	for _, c := range b.dirty {
		convs = append(convs, []any{c.id, c.channel, c.subject, c.status, c.customerID, c.createdAt, c.updatedAt,
			c.lastSeq, c.lastLive, c.lastMessageID, c.firstMessageID, c.position, c.version, c.num})
		touched = append(touched, []any{c.id, c.status, c.updatedAt, c.lastLive})
		c.dirty = false
	}
	b.dirty = b.dirty[:0]
	if err := b.bulk(`INSERT INTO conversations (id, channel, subject, status, customer_id, created_at, updated_at,
		last_seq, last_live_seq, last_message_id, first_message_id, position, version, num)`, `ON CONFLICT (id) DO UPDATE SET
		status = excluded.status, updated_at = excluded.updated_at, last_seq = excluded.last_seq,
		last_live_seq = excluded.last_live_seq, last_message_id = excluded.last_message_id,
		first_message_id = excluded.first_message_id, position = excluded.position, version = excluded.version`, 14, convs); err != nil {
		return err
	}
	msgs := make([][]any, len(b.messages))
	for i, m := range b.messages {
		msgs[i] = []any{m.id, m.conv, m.seq, m.authorKind, m.authorID, m.body, m.clientID, m.createdAt, b2i(m.edited), b2i(m.deleted), m.position}
	}
	if err := b.t.insertNew(`messages`, messageCols, `ON CONFLICT (id) DO NOTHING`, msgs); err != nil {
		return err
	}
	joined := make([][]any, len(b.joined))
	for i, p := range b.joined {
		joined[i] = []any{p.conv, p.user, p.joined}
	}
	if err := b.bulk(`INSERT INTO participants (conversation_id, user_id, joined)`, `ON CONFLICT DO NOTHING`, 3, joined); err != nil {
		return err
	}
	reads := make([][]any, len(b.readKeys))
	for i, k := range b.readKeys {
		reads[i] = []any{k[0], k[1], b.read[k]}
	}
	if err := b.bulk(`INSERT INTO reads (conversation_id, reader, seq)`, `ON CONFLICT (conversation_id, reader)
		DO UPDATE SET seq = CASE WHEN excluded.seq > reads.seq THEN excluded.seq ELSE reads.seq END`, 3, reads); err != nil {
		return err
	}
	if err := b.bulk(`INSERT INTO members (user_id, conversation_id, status, updated_at)`, `ON CONFLICT DO NOTHING`, 2, b.added, `'', 0`); err != nil {
		return err
	}
	if err := b.bulk(`INSERT INTO links (conversation_id, item_id, linked)`, `ON CONFLICT DO NOTHING`, 3, b.links); err != nil {
		return err
	}
	for _, l := range b.links {
		if err := b.t.exec(`INSERT INTO members (user_id, conversation_id, status, updated_at)
			SELECT ip.user_id, ?, '', 0 FROM item_people ip WHERE ip.item_id = ? ON CONFLICT DO NOTHING`, l[0], l[1]); err != nil {
			return err
		}
	}
	// The columns of VALUES have no declared type: cast the numbers.
	updated, lastLive := `CAST(v.column3 AS BIGINT)`, `CAST(v.column4 AS INTEGER)`
	if err := b.bulk(`UPDATE members SET status = v.column2, updated_at = `+updated+`, unread = `+unreadOf(lastLive)+` FROM (`,
		`) AS v WHERE members.conversation_id = v.column1 AND (members.status <> v.column2 OR members.updated_at <> `+updated+`
		OR members.unread <> `+unreadOf(lastLive)+`)`, 4, touched); err != nil {
		return err
	}
	// A dialect that takes the documents' words from the projector gets
	// them in the column tsv, instead of the body.
	worder, words := b.t.d.(SearchWorder)
	docCols, docSet, setDoc := []string{"id", "body"}, `body = excluded.body`, `body = ?`
	if words {
		docCols, docSet, setDoc = []string{"id", "tsv"}, `tsv = excluded.tsv`, `tsv = ?`
	}
	doc := func(body string) any {
		if words {
			return worder.SearchWords(body)
		}
		return body
	}
	dt := b.t
	if b.docsT != nil {
		dt = b.docsT
	}
	var docs [][]any
	for _, k := range b.docKeys {
		d := b.docs[k]
		switch {
		case d.body == nil:
			if err := dt.exec(`DELETE FROM search_docs WHERE id = ?`, d.id); err != nil {
				return err
			}
		case d.id == 0:
			if err := dt.exec(`UPDATE search_docs SET `+setDoc+` WHERE id = CAST(? AS BIGINT) * `+strconv.Itoa(1<<docIDBits)+`
				+ (SELECT seq + 1 FROM messages WHERE id = ?)`, doc(*d.body), d.num, d.msgID); err != nil {
				return err
			}
		default:
			docs = append(docs, []any{d.id, doc(*d.body)})
		}
	}
	if err := dt.insertNew(`search_docs`, docCols, `ON CONFLICT (id) DO UPDATE SET `+docSet, docs); err != nil {
		return err
	}
	var caught [][]any
	for _, r := range b.readers {
		if n := b.caught[r]; n != 0 {
			caught = append(caught, []any{r, n})
			if b.movedReaders != nil {
				b.movedReaders[r] = true
			}
		}
	}
	b.countsMoved = b.countsMoved || len(caught) > 0 || b.livechat != 0
	if err := b.bulk(`INSERT INTO caught_up (reader, livechat)`, `ON CONFLICT (reader) DO UPDATE SET livechat = caught_up.livechat + excluded.livechat`,
		2, caught); err != nil {
		return err
	}
	if b.livechat != 0 {
		if err := b.t.exec(`INSERT INTO counters (name, value) VALUES ('livechat', ?)
			ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value`, b.livechat); err != nil {
			return err
		}
	}
	b.reset()
	return nil
}

// counts returns the queries that read the counters as the batch leaves
// them, once flushed, if it moved any, and what they fill in as they read:
// the number of live chats and the caught-up counts of the readers it
// changed, in one statement for up to 500 readers. nil if it moved none.
func (b *batch) counts() (*Counts, []Statement) {
	if !b.countsMoved {
		return nil, nil
	}
	c := &Counts{}
	if len(b.movedReaders) > 0 {
		c.CaughtUp = make(map[string]int, len(b.movedReaders))
	}
	read := func(scan func(dest ...any) error) error {
		var reader string
		var n int
		if err := scan(&reader, &n); err != nil {
			return err
		}
		if reader == "" {
			c.LiveChats = n
		} else {
			c.CaughtUp[reader] = n
		}
		return nil
	}
	// The live chats' row comes first, with an empty reader, which no
	// reader's key is.
	stmt := `SELECT '', COALESCE((SELECT value FROM counters WHERE name = 'livechat'), 0)`
	readers := slices.Collect(maps.Keys(b.movedReaders))
	var stmts []Statement
	for {
		chunk := readers[:min(len(readers), 500)]
		readers = readers[len(chunk):]
		var args []any
		if len(chunk) > 0 {
			if stmt != `` {
				stmt += ` UNION ALL `
			}
			var in string
			in, args = inList(b.t.d, `reader`, chunk)
			stmt += `SELECT reader, livechat FROM caught_up WHERE ` + in
		}
		stmts = append(stmts, Statement{Query: stmt, Args: args, Read: read})
		if len(readers) == 0 {
			return c, stmts
		}
		stmt = ``
	}
}

// unreadOf is 1 when a conversation whose newest message not deleted is
// lastLive has a message after the read mark of the member of a row of
// members, else 0.
func unreadOf(lastLive string) string {
	return `CASE WHEN ` + lastLive + ` > COALESCE((SELECT r.seq FROM reads r WHERE r.conversation_id = members.conversation_id
		AND r.reader = 'user:' || members.user_id), 0) THEN 1 ELSE 0 END`
}

// memberUnread is 1 when the conversation of a row of members has a message
// not deleted after the member's read mark, else 0: unreadOf, with the
// conversation's newest message read from its row.
var memberUnread = unreadOf(`(SELECT c.last_live_seq FROM conversations c WHERE c.id = members.conversation_id)`)
