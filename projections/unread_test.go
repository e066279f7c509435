package projections_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/projections"
)

// TestUnreadCountersMatchTheMessages drives random posts, reads and
// deletions by agents and customers, and checks after each step that every
// way the read models count unread messages agrees with counting the
// messages themselves: the counters of /v1/unread, the per-conversation
// count of the inbox, and the snapshots of live streams.
func TestUnreadCountersMatchTheMessages(t *testing.T) {
	for _, e := range engines {
		// Live: each command projected before the next, and checked. Batched:
		// all of them projected together at the end (posts, reads and
		// deletions of one conversation in one transaction), then checked.
		t.Run(e.name+"/live", func(t *testing.T) { unreadCounters(t, e.open(t), true) })
		t.Run(e.name+"/batched", func(t *testing.T) { unreadCounters(t, e.open(t), false) })
	}
}

func unreadCounters(t *testing.T, e engine, live bool) {
	ctx := context.Background()
	rm := projections.NewReadModels(e.reader, e.dialect)
	var waiter commands.Waiter
	counts := &countsRecorder{caughtUp: map[string]int{}}
	if live {
		waiter, _ = startPublishing(t, e, counts)
	} else if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	svc := commands.NewService(e.store, rm, waiter, commands.Config{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.EnsureAdmin(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	admin := directory.Principal{Kind: domain.ActorUser, ID: commands.BootstrapAdminID, Role: directory.Admin, Support: true}
	var agents, customers []directory.Principal
	for i := range 3 {
		nu, err := svc.CreateUser(ctx, admin, fmt.Sprintf("Agent %d", i), fmt.Sprintf("a%d@x.test", i), directory.Agent, i < 2)
		must(err)
		agents = append(agents, directory.Principal{Kind: domain.ActorUser, ID: nu.ID, Role: directory.Agent, Support: i < 2})
	}
	type conv struct {
		id       string
		customer directory.Principal
		msgs     []string
	}
	var convs []*conv
	for i := range 4 {
		nu, err := svc.RegisterCustomer(ctx, fmt.Sprintf("C%d", i), "")
		must(err)
		c := directory.Principal{Kind: domain.ActorCustomer, ID: nu.ID}
		customers = append(customers, c)
		id, _, err := svc.StartConversation(ctx, c, "", "hi", nil)
		must(err)
		convs = append(convs, &conv{id: id, customer: c})
	}
	if !live { // starting a conversation with teammates asks the read models whether they exist
		setup := projections.NewProjector(e.writer, e.dialect, e.store, nil, projections.Config{})
		must(setup.Load(ctx))
		must(setup.CatchUp(ctx))
	}
	internal, _, err := svc.StartConversation(ctx, agents[2], "", "team", []string{agents[0].ID})
	must(err)
	rnd := rand.New(rand.NewPCG(1, 2))
	staff := append([]directory.Principal{admin}, agents...)
	check := func(step int) {
		t.Helper()
		if !live && step <= 60 {
			return // checked once all is projected
		}
		for _, p := range append(append([]directory.Principal{}, staff...), customers...) {
			wantCustomers, wantMine := 0, 0
			for _, c := range append(convs, &conv{id: internal}) {
				snap, ok, err := rm.Snapshot(ctx, c.id)
				must(err)
				if !ok || !snap.CanSee(p) {
					continue
				}
				n := bruteUnread(t, e, c.id, p)
				if got := snap.Unread(p); got != n {
					t.Fatalf("step %d: snapshot unread of %s for %s = %d, want %d", step, c.id, p.ID, got, n)
				}
				if got, err := rm.UnreadIn(ctx, p, c.id); err != nil || got != n {
					t.Fatalf("step %d: UnreadIn of %s for %s = %d (%v), want %d", step, c.id, p.ID, got, err, n)
				}
				if n > 0 && snap.LiveChat() && p.SeesCustomers() {
					wantCustomers++
				}
				if n > 0 && snap.Mine(p) {
					wantMine++
				}
			}
			if !p.IsStaff() {
				continue
			}
			gotC, gotM, err := rm.Unread(ctx, p)
			must(err)
			if gotC != wantCustomers || gotM != wantMine {
				t.Fatalf("step %d: Unread(%s) = customers %d mine %d, want %d and %d", step, p.ID, gotC, gotM, wantCustomers, wantMine)
			}
			// The projector publishes just after the commit that the
			// command waited for.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
				got, err := counts.customers(p)
				if err == nil && got == gotC {
					break
				}
				if err != nil || time.Now().After(deadline) {
					t.Fatalf("step %d: the published counters give %s customers %d (%v), want %d", step, p.ID, got, err, gotC)
				}
			}
			u, err := rm.UnreadState(ctx, p)
			must(err)
			if u.LiveChats-u.CaughtUp != wantCustomers || len(u.Mine) != wantMine {
				t.Fatalf("step %d: UnreadState(%s) = %d-%d customers and %d ids, want %d and %d", step, p.ID, u.LiveChats, u.CaughtUp, len(u.Mine), wantCustomers, wantMine)
			}
		}
	}
	check(0)
	for step := 1; step <= 60; step++ {
		c := convs[rnd.IntN(len(convs))]
		switch op := rnd.IntN(10); {
		case op < 4: // the customer writes
			mid, _, err := svc.PostMessage(ctx, c.customer, c.id, "customer says", "")
			must(err)
			c.msgs = append(c.msgs, mid)
		case op < 6: // a support agent replies
			mid, _, err := svc.PostMessage(ctx, staff[rnd.IntN(3)], c.id, "agent says", "")
			must(err)
			c.msgs = append(c.msgs, mid)
		case op < 8: // someone reads
			readers := append([]directory.Principal{c.customer}, staff[:3]...)
			_, err := svc.MarkRead(ctx, readers[rnd.IntN(len(readers))], c.id)
			must(err)
		default: // the customer deletes one of the messages (their own or not: as admin then)
			if len(c.msgs) == 0 {
				continue
			}
			mid := c.msgs[len(c.msgs)-1-rnd.IntN(min(2, len(c.msgs)))]
			if _, err := svc.DeleteMessage(ctx, admin, c.id, mid); err != nil {
				t.Fatal(err)
			}
		}
		check(step)
	}
	if !live {
		// The batched projection publishes the counters it moved, which
		// holds every staff reader's: none has read or written before.
		proj, _ := startPublishing(t, e, counts)
		recs, err := e.store.ReadAll(ctx, 0, 100_000)
		must(err)
		must(proj.WaitFor(ctx, recs[len(recs)-1].Position))
		check(61)
	}
	// Customers never see the customers section, whose counts are kept for
	// staff only: none is written, none published.
	var kept int
	must(e.reader.QueryRow(`SELECT COUNT(*) FROM caught_up WHERE reader LIKE 'customer:%'`).Scan(&kept))
	if kept != 0 {
		t.Errorf("caught_up holds %d customers' rows", kept)
	}
	counts.mu.Lock()
	for reader := range counts.caughtUp {
		if strings.HasPrefix(reader, "customer:") {
			t.Errorf("the counts published hold customer %s", reader)
		}
	}
	counts.mu.Unlock()
}

// bruteUnread counts, message by message, those of conv that p did not
// write, that are not deleted, after p's read mark.
func bruteUnread(t *testing.T, e engine, conv string, p directory.Principal) int {
	t.Helper()
	var n int
	err := e.reader.QueryRow(e.dialect.Rebind(`SELECT COUNT(*) FROM messages m WHERE m.conversation_id = ? AND m.deleted = 0
		AND m.seq > COALESCE((SELECT r.seq FROM reads r WHERE r.conversation_id = ? AND r.reader = ?), 0)
		AND NOT (m.author_kind = ? AND m.author_id = ?)`), conv, conv, p.Actor().Key(), string(p.Kind), p.ID).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// countsRecorder is a Publisher that keeps the unread counters of the
// customers section as the projector publishes them, the way a live stream
// does, and checks that they come first in their batch.
type countsRecorder struct {
	mu        sync.Mutex
	liveChats int
	caughtUp  map[string]int
	err       error
}

func (r *countsRecorder) Publish(_ context.Context, changes []projections.Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ch := range changes {
		if ch.Kind != projections.CountsChanged {
			continue
		}
		switch {
		case i != 0:
			r.err = fmt.Errorf("counters published as change %d of %d, want first", i, len(changes))
		case len(changes) > 1 && ch.Position != changes[1].Position:
			r.err = fmt.Errorf("counters at position %d, the batch's first change at %d", ch.Position, changes[1].Position)
		case ch.Counts == nil:
			r.err = fmt.Errorf("counters change without counts")
		default:
			r.liveChats = ch.Counts.LiveChats
			maps.Copy(r.caughtUp, ch.Counts.CaughtUp)
		}
	}
	return nil
}

// customers returns p's unread count of the customers section, from the
// counters published.
func (r *countsRecorder) customers(p directory.Principal) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !p.SeesCustomers() {
		return 0, r.err
	}
	return r.liveChats - r.caughtUp[p.Actor().Key()], r.err
}
