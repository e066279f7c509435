package readapi

// The fan-out benchmarks: real SQLite read models and projector, the real
// change feed and hub, the real Gin handlers behind an httptest server, and
// real SSE clients reading over loopback TCP in this process; beside them,
// in alternate blocks of the same run, a bare net/http SSE server writing
// pre-rendered events of the same size to as many clients.
//
//	go test -run '^$' -bench 'FanOut1000$' -benchtime 3000x ./readapi
//	go test -run '^$' -bench 'FanOut5000Throughput' -benchtime 2000x ./readapi
//
// b.N counts the posts of both servers. The latency of a delivery is from
// just before the append of the message (its time travels in the body), or
// from when the hub got it (hub-), to when a client has parsed its
// message.created event. cpu-µs/delivery is the CPU time of the whole
// process (server, clients, SQLite) over the deliveries: the clients share
// the two cores with the server.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/infra/bus"
	"github.com/helpdesk/messenger/infra/cputime"
	"github.com/helpdesk/messenger/infra/httpkit"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/infra/sqlite"
	"github.com/helpdesk/messenger/projections"
)

func BenchmarkFanOut1000(b *testing.B) { benchFanOut(b, 1000, 100) }

func BenchmarkFanOut5000Throughput(b *testing.B) { benchFanOut(b, 5000, 0) }

// benchConversations is how many live chats the posts go round.
const benchConversations = 16

// throughputWindow is how many posts the throughput runs let the slowest
// client lag: a closed loop, so that no bounded buffer overflows.
const throughputWindow = 64

// How many posts go to one server before the other has its turn: the two
// alternate, so that what else runs on the machine weighs on both alike.
// Blocks are longer when the clients must reconnect for each.
const (
	fanOutBlock          = 100
	fanOutReconnectBlock = 500
)

// benchFanOut posts (paced at rate a second, or as fast as the slowest
// client allows when rate is 0) to subs support agents of Messenger and, in
// alternate blocks, to as many clients of the bare server. b.Loop counts
// the posts of both.
func benchFanOut(b *testing.B, subs, rate int) {
	limit := raiseNoFile(b)
	gin.SetMode(gin.ReleaseMode)

	sut := newBenchServer(b, subs, benchConversations)
	defer sut.close()
	bare := newBareServer(b)
	defer bare.close()
	systems := []*system{{
		name: "messenger", addr: sut.srv.Listener.Addr().String(), open: sut.streams.Clients, hubAt: sut.deliveredAt,
		target: func(i int) (string, string) { return "/v1/stream", agentToken(i) },
		post:   func(seq int) { sut.post(b, seq) },
		warmUp: sut.warmUp,
	}, {
		name: "bare", addr: bare.srv.Listener.Addr().String(), open: bare.open,
		target: func(int) (string, string) { return "/", "" },
		post:   bare.post,
		warmUp: bare.warmUp,
	}}
	// Both sets of clients stay connected when the files allow: each
	// stream takes two, the client's and the server's.
	persistent := 4*subs+256 <= int(limit)
	block := fanOutReconnectBlock
	if persistent {
		block = fanOutBlock
		for _, sys := range systems {
			sys.connect(b, subs)
		}
	}

	var cur *system
	i := 0
	for b.Loop() {
		if i%block == 0 {
			if cur != nil {
				cur.finish(b, !persistent)
			}
			cur = systems[i/block%2]
			if !persistent {
				cur.connect(b, subs)
			}
			cur.start(rate)
		}
		cur.step()
		i++
	}
	cur.finish(b, true)
	for _, sys := range systems {
		sys.disconnect()
	}

	res, base := systems[0].result(), systems[1].result()
	res.report(b, "")
	base.report(b, "base-")
	if base.p99 > 0 {
		b.ReportMetric(float64(res.p99)/float64(base.p99), "p99/base")
	}
	if base.rate > 0 {
		b.ReportMetric(res.rate/base.rate, "rate/base")
	}
	if base.cpu > 0 {
		b.ReportMetric(res.cpu/base.cpu, "cpu/base")
	}
	b.Logf("%d subscribers, %d+%d posts in blocks of %d: messenger append→client p50 %v p99 %v max %v, hub→client p50 %v p99 %v, %.0f deliveries/s, %.2f CPU µs a delivery, lost %d dup %d | bare p50 %v p99 %v max %v, %.0f deliveries/s, %.2f CPU µs a delivery, lost %d dup %d",
		subs, systems[0].seq, systems[1].seq, block, res.p50, res.p99, res.max, res.fanout50, res.fanout99, res.rate, res.cpu, res.lost, res.dup,
		base.p50, base.p99, base.max, base.rate, base.cpu, base.lost, base.dup)
}

