package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

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

// txn runs portable SQL inside one read-model transaction.
type txn struct {
	ctx context.Context
	tx  *sql.Tx
	d   Dialect
}

func (t txn) exec(q string, args ...any) error {
	if _, err := t.tx.ExecContext(t.ctx, t.d.Rebind(q), args...); err != nil {
		return fmt.Errorf("%s: %w", firstLine(q), err)
	}
	return nil
}

func (t txn) row(q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.ctx, t.d.Rebind(q), args...)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// apply changes the read-model rows for rec. It is the one place that
// decides row changes; every SQL engine applies the same statements.
func apply(t txn, rec domain.Recorded) error {
	at := millis(rec.At)
	pos := int64(rec.Position)
	switch e := rec.Event.(type) {
	case directory.UserCreated:
		if err := t.exec(`INSERT INTO users (id, name, email, role, support, token_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`, e.UserID, e.Name, e.Email, string(e.Role), b2i(e.Support), e.TokenHash, at); err != nil {
			return err
		}
		return t.exec(`INSERT INTO tokens (hash, kind, id) VALUES (?, 'user', ?) ON CONFLICT (hash) DO NOTHING`, e.TokenHash, e.UserID)
	case directory.UserTokenIssued:
		id := trimPrefix(rec.Stream, "user-")
		if err := t.exec(`DELETE FROM tokens WHERE kind = 'user' AND id = ?`, id); err != nil {
			return err
		}
		if err := t.exec(`UPDATE users SET token_hash = ? WHERE id = ?`, e.TokenHash, id); err != nil {
			return err
		}
		return t.exec(`INSERT INTO tokens (hash, kind, id) VALUES (?, 'user', ?) ON CONFLICT (hash) DO NOTHING`, e.TokenHash, id)
	case directory.CustomerRegistered:
		if err := t.exec(`INSERT INTO customers (id, name, email, token_hash, created_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`, e.CustomerID, e.Name, e.Email, e.TokenHash, at); err != nil {
			return err
		}
		return t.exec(`INSERT INTO tokens (hash, kind, id) VALUES (?, 'customer', ?) ON CONFLICT (hash) DO NOTHING`, e.TokenHash, e.CustomerID)

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
		if err := t.exec(`INSERT INTO items (id, kind, title, description, status, requester_id, created_by, created_at, position)
			VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			e.ItemID, string(e.Kind), e.Title, e.Description, e.RequesterID, rec.Actor.ID, at, pos); err != nil {
			return err
		}
		if err := addPerson(t, e.ItemID, rec.Actor.ID, "creator", pos); err != nil {
			return err
		}
		for _, a := range e.Assignees {
			if err := addPerson(t, e.ItemID, a, "assignee", pos); err != nil {
				return err
			}
		}
		return nil
	case item.Assigned:
		return addPerson(t, itemID(rec.Stream), e.UserID, "assignee", pos)
	case item.Followed:
		return addPerson(t, itemID(rec.Stream), e.UserID, "follower", pos)
	}

	conv := conversationID(rec.Stream)
	if conv == "" {
		return nil // an event of no read model, e.g. of a newer kind of stream
	}
	if e, ok := rec.Event.(conversation.Started); ok {
		if err := t.exec(`INSERT INTO conversations (id, channel, subject, status, customer_id, created_at, updated_at,
			last_seq, last_live_seq, last_message_id, first_message_id, position, version) VALUES (?, ?, ?, 'open', ?, ?, ?, 0, 0, '', '', ?, ?)
			ON CONFLICT (id) DO NOTHING`, conv, string(e.Channel), e.Subject, e.CustomerID, at, at, pos, rec.Version); err != nil {
			return err
		}
		for _, p := range e.Participants {
			if err := addParticipant(t, conv, p, pos); err != nil {
				return err
			}
		}
		if e.Subject != "" {
			if err := index(t, conv, "subject", e.Subject); err != nil {
				return err
			}
		}
		if e.CustomerID != "" {
			var name, email string
			err := t.row(`SELECT name, email FROM customers WHERE id = ?`, e.CustomerID).Scan(&name, &email)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if err := index(t, conv, "customer", name+" "+email); err != nil {
				return err
			}
		}
		return nil
	}
	// Every other conversation event moves the row's position; all but a read
	// make it more recent.
	if _, isRead := rec.Event.(conversation.Read); isRead {
		if err := t.exec(`UPDATE conversations SET position = ?, version = ? WHERE id = ?`, pos, rec.Version, conv); err != nil {
			return err
		}
	} else if err := t.exec(`UPDATE conversations SET position = ?, version = ?, updated_at = ? WHERE id = ?`,
		pos, rec.Version, at, conv); err != nil {
		return err
	}
	switch e := rec.Event.(type) {
	case conversation.MessagePosted:
		var seq, live int
		var first, channel string
		if err := t.row(`SELECT last_seq, last_live_seq, first_message_id, channel FROM conversations WHERE id = ?`, conv).
			Scan(&seq, &live, &first, &channel); err != nil {
			return fmt.Errorf("conversation %s of message %s: %w", conv, e.MessageID, err)
		}
		seq++
		if channel == "livechat" {
			if err := countPost(t, conv, rec.Actor, live, seq); err != nil {
				return err
			}
		}
		if first == "" {
			first = e.MessageID
		}
		if err := t.exec(`INSERT INTO messages (id, conversation_id, seq, author_kind, author_id, body, client_id, created_at,
			edited, deleted, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?) ON CONFLICT (id) DO NOTHING`,
			e.MessageID, conv, seq, string(rec.Actor.Kind), rec.Actor.ID, e.Body, e.ClientID, at, pos); err != nil {
			return err
		}
		if err := t.exec(`UPDATE conversations SET last_seq = ?, last_live_seq = ?, last_message_id = ?, first_message_id = ? WHERE id = ?`,
			seq, seq, e.MessageID, first, conv); err != nil {
			return err
		}
		if rec.Actor.Kind == domain.ActorUser {
			if err := addParticipant(t, conv, rec.Actor.ID, pos); err != nil {
				return err
			}
		}
		if err := markRead(t, conv, rec.Actor, seq); err != nil {
			return err
		}
		return index(t, conv, "m:"+e.MessageID, e.Body)
	case conversation.MessageEdited:
		if err := t.exec(`UPDATE messages SET body = ?, edited = 1, position = ? WHERE id = ? AND conversation_id = ?`,
			e.Body, pos, e.MessageID, conv); err != nil {
			return err
		}
		return index(t, conv, "m:"+e.MessageID, e.Body)
	case conversation.MessageDeleted:
		if err := t.exec(`UPDATE messages SET body = '', deleted = 1, position = ? WHERE id = ? AND conversation_id = ?`,
			pos, e.MessageID, conv); err != nil {
			return err
		}
		if err := countDelete(t, conv, e.MessageID); err != nil {
			return err
		}
		return t.exec(`DELETE FROM search_docs WHERE conversation_id = ? AND ref = ?`, conv, "m:"+e.MessageID)
	case conversation.Closed:
		return t.exec(`UPDATE conversations SET status = 'closed' WHERE id = ?`, conv)
	case conversation.Reopened:
		return t.exec(`UPDATE conversations SET status = 'open' WHERE id = ?`, conv)
	case conversation.Read:
		if err := countRead(t, conv, rec.Actor, e.UpToSeq); err != nil {
			return err
		}
		return markRead(t, conv, rec.Actor, e.UpToSeq)
	case conversation.ItemLinked:
		return t.exec(`INSERT INTO links (conversation_id, item_id, linked) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, conv, e.ItemID, pos)
	case conversation.ItemUnlinked:
		return t.exec(`DELETE FROM links WHERE conversation_id = ? AND item_id = ?`, conv, e.ItemID)
	}
	return nil
}

