package projections_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/projections"
)

// settingDialect is PostgreSQL's dialect, asking the server, after each
// round trip that begins a transaction, how it plans prepared statements
// in that transaction.
type settingDialect struct {
	readmodel.Postgres
	mu    sync.Mutex
	modes []string
}

func (d *settingDialect) Send(ctx context.Context, conn *sql.Conn, stmts []projections.Statement) (int64, error) {
	if len(stmts) < 2 || stmts[0].Query != `BEGIN` {
		return d.Postgres.Send(ctx, conn, stmts)
	}
	// Asked before the last statement, whose count Send returns, and
	// before COMMIT if the last is that.
	var mode string
	ask := projections.Statement{Query: `SELECT current_setting('plan_cache_mode')`, Read: func(scan func(...any) error) error {
		return scan(&mode)
	}}
	last := len(stmts) - 1
	n, err := d.Postgres.Send(ctx, conn, append(append(stmts[:last:last], ask), stmts[last]))
	d.mu.Lock()
	d.modes = append(d.modes, mode)
	d.mu.Unlock()
	return n, err
}

// TestRebuildPlansEachBatch: a rebuild's tables grow from nothing, so the
// server must plan its statements for each batch, not run the generic plan
// made for the first ones (the members' update then read the whole table
// at every batch, quadratic in the log's length). The live projector keeps
// the server's choice: its tables change slowly, and planning its small
// batches anew cost more than it won.
func TestRebuildPlansEachBatch(t *testing.T) {
	e := postgresEngine(t)
	w := build(t, e)
	w.stop()
	d := &settingDialect{}
	if err := projections.Rebuild(context.Background(), e.writer, d, e.store, nil); err != nil {
		t.Fatal(err)
	}
	if len(d.modes) == 0 {
		t.Fatal("no transaction seen")
	}
	for _, mode := range d.modes {
		// The batch's and its search documents' transactions.
		if mode != "force_custom_plan" {
			t.Errorf("a rebuild's transaction plans with %q", mode)
		}
	}
	// The live projector, from the log's start again.
	if err := projections.Drop(context.Background(), e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	if _, err := projections.Migrate(context.Background(), e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	live := &settingDialect{}
	p := projections.NewProjector(e.writer, live, e.store, nil, projections.Config{})
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Step(context.Background()); err != nil || n == 0 {
		t.Fatalf("live step: %d events, %v", n, err)
	}
	if len(live.modes) == 0 {
		t.Fatal("no live transaction seen")
	}
	for _, mode := range live.modes {
		if mode != "auto" {
			t.Errorf("the live projector's transaction plans with %q", mode)
		}
	}
}

// plansDialect is PostgreSQL's dialect, asking the server, in each live
// transaction before its last statement, how often it planned the
// members' update, kept prepared on that connection, anew and how often
// it ran the plan it keeps.
type plansDialect struct {
	readmodel.Postgres
	mu              sync.Mutex
	generic, custom int64
}

func (d *plansDialect) Send(ctx context.Context, conn *sql.Conn, stmts []projections.Statement) (int64, error) {
	if len(stmts) < 2 || stmts[0].Query != `BEGIN` {
		return d.Postgres.Send(ctx, conn, stmts)
	}
	var generic, custom int64
	ask := projections.Statement{Query: `SELECT COALESCE(sum(generic_plans), 0), COALESCE(sum(custom_plans), 0)
		FROM pg_prepared_statements WHERE statement LIKE 'UPDATE members SET%'`, Read: func(scan func(...any) error) error {
		return scan(&generic, &custom)
	}}
	last := len(stmts) - 1
	n, err := d.Postgres.Send(ctx, conn, append(append(stmts[:last:last], ask), stmts[last]))
	d.mu.Lock()
	d.generic, d.custom = generic, custom
	d.mu.Unlock()
	return n, err
}

// TestLiveMembersUpdateKeepsItsPlan: the live projector's batches are
// mostly a few conversations, and the server weighed the plan it keeps for
// the members' update, made for the ten rows it guesses an array holds,
// against plans for those few: it planned the update anew at nearly every
// batch, which took as long as running it. Bounded by a LIMIT it cannot
// see, the kept plan is made for one row (an index lookup each, right at
// any size), and the server runs it from the sixth batch.
func TestLiveMembersUpdateKeepsItsPlan(t *testing.T) {
	e := postgresEngine(t)
	e.writer.SetMaxOpenConns(1) // one connection, whose prepared statements the server lists
	const convs = 20
	seedLog(t, e, convs, 2)
	ctx := context.Background()
	if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	d := &plansDialect{}
	proj := projections.NewProjector(e.writer, d, e.store, nil, projections.Config{})
	if err := proj.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	for n := range 24 {
		// One to three conversations a batch, as a live batch mostly is.
		for k := range n%3 + 1 {
			c := (n*3 + k) % convs
			at = at.Add(time.Millisecond)
			cust := domain.Actor{Kind: domain.ActorCustomer, ID: fmt.Sprintf("cust-%d", c)}
			ev := domain.Pending{EventID: fmt.Sprintf("00000000-0000-7000-b000-%012d", n*3+k), Event: conversation.MessagePosted{
				Meta: domain.Meta{At: at, Actor: cust}, MessageID: fmt.Sprintf("kept-%d-%d", n, k), Body: "is my order there yet?"}}
			if _, err := e.store.Append(ctx, conversation.Stream(fmt.Sprintf("conv-%06d", c)), domain.AnyVersion, []domain.Pending{ev}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := proj.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Counted before each batch's update: 23 runs seen, the first five
	// planned anew whatever the plans.
	if d.generic+d.custom < 20 {
		t.Fatalf("the members' update ran %d times on the one connection, want 23", d.generic+d.custom)
	}
	if d.custom > 6 {
		t.Errorf("the members' update was planned anew %d times of %d runs, its kept plan run %d times", d.custom, d.generic+d.custom, d.generic)
	}
}
