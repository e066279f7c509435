package projections_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/item"
	"github.com/helpdesk/messenger/infra/postgres"
	"github.com/helpdesk/messenger/infra/postgres/pgtest"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/infra/sqlite"
	"github.com/helpdesk/messenger/projections"
)

// engine is one SQL engine holding the log and the read models.
type engine struct {
	store interface {
		commands.EventStore
		projections.Log
	}
	// cold reads the same log without the store's tail of the newest
	// events: as a rebuild in a process of its own reads it.
	cold           projections.Log
	writer, reader *sql.DB
	dialect        projections.Dialect
}

func sqliteEngine(t testing.TB) engine {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := sqlite.NewEventStore(db, sqlite.EventStoreConfig{})
	cold := sqlite.NewEventStore(db, sqlite.EventStoreConfig{TailSize: -1})
	t.Cleanup(func() { store.Close(); cold.Close(); db.Close() })
	return engine{store: store, cold: cold, writer: db.Writer(), reader: db.Reader(), dialect: readmodel.SQLite{}}
}

func postgresEngine(t testing.TB) engine {
	t.Helper()
	db, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.NewEventStore(db, postgres.EventStoreConfig{})
	cold := postgres.NewEventStore(db, postgres.EventStoreConfig{TailSize: -1})
	t.Cleanup(func() { store.Close(); cold.Close(); db.Close() })
	return engine{store: store, cold: cold, writer: db.SQL(), reader: db.SQL(), dialect: readmodel.Postgres{}}
}

// engines are the engines a test runs on alike, by name.
var engines = []struct {
	name string
	open func(testing.TB) engine
}{{"sqlite", sqliteEngine}, {"postgres", postgresEngine}}

// project migrates e's read models and runs a projector on them until
// the test ends.
func project(t *testing.T, e engine) *projections.Projector {
	t.Helper()
	proj, _ := startProjector(t, e)
	return proj
}

// startProjector is project, with a function that stops the projector
// before the test ends.
func startProjector(t *testing.T, e engine) (*projections.Projector, func()) {
	t.Helper()
	return startPublishing(t, e, nil)
}

