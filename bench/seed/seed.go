// Package seed fills an event store with a realistic helpdesk: agents (a
// share of them support), customers, live chats with replies and reads,
// some internal threads, closed conversations, tickets linked to some. It
// appends through the store's group-commit path from many goroutines, one
// stream per call, so that the store batches many appends per commit.
package seed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/item"
)

// Spec is the size of the dataset; the zero value is the dataset.
type Spec struct {
	Conversations int     // default 100,000
	Messages      int     // in all, default 1,000,000
	Agents        int     // default 200
	SupportShare  float64 // of agents, default 0.5
	Customers     int     // default 50,000
	Writers       int     // concurrent appenders, default 64
	Seed          uint64  // of the random choices
}

func (s Spec) withDefaults() Spec {
	if s.Conversations <= 0 {
		s.Conversations = 100_000
	}
	if s.Messages <= 0 {
		s.Messages = 10 * s.Conversations
	}
	if s.Agents <= 0 {
		s.Agents = 200
	}
	if s.SupportShare <= 0 {
		s.SupportShare = 0.5
	}
	if s.Customers <= 0 {
		s.Customers = max(1, s.Conversations/2)
	}
	if s.Writers <= 0 {
		s.Writers = 64
	}
	return s
}

// Result says what Run appended.
type Result struct {
	Events   int64
	Agents   []string // user ids; Support[i] tells whether Agents[i] is support
	Support  []bool
	Tokens   map[string]string // user id → bearer token
	Elapsed  time.Duration
	Customer []string
}

var words = strings.Fields(`order refund delivery parcel invoice payment card account password login reset shipping
tracking address return exchange warranty discount coupon subscription cancel upgrade plan billing receipt damaged
missing late early size colour price tax express courier pickup store online app email phone update confirm status
help thanks please urgent question problem issue error working broken slow fast today tomorrow yesterday week month`)

var firstNames = strings.Fields("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent Victor Walter Zoe")