// system is a server under measure and its clients.
type system struct {
	name   string
	addr   string
	open   func() int             // how many streams the server holds
	hubAt  func(pos uint64) int64 // when the hub got a position, if the server has one
	target func(i int) (path, token string)
	post   func(seq int)
	warmUp func(tb testing.TB, clients []*sseConn)

	clients []*sseConn
	seq     int // the posts so far

	// The block under way.
	rate   int
	posts  chan int
	poster sync.WaitGroup
	from   int // seq before the block
	began  time.Time
	cpu0   time.Duration // the process's CPU time when the block began

	// What the blocks measured.
	delivered, lost, dup int64
	hist, fanout         histogram
	active, cpu          time.Duration
}

func (s *system) connect(b *testing.B, n int) {
	s.clients = connectAll(b, s.addr, n, s.target, s.hubAt)
	waitOpen(b, s.open, n)
	s.warmUp(b, s.clients)
}

// disconnect closes the clients, keeping what they measured.
func (s *system) disconnect() {
	for _, c := range s.clients {
		c.mu.Lock()
		s.hist.merge(&c.hist)
		s.fanout.merge(&c.fanout)
		c.hist, c.fanout = histogram{}, histogram{}
		c.mu.Unlock()
	}
	closeAll(s.clients)
	s.clients = nil
}

// start begins a block: step then posts, each on its own goroutine, as
// clients of their own would (one slow append does not hold back the
// next), paced at rate or as the slowest client allows.
func (s *system) start(rate int) {
	s.rate, s.from, s.began, s.cpu0 = rate, s.seq, time.Now(), cputime.Self()
	s.posts = make(chan int, 1)
	s.poster.Add(1)
	go func() {
		defer s.poster.Done()
		var inFlight sync.WaitGroup
		defer inFlight.Wait()
		var minGot int64
		for seq := range s.posts {
			if rate > 0 {
				// Paced: post at its slot, whatever the last one cost.
				if d := time.Until(s.began.Add(time.Duration(seq-s.from-1) * time.Second / time.Duration(rate))); d > 0 {
					time.Sleep(d)
				}
			} else {
				// Closed loop: the slowest client is at most throughputWindow behind.
				for int64(seq-s.from)-minGot > throughputWindow {
					minGot = minDelivered(s.clients)
					if int64(seq-s.from)-minGot > throughputWindow {
						time.Sleep(time.Millisecond)
					}
				}
			}
			inFlight.Add(1)
			go func() {
				defer inFlight.Done()
				s.post(seq)
			}()
		}
	}()
}

func (s *system) step() {
	s.seq++
	s.posts <- s.seq
}

// finish ends the block: it waits until every client has every post (or a
// minute, and counts the missing as lost), and closes the clients if
// disconnect.
func (s *system) finish(b *testing.B, disconnect bool) {
	close(s.posts)
	s.poster.Wait()
	want := int64(s.seq - s.from)
	deadline := time.Now().Add(time.Minute)
	for minDelivered(s.clients) < want && time.Now().Before(deadline) && firstErr(s.clients) == nil {
		time.Sleep(time.Millisecond)
	}
	s.cpu += cputime.Self() - s.cpu0
	var last int64
	for _, c := range s.clients {
		c.mu.Lock()
		got := c.got.Load()
		s.delivered += got
		s.lost += want - got
		s.dup += c.dup
		c.dup = 0
		c.got.Store(0)
		last = max(last, c.last)
		c.mu.Unlock()
	}
	if err := firstErr(s.clients); err != nil {
		b.Errorf("%s: a client failed: %v", s.name, err)
	}
	active := time.Duration(last - s.began.UnixNano())
	s.active += active
	if testing.Verbose() {
		b.Logf("%s: posts %d..%d in %v, %.0f deliveries/s", s.name, s.from+1, s.seq, active.Round(time.Millisecond),
			float64(want*int64(len(s.clients)))/active.Seconds())
	}
	if disconnect {
		s.disconnect()
	}
}