// startPublishing is startProjector with a publisher.
func startPublishing(t *testing.T, e engine, pub projections.Publisher) (*projections.Projector, func()) {
	t.Helper()
	ctx := context.Background()
	if _, err := projections.Migrate(ctx, e.writer, e.dialect); err != nil {
		t.Fatal(err)
	}
	proj := projections.NewProjector(e.writer, e.dialect, e.store, pub, projections.Config{})
	if err := proj.Load(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { proj.Run(runCtx); close(done) }()
	var once sync.Once
	halt := func() { once.Do(func() { stop(); <-done }) }
	t.Cleanup(halt)
	return proj, halt
}

// world is a scripted helpdesk, built the same way on any engine.
type world struct {
	stop     func() // stops its projector
	rm       *projections.ReadModels
	people   map[string]directory.Principal
	convs    []string
	items    []string
	customer []string
}

// build runs the same commands, with the same ids and clock, on e.
func build(t *testing.T, e engine) world {
	t.Helper()
	ctx := context.Background()
	proj, stop := startProjector(t, e)
	rm := projections.NewReadModels(e.reader, e.dialect)
	n := 0
	clock := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	svc := commands.NewService(e.store, rm, proj, commands.Config{
		NewID: func() string { n++; return fmt.Sprintf("00000000-0000-7000-8000-%012d", n) },
		Now:   func() time.Time { clock = clock.Add(1500 * time.Millisecond); return clock },
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	w := world{rm: rm, people: map[string]directory.Principal{}, stop: stop}
	_, err := svc.EnsureAdmin(ctx, "admin-token")
	must(err)
	admin := directory.Principal{Kind: domain.ActorUser, ID: commands.BootstrapAdminID, Role: directory.Admin, Support: true}
	w.people["admin"] = admin
	for _, u := range []struct {
		key, name, role string
		support         bool
	}{{"sam", "Sam Support", "agent", true}, {"nora", "Nora Agent", "agent", false}, {"fred", "Fred", "agent", false}, {"ada", "Ada", "auditor", false}} {
		nu, err := svc.CreateUser(ctx, admin, u.name, u.key+"@helpdesk.test", directory.Role(u.role), u.support)
		must(err)
		w.people[u.key] = directory.Principal{Kind: domain.ActorUser, ID: nu.ID, Role: directory.Role(u.role), Support: u.support}
	}
	for i, c := range []struct{ name, email string }{{"Alice Ångström", "alice@example.com"}, {"Bob Builder", "bob@builder.test"}, {"Carol", ""}} {
		nu, err := svc.RegisterCustomer(ctx, c.name, c.email)
		must(err)
		key := fmt.Sprintf("customer%d", i)
		w.people[key] = directory.Principal{Kind: domain.ActorCustomer, ID: nu.ID}
		w.customer = append(w.customer, key)
	}
	sam, nora, fred := w.people["sam"], w.people["nora"], w.people["fred"]
	subjects := []string{"Refund for order 42", "", "Login trouble: password reset"}
	bodies := []string{"Hello, I need a refund please", "My parcel never arrived, tracking 7731", "I cannot log in since Tuesday"}
	for i, key := range w.customer {
		id, _, err := svc.StartConversation(ctx, w.people[key], subjects[i], bodies[i], nil)
		must(err)
		w.convs = append(w.convs, id)
	}
	internal, _, err := svc.StartConversation(ctx, nora, "Team lunch", "Pizza on Friday?", []string{fred.ID})
	must(err)
	w.convs = append(w.convs, internal)
	_, _, err = svc.PostMessage(ctx, sam, w.convs[0], "Sure, checking the refund now.", "c1")
	must(err)
	_, err = svc.MarkRead(ctx, sam, w.convs[1])
	must(err)
	_, err = svc.Close(ctx, sam, w.convs[0])
	must(err)
	_, _, err = svc.PostMessage(ctx, w.people["customer0"], w.convs[0], "Any news about the refund?", "")
	must(err)
	mid, _, err := svc.PostMessage(ctx, w.people["customer1"], w.convs[1], "Oops, wrong tracking number", "")
	must(err)
	_, err = svc.DeleteMessage(ctx, w.people["customer1"], w.convs[1], mid)
	must(err)
	mid, _, err = svc.PostMessage(ctx, sam, w.convs[2], "Please call our hotline", "")
	must(err)
	_, err = svc.EditMessage(ctx, sam, w.convs[2], mid, "Please call our helpline")
	must(err)
	_, err = svc.Close(ctx, sam, w.convs[2])
	must(err)
	ticket, _, err := svc.CreateItemFrom(ctx, sam, w.convs[0], item.Ticket, "", "")
	must(err)
	_, err = svc.Follow(ctx, sam, ticket, fred.ID)
	must(err)
	task, _, err := svc.CreateItem(ctx, sam, item.Task, "Check carrier", "", []string{nora.ID})
	must(err)
	_, err = svc.Link(ctx, sam, w.convs[1], task)
	must(err)
	// An unlink writes what its batch holds so far: a rebuild, which
	// applies all of this in one batch, then edits and deletes messages it
	// wrote before that flush.
	depot, _, err := svc.PostMessage(ctx, sam, w.convs[1], "The courier says the depot has it", "")
	must(err)
	wrong, _, err := svc.PostMessage(ctx, sam, w.convs[1], "Ignore this: meant for another customer", "")
	must(err)
	_, err = svc.Unlink(ctx, sam, w.convs[1], task)
	must(err)
	_, err = svc.EditMessage(ctx, sam, w.convs[1], depot, "The courier says the Zanzibar depot has it")
	must(err)
	_, err = svc.DeleteMessage(ctx, sam, w.convs[1], wrong)
	must(err)
	_, err = svc.Link(ctx, sam, w.convs[1], task)
	must(err)
	w.items = []string{ticket, task}
	return w
}

// answers asks w's read models a fixed set of questions and renders the
// answers as JSON.
func answers(t *testing.T, w world) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	put := func(key string, v any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		b, _ := json.Marshal(v)
		out[key] = string(b)
	}
	withLast, withCustomer := 0, 0
	searches := []string{"", "refund", "REFUND", "alice@example.com", "ångström", "tracking 7731", "wrong", "pass", "lunch", "42", "nothing-like-this", "helpline", "hotline", "zanzibar", "courier", "ignore", "log", "re", "hel", "c", "Pa"}
	for _, who := range []string{"admin", "sam", "nora", "fred", "ada"} {
		p := w.people[who]
		for _, section := range []projections.Section{projections.Customers, projections.Mine} {
			for _, status := range []string{"open", "closed"} {
				for _, q := range searches {
					rows, next, err := w.rm.Inbox(ctx, p, projections.InboxQuery{Section: section, Status: status, Search: q, Limit: 2})
					key := fmt.Sprintf("inbox/%s/%s/%s/%q", who, section, status, q)
					put(key, []any{rows, next}, err)
					// A page reads its customers and last messages with its
					// rows; one row looks them up: the same row.
					for _, row := range rows {
						one, ok, err := w.rm.InboxRow(ctx, p, row.ID)
						if err != nil || !ok || !reflect.DeepEqual(one, row) {
							t.Errorf("%s: row %+v, but InboxRow gives %+v (%v, %v)", key, row, one, ok, err)
						}
						if row.LastMessage != nil {
							withLast++
						}
						if row.Customer != nil {
							withCustomer++
						}
					}
				}
			}
		}
		c, m, err := w.rm.Unread(ctx, p)
		put("unread/"+who, []int{c, m}, err)
		for _, id := range w.convs {
			ok, err := w.rm.CanSee(ctx, p, id)
			put("cansee/"+who+"/"+id, ok, err)
		}
	}
	for _, key := range w.customer {
		rows, _, err := w.rm.Inbox(ctx, w.people[key], projections.InboxQuery{Limit: 50})
		put("widget/"+key, rows, err)
	}
	for _, id := range w.convs {
		c, _, err := w.rm.Conversation(ctx, id)
		put("conversation/"+id, c, err)
		msgs, next, err := w.rm.Messages(ctx, id, 2, "")
		put("messages/"+id, []any{msgs, next}, err)
	}
	for _, id := range w.items {
		it, _, err := w.rm.Item(ctx, id)
		put("item/"+id, it, err)
	}
	if withLast == 0 || withCustomer == 0 {
		t.Errorf("inbox rows with a last message: %d, with a customer: %d; want some of each", withLast, withCustomer)
	}
	return out
}

// TestEnginesAnswerAlike runs one scripted helpdesk on SQLite and on
// PostgreSQL and asks both the same questions: inbox sections, statuses,
// searches, pages, unread counts, visibility, conversations and items.
func TestEnginesAnswerAlike(t *testing.T) {
	lite := answers(t, build(t, sqliteEngine(t)))
	pg := answers(t, build(t, postgresEngine(t)))
	if len(lite) != len(pg) {
		t.Fatalf("%d answers on SQLite, %d on PostgreSQL", len(lite), len(pg))
	}
	for key, want := range lite {
		if got := pg[key]; got != want {
			t.Errorf("%s:\nPostgreSQL %s\nSQLite     %s", key, got, want)
		}
	}
	// The questions are not trivially empty: searches find what they should.
	if lite[`inbox/sam/customers/open/"alice@example.com"`] == `[[],""]` || lite[`inbox/sam/customers/closed/"pass"`] == `[[],""]` ||
		lite[`inbox/sam/customers/closed/"helpline"`] == `[[],""]` || lite[`inbox/sam/customers/closed/"hotline"`] != `[[],""]` {
		t.Errorf("searches found nothing: %v", lite[`inbox/sam/customers/open/"alice@example.com"`])
	}
}

// TestSQLiteSearchWalksAlike asks the questions of TestEnginesAnswerAlike
// of SQLite with every search word taken as common, so that searches walk
// the conversations in the page's order: the answers must not change.
func TestSQLiteSearchWalksAlike(t *testing.T) {
	starting := answers(t, build(t, sqliteEngine(t)))
	walking := sqliteEngine(t)
	walking.dialect = readmodel.SQLite{SearchWalkFrom: 1}
	walked := answers(t, build(t, walking))
	for key, want := range starting {
		if got := walked[key]; got != want {
			t.Errorf("%s:\nwalking  %s\nstarting %s", key, got, want)
		}
	}
}

// TestRebuildAnswersAlike rebuilds the scripted helpdesk's read models from
// its log, in the large batches of a rebuild (links, edits, deletions and
// reads of a conversation in one transaction), and asks the same questions
// as of the read models projected event by event.
// On PostgreSQL it runs again with every set of new rows copied (see
// Copier), which a rebuild of so small a log would not do.
func TestRebuildAnswersAlike(t *testing.T) {
	engines := map[string]func(testing.TB) engine{"sqlite": sqliteEngine, "postgres": postgresEngine, "postgres-copying": postgresEngine}
	for name, open := range engines {
		t.Run(name, func(t *testing.T) {
			if name == "postgres-copying" {
				t.Cleanup(projections.CopyAll())
			}
			e := open(t)
			w := build(t, e)
			// Linked items make conversations theirs who were in none.
			mine := func(stage, who string, conv string) {
				t.Helper()
				rows, _, err := w.rm.Inbox(context.Background(), w.people[who], projections.InboxQuery{Section: projections.Mine, Limit: 50})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rows {
					if r.ID == conv {
						return
					}
				}
				t.Errorf("%s: %s's conversations lack %s, which links an item of theirs", stage, who, conv)
			}
			live := answers(t, w)
			mine("live", "nora", w.convs[1])
			mine("live", "fred", w.convs[0])
			w.stop()
			if err := projections.Rebuild(context.Background(), e.writer, e.dialect, e.store, nil); err != nil {
				t.Fatal(err)
			}
			rebuilt := answers(t, w)
			if name != "sqlite" { // a rebuild leaves the planner statistics of what it wrote
				var tuples float64 // -1 until analyzed (or vacuumed)
				if err := e.reader.QueryRow(`SELECT reltuples FROM pg_class WHERE relname = 'messages'`).Scan(&tuples); err != nil || tuples <= 0 {
					t.Errorf("messages: %v rows known to the planner (%v) after a rebuild", tuples, err)
				}
				// and the tables of the inbox's covering indexes ready for
				// index-only scans: all their pages visible to all.
				var pages, visible int
				if err := e.reader.QueryRow(`SELECT relpages, relallvisible FROM pg_class WHERE relname = 'members'`).Scan(&pages, &visible); err != nil || pages == 0 || visible != pages {
					t.Errorf("members: %d of %d pages all-visible (%v) after a rebuild", visible, pages, err)
				}
			}
			mine("rebuilt", "nora", w.convs[1])
			mine("rebuilt", "fred", w.convs[0])
			if len(live) != len(rebuilt) {
				t.Fatalf("%d answers live, %d rebuilt", len(live), len(rebuilt))
			}
			for key, want := range live {
				if got := rebuilt[key]; got != want {
					t.Errorf("%s:\nrebuilt %s\nlive    %s", key, got, want)
				}
			}
		})
	}
}

// TestUsersPages pages through the team on every engine: in the order of
// the ids, each user once, and a forged cursor refused.
func TestUsersPages(t *testing.T) {
	for _, c := range engines {
		t.Run(c.name, func(t *testing.T) {
			w := build(t, c.open(t))
			ctx := context.Background()
			var ids []string
			cursor := ""
			for pages := 0; ; pages++ {
				us, next, err := w.rm.Users(ctx, 2, cursor)
				if err != nil {
					t.Fatal(err)
				}
				if len(us) > 2 || (next != "" && len(us) != 2) {
					t.Fatalf("page %d: %d users, next %q", pages, len(us), next)
				}
				for _, u := range us {
					ids = append(ids, u.ID)
				}
				if next == "" {
					break
				}
				cursor = next
			}
			want := []string{commands.BootstrapAdminID}
			for _, k := range []string{"sam", "nora", "fred", "ada"} {
				want = append(want, w.people[k].ID)
			}
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Errorf("users %v, want %v", ids, want)
			}
			one, _, err := w.rm.Users(ctx, 1, "")
			if err != nil || len(one) != 1 || one[0].ID != commands.BootstrapAdminID || one[0].Role != "admin" || !one[0].Support {
				t.Errorf("first user %+v, %v", one, err)
			}
			for _, bad := range []string{"!!", base64.RawURLEncoding.EncodeToString([]byte("a\x00")), base64.RawURLEncoding.EncodeToString([]byte{0xff})} {
				if _, _, err := w.rm.Users(ctx, 2, bad); !errors.Is(err, projections.ErrBadCursor) {
					t.Errorf("cursor %q: %v, want ErrBadCursor", bad, err)
				}
			}
		})
	}
}

// TestFindItems finds tickets and tasks by title, whatever its case, or
// by id, newest first, on every engine; LIKE's wildcards match only
// themselves.
func TestFindItems(t *testing.T) {
	for _, c := range engines {
		t.Run(c.name, func(t *testing.T) {
			e := c.open(t)
			w := build(t, e)
			ctx := context.Background()
			ticket, task := w.items[0], w.items[1]
			for q, want := range map[string][]string{
				"":                   {task, ticket},
				"  ":                 {task, ticket},
				"refund":             {ticket},
				"REFUND FOR order 4": {ticket},
				"carrier":            {task},
				ticket:               {ticket},
				"%":                  nil,
				"_":                  nil,
				`\`:                  nil,
				"nothing like it":    nil,
			} {
				items, err := w.rm.FindItems(ctx, q, 10)
				if err != nil {
					t.Fatalf("%q: %v", q, err)
				}
				var got []string
				for _, it := range items {
					got = append(got, it.ID)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%q: found %v, want %v", q, got, want)
				}
			}
			one, err := w.rm.FindItems(ctx, "", 1)
			if err != nil || len(one) != 1 || one[0].ID != task || one[0].Kind != "task" || one[0].Title != "Check carrier" || one[0].Status == "" {
				t.Errorf("newest item: %+v, %v", one, err)
			}
			// The indexes can answer: the newest from items_created, and
			// on PostgreSQL a title's words from the trigram index (under
			// three letters, which make no trigram, the newest are walked
			// until ten match).
			want := map[string]string{"": "items_created"}
			if c.name == "postgres" {
				want["refund"], want["ORDER 4"] = "items_title", "items_title"
			} else {
				// The ids that the trigram index of titles listed.
				want["refund"], want["ORDER 4"] = "json_each", "json_each"
			}
			for q, index := range want {
				if plan := explainFindItems(t, e, w.rm, q); !strings.Contains(plan, index) {
					t.Errorf("%q is not found through %s:\n%s", q, index, plan)
				}
			}
			if c.name == "postgres" {
				// Planned for its words each time: a statement kept
				// prepared would take one generic plan after five runs,
				// the same for a common word and a rare one.
				e.reader.SetMaxOpenConns(1)
				for range 8 {
					if _, err := w.rm.FindItems(ctx, "refund", 10); err != nil {
						t.Fatal(err)
					}
				}
				var kept int
				if err := e.reader.QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT id, kind, title%lower(title) LIKE%'`).Scan(&kept); err != nil || kept != 0 {
					t.Errorf("the search of items is kept prepared (%d, %v)", kept, err)
				}
			}
		})
	}
}

