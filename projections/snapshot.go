package projections

import (
	"context"
	"slices"

	"github.com/helpdesk/messenger/domain/directory"
)

// Snapshot is one conversation as the read models hold it at one instant,
// with what it takes to render it for any viewer without asking again: who
// may see it, everyone's read marks, and its inbox row. Live streams read
// one per change and render it for each of their clients in memory.
type Snapshot struct {
	// Row is the inbox row with Unread 0; Row(p) fills in p's count.
	row          InboxRow
	customerID   string
	participants []string       // user ids
	interested   []string       // user ids who created, are assigned to or follow a linked item
	reads        map[string]int // actor key → seq read up to
	lastSeq      int            // seq of the newest message
	deleted      []int          // seqs of deleted messages, ascending
}

// Snapshot reads conversation id; ok is false when it does not exist.
func (r *ReadModels) Snapshot(ctx context.Context, id string) (s *Snapshot, ok bool, err error) {
	var c convRow
	var lastSeq int
	ok, err = found(r.row(ctx, `SELECT c.id, c.channel, c.subject, c.status, c.customer_id, c.last_message_id, c.updated_at, c.last_seq
		FROM conversations c WHERE c.id = ?`, id).
		Scan(&c.id, &c.channel, &c.subject, &c.status, &c.customerID, &c.lastMessageID, &c.updatedAt, &lastSeq))
	if !ok {
		return nil, false, err
	}
	rows, err := r.hydrate(ctx, []convRow{c})
	if err != nil {
		return nil, false, err
	}
	s = &Snapshot{row: rows[0], customerID: c.customerID, lastSeq: lastSeq, reads: map[string]int{}}
	if s.participants, err = r.strings(ctx, `SELECT user_id FROM participants WHERE conversation_id = ?`, id); err != nil {
		return nil, false, err
	}
	if s.interested, err = r.strings(ctx, `SELECT DISTINCT ip.user_id FROM links l JOIN item_people ip ON ip.item_id = l.item_id
		WHERE l.conversation_id = ?`, id); err != nil {
		return nil, false, err
	}
	q, err := r.query(ctx, `SELECT reader, seq FROM reads WHERE conversation_id = ?`, id)
	if err != nil {
		return nil, false, err
	}
	defer q.Close()
	for q.Next() {
		var reader string
		var seq int
		if err := q.Scan(&reader, &seq); err != nil {
			return nil, false, err
		}
		s.reads[reader] = seq
	}
	if err := q.Err(); err != nil {
		return nil, false, err
	}
	q.Close() // before the next query: a connection at a time, or a full pool deadlocks
	d, err := r.query(ctx, `SELECT seq FROM messages WHERE conversation_id = ? AND deleted = 1 ORDER BY seq`, id)
	if err != nil {
		return nil, false, err
	}
	defer d.Close()
	for d.Next() {
		var seq int
		if err := d.Scan(&seq); err != nil {
			return nil, false, err
		}
		s.deleted = append(s.deleted, seq)
	}
	return s, true, d.Err()
}

func (r *ReadModels) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := r.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ID returns the conversation's id.
func (s *Snapshot) ID() string { return s.row.ID }

// LiveChat reports whether the conversation is with a customer.
func (s *Snapshot) LiveChat() bool { return s.row.Channel == "livechat" }

// Mine reports whether the conversation is in p's "My conversations": p
// takes part, or it links an item p created, is assigned to or follows.
// It is the rule of the SQL condition mine, for a conversation in hand.
func (s *Snapshot) Mine(p directory.Principal) bool {
	return p.IsStaff() && (slices.Contains(s.participants, p.ID) || slices.Contains(s.interested, p.ID))
}

// CanSee reports whether p may see the conversation: the rule of the SQL
// condition visible, for a conversation in hand.
func (s *Snapshot) CanSee(p directory.Principal) bool {
	switch {
	case p.IsCustomer():
		return s.customerID == p.ID
	case p.IsAuditor():
		return true
	case p.IsSupport():
		return s.LiveChat() || s.Mine(p)
	case p.IsStaff():
		return s.Mine(p)
	}
	return false
}

// Unread counts the messages p has not read: every message after p's read
// mark is by someone else (posting marks one's own reading), so it is the
// messages after the mark less the deleted ones.
func (s *Snapshot) Unread(p directory.Principal) int {
	read := s.reads[p.Actor().Key()]
	n := s.lastSeq - read
	for _, d := range s.deleted {
		if d > read {
			n--
		}
	}
	return max(n, 0)
}

// Row returns the inbox row as p sees it.
func (s *Snapshot) Row(p directory.Principal) InboxRow {
	row := s.row
	row.Unread = s.Unread(p)
	return row
}
