package lease_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helpdesk/messenger/infra/lease"
	"github.com/helpdesk/messenger/infra/postgres/pgtest"
)

func pool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Two replicas contend for one lease: one holds it at a time; when the
// holder's session dies, its job is stopped within the check interval and
// the other replica takes over within seconds. (In that interval both may
// run: the projector's compare-and-set checkpoint keeps that harmless.)
func TestOneHolderAndTakeOver(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type hold struct {
		replica int
		ended   chan struct{}
	}
	var holders atomic.Int32
	held := make(chan hold, 10)
	var wg sync.WaitGroup
	pools := []*pgxpool.Pool{pool(t, url), pool(t, url)}
	for i, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lease.Run(ctx, p, "projector", lease.Config{Retry: 100 * time.Millisecond, Check: 100 * time.Millisecond},
				func(jobCtx context.Context) error {
					holders.Add(1)
					defer holders.Add(-1)
					h := hold{i, make(chan struct{})}
					held <- h
					<-jobCtx.Done()
					close(h.ended)
					return nil
				})
		}()
	}
	first := <-held
	time.Sleep(300 * time.Millisecond)
	if n := holders.Load(); n != 1 {
		t.Fatalf("%d replicas hold the lease", n)
	}
	// Kill the holder's session, as a replica's death would.
	killed := time.Now()
	if _, err := pools[1-first.replica].Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.ended:
		if d := time.Since(killed); d > 2*time.Second {
			t.Errorf("the dead session's job ran on for %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the job of the dead session was not stopped")
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("nobody took the lease over within 10 s")
	}
	time.Sleep(300 * time.Millisecond)
	if n := holders.Load(); n != 1 {
		t.Fatalf("after the take-over %d replicas hold the lease", n)
	}
	cancel()
	wg.Wait()
}

func TestExclusiveWaitsForTheHolder(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := pool(t, url)
	release := make(chan struct{})
	holding := make(chan struct{})
	go lease.Exclusive(ctx, p, "projector", func(context.Context) error { close(holding); <-release; return nil })
	<-holding
	ran := make(chan time.Time, 1)
	go lease.Exclusive(ctx, p, "projector", func(context.Context) error { ran <- time.Now(); return nil })
	time.Sleep(300 * time.Millisecond)
	released := time.Now()
	close(release)
	select {
	case at := <-ran:
		if at.Before(released) {
			t.Fatal("the second job ran while the first held the lease")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second job never ran")
	}
}