// explainFindItems returns the plan of FindItems(q) on e, with its tables
// taken as too big to read through (the test's few rows would be).
func explainFindItems(t *testing.T, e engine, rm *projections.ReadModels, q string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := e.reader.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	query, args, err := projections.FindItemsQuery(rm, q, 10)
	if err != nil {
		t.Fatal(err)
	}
	explain := `EXPLAIN QUERY PLAN `
	if _, ok := e.dialect.(readmodel.Postgres); ok {
		explain = `EXPLAIN `
		if _, err := conn.ExecContext(ctx, `SET enable_seqscan = off`); err != nil {
			t.Fatal(err)
		}
		defer conn.ExecContext(ctx, `RESET enable_seqscan`)
	}
	rows, err := conn.QueryContext(ctx, explain+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var plan strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&plan, vals...)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan.String()
}

// TestFindItemsPlannedAsWalked checks that however the engine finds the
// items of a search (on SQLite, from the trigram index of titles when it
// lists few, else by walking the newest), it returns what reading every
// title would, in the same order: titles beyond ASCII, LIKE's wildcards,
// words in many titles and in few, terms under three letters.
func TestFindItemsPlannedAsWalked(t *testing.T) {
	for _, c := range engines {
		t.Run(c.name, func(t *testing.T) {
			e := c.open(t)
			w := build(t, e)
			ctx := context.Background()
			titles := []string{"Rare zebra crossing", "ÉCOLE fermée", "école ouverte", "École", "Straße gesperrt",
				"a_b%c\\d", "abc", "50% off", "UPPER lower MiXeD", "x", "refund refund", "Zebra", "Λόγος"}
			for i := range 620 { // more than the index's candidates (500); with "refund refund" and the world's ticket, 622
				titles = append(titles, fmt.Sprintf("Common refund case %d", i%37))
			}
			for i, title := range titles {
				// Pairs share a time: the id decides between them.
				if _, err := e.writer.ExecContext(ctx, e.dialect.Rebind(`INSERT INTO items (id, kind, title, description, status,
					requester_id, created_by, created_at, position) VALUES (?, 'ticket', ?, '', 'open', '', '', ?, ?)`),
					fmt.Sprintf("it-%04d", (i*7919)%10000), title, 1_700_000_000_000+int64(i/2)*1000, 1_000_000+i); err != nil {
					t.Fatal(err)
				}
			}
			for _, q := range []string{"zebra", "ZEBRA", "rare zebra", "école", "ÉCOLE", "Écol", "straße", "STRASSE",
				"a_b", "%c\\d", "_", "50%", "% off", "upper LOWER mixed", "abc", "ab", "x", "refund", "refund case 3",
				"case 36", "common", "no such title", "it-0000", "Zebr", "ze", "É", "ße", "e", "0%", "%", "\\d", "é", "ς", "σ", "όγ"} {
				// Letters beyond ASCII fold on both engines alike.
				counts := map[string]int{"école": 3, "ÉCOLE": 3, "Écol": 3, "straße": 1, "STRASSE": 0, "zebra": 2, "refund": 620 + 2, "refund case 3": 17 + 7*16, "no such title": 0, "50%": 1, "a_b": 1, "it-0000": 1,
					"é": 3, "É": 3, "ς": 1, "σ": 0, "όγ": 1}
				for _, limit := range []int{10, 1000} {
					items, err := w.rm.FindItems(ctx, q, limit)
					if err != nil {
						t.Fatalf("%q: %v", q, err)
					}
					var got []string
					for _, it := range items {
						got = append(got, it.ID)
					}
					want, err := projections.FindItemsWalked(w.rm, q, limit)
					if err != nil {
						t.Fatalf("%q walked: %v", q, err)
					}
					if !slices.Equal(got, want) {
						t.Errorf("%q (limit %d): found %v, walking the titles finds %v", q, limit, got, want)
					}
					if n, ok := counts[q]; ok && limit == 1000 && len(got) != n {
						t.Errorf("%q: found %d items, want %d", q, len(got), n)
					}
				}
			}
			if c.name != "sqlite" {
				// A rare term is looked up in an index of the titles (of
				// one or two letters: of the tripled titles); a common one
				// walks the newest; one without a letter or digit too.
				// The planner weighs them for as many items as a helpdesk
				// has when it matters.
				for _, q := range []string{`INSERT INTO items (id, kind, title, description, status, requester_id, created_by, created_at, position)
					SELECT 'more-' || i, 'task', 'Common refund case ' || i % 37, '', 'open', '', '', i, 2000000 + i FROM generate_series(1, 20000) i`,
					`ANALYZE items`} {
					if _, err := e.writer.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				for q, index := range map[string]string{"zebra": "items_title ", "ze": "items_title_short", "x": "items_title_short",
					"É": "items_title_short", "re": "items_created", "e": "items_created", "%": "items_created"} {
					if plan := explainFindItems(t, e, w.rm, q); !strings.Contains(plan, index) {
						t.Errorf("%q is not found through %s:\n%s", q, index, plan)
					}
				}
				return
			}
			// A rare term is looked up in the index of titles, whose ids
			// the statement reads as JSON; a common one walks.
			for q, index := range map[string]string{"zebra": "json_each", "école": "json_each", "refund": "items_created",
				"é": "json_each", "ße": "json_each", "ς": "json_each"} {
				if plan := explainFindItems(t, e, w.rm, q); !strings.Contains(plan, index) {
					t.Errorf("%q is not found through %s:\n%s", q, index, plan)
				}
			}
			if plan := explainFindItems(t, e, w.rm, "refund"); strings.Contains(plan, "json_each") {
				t.Errorf("a word of 620 titles is looked up in the index:\n%s", plan)
			}
		})
	}
}

// TestListsBoundAsOneArgument checks that on PostgreSQL the reads of the
// conversations and messages of a batch, which the live streams
// make for every batch of changes, are one prepared statement each however
// many ids they are given: the server keeps the plan of each, where a
// placeholder per id made each length a statement of its own, planned
// anew at nearly every run; and the server runs the plan it keeps for
// each, which for the read of their links looks items up by key. (Through one connection, whose prepared
// statements the server lists.)
func TestListsBoundAsOneArgument(t *testing.T) {
	e := postgresEngine(t)
	w := build(t, e)
	w.stop() // its statements go through the same pool
	ctx := context.Background()
	db := e.reader
	db.SetMaxOpenConns(1)
	rm := projections.NewReadModels(db, e.dialect)
	var msgs []string
	snaps, err := rm.Snapshots(ctx, w.convs)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range w.convs {
		page, _, err := rm.Messages(ctx, id, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			msgs = append(msgs, m.ID)
		}
	}
	if len(snaps) < 3 || len(msgs) < 3 {
		t.Fatalf("the world has %d conversations, %d messages: too few to tell", len(snaps), len(msgs))
	}
	// Mostly one or two ids, as the reads of a live batch.
	for k := range 12 {
		n := k%3 + 1
		if k%4 == 0 {
			n = 1
		}
		if _, err := rm.Snapshots(ctx, w.convs[:n]); err != nil {
			t.Fatal(err)
		}
		if _, err := rm.MessagesByID(ctx, msgs[:n]); err != nil {
			t.Fatal(err)
		}
	}
	// A statement of each read, with its list bound as one argument or as
	// a placeholder per id.
	list := ` (= ANY\(|IN \()`
	// And the server runs the plan it keeps for each, from the sixth run,
	// where it weighed a plan for ten ids against plans for the one or two
	// at hand and planned at nearly every run.
	for what, re := range map[string]string{"conversations": `^SELECT c\.id, c\.channel, .* WHERE c\.id` + list,
		"their links": `^SELECT l\.conversation_id, .* WHERE l\.conversation_id` + list,
		"their parts": `^SELECT conversation_id, 'p', user_id, 0 FROM participants WHERE conversation_id` + list,
		"messages":    `^SELECT m\.id, m\.conversation_id, .* WHERE m\.id` + list} {
		var n, generic, custom int
		if err := db.QueryRowContext(ctx, `SELECT count(*), COALESCE(sum(generic_plans), 0), COALESCE(sum(custom_plans), 0)
			FROM pg_prepared_statements WHERE regexp_replace(statement, '\s+', ' ', 'g') ~ $1`,
			re).Scan(&n, &generic, &custom); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("the reads of %s for 1, 2, 3 and all ids are %d prepared statements, want 1", what, n)
		}
		if custom > 6 {
			t.Errorf("the reads of %s were planned anew %d times of %d", what, custom, generic+custom)
		}
	}
	// The plan the server keeps for the read of the links looks each
	// link's item up by its key: the tables are small and fresh here, where
	// a join's kept plan hashed every item.
	var name string
	if err := db.QueryRowContext(ctx, `SELECT name FROM pg_prepared_statements WHERE regexp_replace(statement, '\s+', ' ', 'g') ~ $1`,
		`^SELECT l\.conversation_id, .* WHERE l\.conversation_id`+list).Scan(&name); err != nil {
		t.Fatalf("the read of the links is not one prepared statement: %v", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `RESET plan_cache_mode`)
	var plan strings.Builder
	rows, err := conn.QueryContext(ctx, `EXPLAIN EXECUTE `+name+`('{`+strings.Join(w.convs, ",")+`}', `+strconv.Itoa(len(w.convs))+`)`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	rows.Close()
	if p := plan.String(); !strings.Contains(p, "Index Scan using items_pkey") || strings.Contains(p, "Seq Scan on items") {
		t.Errorf("the kept plan of the read of the links does not look items up by key:\n%s", p)
	}
}

// TestSnapshotSizeGrowsWithWhatItHolds: a snapshot records its
// conversation's deleted messages, readers and people, which may be
// thousands: its size, by which the live streams' cache bounds what it
// keeps, grows with them.
func TestSnapshotSizeGrowsWithWhatItHolds(t *testing.T) {
	e := sqliteEngine(t)
	w := build(t, e)
	w.stop()
	ctx := context.Background()
	id := w.convs[0]
	size := func() int {
		t.Helper()
		s, ok, err := w.rm.Snapshot(ctx, id)
		if err != nil || !ok {
			t.Fatalf("snapshot of %s: %v, %v", id, ok, err)
		}
		return s.Size()
	}
	before := size()
	res, err := e.writer.ExecContext(ctx, `UPDATE messages SET deleted = 1 WHERE conversation_id = ? AND deleted = 0`, id)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := res.RowsAffected()
	if n == 0 {
		t.Fatal("no message to mark deleted")
	}
	if got := size() - before; got != 8*int(n) {
		t.Errorf("%d messages more deleted: the snapshot is %d bytes larger, want %d", n, got, 8*n)
	}
	if _, err := e.writer.ExecContext(ctx, `INSERT INTO reads (conversation_id, reader, seq) VALUES (?, 'user:someone-new', 1)`, id); err != nil {
		t.Fatal(err)
	}
	if got := size() - before - 8*int(n); got < 48 {
		t.Errorf("a reader more: %d bytes more, want at least 48", got)
	}
}