// result sums up the blocks.
func (s *system) result() result {
	r := result{delivered: s.delivered, lost: s.lost, dup: s.dup,
		p50: s.hist.quantile(0.50), p99: s.hist.quantile(0.99), max: s.hist.maxValue(),
		fanout50: s.fanout.quantile(0.50), fanout99: s.fanout.quantile(0.99)}
	if s.active > 0 {
		r.rate = float64(s.delivered) / s.active.Seconds()
	}
	if s.delivered > 0 {
		r.cpu = float64(s.cpu.Microseconds()) / float64(s.delivered)
	}
	return r
}

// result is what the clients of one run measured.
type result struct {
	delivered, lost, dup int64
	p50, p99, max        time.Duration
	fanout50, fanout99   time.Duration // from the hub to the client
	rate                 float64       // deliveries a second, from the first post to the last delivery
	cpu                  float64       // CPU µs of the process (server and clients) a delivery
}

func (r result) report(b *testing.B, prefix string) {
	if r.fanout99 > 0 {
		b.ReportMetric(float64(r.fanout50.Microseconds())/1000, prefix+"hub-p50-ms")
		b.ReportMetric(float64(r.fanout99.Microseconds())/1000, prefix+"hub-p99-ms")
	}
	b.ReportMetric(float64(r.p50.Microseconds())/1000, prefix+"p50-ms")
	b.ReportMetric(float64(r.p99.Microseconds())/1000, prefix+"p99-ms")
	b.ReportMetric(r.rate, prefix+"deliveries/s")
	b.ReportMetric(r.cpu, prefix+"cpu-µs/delivery")
	b.ReportMetric(float64(r.lost), prefix+"lost")
	b.ReportMetric(float64(r.dup), prefix+"dup")
}

// waitOpen waits until open reports n streams.
func waitOpen(tb testing.TB, open func() int, n int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for open() != n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d streams open, want %d", open(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func minDelivered(clients []*sseConn) int64 {
	m := int64(math.MaxInt64)
	for _, c := range clients {
		m = min(m, c.got.Load())
	}
	return m
}

