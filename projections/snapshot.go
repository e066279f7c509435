package projections

import (
	"context"
	"errors"
	"slices"
	"sync"

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
	snaps, err := r.Snapshots(ctx, []string{id})
	if err != nil {
		return nil, false, err
	}
	s, ok = snaps[id]
	return s, ok, nil
}

// snapshotChunk is how many conversations one statement of Snapshots asks for.
const snapshotChunk = 500

// Snapshots reads the conversations ids with a few statements however many
// they are (a few per 500); those that do not exist are not in the map.
// Live streams read every conversation a batch of changes touched at once.
func (r *ReadModels) Snapshots(ctx context.Context, ids []string) (map[string]*Snapshot, error) {
	out := make(map[string]*Snapshot, len(ids))
	ids = uniq(ids)
	for start := 0; start < len(ids); start += snapshotChunk {
		if err := r.snapshots(ctx, ids[start:min(start+snapshotChunk, len(ids))], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *ReadModels) snapshots(ctx context.Context, ids []string, out map[string]*Snapshot) error {
	// Who takes part, who a linked item concerns, the read marks and the
	// deleted messages, with one statement, read beside the conversations
	// (on another connection: each side holds one at a time, so a full
	// pool cannot deadlock them).
	var parts []snapshotPart
	var partsErr error
	var wg sync.WaitGroup
	wg.Go(func() { parts, partsErr = r.snapshotParts(ctx, ids) })
	err := r.snapshotRows(ctx, ids, out)
	wg.Wait()
	if err := errors.Join(err, partsErr); err != nil {
		return err
	}
	for _, pt := range parts {
		s := out[pt.conv]
		if s == nil {
			continue // created after the conversations were read
		}
		switch pt.part {
		case "p":
			s.participants = append(s.participants, pt.who)
		case "i":
			s.interested = append(s.interested, pt.who)
		case "r":
			s.reads[pt.who] = pt.seq
		case "d":
			s.deleted = append(s.deleted, pt.seq)
		}
	}
	return nil
}

// snapshotRows reads the conversations ids and their inbox rows into out.
func (r *ReadModels) snapshotRows(ctx context.Context, ids []string, out map[string]*Snapshot) error {
	in, args := r.in(`c.id`, ids)
	rows, err := r.query(ctx, `SELECT c.id, c.channel, c.subject, c.status, c.customer_id, c.last_message_id, c.updated_at, c.last_seq, `+joinedCols+`
		FROM conversations c `+joinedFrom("c")+` WHERE `+in, args...)
	if err != nil {
		return err
	}
	convs, lastSeqs := make([]convRow, 0, len(ids)), make([]int, 0, len(ids))
	var c convRow
	var lastSeq int
	var j joinedRow
	dest := joinedDest(&c, &lastSeq, &j)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return err
		}
		j.fill(&c)
		convs, lastSeqs = append(convs, c), append(lastSeqs, lastSeq)
	}
	rows.Close() // before the next query: a connection at a time, or a full pool deadlocks
	if err := rows.Err(); err != nil {
		return err
	}
	if len(convs) == 0 {
		return nil
	}
	inbox, err := r.hydrate(ctx, convs)
	if err != nil {
		return err
	}
	for i, c := range convs {
		out[c.id] = &Snapshot{row: inbox[i], customerID: c.customerID, lastSeq: lastSeqs[i], reads: map[string]int{}}
	}
	return nil
}

// snapshotPart is a row of snapshotParts: a participant ("p"), someone a
// linked item concerns ("i"), a read mark ("r", with its seq) or a deleted
// message ("d", its seq) of conversation conv.
type snapshotPart struct {
	conv, part, who string
	seq             int
}

// snapshotParts reads the parts of the conversations ids, in order.
func (r *ReadModels) snapshotParts(ctx context.Context, ids []string) ([]snapshotPart, error) {
	inP, args := r.in(`conversation_id`, ids)
	inL, _ := r.in(`l.conversation_id`, ids) // the same arguments
	q := `SELECT conversation_id, 'p', user_id, 0 FROM participants WHERE ` + inP + `
		UNION ALL SELECT DISTINCT l.conversation_id, 'i', ip.user_id, 0 FROM links l JOIN item_people ip ON ip.item_id = l.item_id
			WHERE ` + inL + `
		UNION ALL SELECT conversation_id, 'r', reader, seq FROM reads WHERE ` + inP + `
		UNION ALL SELECT conversation_id, 'd', '', seq FROM messages WHERE ` + inP + ` AND deleted = 1
		ORDER BY 1, 2, 4`
	rows, err := r.query(ctx, q, slices.Concat(args, args, args, args)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []snapshotPart
	for rows.Next() {
		var pt snapshotPart
		if err := rows.Scan(&pt.conv, &pt.part, &pt.who, &pt.seq); err != nil {
			return nil, err
		}
		out = append(out, pt)
	}
	return out, rows.Err()
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

// Size approximates the bytes s holds, for caches of snapshots: a
// conversation may have thousands of deleted messages, readers and links.
func (s *Snapshot) Size() int {
	n := 256 + len(s.row.Subject) + 8*len(s.deleted)
	if s.row.LastMessage != nil {
		n += len(s.row.LastMessage.Excerpt)
	}
	for _, people := range [][]string{s.participants, s.interested} {
		for _, p := range people {
			n += 16 + len(p)
		}
	}
	for k := range s.reads {
		n += 48 + len(k)
	}
	for _, l := range s.row.Links {
		n += 64 + len(l.ItemID) + len(l.Title)
	}
	return n
}

// ID returns the conversation's id.
func (s *Snapshot) ID() string { return s.row.ID }

// LiveChat reports whether the conversation is with a customer.
func (s *Snapshot) LiveChat() bool { return s.row.Channel == "livechat" }

// Staff returns the ids of the staff who take part in the conversation or
// whom a linked item concerns: those for whom it is theirs (Mine).
func (s *Snapshot) Staff() []string { return slices.Concat(s.participants, s.interested) }

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