func ensureHelpdesk(t txn) error {
	return t.exec(`INSERT INTO helpdesk (id, online, online_message, offline_message, position) VALUES (1, 0, '', '', 0)
		ON CONFLICT (id) DO NOTHING`)
}

func addPerson(t txn, item, user, role string, pos int64) error {
	return t.exec(`INSERT INTO item_people (item_id, user_id, role, added) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, item, user, role, pos)
}

func addParticipant(t txn, conv, user string, pos int64) error {
	return t.exec(`INSERT INTO participants (conversation_id, user_id, joined) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, conv, user, pos)
}

func markRead(t txn, conv string, reader domain.Actor, seq int) error {
	return t.exec(`INSERT INTO reads (conversation_id, reader, seq) VALUES (?, ?, ?)
		ON CONFLICT (conversation_id, reader) DO UPDATE SET seq = CASE WHEN excluded.seq > reads.seq THEN excluded.seq ELSE reads.seq END`,
		conv, reader.Key(), seq)
}

func index(t txn, conv, ref, body string) error {
	return t.exec(`INSERT INTO search_docs (conversation_id, ref, body) VALUES (?, ?, ?)
		ON CONFLICT (conversation_id, ref) DO UPDATE SET body = excluded.body`, conv, ref, body)
}

// The unread counts of the customers section are kept as counters, so that
// asking them costs the same with a hundred conversations or a million:
// counters "livechat" is the number of live chats with a message not
// deleted, and caught_up(reader) the number of those whose newest such
// message (last_live_seq) the reader has read. A reader's count of unread
// live chats is their difference.

