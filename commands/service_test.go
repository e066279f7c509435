package commands_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/infra/sqlite"
)

// everyone is an Access that lets everyone see everything.
type everyone struct{}

func (everyone) CanSee(context.Context, directory.Principal, string) (bool, error) { return true, nil }
func (everyone) MissingUsers(context.Context, []string) ([]string, error)          { return nil, nil }
func (everyone) EmailTaken(context.Context, string) (bool, error)                  { return false, nil }

func store(t *testing.T) *sqlite.EventStore {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := sqlite.NewEventStore(db, sqlite.EventStoreConfig{})
	t.Cleanup(func() { s.Close(); db.Close() })
	return s
}

var (
	customer = directory.Principal{Kind: domain.ActorCustomer, ID: "c1"}
	agent    = directory.Principal{Kind: domain.ActorUser, ID: "u1", Role: directory.Agent, Support: true}
)

func statusOf(t *testing.T, s *sqlite.EventStore, id string) (conversation.State, int) {
	t.Helper()
	recs, err := s.ReadStream(context.Background(), conversation.Stream(id))
	if err != nil {
		t.Fatal(err)
	}
	var st conversation.State
	for i, r := range recs {
		if r.Version != int64(i+1) {
			t.Fatalf("version %d at index %d", r.Version, i)
		}
		st = conversation.Evolve(st, r.Event.(conversation.Event))
	}
	return st, len(recs)
}

// Two services on one store stand for two replicas: each keeps the states
// it has seen, which the other makes stale. Nothing is lost or decided on a
// stale state.
func TestKeptStatesGoStaleSafely(t *testing.T) {
	ctx := context.Background()
	s := store(t)
	a := commands.NewService(s, everyone{}, nil, commands.Config{})
	b := commands.NewService(s, everyone{}, nil, commands.Config{})
	id, _, err := a.StartConversation(ctx, customer, "", "hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.PostMessage(ctx, agent, id, "from b", ""); err != nil { // b now keeps the state
		t.Fatal(err)
	}
	if _, _, err := a.PostMessage(ctx, customer, id, "from a", ""); err != nil { // a's kept state is stale: conflict, reread
		t.Fatal(err)
	}
	if _, err := a.Close(ctx, agent, id); err != nil {
		t.Fatal(err)
	}
	// b still believes the conversation open; closing it again must change nothing.
	res, err := b.Close(ctx, agent, id)
	if err != nil || res.Appended {
		t.Fatalf("closing a closed conversation through a stale state: appended %v, %v", res.Appended, err)
	}
	if _, err := a.Reopen(ctx, agent, id); err != nil {
		t.Fatal(err)
	}
	// b now believes it closed (it read it for the close above), but it is open again.
	res, err = b.Close(ctx, agent, id)
	if err != nil || !res.Appended {
		t.Fatalf("closing a reopened conversation through a stale state: appended %v, %v", res.Appended, err)
	}
	st, n := statusOf(t, s, id)
	if st.Status != conversation.StatusClosed || len(st.Messages) != 3 || n != 7 {
		t.Fatalf("status %s, %d messages, %d events; want closed, 3, 7", st.Status, len(st.Messages), n)
	}
	// A message b has not seen can be edited through b.
	mid, _, err := a.PostMessage(ctx, customer, id, "typo", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.EditMessage(ctx, customer, id, mid, "fixed"); err != nil {
		t.Fatalf("editing a message the kept state lacks: %v", err)
	}
}

// Concurrent posts to one conversation through several services all land,
// with dense versions, and retried client ids land once.
func TestConcurrentPostsThroughKeptStates(t *testing.T) {
	ctx := context.Background()
	s := store(t)
	svcs := []*commands.Service{
		commands.NewService(s, everyone{}, nil, commands.Config{}),
		commands.NewService(s, everyone{}, nil, commands.Config{}),
	}
	id, _, err := svcs[0].StartConversation(ctx, customer, "", "hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ids := make(chan string, 200)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				svc := svcs[(w+i)%2]
				cid := string(rune('a'+w)) + string(rune('a'+i))
				for range 2 { // each post twice: the retry must return the same message
					mid, _, err := svc.PostMessage(ctx, customer, id, "m", cid)
					if err != nil {
						t.Error(err)
						return
					}
					ids <- cid + "=" + mid
				}
			}
		}()
	}
	wg.Wait()
	close(ids)
	byClient := map[string]string{}
	for pair := range ids {
		cid, mid := pair[:2], pair[3:]
		if prev, ok := byClient[cid]; ok && prev != mid {
			t.Fatalf("client id %s answered with %s and %s", cid, prev, mid)
		}
		byClient[cid] = mid
	}
	st, _ := statusOf(t, s, id)
	if len(st.Messages) != 81 {
		t.Fatalf("%d messages, want 81", len(st.Messages))
	}
}

