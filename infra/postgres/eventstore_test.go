package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	"github.com/helpdesk/messenger/infra/postgres/pgtest"
)

func TestEventStoreContract(t *testing.T) {
	t.Parallel()
	for _, writers := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d writers", writers), func(t *testing.T) {
			t.Parallel()
			db := openDB(t, pgtest.NewDatabase(t))
			storetest.Run(t, func(t *testing.T) storetest.Store {
				return openStore(t, db, EventStoreConfig{Writers: writers})
			})
		})
	}
}

// openDB opens the database at url and closes it when the test ends.
func openDB(t testing.TB, url string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, url, Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// openStore returns an EventStore over db, closed when the test ends,
// before db.
func openStore(t testing.TB, db *DB, cfg EventStoreConfig) *EventStore {
	t.Helper()
	s := NewEventStore(db, cfg)
	t.Cleanup(func() { s.Close() })
	return s
}

// newStore opens a fresh database and an EventStore over it.
func newStore(t testing.TB, cfg EventStoreConfig) (*EventStore, *DB) {
	t.Helper()
	db := openDB(t, pgtest.NewDatabase(t))
	return openStore(t, db, cfg), db
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
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

// seen is where a reader of the log found an event, or where Append said
// it put it.
type seen struct {
	stream   string
	version  int64
	position uint64
}

// follow reads the log from after until it has seen want events of
// streams that match, or ctx ends. It checks that positions follow each
// other without a gap and that each stream's versions do, and returns
// where it saw each event, by id.
func follow(ctx context.Context, s *EventStore, after uint64, want int, match func(stream string) bool) (map[string]seen, error) {
	got := make(map[string]seen, want)
	versions := make(map[string]int64)
	checkpoint := after
	for len(got) < want {
		recs, err := s.ReadAll(ctx, checkpoint, 500)
		if err != nil {
			return got, fmt.Errorf("ReadAll(%d): %w", checkpoint, err)
		}
		if len(recs) == 0 {
			if err := s.Wait(ctx, checkpoint); err != nil {
				return got, fmt.Errorf("Wait(%d) with %d of %d events seen: %w", checkpoint, len(got), want, err)
			}
			continue
		}
		for _, r := range recs {
			// Positions are dense in this store: a hole would be a skip.
			if r.Position != checkpoint+1 {
				return got, fmt.Errorf("position %d after %d, want %d", r.Position, checkpoint, checkpoint+1)
			}
			checkpoint = r.Position
			if !match(r.Stream) {
				continue
			}
			if _, dup := got[r.EventID]; dup {
				return got, fmt.Errorf("event %s seen twice", r.EventID)
			}
			if v := versions[r.Stream] + 1; r.Version != v {
				return got, fmt.Errorf("%s: version %d after %d", r.Stream, r.Version, v-1)
			}
			versions[r.Stream] = r.Version
			got[r.EventID] = seen{r.Stream, r.Version, r.Position}
		}
	}
	return got, nil
}

// checkSeen checks that the reader saw exactly the events appended, where
// Append said they were.
func checkSeen(t *testing.T, got, want map[string]seen) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("the reader saw %d events, want %d", len(got), len(want))
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			t.Errorf("event %s: the reader saw %+v (%t), Append said %+v", id, g, ok, w)
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("event %s: the reader saw %+v, which no Append acknowledged", id, g)
		}
	}
}

