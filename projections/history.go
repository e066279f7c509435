package projections

import (
	"context"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
)

// ConversationDetail is a conversation with a page of its messages.
type ConversationDetail struct {
	Conversation
	Messages   []Message `json:"messages"`
	NextCursor *string   `json:"next_cursor"`
}

// StateAt folds the events of a conversation stream that happened at or
// before t; ok is false when the conversation did not exist yet then.
func StateAt(recs []domain.Recorded, t time.Time) (st conversation.State, positions map[string]uint64, last uint64, ok bool) {
	positions = map[string]uint64{}
	for _, r := range recs {
		if r.At.After(t) {
			break
		}
		e, isConv := r.Event.(conversation.Event)
		if !isConv {
			continue
		}
		st = conversation.Evolve(st, e)
		last = r.Position
		switch e := e.(type) {
		case conversation.MessagePosted:
			positions[e.MessageID] = r.Position
		case conversation.MessageEdited:
			positions[e.MessageID] = r.Position
		case conversation.MessageDeleted:
			positions[e.MessageID] = r.Position
		}
	}
	return st, positions, last, st.Exists()
}

// RenderState renders a conversation's state as GET /v1/conversations/{id}
// shows it, with every message. Names, and the titles of linked items, are
// today's; msgPositions gives each message's last event position and last
// the conversation's.
func (r *ReadModels) RenderState(ctx context.Context, st conversation.State, msgPositions map[string]uint64, last uint64) (ConversationDetail, error) {
	d := ConversationDetail{Conversation: Conversation{ID: st.ID, Channel: string(st.Channel), Subject: st.Subject,
		Status: string(st.Status), CreatedAt: Time(st.CreatedAt), UpdatedAt: Time(st.UpdatedAt), Position: Position(last),
		Participants: []Person{}, Links: []Link{}}, Messages: []Message{}}
	if st.CustomerID != "" {
		refs, err := r.customerRefs(ctx, []string{st.CustomerID})
		if err != nil {
			return d, err
		}
		d.Customer = refs[st.CustomerID]
	}
	names, err := r.userNames(ctx, st.Participants)
	if err != nil {
		return d, err
	}
	for _, id := range st.Participants {
		d.Participants = append(d.Participants, Person{ID: id, Name: names[id]})
	}
	if len(st.Links) > 0 {
		in, args := r.in(`id`, st.Links)
		rows, err := r.query(ctx, `SELECT id, kind, title, status FROM items WHERE `+in, args...)
		if err != nil {
			return d, err
		}
		byID := map[string]Link{}
		for rows.Next() {
			var l Link
			if err := rows.Scan(&l.ItemID, &l.Kind, &l.Title, &l.Status); err != nil {
				rows.Close()
				return d, err
			}
			byID[l.ItemID] = l
		}
		rows.Close()
		for _, id := range st.Links {
			if l, ok := byID[id]; ok {
				d.Links = append(d.Links, l)
			} else {
				d.Links = append(d.Links, Link{ItemID: id})
			}
		}
	}
	actors := make([]domain.Actor, len(st.Messages))
	for i, m := range st.Messages {
		actors[i] = m.Author
	}
	authors, err := r.authors(ctx, actors)
	if err != nil {
		return d, err
	}
	for _, m := range st.Messages {
		d.Messages = append(d.Messages, Message{ID: m.ID, ConversationID: st.ID, Author: authors[m.Author], Body: m.Body,
			CreatedAt: Time(m.CreatedAt), Edited: m.Edited, Deleted: m.Deleted, Position: Position(msgPositions[m.ID]), Seq: m.Seq})
	}
	return d, nil
}
