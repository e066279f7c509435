package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/infra/eventstore"
	"github.com/helpdesk/messenger/infra/eventstore/storetest"
)

func TestEventStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, _ := openStore(t, dbPath(t), EventStoreConfig{})
		return s
	})
}

func dbPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "messenger.db")
}

// openDB opens the database at path and closes it when the test ends.
func openDB(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// openStore opens an EventStore on the database at path; both close when
// the test ends, the store first.
func openStore(t testing.TB, path string, cfg EventStoreConfig) (*EventStore, *DB) {
	t.Helper()
	db := openDB(t, path)
	s := NewEventStore(db, cfg)
	t.Cleanup(func() { s.Close() })
	return s, db
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var testActor = domain.Actor{Kind: domain.ActorCustomer, ID: "cu-1"}

// posted returns n events with fresh ids: UUIDv7s, as commands.NewID makes.
func posted(n int) []domain.Pending {
	evs := make([]domain.Pending, n)
	for i := range evs {
		id := uuid.Must(uuid.NewV7()).String()
		evs[i] = domain.Pending{EventID: id, Event: conversation.MessagePosted{
			Meta:      domain.Meta{At: time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.UTC), Actor: testActor},
			MessageID: "m-" + id, Body: fmt.Sprint("body ", i),
		}}
	}
	return evs
}

func TestReopenKeepsEvents(t *testing.T) {
	path := dbPath(t)
	ctx := ctxFor(t, 10*time.Second)
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := NewEventStore(db, EventStoreConfig{})
	want, err := s.Append(ctx, "conversation-1", domain.NoStream, posted(3))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s2, _ := openStore(t, path, EventStoreConfig{})
	got, err := s2.ReadStream(ctx, "conversation-1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after re-open: got %+v, want %+v", got, want)
	}
	if h, err := s2.Head(ctx); err != nil || h != want[2].Position {
		t.Errorf("Head after re-open = %d, %v; want %d", h, err, want[2].Position)
	}
	next, err := s2.Append(ctx, "conversation-1", 3, posted(1))
	if err != nil {
		t.Fatal(err)
	}
	if next[0].Version != 4 || next[0].Position != want[2].Position+1 {
		t.Errorf("next append: version %d position %d, want 4 and %d", next[0].Version, next[0].Position, want[2].Position+1)
	}
}

// request prepares an append for commit, as Append does.
func request(t *testing.T, stream string, expected int64, evs []domain.Pending) *appendReq {
	t.Helper()
	_, rows, err := prepareAppend(stream, expected, evs)
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.NewRequest(context.Background(), stream, expected, rows, nil)
}