func addCaughtUp(t txn, reader string, n int) error {
	return t.exec(`INSERT INTO caught_up (reader, livechat) VALUES (?, ?)
		ON CONFLICT (reader) DO UPDATE SET livechat = caught_up.livechat + excluded.livechat`, reader, n)
}

func addLiveChats(t txn, n int) error {
	return t.exec(`INSERT INTO counters (name, value) VALUES ('livechat', ?)
		ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value`, n)
}

// readSeq returns how far reader has read conv.
func readSeq(t txn, conv, reader string) (int, error) {
	var seq int
	err := t.row(`SELECT seq FROM reads WHERE conversation_id = ? AND reader = ?`, conv, reader).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// countPost counts a new message seq by author in live chat conv, whose
// newest live message was live: readers who had read it are no longer
// caught up, except the author, who is now.
func countPost(t txn, conv string, author domain.Actor, live, seq int) error {
	key := author.Key()
	if live == 0 {
		if err := addLiveChats(t, 1); err != nil {
			return err
		}
		return addCaughtUp(t, key, 1)
	}
	if err := t.exec(`UPDATE caught_up SET livechat = livechat - 1 WHERE reader IN
		(SELECT reader FROM reads WHERE conversation_id = ? AND seq >= ? AND reader <> ?)`, conv, live, key); err != nil {
		return err
	}
	read, err := readSeq(t, conv, key)
	if err != nil || read >= live {
		return err // caught up before and after
	}
	return addCaughtUp(t, key, 1)
}

// countRead counts reader reading conv up to seq.
func countRead(t txn, conv string, reader domain.Actor, seq int) error {
	var live int
	var channel string
	if err := t.row(`SELECT last_live_seq, channel FROM conversations WHERE id = ?`, conv).Scan(&live, &channel); err != nil {
		return err
	}
	if channel != "livechat" || live == 0 || seq < live {
		return nil
	}
	read, err := readSeq(t, conv, reader.Key())
	if err != nil || read >= live {
		return err
	}
	return addCaughtUp(t, reader.Key(), 1)
}

// countDelete counts the deletion of message id of conv: when it was the
// newest live message, the one before it becomes the newest, and readers
// between the two are caught up now; with none left, the chat no longer counts.
func countDelete(t txn, conv, id string) error {
	var live, seq int
	var channel string
	if err := t.row(`SELECT c.last_live_seq, c.channel, m.seq FROM conversations c JOIN messages m ON m.conversation_id = c.id
		WHERE c.id = ? AND m.id = ?`, conv, id).Scan(&live, &channel, &seq); err != nil {
		return err
	}
	if seq != live {
		return nil
	}
	var prev int
	if err := t.row(`SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ? AND deleted = 0`, conv).Scan(&prev); err != nil {
		return err
	}
	if err := t.exec(`UPDATE conversations SET last_live_seq = ? WHERE id = ?`, prev, conv); err != nil {
		return err
	}
	if channel != "livechat" {
		return nil
	}
	if prev == 0 {
		if err := addLiveChats(t, -1); err != nil {
			return err
		}
		return t.exec(`UPDATE caught_up SET livechat = livechat - 1 WHERE reader IN
			(SELECT reader FROM reads WHERE conversation_id = ? AND seq >= ?)`, conv, live)
	}
	return t.exec(`UPDATE caught_up SET livechat = livechat + 1 WHERE reader IN
		(SELECT reader FROM reads WHERE conversation_id = ? AND seq >= ? AND seq < ?)`, conv, prev, live)
}