// slowWaiter is a Waiter whose read models apply everything after delay.
type slowWaiter struct{ delay time.Duration }

func (w slowWaiter) WaitFor(ctx context.Context, _ uint64) error {
	select {
	case <-time.After(w.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Observe is told of each write that appended, once, with the wait for the
// read models apart from the append; a write that appends nothing is not
// counted.
func TestObserveSplitsAppendFromApply(t *testing.T) {
	ctx := context.Background()
	const delay = 200 * time.Millisecond
	type stage struct{ appended, applied time.Duration }
	var seen []stage
	svc := commands.NewService(store(t), everyone{}, slowWaiter{delay}, commands.Config{
		Observe: func(appended, applied time.Duration) { seen = append(seen, stage{appended, applied}) },
	})
	id, _, err := svc.StartConversation(ctx, customer, "", "hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Close(ctx, agent, id); err != nil {
		t.Fatal(err)
	}
	if res, err := svc.Close(ctx, agent, id); err != nil || res.Appended { // nothing to do
		t.Fatalf("closing twice: appended %v, %v", res.Appended, err)
	}
	if len(seen) != 2 {
		t.Fatalf("observed %d writes, want 2: %v", len(seen), seen)
	}
	for i, s := range seen {
		if s.applied < delay || s.appended <= 0 || s.appended >= delay {
			t.Errorf("write %d: append %v, apply wait %v; want the wait ≥ %v and the append apart from it", i, s.appended, s.applied, delay)
		}
	}
}

// A conversation's state holds its messages' texts: the states kept between
// commands are bounded by what they hold, not only by their count, and a
// command on a conversation whose state was let go reads it again (a retried
// post is still answered with the message it posted).
func TestKeptStatesBoundedInBytes(t *testing.T) {
	ctx := context.Background()
	s := store(t)
	const budget = 256 << 10
	svc := commands.NewService(s, everyone{}, nil, commands.Config{CachedBytes: budget})
	long := strings.Repeat("x", 9000)
	var ids []string
	var first string
	for i := range 10 { // ten conversations of 45 KB each
		id, _, err := svc.StartConversation(ctx, customer, "", long, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 4 {
			client := ""
			if i == 0 && j == 0 {
				client = "retry-me"
			}
			mid, _, err := svc.PostMessage(ctx, agent, id, long, client)
			if err != nil {
				t.Fatal(err)
			}
			if client != "" {
				first = mid
			}
		}
		ids = append(ids, id)
	}
	if got := svc.CachedBytes(); got > budget || got < budget/2 {
		t.Errorf("the kept states hold %d bytes, want at most the budget, %d, and near it", got, budget)
	}
	mid, _, err := svc.PostMessage(ctx, agent, ids[0], long, "retry-me")
	if err != nil {
		t.Fatal(err)
	}
	st, n := statusOf(t, s, ids[0])
	if mid != first || len(st.Messages) != 5 || n != 6 {
		t.Errorf("a retried post on a state let go: message %s (want %s), %d messages, %d events; want 5 and 6", mid, first, len(st.Messages), n)
	}
	// One state larger than the budget is kept (the one in use), alone.
	big := commands.NewService(s, everyone{}, nil, commands.Config{CachedBytes: 10 << 10})
	if _, _, err := big.PostMessage(ctx, agent, ids[1], "hello", ""); err != nil {
		t.Fatal(err)
	}
	if got := big.CachedBytes(); got < 45000 {
		t.Errorf("the state in use, of 45 KB, holds %d bytes as kept", got)
	}
}
