package projections_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/projections"
)

// hostileTexts are what a client may send that SQL text must not mistake
// for its own: on PostgreSQL the projector writes the values of a batch's
// rows into array literals (see Bulker).
var hostileTexts = []string{
	`it's`, `''`, `'); DROP TABLE messages; --`, `back\slash \' \\'`, `$1 $2 ? ?? $$ $tag$ x $tag$`,
	`/* open comment`, `-- line comment`, "semi;colon;\n;", `E'\x41'`, `U&'\0041'`, "tab\tnew\nline\r",
	`"double" "quotes"`, `Ångström ünïcødé 日本語 🙂`, strings.Repeat("'", 199), `-1`, `--1`, "a\u2028b\u2029c",
	// Array literals, as PostgreSQL's bulk rows carry them.
	`{"x","y"}`, `NULL`, `\"`, `}{,`, "  spaced  ",
}

// TestHostileTextsRoundTrip projects messages and subjects made of
// hostileTexts on each engine and reads them back unchanged.
// On PostgreSQL, also with the rows copied (see Copier).
func TestHostileTextsRoundTrip(t *testing.T) {
	engines := map[string]func(testing.TB) engine{"sqlite": sqliteEngine, "postgres": postgresEngine, "postgres-copying": postgresEngine}
	for name, open := range engines {
		t.Run(name, func(t *testing.T) {
			if name == "postgres-copying" {
				t.Cleanup(projections.CopyAll())
			}
			e := open(t)
			ctx := context.Background()
			proj := project(t, e)
			rm := projections.NewReadModels(e.reader, e.dialect)
			svc := commands.NewService(e.store, rm, proj, commands.Config{})
			cust, err := svc.RegisterCustomer(ctx, hostileTexts[0], "x@example.com")
			if err != nil {
				t.Fatal(err)
			}
			p, _, ok, err := rm.Principal(ctx, commands.HashToken(cust.Token))
			if err != nil || !ok {
				t.Fatalf("customer not found: %v", err)
			}
			if p.Name != hostileTexts[0] {
				t.Errorf("customer name %q, want %q", p.Name, hostileTexts[0])
			}
			for _, text := range hostileTexts {
				subject := strings.Join(strings.Fields(text), " ") // one line
				conv, _, err := svc.StartConversation(ctx, p, subject, text, nil)
				if err != nil {
					t.Fatalf("start %q: %v", text, err)
				}
				if _, _, err := svc.PostMessage(ctx, p, conv, "second: "+text, ""); err != nil {
					t.Fatalf("post %q: %v", text, err)
				}
				c, ok, err := rm.Conversation(ctx, conv)
				if err != nil || !ok {
					t.Fatalf("conversation of %q: %v", text, err)
				}
				if c.Subject != subject {
					t.Errorf("subject %q, want %q", c.Subject, subject)
				}
				msgs, _, err := rm.Messages(ctx, conv, 10, "")
				if err != nil || len(msgs) != 2 {
					t.Fatalf("messages of %q: %d, %v", text, len(msgs), err)
				}
				if msgs[1].Body != "second: "+text || msgs[1].Author.Name != hostileTexts[0] {
					t.Errorf("message %q by %q, want %q by %q", msgs[1].Body, msgs[1].Author.Name, "second: "+text, hostileTexts[0])
				}
			}
			// The tables are all there, and the checkpoint where it should be.
			head, err := e.store.ReadAll(ctx, 0, 10_000)
			if err != nil {
				t.Fatal(err)
			}
			if got := proj.Applied(); got != head[len(head)-1].Position {
				t.Errorf("applied %d, log head %d", got, head[len(head)-1].Position)
			}
			var n int
			if err := e.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages`).Scan(&n); err != nil || n != 2*len(hostileTexts) {
				t.Errorf("%d messages (%v), want %d", n, err, 2*len(hostileTexts))
			}
		})
	}
}

// TestProjectorVacuumsOnPostgres: the projector vacuums the tables every
// post rewrites by itself (this machine's PostgreSQL runs without
// autovacuum, as a busy one may lag behind), and empties the search
// index's pending list, which only an insert would otherwise merge, once
// it holds 4 MB.
func TestProjectorVacuumsOnPostgres(t *testing.T) {
	e := postgresEngine(t)
	ctx := context.Background()
	if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	if _, err := e.writer.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS pgstattuple`); err != nil {
		t.Fatal(err)
	}
	proj := projections.NewProjector(e.writer, e.dialect, e.store, nil, projections.Config{MaintainEvery: 1,
		OnError: func(err error) { t.Error(err) }})
	if err := proj.Load(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { proj.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	rm := projections.NewReadModels(e.reader, e.dialect)
	svc := commands.NewService(e.store, rm, proj, commands.Config{})
	cust, err := svc.RegisterCustomer(ctx, "Vic", "vic@example.com")
	if err != nil {
		t.Fatal(err)
	}
	p, _, _, err := rm.Principal(ctx, commands.HashToken(cust.Token))
	if err != nil {
		t.Fatal(err)
	}
	conv, _, err := svc.StartConversation(ctx, p, "Bloat", "first", nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	pending, emptied := 0, false
	for i := 0; ; i++ {
		if _, _, err := svc.PostMessage(ctx, p, conv, fmt.Sprintf("post %d", i), ""); err != nil {
			t.Fatal(err)
		}
		var vacuums, now int
		if err := e.reader.QueryRowContext(ctx, `SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'members'`).Scan(&vacuums); err != nil {
			t.Fatal(err)
		}
		if err := e.reader.QueryRowContext(ctx, `SELECT pending_tuples FROM pgstatginindex('search_docs_tsv')`).Scan(&now); err != nil {
			t.Fatal(err)
		}
		// Each post adds to the list; it shrinks only when emptied.
		emptied = emptied || now < pending
		pending = now
		if vacuums > 0 && emptied {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d posts: members vacuumed %d times, the search index's pending list emptied: %v", i+1, vacuums, emptied)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSearchFollowsEditsAndDeletes: a search finds a message's words as
// they stand after edits and deletions, whether they were projected one by
// one or in one batch.
func TestSearchFollowsEditsAndDeletes(t *testing.T) {
	for name, open := range map[string]func(testing.TB) engine{"sqlite": sqliteEngine, "postgres": postgresEngine} {
		for _, live := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/live=%v", name, live), func(t *testing.T) {
				e := open(t)
				ctx := context.Background()
				rm := projections.NewReadModels(e.reader, e.dialect)
				var proj *projections.Projector
				var waiter commands.Waiter
				if live {
					proj = project(t, e)
					waiter = proj
				}
				svc := commands.NewService(e.store, rm, waiter, commands.Config{})
				must := func(err error) {
					t.Helper()
					if err != nil {
						t.Fatal(err)
					}
				}
				for i := range 200 { // the conversation's number (its start's position) needs more than 8 bits
					_, err := svc.RegisterCustomer(ctx, fmt.Sprintf("Filler %d", i), "")
					must(err)
				}
				cust, err := svc.RegisterCustomer(ctx, "Wanda", "wanda@example.com")
				must(err)
				p := directory.Principal{Kind: domain.ActorCustomer, ID: cust.ID, Name: "Wanda"}
				conv, _, err := svc.StartConversation(ctx, p, "Quokka question", "first zebra", nil)
				must(err)
				edited, _, err := svc.PostMessage(ctx, p, conv, "second giraffe", "")
				must(err)
				_, err = svc.EditMessage(ctx, p, conv, edited, "second okapi")
				must(err)
				deleted, _, err := svc.PostMessage(ctx, p, conv, "third walrus", "")
				must(err)
				_, err = svc.DeleteMessage(ctx, p, conv, deleted)
				must(err)
				if !live {
					proj = project(t, e) // the whole log in one batch
					recs, err := e.store.ReadAll(ctx, 0, 1000)
					must(err)
					must(proj.WaitFor(ctx, recs[len(recs)-1].Position))
				}
				for term, want := range map[string]bool{"zebra": true, "giraffe": false, "okapi": true, "walrus": false,
					"quokka": true, "wanda": true, "wanda@example.com": true, "second okapi": true, "nothing": false} {
					rows, _, err := rm.Inbox(ctx, p, projections.InboxQuery{Search: term, Limit: 10})
					must(err)
					if got := len(rows) == 1; got != want {
						t.Errorf("search %q found %d conversations, want found=%v", term, len(rows), want)
					}
				}
			})
		}
	}
}

// TestCatchUpStopsAtAFailedCommit moves the checkpoint behind the
// projector's back once its second batch has committed, while the third
// commits and the fourth is applied in memory: CatchUp returns the third's
// error, and neither the third nor the fourth commits, nor are their
// changes published. On PostgreSQL the checkpoint travels with the
// batch's rows, the counters' queries of a publishing projector and the
// COMMIT, in one round trip, and must fail the COMMIT.
func TestCatchUpStopsAtAFailedCommit(t *testing.T) {
	for name, open := range map[string]func(testing.TB) engine{"sqlite": sqliteEngine, "postgres": postgresEngine} {
		for _, publish := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/publish=%v", name, publish), func(t *testing.T) {
				e := open(t)
				ctx := context.Background()
				seedLog(t, e, 20, 4)
				if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
					t.Fatal(err)
				}
				const moved = 1 << 40
				batches := 0
				var committed uint64
				var pub projections.Publisher
				rec := &lastPublished{}
				if publish {
					pub = rec
				}
				p := projections.NewProjector(e.writer, e.dialect, e.store, pub, projections.Config{BatchSize: 10,
					OnBatch: func(_ int, pos uint64) {
						batches++
						if batches == 2 {
							committed = pos
							if _, err := e.writer.Exec(e.dialect.Rebind(`UPDATE checkpoints SET position = ? WHERE name = ?`), moved, projections.Name); err != nil {
								t.Error(err)
							}
						}
					}})
				if err := p.Load(ctx); err != nil {
					t.Fatal(err)
				}
				err := p.CatchUp(ctx)
				if err == nil || !strings.Contains(err.Error(), "checkpoint moved") {
					t.Fatalf("CatchUp = %v, want the third batch's conflict on the checkpoint", err)
				}
				if batches != 2 {
					t.Errorf("%d batches committed, want 2", batches)
				}
				if pos, err := projections.Checkpoint(ctx, e.writer, e.dialect); err != nil || pos != moved {
					t.Errorf("checkpoint %d, %v; want %d, where it was moved", pos, err, uint64(moved))
				}
				if p.Applied() != moved {
					t.Errorf("Applied() = %d, want %d, as read back", p.Applied(), uint64(moved))
				}
				if publish && (rec.last == 0 || rec.last > committed) {
					t.Errorf("changes published up to %d, want some, none past the second batch's %d", rec.last, committed)
				}
			})
		}
	}
}

// lastPublished is a Publisher that keeps the position of the last change.
type lastPublished struct{ last uint64 }

func (l *lastPublished) Publish(_ context.Context, changes []projections.Change) error {
	for _, ch := range changes {
		l.last = max(l.last, ch.Position)
	}
	return nil
}

// TestSplitSearchSurvivesAFailedCommit: with the search documents in their
// own transaction (Config.SplitSearch, as Rebuild does on PostgreSQL), a
// batch whose commit fails after its documents' commit leaves documents
// of events past the checkpoint; applying the batch again rewrites them,
// and the documents end as a projection in one transaction a batch leaves
// them.
//
// The documents are copied (see Copier), as a rebuild's many are: the
// copy again of those already there fails, and statements write them
// instead.
func TestSplitSearchSurvivesAFailedCommit(t *testing.T) {
	t.Cleanup(projections.CopyAll())
	ctx := context.Background()
	e, ref := postgresEngine(t), postgresEngine(t)
	for _, en := range []engine{e, ref} {
		seedLog(t, en, 20, 4)
		if _, err := projections.Migrate(ctx, en.writer, en.dialect); err != nil {
			t.Fatal(err)
		}
	}
	catchUp := func(en engine, cfg projections.Config) error {
		p := projections.NewProjector(en.writer, en.dialect, en.store, nil, cfg)
		if err := p.Load(ctx); err != nil {
			t.Fatal(err)
		}
		return p.CatchUp(ctx)
	}
	const moved = 1 << 40
	var saved uint64
	batches := 0
	err := catchUp(e, projections.Config{BatchSize: 10, SplitSearch: true, OnBatch: func(_ int, pos uint64) {
		if batches++; batches == 2 {
			saved = pos
			if _, err := e.writer.Exec(`UPDATE checkpoints SET position = $1 WHERE name = $2`, moved, projections.Name); err != nil {
				t.Error(err)
			}
		}
	}})
	if err == nil || !strings.Contains(err.Error(), "checkpoint moved") {
		t.Fatalf("CatchUp = %v, want the third batch's conflict on the checkpoint", err)
	}
	var ahead int
	if err := e.writer.QueryRow(`SELECT COUNT(*) FROM search_docs d WHERE (d.id & 16777215) >= 2 AND NOT EXISTS (
		SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id
		WHERE c.num = d.id >> 24 AND m.seq + 1 = (d.id & 16777215))`).Scan(&ahead); err != nil {
		t.Fatal(err)
	}
	if ahead == 0 {
		t.Fatal("no document of the failed batch was committed: the test does not test what it says")
	}
	if _, err := e.writer.Exec(`UPDATE checkpoints SET position = $1 WHERE name = $2`, saved, projections.Name); err != nil {
		t.Fatal(err)
	}
	if err := catchUp(e, projections.Config{BatchSize: 10, SplitSearch: true}); err != nil {
		t.Fatal(err)
	}
	if err := catchUp(ref, projections.Config{BatchSize: 10}); err != nil {
		t.Fatal(err)
	}
	dump := func(en engine) []string {
		rows, err := en.writer.Query(`SELECT id, tsv::text FROM search_docs ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id int64
			var tsv string
			if err := rows.Scan(&id, &tsv); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%d %s", id, tsv))
		}
		return out
	}
	if got, want := dump(e), dump(ref); !slices.Equal(got, want) {
		t.Errorf("search documents after the retry (%d):\n%s\nwant (%d):\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
}