// TestBatchIsolatesRequests commits several requests in one transaction: a
// conflicting one is undone alone, and each sees the ones before it.
func TestBatchIsolatesRequests(t *testing.T) {
	s, _ := openStore(t, dbPath(t), EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	if _, err := s.Append(ctx, "seed", domain.NoStream, posted(1)); err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(ctx)
	a, b := posted(2), posted(1)
	batch := []*appendReq{
		request(t, "s1", domain.NoStream, a),         // v1-2
		request(t, "s1", domain.NoStream, posted(1)), // conflict: the first created s1
		request(t, "s1", 2, b),                       // v3, after the first
		request(t, "s2", 5, posted(1)),               // conflict
		request(t, "s2", domain.NoStream, posted(1)), // v1
		request(t, "s3", domain.AnyVersion, a),       // conflict: a's ids are in s1
		request(t, "s1", domain.NoStream, a),         // a again: the first's records
		// Its first event is written before its second turns out to be in s1.
		request(t, "s4", domain.NoStream, append(posted(1), a[1])),
	}
	changed := *s.changed.Load()
	s.commit(batch)
	type want struct {
		conflict  bool
		version   int64
		positions []int64
	}
	h := int64(head)
	wants := []want{
		{false, 1, []int64{h + 1, h + 2}},
		{true, 0, nil},
		{false, 3, []int64{h + 3}},
		{true, 0, nil},
		{false, 1, []int64{h + 4}},
		{true, 0, nil},
		{false, 0, nil},
		{true, 0, nil},
	}
	for i, r := range batch {
		got := <-r.Answered()
		w := wants[i]
		if w.conflict {
			if !errors.Is(got.Err, commands.ErrConflict) {
				t.Errorf("request %d: got %v, want a conflict", i, got.Err)
			}
			continue
		}
		if got.Err != nil {
			t.Errorf("request %d: %v", i, got.Err)
			continue
		}
		if i == 6 {
			if len(got.Stored) != 2 || got.Stored[0].position != h+1 || got.Stored[1].position != h+2 {
				t.Errorf("request %d: got stored %+v, want positions %d, %d", i, got.Stored, h+1, h+2)
			}
			continue
		}
		if got.Version != w.version || !reflect.DeepEqual(got.Positions, w.positions) {
			t.Errorf("request %d: got version %d positions %v, want %d %v", i, got.Version, got.Positions, w.version, w.positions)
		}
	}
	select {
	case <-changed:
	default:
		t.Error("the commit did not wake waiters")
	}
	all, err := s.ReadAll(ctx, head, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range all {
		got = append(got, fmt.Sprintf("%d %s v%d", r.Position, r.Stream, r.Version))
	}
	wantLog := []string{
		fmt.Sprintf("%d s1 v1", h+1), fmt.Sprintf("%d s1 v2", h+2), fmt.Sprintf("%d s1 v3", h+3), fmt.Sprintf("%d s2 v1", h+4),
	}
	if !reflect.DeepEqual(got, wantLog) {
		t.Errorf("log after the batch: got %q, want %q", got, wantLog)
	}
}

// TestRefusedRequestFailsAlone: when SQLite refuses one request's insert
// for a reason no check before it can see (here a trigger), only that
// request fails; the others of its batch commit.
func TestRefusedRequestFailsAlone(t *testing.T) {
	s, db := openStore(t, dbPath(t), EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	if _, err := db.writer.ExecContext(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.stream = 'bad'
		BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`); err != nil {
		t.Fatal(err)
	}
	batch := []*appendReq{
		request(t, "good1", domain.NoStream, posted(2)),
		request(t, "bad", domain.NoStream, posted(1)),
		request(t, "good2", domain.NoStream, posted(1)),
	}
	s.commit(batch)
	for i, r := range batch {
		got := <-r.Answered()
		if bad := i == 1; bad != (got.Err != nil) {
			t.Errorf("request %d (%s): err %v", i, r.Stream, got.Err)
		}
	}
	all, err := s.ReadAll(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range all {
		got = append(got, fmt.Sprintf("%d %s v%d", r.Position, r.Stream, r.Version))
	}
	if want := []string{"1 good1 v1", "2 good1 v2", "3 good2 v1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("log: got %q, want %q", got, want)
	}
}

// TestAppendsAreGrouped holds the writer connection while appends queue up,
// then checks that they are committed in fewer transactions than requests.
func TestAppendsAreGrouped(t *testing.T) {
	s, db := openStore(t, dbPath(t), EventStoreConfig{})
	var mu sync.Mutex
	var sizes []int
	s.onBatch = func(n int) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}
	ctx := ctxFor(t, 10*time.Second)
	hold, err := db.Writer().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := s.Append(ctx, fmt.Sprint("g-", i), domain.NoStream, posted(1)); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // let the appends queue behind the held connection
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	total, largest := 0, 0
	for _, size := range sizes {
		total += size
		largest = max(largest, size)
	}
	if total != n || largest < n/2 {
		t.Errorf("batch sizes %v: want %d requests, at least %d of them in one batch", sizes, n, n/2)
	}
	if h, _ := s.Head(ctx); h != n {
		t.Errorf("Head = %d, want %d", h, n)
	}
}

func TestWaitIsWokenByAppend(t *testing.T) {
	// With an hour between polls, only the broadcast of a commit can wake Wait.
	s, _ := openStore(t, dbPath(t), EventStoreConfig{PollInterval: time.Hour})
	ctx := ctxFor(t, 5*time.Second)
	time.AfterFunc(50*time.Millisecond, func() {
		if _, err := s.Append(ctx, "w", domain.NoStream, posted(1)); err != nil {
			t.Errorf("Append: %v", err)
		}
	})
	if err := s.Wait(ctx, 0); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// TestAnotherProcess shares the file between two DBs and stores, as two
// processes would.
func TestAnotherProcess(t *testing.T) {
	path := dbPath(t)
	s1, _ := openStore(t, path, EventStoreConfig{PollInterval: 20 * time.Millisecond})
	s2, _ := openStore(t, path, EventStoreConfig{PollInterval: time.Hour})
	ctx := ctxFor(t, 10*time.Second)

	woken := make(chan error, 1)
	go func() { woken <- s1.Wait(ctx, 0) }()
	time.Sleep(50 * time.Millisecond)
	evs := posted(1)
	recs2, err := s2.Append(ctx, "x", domain.NoStream, evs)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-woken; err != nil {
		t.Fatalf("Wait in the other process: %v", err)
	}

	recs1, err := s1.ReadStream(ctx, "x")
	if err != nil || !reflect.DeepEqual(recs1, recs2) {
		t.Fatalf("ReadStream in the other process: got %+v, %v; want %+v", recs1, err, recs2)
	}
	if _, err := s1.Append(ctx, "x", domain.NoStream, posted(1)); !errors.Is(err, commands.ErrConflict) {
		t.Errorf("NoStream after the other process appended: got %v, want a conflict", err)
	}
	again, err := s1.Append(ctx, "x", domain.NoStream, evs)
	if err != nil || !reflect.DeepEqual(again, recs2) {
		t.Errorf("re-append of the other process's events: got %+v, %v; want %+v", again, err, recs2)
	}
	if _, err := s1.Append(ctx, "x", 1, posted(1)); err != nil {
		t.Errorf("append at the version the other process left: %v", err)
	}
	if _, err := s2.Append(ctx, "x", 1, posted(1)); !errors.Is(err, commands.ErrConflict) {
		t.Errorf("stale version in the first process: got %v, want a conflict", err)
	}
}

func TestClosed(t *testing.T) {
	s, _ := openStore(t, dbPath(t), EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s", domain.NoStream, posted(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: got %v, want ErrClosed", err)
	}
	if err := s.Wait(ctx, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close: got %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestTimesRoundTripExactly(t *testing.T) {
	s, _ := openStore(t, dbPath(t), EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	tests := []struct {
		name string
		at   time.Time
	}{
		{"nanoseconds in another zone", time.Date(2025, 7, 8, 23, 59, 59, 123456789, time.FixedZone("CEST", 2*3600))},
		{"whole second", time.Date(2025, 7, 8, 0, 0, 0, 0, time.UTC)},
		{"with a monotonic reading", time.Now()},
		{"zero", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := "t-" + uuid.NewString()
			ev := conversation.Closed{Meta: domain.Meta{At: tt.at, Actor: testActor}}
			appended, err := s.Append(ctx, stream, domain.NoStream, []domain.Pending{{EventID: uuid.NewString(), Event: ev}})
			if err != nil {
				t.Fatal(err)
			}
			read, err := s.ReadStream(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.at.UTC()
			for what, r := range map[string]domain.Recorded{"Append": appended[0], "ReadStream": read[0]} {
				if !reflect.DeepEqual(r.At, want) || !reflect.DeepEqual(r.Event.EventMeta().At, want) {
					t.Errorf("%s: got at %v and %v, want %v", what, r.At, r.Event.EventMeta().At, want)
				}
			}
		})
	}
}

// TestTailReadsAsTheDatabase appends every type of event, from writers at
// once, and reads the log back both from the tail and from the database:
// the records must be the same, to the event's last field, since the live
// projector reads the one and a rebuild the other.
func TestTailReadsAsTheDatabase(t *testing.T) {
	s, _ := openStore(t, dbPath(t), EventStoreConfig{})
	ctx := ctxFor(t, 30*time.Second)
	examples := storetest.Examples(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i, e := range examples {
				ev := []domain.Pending{{EventID: uuid.NewString(), Event: e}}
				if _, err := s.Append(ctx, fmt.Sprintf("tail-%d", w), int64(i), ev); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := 8 * len(examples)
	if _, ok := s.tail.Read(0, total); !ok {
		t.Fatal("the tail holds none of the events appended")
	}
	checkTail(t, s, 0, total)
}

// checkTail checks that s.ReadAll(after, limit), from the tail or not,
// reads what the database holds.
func checkTail(t *testing.T, s *EventStore, after uint64, limit int) {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	got, err := s.ReadAll(ctx, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.query(ctx, `SELECT `+columns+` FROM events WHERE position > ? ORDER BY position LIMIT ?`, int64(after), limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > len(want) || len(got) == 0 && len(want) > 0 {
		t.Fatalf("ReadAll(%d, %d): %d events, the database holds %d", after, limit, len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("ReadAll(%d, %d), event %d:\ngot      %#v\ndatabase %#v", after, limit, i, got[i], want[i])
		}
	}
}

// TestTailSkipsTheOtherProcess: two processes append in turns; the tail of
// each holds only its own newest run, so a read from anywhere in the log
// finds every event, in order, as the database holds them.
func TestTailSkipsTheOtherProcess(t *testing.T) {
	path := dbPath(t)
	s1, _ := openStore(t, path, EventStoreConfig{})
	s2, _ := openStore(t, path, EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	total := 0
	for turn, n := range []int{3, 2, 4, 1, 5, 3} {
		s := s1
		if turn%2 == 1 {
			s = s2
		}
		if _, err := s.Append(ctx, fmt.Sprint("turns-", turn), domain.NoStream, posted(n)); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	for _, s := range []*EventStore{s1, s2} {
		for after := range total {
			checkTail(t, s, uint64(after), total)
			checkTail(t, s, uint64(after), 2)
		}
	}
}

// TestRememberedVersionsAreLowerBounds: the writer inserts without reading
// at the version it remembers a stream at, and decides by reading whenever
// that version is behind (another process appended) or the request
// expects another one: the answers are those of a store that always reads.
func TestRememberedVersionsAreLowerBounds(t *testing.T) {
	path := dbPath(t)
	s1, _ := openStore(t, path, EventStoreConfig{})
	s2, _ := openStore(t, path, EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	version := func(s *EventStore, expected int64, evs []domain.Pending) (int64, error) {
		t.Helper()
		recs, err := s.Append(ctx, "a", expected, evs)
		if err != nil {
			return 0, err
		}
		return recs[0].Version, nil
	}
	first := posted(1)
	steps := []struct {
		name     string
		s        *EventStore
		expected int64
		evs      []domain.Pending
		want     int64 // 0: a conflict
	}{
		{"a new stream", s1, domain.NoStream, first, 1},
		{"any version, remembered", s1, domain.AnyVersion, posted(1), 2},
		{"the other process, which remembers nothing", s2, domain.AnyVersion, posted(1), 3},
		{"any version, remembered behind", s1, domain.AnyVersion, posted(1), 4},
		{"expecting the version the other process left", s2, 4, posted(1), 5},
		{"expecting the remembered version, behind", s1, 4, posted(1), 0},
		{"expecting a version past the stream's", s1, 7, posted(1), 0},
		{"expecting none of a stream the process met", s1, domain.NoStream, posted(1), 0},
		{"expecting none of a stream the other process made", s2, domain.NoStream, posted(1), 0},
		{"the first event again", s1, domain.AnyVersion, first, 1},
		{"the first event again, elsewhere", s2, 5, first, 1},
		{"expecting the version read", s1, 5, posted(1), 6},
		{"expecting a version past the stream's, remembered exactly", s1, 8, posted(1), 0},
		{"expecting the version remembered exactly", s1, 6, posted(1), 7},
	}
	for _, st := range steps {
		got, err := version(st.s, st.expected, st.evs)
		switch {
		case st.want == 0 && !errors.Is(err, commands.ErrConflict):
			t.Errorf("%s: version %d, %v; want a conflict", st.name, got, err)
		case st.want != 0 && (err != nil || got != st.want):
			t.Errorf("%s: version %d, %v; want %d", st.name, got, err, st.want)
		}
	}
	// In one batch, each request follows the ones before it.
	batch := []*appendReq{
		request(t, "b", domain.NoStream, posted(1)),
		request(t, "b", 1, posted(1)),
		request(t, "b", 1, posted(1)),
		request(t, "b", domain.AnyVersion, posted(1)),
	}
	s1.commit(batch)
	for i, want := range []int64{1, 2, 0, 3} {
		got := <-batch[i].Answered()
		switch {
		case want == 0 && !errors.Is(got.Err, commands.ErrConflict):
			t.Errorf("batch request %d: version %d, %v; want a conflict", i, got.Version, got.Err)
		case want != 0 && (got.Err != nil || got.Version != want):
			t.Errorf("batch request %d: version %d, %v; want %d", i, got.Version, got.Err, want)
		}
	}
}
