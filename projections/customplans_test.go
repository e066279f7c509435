package projections_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

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