func sentence(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// Run appends the dataset of spec to store, calling progress (if set) with
// the events appended so far, now and then.
func Run(ctx context.Context, store commands.EventStore, spec Spec, progress func(events int64)) (Result, error) {
	spec = spec.withDefaults()
	start := time.Now()
	var events atomic.Int64
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	res := Result{Tokens: map[string]string{}}
	put := func(stream string, evs ...domain.Event) error {
		p := make([]domain.Pending, len(evs))
		for i, e := range evs {
			p[i] = domain.Pending{EventID: commands.NewID(), Event: e}
		}
		if _, err := store.Append(ctx, stream, domain.NoStream, p); err != nil {
			return fmt.Errorf("seed %s: %w", stream, err)
		}
		if n := events.Add(int64(len(evs))); progress != nil && n/5000 != (n-int64(len(evs)))/5000 {
			progress(n)
		}
		return nil
	}
	system := domain.Meta{At: at, Actor: domain.Actor{Kind: domain.ActorSystem, ID: "seed"}}
	for i := range spec.Agents {
		id, token := commands.NewID(), commands.NewToken()
		support := float64(i) < spec.SupportShare*float64(spec.Agents)
		if err := put(directory.UserStream(id), directory.UserCreated{Meta: system, UserID: id,
			Name: fmt.Sprintf("%s Agent%d", firstNames[i%len(firstNames)], i), Email: fmt.Sprintf("agent%d@helpdesk.test", i),
			Role: directory.Agent, Support: support, TokenHash: commands.HashToken(token)}); err != nil {
			return res, err
		}
		res.Agents, res.Support, res.Tokens[id] = append(res.Agents, id), append(res.Support, support), token
	}
	res.Customer = make([]string, spec.Customers)
	// Customers and conversations are appended by Writers goroutines.
	jobs := make(chan func() error, spec.Writers)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range spec.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				if err := job(); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	send := func(job func() error) bool {
		if firstErr.Load() != nil || ctx.Err() != nil {
			return false
		}
		jobs <- job
		return true
	}
	for i := range spec.Customers {
		id := commands.NewID()
		res.Customer[i] = id
		name := fmt.Sprintf("%s Customer%d", firstNames[i%len(firstNames)], i)
		if !send(func() error {
			return put(directory.CustomerStream(id), directory.CustomerRegistered{Meta: domain.Meta{At: at, Actor: domain.Actor{Kind: domain.ActorCustomer, ID: id}},
				CustomerID: id, Name: name, Email: fmt.Sprintf("customer%d@example.com", i), TokenHash: commands.HashToken(id)})
		}) {
			break
		}
	}
	var supportAgents []string
	for i, id := range res.Agents {
		if res.Support[i] {
			supportAgents = append(supportAgents, id)
		}
	}
	if len(supportAgents) == 0 {
		supportAgents = res.Agents
	}
	perConv := max(1, spec.Messages/spec.Conversations)
	for c := range spec.Conversations {
		r := rand.New(rand.NewPCG(spec.Seed, uint64(c)))
		if !send(func() error { return conversationEvents(r, c, at, perConv, res, supportAgents, put) }) {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return res, err
	}
	res.Events, res.Elapsed = events.Load(), time.Since(start)
	if progress != nil {
		progress(res.Events)
	}
	return res, ctx.Err()
}

// conversationEvents appends conversation c: a live chat of a customer
// (nine in ten) or an internal thread, msgs messages, reads, maybe a close,
// maybe a linked ticket.
func conversationEvents(r *rand.Rand, c int, day time.Time, msgs int, res Result, support []string,
	put func(string, ...domain.Event) error) error {
	at := day.Add(time.Duration(c) * 20 * time.Second)
	tick := func() time.Time { at = at.Add(time.Duration(1+r.IntN(90)) * time.Second); return at }
	id := commands.NewID()
	agent := domain.Actor{Kind: domain.ActorUser, ID: support[r.IntN(len(support))]}
	var evs []domain.Event
	var author domain.Actor
	livechat := r.IntN(10) > 0
	if livechat {
		author = domain.Actor{Kind: domain.ActorCustomer, ID: res.Customer[r.IntN(len(res.Customer))]}
		evs = append(evs, conversation.Started{Meta: domain.Meta{At: tick(), Actor: author}, ConversationID: id,
			Channel: conversation.LiveChat, Subject: sentence(r, 2+r.IntN(4)), CustomerID: author.ID})
	} else {
		author = domain.Actor{Kind: domain.ActorUser, ID: res.Agents[r.IntN(len(res.Agents))]}
		evs = append(evs, conversation.Started{Meta: domain.Meta{At: tick(), Actor: author}, ConversationID: id,
			Channel: conversation.Internal, Subject: sentence(r, 3), Participants: []string{author.ID, agent.ID}})
	}
	for m := range msgs {
		who := author
		if m%2 == 1 {
			who = agent
		}
		evs = append(evs, conversation.MessagePosted{Meta: domain.Meta{At: tick(), Actor: who}, MessageID: commands.NewID(),
			Body: sentence(r, 4+r.IntN(20))})
		if m%2 == 1 && r.IntN(2) == 0 {
			evs = append(evs, conversation.Read{Meta: domain.Meta{At: tick(), Actor: author}, UpToSeq: m + 1})
		}
	}
	if r.IntN(3) == 0 {
		evs = append(evs, conversation.Closed{Meta: domain.Meta{At: tick(), Actor: agent}})
	}
	if livechat && r.IntN(10) == 0 {
		ticket := commands.NewID()
		if err := put(item.Stream(ticket), item.Created{Meta: domain.Meta{At: at, Actor: agent}, ItemID: ticket, Kind: item.Ticket,
			Title: sentence(r, 4), RequesterID: author.ID, SourceConversationID: id,
			Assignees: []string{res.Agents[r.IntN(len(res.Agents))]}}); err != nil {
			return err
		}
		evs = append(evs, conversation.ItemLinked{Meta: domain.Meta{At: tick(), Actor: agent}, ItemID: ticket})
	}
	return put(conversation.Stream(id), evs...)
}