// TestWritersAndFollower is the no-skip test of issue 3: 64 goroutines
// append 1 to 3 events at a time, with expected versions, to 1,000
// streams, 10,000 events in all, while a reader follows the log from its
// checkpoint with ReadAll and Wait. Half the goroutines append through a
// second store on the same database, as another replica would. The reader
// must see every event exactly once, at the position and version Append
// returned, with no hole in the positions.
func TestWritersAndFollower(t *testing.T) {
	t.Parallel()
	const writers, streams, total = 64, 1000, 10_000
	url := pgtest.NewDatabase(t)
	s := openStore(t, openDB(t, url), EventStoreConfig{})
	replicas := []*EventStore{s, openStore(t, openDB(t, url), EventStoreConfig{})}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The writers append exactly total events: writer w appends quota[w].
	quota := make([]int, writers)
	for i := range total {
		quota[i%writers]++
	}
	type followed struct {
		got map[string]seen
		err error
	}
	done := make(chan followed, 1)
	go func() {
		got, err := follow(ctx, s, head, total, func(string) bool { return true })
		done <- followed{got, err}
	}()

	want := make(map[string]seen, total)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			// Writer w owns streams w, w+64, w+128, … below 1,000.
			var own []string
			for i := w; i < streams; i += writers {
				own = append(own, fmt.Sprintf("stream-%04d", i))
			}
			versions := make([]int64, len(own))
			for left, call := quota[w], 0; left > 0; call++ {
				k := call % len(own)
				n := min(1+rnd.IntN(3), left)
				recs, err := replicas[w%2].Append(ctx, own[k], versions[k], posted(n))
				if err != nil {
					t.Errorf("writer %d: Append(%s, %d): %v", w, own[k], versions[k], err)
					return
				}
				versions[k] += int64(n)
				left -= n
				mu.Lock()
				for _, r := range recs {
					want[r.EventID] = seen{r.Stream, r.Version, r.Position}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		cancel() // the reader would wait for events never appended
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("reader: %v", res.err)
	}
	checkSeen(t, res.got, want)
}

// TestLateCommitIsNotSkipped holds a batch between its insert and its
// commit, with positions taken, and checks that nothing after it becomes
// visible: an append by another store on the same database (another
// replica) waits for it, and a reader sees neither until it commits, then
// both, in order.
func TestLateCommitIsNotSkipped(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	first := openStore(t, openDB(t, url), EventStoreConfig{})
	second := openStore(t, openDB(t, url), EventStoreConfig{})
	ctx := ctxFor(t, 30*time.Second)
	if _, err := first.Append(ctx, "warm-up", domain.NoStream, posted(1)); err != nil {
		t.Fatal(err)
	}
	head, err := first.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	held := make(chan []uint64, 1)
	release := make(chan struct{})
	var once sync.Once
	first.beforeCommit = func(positions []uint64) {
		once.Do(func() {
			held <- positions
			<-release
		})
	}
	type appended struct {
		recs []domain.Recorded
		err  error
	}
	lateDone, nextDone := make(chan appended, 1), make(chan appended, 1)
	go func() {
		recs, err := first.Append(ctx, "late", domain.NoStream, posted(2))
		lateDone <- appended{recs, err}
	}()
	var positions []uint64
	select {
	case positions = <-held:
	case <-ctx.Done():
		t.Fatal("the first store's batch never reached its commit")
	}
	if want := []uint64{head + 1, head + 2}; !reflect.DeepEqual(positions, want) {
		t.Fatalf("the held batch took positions %v, want %v", positions, want)
	}
	go func() {
		recs, err := second.Append(ctx, "next", domain.NoStream, posted(1))
		nextDone <- appended{recs, err}
	}()

	// While the first batch is held, the other replica's append cannot
	// commit, and a reader sees nothing above head.
	select {
	case a := <-nextDone:
		t.Fatalf("the other store's append returned %v, %v while an earlier position was uncommitted", a.recs, a.err)
	case <-time.After(300 * time.Millisecond):
	}
	for _, s := range []*EventStore{first, second} {
		if recs, err := s.ReadAll(ctx, head, 10); err != nil || len(recs) != 0 {
			t.Errorf("ReadAll(%d) while the batch is held: got %d records, %v; want none", head, len(recs), err)
		}
		if h, err := s.Head(ctx); err != nil || h != head {
			t.Errorf("Head while the batch is held = %d, %v; want %d", h, err, head)
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := second.Wait(waitCtx, head); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait(%d) while the batch is held: got %v, want the deadline", head, err)
	}

	close(release)
	late, next := <-lateDone, <-nextDone
	if late.err != nil || next.err != nil {
		t.Fatalf("appends after the release: %v, %v", late.err, next.err)
	}
	if late.recs[0].Position != head+1 || late.recs[1].Position != head+2 || next.recs[0].Position != head+3 {
		t.Errorf("positions: late %d, %d and next %d; want %d, %d, %d",
			late.recs[0].Position, late.recs[1].Position, next.recs[0].Position, head+1, head+2, head+3)
	}
	all, err := second.ReadAll(ctx, head, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range all {
		got = append(got, fmt.Sprintf("%d %s v%d", r.Position, r.Stream, r.Version))
	}
	want := []string{
		fmt.Sprintf("%d late v1", head+1), fmt.Sprintf("%d late v2", head+2), fmt.Sprintf("%d next v1", head+3),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("log after the release: got %q, want %q", got, want)
	}
}

// TestTwoReplicas runs two stores, each with its own pool, on one
// database, as two replicas would, with writers on both appending to the
// same streams from a fresh read and retrying on conflicts, while a reader
// of each follows the log.
func TestTwoReplicas(t *testing.T) {
	t.Parallel()
	const perReplica, each, streams = 16, 30, 24
	url := pgtest.NewDatabase(t)
	replicas := []*EventStore{
		openStore(t, openDB(t, url), EventStoreConfig{PollInterval: 50 * time.Millisecond}),
		openStore(t, openDB(t, url), EventStoreConfig{PollInterval: 50 * time.Millisecond}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	const total = 2 * perReplica * each

	type followed struct {
		got map[string]seen
		err error
	}
	readers := make([]chan followed, len(replicas))
	for i, s := range replicas {
		readers[i] = make(chan followed, 1)
		go func() {
			got, err := follow(ctx, s, 0, total, func(string) bool { return true })
			readers[i] <- followed{got, err}
		}()
	}

	want := make(map[string]seen, total)
	var mu sync.Mutex
	var wg sync.WaitGroup
	conflicts := 0
	for i, s := range replicas {
		for w := range perReplica {
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(uint64(i), uint64(w)))
				for n := 0; n < each; {
					stream := fmt.Sprintf("shared-%d", rnd.IntN(streams))
					recs, err := s.ReadStream(ctx, stream)
					if err != nil {
						t.Errorf("replica %d: ReadStream: %v", i, err)
						return
					}
					got, err := s.Append(ctx, stream, int64(len(recs)), posted(1))
					if errors.Is(err, commands.ErrConflict) {
						mu.Lock()
						conflicts++
						mu.Unlock()
						continue
					}
					if err != nil {
						t.Errorf("replica %d: Append: %v", i, err)
						return
					}
					mu.Lock()
					want[got[0].EventID] = seen{got[0].Stream, got[0].Version, got[0].Position}
					mu.Unlock()
					n++
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		cancel()
	}
	for i, r := range readers {
		res := <-r
		if res.err != nil {
			t.Fatalf("reader of replica %d: %v", i, res.err)
		}
		checkSeen(t, res.got, want)
	}
	for i, s := range replicas {
		if h, err := s.Head(ctx); err != nil || h != total {
			t.Errorf("replica %d: Head = %d, %v; want %d", i, h, err, total)
		}
	}
	t.Logf("%d appends, %d conflicts retried", total, conflicts)
}

func TestReopenKeepsEvents(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	ctx := ctxFor(t, 30*time.Second)
	db, err := Open(ctx, url, Config{})
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

	s2 := openStore(t, openDB(t, url), EventStoreConfig{})
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

// commitBatch commits batch through a writer of s of its own, as one
// transaction.
func commitBatch(t *testing.T, s *EventStore, batch []*appendReq) {
	t.Helper()
	w := &writer{s: s}
	defer w.disconnect(context.Background())
	w.commit(batch, func() {})
}

// TestBatchIsolatesRequests commits several requests in one transaction: a
// conflicting one is undone alone, and each sees the ones before it.
func TestBatchIsolatesRequests(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, EventStoreConfig{})
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
		// A new event, then one of a, which is in s1.
		request(t, "s4", domain.NoStream, append(posted(1), a[1])),
		request(t, "s1", 3, a[1:]), // a[1] alone: stored at s1 v2
	}
	changed := *s.changed.Load()
	commitBatch(t, s, batch)
	type want struct {
		conflict  bool
		version   int64
		positions []int64
		stored    []int64 // positions of the stored records returned
	}
	h := int64(head)
	wants := []want{
		{version: 1, positions: []int64{h + 1, h + 2}},
		{conflict: true},
		{version: 3, positions: []int64{h + 3}},
		{conflict: true},
		{version: 1, positions: []int64{h + 4}},
		{conflict: true},
		{stored: []int64{h + 1, h + 2}},
		{conflict: true},
		{stored: []int64{h + 2}},
	}
	for i, r := range batch {
		got := <-r.Answered()
		w := wants[i]
		switch {
		case w.conflict:
			if !errors.Is(got.Err, commands.ErrConflict) {
				t.Errorf("request %d: got %v, want a conflict", i, got.Err)
			}
		case got.Err != nil:
			t.Errorf("request %d: %v", i, got.Err)
		case w.stored != nil:
			var positions []int64
			for _, w := range got.Stored {
				positions = append(positions, w.position)
			}
			if !reflect.DeepEqual(positions, w.stored) {
				t.Errorf("request %d: got stored records at %v, want %v", i, positions, w.stored)
			}
		case got.Version != w.version || !reflect.DeepEqual(got.Positions, w.positions):
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
	if hd, _ := s.Head(ctx); hd != uint64(h+4) {
		t.Errorf("Head after the batch = %d, want %d", hd, h+4)
	}
}

// TestBatchSurvivesAForeignWrite has a row inserted behind the store's
// back, without the lock, at a position the next batch takes: the batch
// fails on the unique constraint, is retried a request at a time, and only
// the request that collides fails, with a conflict.
func TestBatchSurvivesAForeignWrite(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	if _, err := s.Append(ctx, "seed", domain.NoStream, posted(1)); err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(ctx)
	if _, err := db.Pool().Exec(ctx, `INSERT INTO events (`+columns+`)
		VALUES ($1, 'foreign', 1, 'foreign-1', 'conversation.MessagePosted', 1, now(), 'system', '', '{}')`, int64(head+2)); err != nil {
		t.Fatal(err)
	}
	batch := []*appendReq{
		request(t, "a", domain.NoStream, posted(1)), // head+1
		request(t, "b", domain.NoStream, posted(1)), // head+2: taken
	}
	commitBatch(t, s, batch)
	if got := <-batch[0].Answered(); got.Err != nil || !reflect.DeepEqual(got.Positions, []int64{int64(head + 1)}) {
		t.Errorf("first request: got %v, %v; want position %d", got.Positions, got.Err, head+1)
	}
	if got := <-batch[1].Answered(); !errors.Is(got.Err, commands.ErrConflict) {
		t.Errorf("second request: got %v, %v; want a conflict", got.Positions, got.Err)
	}
}

// TestAppendsAreGrouped holds the lock on log_head while appends queue up,
// then checks that they are committed in fewer transactions than requests.
func TestAppendsAreGrouped(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, EventStoreConfig{})
	var mu sync.Mutex
	var sizes []int
	s.onBatch = func(n int) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}
	ctx := ctxFor(t, 10*time.Second)
	hold, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, lockHeadSQL); err != nil {
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
	time.Sleep(300 * time.Millisecond) // let the appends queue behind the lock
	if err := hold.Rollback(ctx); err != nil {
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
	t.Parallel()
	// With an hour between polls and no listener, only the broadcast of a
	// commit can wake Wait.
	s, _ := newStore(t, EventStoreConfig{PollInterval: time.Hour})
	s.listen(context.Background())
	s.listenCancel()
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

// TestWaitIsWokenByNotification appends through another replica: with an
// hour between polls, only the notification can wake Wait.
func TestWaitIsWokenByNotification(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	waiter := openStore(t, openDB(t, url), EventStoreConfig{PollInterval: time.Hour})
	other := openStore(t, openDB(t, url), EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	for i := range 3 {
		woken := make(chan error, 1)
		go func() { woken <- waiter.Wait(ctx, uint64(i)) }()
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		if _, err := other.Append(ctx, "n", int64(i), posted(1)); err != nil {
			t.Fatal(err)
		}
		if err := <-woken; err != nil {
			t.Fatalf("Wait(%d): %v", i, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Wait(%d) returned %v after the other replica's append", i, d)
		}
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	// Wait starts the listener; Close must stop it.
	waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.Wait(waitCtx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait on an empty log: got %v, want the deadline", err)
	}
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

// TestTimesAndDataRoundTrip checks that what Append returns is what a read
// returns: times in UTC to the microsecond, and the data byte for byte.
func TestTimesAndDataRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	tests := []struct {
		name string
		at   time.Time
		want time.Time
	}{
		{"nanoseconds in another zone", time.Date(2025, 7, 8, 23, 59, 59, 123456789, time.FixedZone("CEST", 2*3600)),
			time.Date(2025, 7, 8, 21, 59, 59, 123456000, time.UTC)},
		{"whole second", time.Date(2025, 7, 8, 0, 0, 0, 0, time.UTC), time.Date(2025, 7, 8, 0, 0, 0, 0, time.UTC)},
		{"zero", time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := "t-" + uuid.NewString()
			ev := conversation.MessagePosted{Meta: domain.Meta{At: tt.at, Actor: testActor}, MessageID: "m",
				Body: "«é» \"q\" \\ \u2028 \x01 😀", ClientID: "c\x00"}
			appended, err := s.Append(ctx, stream, domain.NoStream, []domain.Pending{{EventID: uuid.NewString(), Event: ev}})
			if err != nil {
				t.Fatal(err)
			}
			if !appended[0].At.Equal(tt.want) || appended[0].At.Location() != time.UTC {
				t.Errorf("Append: At = %v, want %v", appended[0].At, tt.want)
			}
			read, err := s.ReadStream(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(read, appended) {
				t.Errorf("ReadStream:\n got %+v\nwant %+v", read, appended)
			}
		})
	}
}

// TestStaleVersions has one replica append to a stream whose version the
// other remembers: the other must neither accept an append at the version
// it remembers nor refuse one at the version the stream is at.
func TestStaleVersions(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	a := openStore(t, openDB(t, url), EventStoreConfig{})
	b := openStore(t, openDB(t, url), EventStoreConfig{})
	ctx := ctxFor(t, 10*time.Second)
	if _, err := a.Append(ctx, "s", domain.NoStream, posted(1)); err != nil { // a remembers version 1
		t.Fatal(err)
	}
	if _, err := b.Append(ctx, "s", 1, posted(2)); err != nil { // now at 3
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		expected int64
		want     int64 // the first version appended; 0 for a conflict
	}{
		{"the version a remembers", 1, 0},
		{"no stream", domain.NoStream, 0},
		{"the version the stream is at", 3, 4},
		{"any version", domain.AnyVersion, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := a.Append(ctx, "s", tt.expected, posted(1))
			if tt.want == 0 {
				if !errors.Is(err, commands.ErrConflict) {
					t.Errorf("Append(%d): got %v, %v; want a conflict", tt.expected, recs, err)
				}
				return
			}
			if err != nil || recs[0].Version != tt.want {
				t.Fatalf("Append(%d): got %v, %v; want version %d", tt.expected, recs, err, tt.want)
			}
		})
	}
	// b remembers 3; the stream is at 5.
	if _, err := b.Append(ctx, "s", domain.AnyVersion, posted(1)); err != nil {
		t.Errorf("AnyVersion on the other replica: %v", err)
	}
	recs, err := b.ReadStream(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if r.Version != int64(i+1) {
			t.Errorf("record %d: version %d", i, r.Version)
		}
	}
	if len(recs) != 6 {
		t.Errorf("the stream holds %d events, want 6", len(recs))
	}
}

// TestTailReadsAsTheDatabase appends every type of event, from writers at
// once, and reads the log back both from the tail and from the database:
// the records must be the same, to the event's last field, since the live
// projector reads the one and a rebuild the other.
func TestTailReadsAsTheDatabase(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, EventStoreConfig{})
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
	fromTail, err := s.ReadAll(ctx, 0, total)
	if err != nil {
		t.Fatal(err)
	}
	fromDB, err := s.query(ctx, `SELECT `+columns+` FROM events WHERE position > 0 ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromTail) != total || len(fromDB) != total {
		t.Fatalf("%d events from the tail, %d from the database, want %d", len(fromTail), len(fromDB), total)
	}
	for i := range fromDB {
		if !reflect.DeepEqual(fromTail[i], fromDB[i]) {
			t.Errorf("at %d:\ntail     %#v\ndatabase %#v", fromDB[i].Position, fromTail[i], fromDB[i])
		}
	}
}