func firstErr(clients []*sseConn) error {
	for _, c := range clients {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// benchBody is a message body: "bench:<seq>:<unix nanos>:" then padding,
// 140 bytes in all, the length of an inbox excerpt.
func benchBody(seq int, at time.Time) string {
	s := "bench:" + strconv.Itoa(seq) + ":" + strconv.FormatInt(at.UnixNano(), 10) + ":"
	return s + strings.Repeat("x", max(0, 140-len(s)))
}

// benchServer is Messenger's read side over a real SQLite file.
type benchServer struct {
	ctx     context.Context
	cancel  func()
	wg      sync.WaitGroup
	db      *sqlite.DB
	store   *sqlite.EventStore
	feed    interface{ Close() error }
	proj    *projections.Projector
	hub     *Hub
	streams *Streams
	live    atomic.Pointer[Streams] // streams, once they serve
	srv     *httptest.Server
	convs   []benchConv
	seq     atomic.Int64 // of event ids
	// delivered holds when the hub got each position, in unix nanos.
	delivered []atomic.Int64
}

// deliveredAt returns when the hub got position pos, in unix nanos.
func (s *benchServer) deliveredAt(pos uint64) int64 {
	if pos >= uint64(len(s.delivered)) {
		return 0
	}
	return s.delivered[pos].Load()
}

type benchConv struct {
	id       string
	customer directory.Principal
}

func agentToken(i int) string    { return "agent-" + strconv.Itoa(i) }
func customerToken(i int) string { return "customer-" + strconv.Itoa(i) }

// mapAuth authenticates by a map of token hashes.
type mapAuth map[string]directory.Principal

func (m mapAuth) Principal(_ context.Context, hash string) (directory.Principal, string, bool, error) {
	p, ok := m[hash]
	return p, hash, ok, nil
}

// newBenchServer serves agents support agents and customers customers;
// the first convs customers each start a live chat.
func newBenchServer(tb testing.TB, agents, convs int) *benchServer {
	return newBenchServerWith(tb, agents, convs, convs, StreamConfig{})
}

func newBenchServerWith(tb testing.TB, agents, customers, convs int, cfg StreamConfig) *benchServer {
	tb.Helper()
	s := &benchServer{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	db, err := sqlite.Open(s.ctx, filepath.Join(tb.TempDir(), "messenger.db"))
	if err != nil {
		tb.Fatal(err)
	}
	s.db = db
	s.store = sqlite.NewEventStore(db, sqlite.EventStoreConfig{})
	if _, err := projections.Migrate(s.ctx, db.Writer(), readmodel.SQLite{}); err != nil {
		tb.Fatal(err)
	}
	s.hub = NewHub(HubConfig{})
	feed := bus.NewGoChannel()
	s.feed = feed
	msgs, err := feed.Subscribe(s.ctx, bus.Topic)
	if err != nil {
		tb.Fatal(err)
	}
	s.wg.Add(2)
	s.delivered = make([]atomic.Int64, 1<<20)
	go func() {
		defer s.wg.Done()
		bus.ConsumeFrom(s.ctx, msgs, bus.Topic, 0, func(changes []projections.Change) {
			now := time.Now().UnixNano()
			for _, ch := range changes {
				if ch.Position < uint64(len(s.delivered)) {
					s.delivered[ch.Position].CompareAndSwap(0, now)
				}
			}
			if st := s.live.Load(); st != nil {
				st.Deliver(changes) // as messengerd: renders read once per batch
			} else {
				s.hub.Deliver(changes)
			}
		})
	}()
	s.proj = projections.NewProjector(db.Writer(), readmodel.SQLite{}, s.store, bus.NewPublisher(feed, bus.Topic), projections.Config{})
	if err := s.proj.Load(s.ctx); err != nil {
		tb.Fatal(err)
	}
	go func() { defer s.wg.Done(); s.proj.Run(s.ctx) }()

	auth := mapAuth{}
	for i := range agents {
		p := directory.Principal{Kind: domain.ActorUser, ID: "agent-" + strconv.Itoa(i), Name: "Agent " + strconv.Itoa(i),
			Role: directory.Agent, Support: true}
		auth[commands.HashToken(agentToken(i))] = p
	}
	for i := range customers {
		p := directory.Principal{Kind: domain.ActorCustomer, ID: "customer-" + strconv.Itoa(i), Name: "Customer " + strconv.Itoa(i)}
		auth[commands.HashToken(customerToken(i))] = p
		if i < convs {
			s.append(tb, "customer-"+p.ID, domain.NoStream, directory.CustomerRegistered{Meta: s.meta(p), CustomerID: p.ID,
				Name: p.Name, Email: p.ID + "@example.com", TokenHash: commands.HashToken(customerToken(i))})
			id := "conv-" + strconv.Itoa(i)
			s.append(tb, "conversation-"+id, domain.NoStream,
				conversation.Started{Meta: s.meta(p), ConversationID: id, Channel: conversation.LiveChat, CustomerID: p.ID},
				conversation.MessagePosted{Meta: s.meta(p), MessageID: id + "-m1", Body: "Hello, my order is late"})
			s.convs = append(s.convs, benchConv{id: id, customer: p})
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	head, err := s.store.Head(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.proj.WaitFor(ctx, head); err != nil {
		tb.Fatal(err)
	}

	s.streams = NewStreams(projections.NewReadModels(db.Reader(), readmodel.SQLite{}), s.store, s.proj, s.hub, cfg)
	s.live.Store(s.streams)
	r := gin.New()
	r.GET("/v1/stream", httpkit.Authenticate(auth, true), s.streams.Agent)
	r.GET("/v1/widget/stream", httpkit.Authenticate(auth, true), s.streams.Widget)
	s.srv = httptest.NewUnstartedServer(r)
	s.srv.Config.WriteTimeout = 30 * time.Second // as messengerd: streams lift it
	s.srv.Config.Protocols = benchProtocols
	s.srv.Start()
	return s
}

func (s *benchServer) meta(p directory.Principal) domain.Meta {
	return domain.Meta{At: time.Now(), Actor: p.Actor()}
}

func (s *benchServer) append(tb testing.TB, stream string, expected int64, events ...domain.Event) {
	tb.Helper()
	pending := make([]domain.Pending, len(events))
	for i, e := range events {
		pending[i] = domain.Pending{EventID: "bench-" + strconv.FormatInt(s.seq.Add(1), 10), Event: e}
	}
	if _, err := s.store.Append(s.ctx, stream, expected, pending); err != nil {
		tb.Errorf("append to %s: %v", stream, err)
	}
}

// post appends message seq to the live chats in turn. Posts may run
// concurrently.
func (s *benchServer) post(tb testing.TB, seq int) {
	c := &s.convs[seq%len(s.convs)]
	now := time.Now()
	s.append(tb, "conversation-"+c.id, domain.AnyVersion, conversation.MessagePosted{
		Meta:      domain.Meta{At: now, Actor: c.customer.Actor()},
		MessageID: c.id + "-b" + strconv.Itoa(seq),
		Body:      benchBody(seq, now),
	})
}

// warmUp posts a few messages no client counts and waits until every
// client has them.
func (s *benchServer) warmUp(tb testing.TB, clients []*sseConn) {
	for i := range 5 {
		c := &s.convs[i%len(s.convs)]
		s.append(tb, "conversation-"+c.id, domain.AnyVersion, conversation.MessagePosted{
			Meta: s.meta(c.customer), MessageID: c.id + "-w" + strconv.Itoa(i), Body: "warming up"})
	}
	waitFrames(tb, clients, 5)
}

// waitFrames waits until every client has read n message.created events
// that no run counts.
func waitFrames(tb testing.TB, clients []*sseConn, n int64) {
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for c.other.Load() < n {
			if time.Now().After(deadline) {
				tb.Fatalf("a client got %d warm-up events, want %d", c.other.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func (s *benchServer) close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
	s.cancel()
	s.wg.Wait()
	s.feed.Close()
	s.store.Close()
	s.db.Close()
}

// bareServer is the baseline: plain net/http SSE, one buffered channel a
// client, events rendered once and written to each client, its handler
// draining what is queued into one write and flush.
type bareServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	clients map[chan []byte]struct{}
	pos     uint64
}

func newBareServer(tb testing.TB) *bareServer {
	s := &bareServer{clients: map[chan []byte]struct{}{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.WriteTimeout = 30 * time.Second
	s.srv.Config.Protocols = benchProtocols
	s.srv.Start()
	return s
}

func (s *bareServer) serve(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	c := make(chan []byte, 1024)
	s.mu.Lock()
	s.clients[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.clients, c)
		s.mu.Unlock()
	}()
	io.WriteString(w, "id: 0\n\n")
	rc.Flush()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-c:
			w.Write(ev)
		drain:
			for {
				select {
				case ev := <-c:
					w.Write(ev)
				default:
					break drain
				}
			}
		case <-tick.C:
			io.WriteString(w, ": ping\n\n")
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// open returns how many clients are connected.
func (s *bareServer) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// post renders what Messenger sends a support agent for a message to a live
// chat (message.created, unread.changed, conversation.updated), as big, and
// queues it for every client.
func (s *bareServer) post(seq int) { s.broadcast(seq, benchBody(seq, time.Now())) }

// warmUp sends a few events no client counts and waits until every client
// has them.
func (s *bareServer) warmUp(tb testing.TB, clients []*sseConn) {
	for range 5 {
		s.broadcast(0, "warming up")
	}
	waitFrames(tb, clients, 5)
}

func (s *bareServer) broadcast(seq int, body string) {
	now := time.Now()
	s.pos++
	pos := s.pos
	author := projections.Author{Kind: "customer", ID: "customer-1", Name: "Customer 1"}
	msg, _ := json.Marshal(projections.Message{ID: "conv-1-b" + strconv.Itoa(seq), ConversationID: "conv-1", Author: author,
		Body: body, CreatedAt: projections.Time(now), Position: projections.Position(pos)})
	unread, _ := json.Marshal(agentUnread{ConversationID: "conv-1", Unread: seq % 100, Customers: 16, Mine: 0})
	row, _ := json.Marshal(projections.InboxRow{ID: "conv-1", Channel: "livechat", Status: "open",
		Customer:    &projections.CustomerRef{ID: "customer-1", Name: "Customer 1", Email: "customer-1@example.com"},
		LastMessage: &projections.LastMessage{ID: "conv-1-b" + strconv.Itoa(seq), Author: author, Excerpt: body, CreatedAt: projections.Time(now)},
		Unread:      seq % 100, Links: []projections.Link{}, UpdatedAt: projections.Time(now)})
	var buf bytes.Buffer
	for _, f := range []struct {
		name string
		data []byte
	}{{"message.created", msg}, {"unread.changed", unread}, {"conversation.updated", row}} {
		fmt.Fprintf(&buf, "id: %d\nevent: %s\ndata: %s\n\n", pos, f.name, f.data)
	}
	ev := buf.Bytes()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		c <- ev
	}
}

func (s *bareServer) close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// sseConn is one SSE client on its own connection, read by one goroutine.
type sseConn struct {
	conn  net.Conn
	got   atomic.Int64 // message.created events of the run, each counted once
	other atomic.Int64 // message.created events of no run (warm-up)

	// hubAt, if set, tells when the hub got a position.
	hubAt func(pos uint64) int64

	mu     sync.Mutex // guards what follows against the reader, once it is done
	hist   histogram
	fanout histogram // from the hub to the client, when hubAt is set
	seen   []uint64  // bit set of the sequence numbers received
	dup    int64
	last   int64 // unix nanos of the last delivery
	err    error
}

// connectAll opens n streams, 64 at a time, and waits for each one's
// first frame.
func connectAll(tb testing.TB, addr string, n int, target func(i int) (path, token string), hub func(pos uint64) int64) []*sseConn {
	tb.Helper()
	out, err := openAll(n, func(i int) (*sseConn, error) {
		path, token := target(i)
		c, err := dialSSE(addr, path, token, hub)
		if err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		return c, nil
	})
	if err != nil {
		closeAll(out)
		tb.Fatal(err)
	}
	return out
}

// openAll calls open for 0 … n-1, 64 calls at a time, and returns what
// they opened, by index, and the first error, if any.
func openAll[T any](n int, open func(i int) (T, error)) ([]T, error) {
	out := make([]T, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := open(i)
			if err != nil {
				mu.Lock()
				first = cmpErr(first, err)
				mu.Unlock()
				return
			}
			out[i] = c
		}()
	}
	wg.Wait()
	return out, first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func closeAll(clients []*sseConn) {
	for _, c := range clients {
		if c != nil {
			if tc, ok := c.conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // no TIME_WAIT: runs reuse the ports
			}
			c.conn.Close()
		}
	}
}

// dialSSE opens path as the holder of token and returns once the stream's
// first frame has arrived; a goroutine then reads the rest.
func dialSSE(addr, path, token string, hub func(pos uint64) int64) (*sseConn, error) {
	conn, lr, err := openStream(addr, path, token, 10*time.Second, 30*time.Second, 16<<10, 32<<10)
	if err != nil {
		return nil, err
	}
	c := &sseConn{conn: conn, hubAt: hub}
	go c.read(lr)
	return c, nil
}

// openStream sends a GET of path as the holder of token, waiting at most
// dial for the connection and answer for the headers and first frame, and returns
// once the stream's first frame (an id, or a reset) has arrived, with the
// reader of the rest. The buffers are of connBuf and bodyBuf bytes.
func openStream(addr, path, token string, dial, answer time.Duration, connBuf, bodyBuf int) (net.Conn, *bufio.Reader, error) {
	conn, err := net.DialTimeout("tcp", addr, dial)
	if err != nil {
		return nil, nil, err
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		conn.Close()
		return nil, nil, err
	}
	conn.SetReadDeadline(time.Now().Add(answer))
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, connBuf), nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, nil, fmt.Errorf("status %s", resp.Status)
	}
	lr := bufio.NewReaderSize(resp.Body, bodyBuf)
	for {
		line, err := lr.ReadSlice('\n')
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("first frame: %w", err)
		}
		if len(line) == 1 {
			break
		}
	}
	conn.SetReadDeadline(time.Time{})
	return conn, lr, nil
}

var (
	prefixID    = []byte("id: ")
	prefixEvent = []byte("event: ")
	prefixData  = []byte("data: ")
	nameCreated = []byte("message.created")
	markBench   = []byte(`"body":"bench:`)
)

// read parses events until the connection ends.
func (c *sseConn) read(lr *bufio.Reader) {
	created := false
	var pos uint64
	var err error
	for {
		var line []byte
		line, err = lr.ReadSlice('\n')
		if err != nil {
			break
		}
		line = line[:len(line)-1]
		switch {
		case len(line) == 0:
			created = false
		case bytes.HasPrefix(line, prefixID):
			n, _ := leadingInt(line[len(prefixID):])
			pos = uint64(n)
		case bytes.HasPrefix(line, prefixEvent):
			created = bytes.Equal(line[len(prefixEvent):], nameCreated)
		case created && bytes.HasPrefix(line, prefixData):
			c.delivered(pos, line[len(prefixData):])
		}
	}
	c.mu.Lock()
	if !errors.Is(err, net.ErrClosed) {
		c.err = err
	}
	c.mu.Unlock()
}

// delivered counts the message of data.
func (c *sseConn) delivered(pos uint64, data []byte) {
	i := bytes.Index(data, markBench)
	if i < 0 {
		c.other.Add(1)
		return
	}
	rest := data[i+len(markBench):]
	seq, rest := leadingInt(rest)
	at, _ := leadingInt(rest[1:])
	now := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	w := seq / 64
	for len(c.seen) <= w {
		c.seen = append(c.seen, 0)
	}
	if c.seen[w]&(1<<(seq%64)) != 0 {
		c.dup++
		return
	}
	c.seen[w] |= 1 << (seq % 64)
	c.hist.record(time.Duration(now - int64(at)))
	if c.hubAt != nil {
		if t := c.hubAt(pos); t > 0 {
			c.fanout.record(time.Duration(now - t))
		}
	}
	c.last = now
	c.got.Add(1)
}

func leadingInt(b []byte) (int, []byte) {
	n := 0
	for len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		n = n*10 + int(b[0]-'0')
		b = b[1:]
	}
	return n, b
}

// histogram counts durations in log-linear buckets of microseconds: exact
// below 128 µs, then 64 buckets per power of two (under 1.6 % error).
type histogram struct {
	counts [128 + 32*64]uint32
	n      int64
	max    time.Duration
}

func (h *histogram) record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	i := int(us)
	if us >= 128 {
		shift := bits.Len64(us) - 7
		i = min(128+(shift-1)*64+int(us>>shift)-64, len(h.counts)-1)
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the top of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, n := range h.counts {
		if seen += int64(n); seen >= rank {
			top := uint64(i)
			if i >= 128 {
				shift := (i-128)/64 + 1
				top = uint64((i-128)%64+64+1)<<shift - 1
			}
			return min(time.Duration(top)*time.Microsecond, h.max)
		}
	}
	return h.max
}

func (h *histogram) maxValue() time.Duration { return h.max }
