package readapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/helpdesk"
	"github.com/helpdesk/messenger/domain/item"
	"github.com/helpdesk/messenger/infra/bus"
	"github.com/helpdesk/messenger/infra/httpkit"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/infra/sqlite"
	"github.com/helpdesk/messenger/projections"
)

// The principals of the tests, by bearer token.
var principals = map[string]directory.Principal{
	"support":  {Kind: domain.ActorUser, ID: "u-support", Name: "Sam", Role: directory.Agent, Support: true},
	"teammate": {Kind: domain.ActorUser, ID: "u-team", Name: "Tia", Role: directory.Agent},
	"cust1":    {Kind: domain.ActorCustomer, ID: "cu1", Name: "Carla"},
	"cust2":    {Kind: domain.ActorCustomer, ID: "cu2", Name: "Chen"},
}

// fakeAuth authenticates the tokens of principals.
type fakeAuth struct{}

func (fakeAuth) Principal(_ context.Context, hash string) (directory.Principal, string, bool, error) {
	for token, p := range principals {
		if commands.HashToken(token) == hash {
			return p, hash, true, nil
		}
	}
	return directory.Principal{}, "", false, nil
}

// fixture is the read side with a real log, projector, change feed and hub.
type fixture struct {
	t       *testing.T
	store   *sqlite.EventStore
	proj    *projections.Projector
	hub     *Hub
	streams *Streams
	srv     *httptest.Server
	client  *http.Client // opens the streams
	at      time.Time
}

// options set up a fixture; the zero value is the default set-up.
type options struct {
	hub     HubConfig
	streams StreamConfig
	// listen, if set, wraps the server's listener.
	listen func(net.Listener) net.Listener
	// feed, if set, is held while the projector publishes a batch: holding
	// it keeps changes the read models have applied from the hub.
	feed *sync.Mutex
	// replay, if set, is held while the streams read the log.
	replay *sync.Mutex
	// transport, if set, wraps the change feed's transport on the
	// projector's side.
	transport func(message.Publisher) message.Publisher
	// h2c makes the server speak HTTP/2 without TLS beside HTTP/1.1, as
	// messengerd does, and the fixture's client HTTP/2 only.
	h2c bool
}

// heldLog reads the log while holding a lock.
type heldLog struct {
	Log
	mu *sync.Mutex
}

func (h heldLog) ReadAll(ctx context.Context, after uint64, limit int) ([]domain.Recorded, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.Log.ReadAll(ctx, after, limit)
}

func newFixture(t *testing.T, o options) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "messenger.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := sqlite.NewEventStore(db, sqlite.EventStoreConfig{})
	if _, err := projections.Migrate(ctx, db.Writer(), readmodel.SQLite{}); err != nil {
		t.Fatal(err)
	}

	hub := NewHub(o.hub)
	feed := bus.NewGoChannel()
	subscribed := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	// As messengerd: the streams read what a batch looks like and route it
	// (Streams.Deliver), once they exist.
	var live atomic.Pointer[Streams]
	go func() {
		defer wg.Done()
		bus.Consume(ctx, readySubscriber{feed, subscribed}, bus.Topic, 0, func(changes []projections.Change) {
			if st := live.Load(); st != nil {
				st.Deliver(changes)
			} else {
				hub.Deliver(changes)
			}
		})
	}()
	<-subscribed

	var transport message.Publisher = feed
	if o.transport != nil {
		transport = o.transport(feed)
	}
	var pub projections.Publisher = bus.NewPublisher(transport, bus.Topic)
	if o.feed != nil {
		pub = heldPublisher{pub, o.feed}
	}
	proj := projections.NewProjector(db.Writer(), readmodel.SQLite{}, store, pub, projections.Config{
		OnError: func(err error) { t.Logf("projector: %v", err) },
	})
	if err := proj.Load(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer wg.Done()
		proj.Run(ctx)
	}()

	var log Log = store
	if o.replay != nil {
		log = heldLog{store, o.replay}
	}
	streams := NewStreams(projections.NewReadModels(db.Reader(), readmodel.SQLite{}), log, proj, hub, o.streams)
	live.Store(streams)
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/v1/stream", httpkit.Authenticate(fakeAuth{}, true), streams.Agent)
	r.GET("/v1/widget/stream", httpkit.Authenticate(fakeAuth{}, true), streams.Widget)
	srv := httptest.NewUnstartedServer(r)
	srv.Config.WriteTimeout = 200 * time.Millisecond // streams must lift it
	if o.listen != nil {
		srv.Listener = o.listen(srv.Listener)
	}
	if o.h2c {
		srv.Config.Protocols = h2cAndHTTP1()
	}
	srv.Start()
	client := srv.Client()
	if o.h2c {
		client = h2cClient(nil)
	}

	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		cancel()
		wg.Wait()
		feed.Close()
		store.Close()
		db.Close()
	})
	return &fixture{t: t, store: store, proj: proj, hub: hub, streams: streams, srv: srv, client: client,
		at: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)}
}

// heldPublisher publishes while holding a lock.
type heldPublisher struct {
	projections.Publisher
	mu *sync.Mutex
}

func (h heldPublisher) Publish(ctx context.Context, changes []projections.Change) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.Publisher.Publish(ctx, changes)
}

// readySubscriber tells when Consume has subscribed: GoChannel drops what is
// published before.
type readySubscriber struct {
	message.Subscriber
	ready chan struct{}
}

func (r readySubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	defer close(r.ready)
	return r.Subscriber.Subscribe(ctx, topic)
}

// append appends events to stream after version expected and waits until
// the read models have applied them; it returns their positions.
func (f *fixture) append(stream string, expected int64, events ...domain.Event) []uint64 {
	f.t.Helper()
	ctx := context.Background()
	pending := make([]domain.Pending, len(events))
	for i, e := range events {
		pending[i] = domain.Pending{EventID: fmt.Sprintf("%s-%d", stream, int(expected)+i+1), Event: e}
	}
	recs, err := f.store.Append(ctx, stream, expected, pending)
	if err != nil {
		f.t.Fatalf("append to %s: %v", stream, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := f.proj.WaitFor(wctx, recs[len(recs)-1].Position); err != nil {
		f.t.Fatalf("read models did not apply %s: %v", stream, err)
	}
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}

func (f *fixture) meta(actor directory.Principal) domain.Meta {
	f.at = f.at.Add(time.Second)
	return domain.Meta{At: f.at, Actor: actor.Actor()}
}

// startChat appends a live-chat conversation of customer with its first
// message and returns the positions of both events.
func (f *fixture) startChat(conv string, customer directory.Principal, body string) (started, posted uint64) {
	f.t.Helper()
	pos := f.append("conversation-"+conv, domain.NoStream,
		conversation.Started{Meta: f.meta(customer), ConversationID: conv, Channel: conversation.LiveChat, CustomerID: customer.ID},
		conversation.MessagePosted{Meta: f.meta(customer), MessageID: conv + "-m1", Body: body})
	return pos[0], pos[1]
}

// post appends message n (≥ 2) of conv by author and returns its position.
func (f *fixture) post(conv string, n int, author directory.Principal, body string) uint64 {
	f.t.Helper()
	return f.append("conversation-"+conv, int64(n),
		conversation.MessagePosted{Meta: f.meta(author), MessageID: fmt.Sprintf("%s-m%d", conv, n), Body: body})[0]
}

func (f *fixture) helpdeskOnline(online bool, version int64) uint64 {
	f.t.Helper()
	return f.append("helpdesk", version, helpdesk.StatusChanged{Meta: f.meta(principals["support"]), Online: online})[0]
}

// longMessages returns messages from to last of conv by cust1, of 3.5 kB
// each: enough to fill a client's buffers.
func (f *fixture) longMessages(conv string, from, last int) []domain.Event {
	body := strings.Repeat("a long message to fill the buffers ", 100)
	var out []domain.Event
	for n := from; n <= last; n++ {
		out = append(out, conversation.MessagePosted{Meta: f.meta(principals["cust1"]), MessageID: fmt.Sprintf("%s-m%d", conv, n), Body: body})
	}
	return out
}

// frame is one SSE frame as a client parses it: an event, an id alone, or a
// comment.
type frame struct {
	ID, Event, Data, Comment string
	HasID, HasData           bool
}

// client is an open stream.
type client struct {
	t      *testing.T
	resp   *http.Response
	frames chan frame
	lastID string // the resume token an EventSource would hold
	cancel func()
}

// open opens path as the principal holding token, with header Last-Event-ID
// lastID unless it is "".
func (f *fixture) open(path, token, lastID string) *client {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	c := &client{t: f.t, resp: resp, frames: make(chan frame, 4096), lastID: lastID, cancel: cancel}
	f.t.Cleanup(c.close)
	if resp.StatusCode == http.StatusOK {
		go c.read()
	}
	return c
}

func (c *client) close() {
	c.cancel()
	c.resp.Body.Close()
}

// read parses frames as the SSE spec says, one blank line ending each.
func (c *client) read() {
	defer close(c.frames)
	sc := bufio.NewScanner(c.resp.Body)
	var f frame
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			f.Data, f.HasData = strings.Join(data, "\n"), len(data) > 0
			if f.HasID || f.HasData || f.Comment != "" || f.Event != "" {
				c.frames <- f
			}
			f, data = frame{}, nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			f.Comment = value
		case "id":
			f.ID, f.HasID = value, true
		case "event":
			f.Event = value
		case "data":
			data = append(data, value)
		}
	}
}

// next returns the next event, skipping comments and frames without data
// (which only move the resume token, as in a browser).
func (c *client) next(within time.Duration) (frame, bool) {
	c.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return frame{}, false
			}
			if f.HasID {
				c.lastID = f.ID
			}
			if f.HasData {
				return f, true
			}
		case <-deadline:
			return frame{}, false
		}
	}
}

// ended reports whether the server ends the stream within d, whatever it
// sends before.
func (c *client) ended(d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return true
			}
			if f.HasID {
				c.lastID = f.ID
			}
		case <-deadline:
			return false
		}
	}
}

// expect reads the next events and checks their names and ids.
func (c *client) expect(want ...string) []frame {
	c.t.Helper()
	var got []frame
	for i := 0; i < len(want); i += 2 {
		f, ok := c.next(3 * time.Second)
		if !ok {
			c.t.Fatalf("event %d: got none, want %s id %s (got before: %v)", i/2, want[i], want[i+1], got)
		}
		if f.Event != want[i] || f.ID != want[i+1] {
			c.t.Fatalf("event %d: got %s id %s (%s), want %s id %s", i/2, f.Event, f.ID, f.Data, want[i], want[i+1])
		}
		got = append(got, f)
	}
	return got
}

// expectNothing checks that no event arrives for a while.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	if f, ok := c.next(d); ok {
		c.t.Fatalf("got %s id %s (%s), want nothing", f.Event, f.ID, f.Data)
	}
}

func id(pos uint64) string { return strconv.FormatUint(pos, 10) }

func decode[T any](t *testing.T, f frame) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(f.Data), &v); err != nil {
		t.Fatalf("%s data %q: %v", f.Event, f.Data, err)
	}
	return v
}

type rowData struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Unread   int    `json:"unread"`
	Customer *struct {
		ID string `json:"id"`
	} `json:"customer"`
	LastMessage *struct {
		ID      string `json:"id"`
		Excerpt string `json:"excerpt"`
	} `json:"last_message"`
}

type messageData struct {
	ID             string `json:"id"`
	ConversationID string `json:"conversation_id"`
	Body           string `json:"body"`
	Position       string `json:"position"`
	Author         struct {
		Kind, ID string
	} `json:"author"`
}

func TestStreamsAnswerOnlyTheirCallers(t *testing.T) {
	f := newFixture(t, options{})
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/v1/stream", "cust1", http.StatusForbidden},
		{"/v1/widget/stream", "support", http.StatusForbidden},
		{"/v1/stream", "nobody", http.StatusUnauthorized},
		{"/v1/stream?access_token=support", "", http.StatusOK},
		{"/v1/widget/stream?access_token=cust1", "", http.StatusOK},
	} {
		c := f.open(tc.path, tc.token, "")
		if c.resp.StatusCode != tc.want {
			t.Errorf("GET %s as %q: status %d, want %d", tc.path, tc.token, c.resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK {
			h := c.resp.Header
			for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
				"X-Accel-Buffering": "no"} {
				if got := h.Get(k); got != v {
					t.Errorf("GET %s: %s = %q, want %q", tc.path, k, got, v)
				}
			}
			// Chunked, as net/http sends it; the connection, taken from
			// net/http for the stream, closes at its end.
			if te := c.resp.TransferEncoding; len(te) != 1 || te[0] != "chunked" || !c.resp.Close || h.Get("Date") == "" {
				t.Errorf("GET %s: Transfer-Encoding %v, Close %v, Date %q", tc.path, te, c.resp.Close, h.Get("Date"))
			}
		}
		c.close()
	}
}

func TestLiveEventsGoToThoseWhoMaySeeThem(t *testing.T) {
	f := newFixture(t, options{})
	f.append("customer-cu1", domain.NoStream, directory.CustomerRegistered{Meta: f.meta(principals["cust1"]),
		CustomerID: "cu1", Name: "Carla", Email: "carla@example.com", TokenHash: commands.HashToken("cust1")})

	support := f.open("/v1/stream", "support", "")
	teammate := f.open("/v1/stream", "teammate", "")
	widget1 := f.open("/v1/widget/stream", "cust1", "")
	widget2 := f.open("/v1/widget/stream", "cust2", "")
	waitClients(t, f.streams, 4)

	started, posted := f.startChat("c1", principals["cust1"], "Hello, my order is late")
	online := f.helpdeskOnline(true, domain.NoStream)

	got := support.expect(
		"conversation.created", id(started),
		"message.created", id(posted),
		"unread.changed", id(posted),
		"helpdesk.status_changed", id(online))
	if row := decode[rowData](t, got[0]); row.ID != "c1" || row.Customer == nil || row.Customer.ID != "cu1" {
		t.Errorf("conversation.created = %s, want the inbox row of c1 with its customer", got[0].Data)
	}
	if m := decode[messageData](t, got[1]); m.ID != "c1-m1" || m.Body != "Hello, my order is late" || m.Position != id(posted) {
		t.Errorf("message.created = %s, want message c1-m1 at position %d", got[1].Data, posted)
	}
	if u := decode[agentUnread](t, got[2]); u != (agentUnread{ConversationID: "c1", Unread: 1, Customers: 1, Mine: 0}) {
		t.Errorf("unread.changed = %s, want c1 unread 1, customers 1, mine 0", got[2].Data)
	}
	if h := decode[helpdeskStatus](t, got[3]); !h.Online || h.Message == "" {
		t.Errorf("helpdesk.status_changed = %s, want online with the online message", got[3].Data)
	}

	// A teammate without support sees nothing of a customer conversation:
	// the helpdesk switch is its first event.
	teammate.expect("helpdesk.status_changed", id(online))

	got = widget1.expect(
		"conversation.created", id(started),
		"message.created", id(posted),
		"unread.changed", id(posted),
		"helpdesk.status_changed", id(online))
	if !strings.Contains(got[2].Data, `"unread":0`) || strings.Contains(got[2].Data, "customers") {
		t.Errorf("widget unread.changed = %s, want {conversation_id, unread: 0} only", got[2].Data)
	}
	widget2.expect("helpdesk.status_changed", id(online))

	// A reply by support: the customer's unread count goes up, support's
	// stays at 0 (posting reads), and the row follows.
	reply := f.post("c1", 2, principals["support"], "Let me check")
	support.expect("message.created", id(reply), "unread.changed", id(reply), "conversation.updated", id(reply))
	got = widget1.expect("message.created", id(reply), "unread.changed", id(reply), "conversation.updated", id(reply))
	if u := decode[widgetUnread](t, got[1]); u.Unread != 1 {
		t.Errorf("widget unread.changed = %s, want unread 1", got[1].Data)
	}
	if row := decode[rowData](t, got[2]); row.LastMessage == nil || row.LastMessage.ID != "c1-m2" || row.Unread != 1 {
		t.Errorf("widget conversation.updated = %s, want last message c1-m2 and unread 1", got[2].Data)
	}

	// Reading is the reader's own business.
	read := f.append("conversation-c1", 3, conversation.Read{Meta: f.meta(principals["cust1"]), UpToSeq: 2})[0]
	got = widget1.expect("unread.changed", id(read), "conversation.updated", id(read))
	if u := decode[widgetUnread](t, got[0]); u.Unread != 0 {
		t.Errorf("unread.changed after reading = %s, want unread 0", got[0].Data)
	}
	last := f.helpdeskOnline(false, 1)
	support.expect("helpdesk.status_changed", id(last))
	teammate.expect("helpdesk.status_changed", id(last))
	widget2.expect("helpdesk.status_changed", id(last))
}

func TestEditsDeletesLinksAndItems(t *testing.T) {
	f := newFixture(t, options{})
	support := f.open("/v1/stream", "support", "")
	teammate := f.open("/v1/stream", "teammate", "")
	widget := f.open("/v1/widget/stream", "cust1", "")
	waitClients(t, f.streams, 3)
	started, posted := f.startChat("c1", principals["cust1"], "typo")
	support.expect("conversation.created", id(started), "message.created", id(posted), "unread.changed", id(posted))
	widget.expect("conversation.created", id(started), "message.created", id(posted), "unread.changed", id(posted))

	cust := principals["cust1"]
	edited := f.append("conversation-c1", 2, conversation.MessageEdited{Meta: f.meta(cust), MessageID: "c1-m1", Body: "fixed"})[0]
	got := support.expect("message.updated", id(edited), "conversation.updated", id(edited))
	if m := decode[messageData](t, got[0]); m.Body != "fixed" {
		t.Errorf("message.updated = %s, want the new body", got[0].Data)
	}
	deleted := f.append("conversation-c1", 3, conversation.MessageDeleted{Meta: f.meta(cust), MessageID: "c1-m1"})[0]
	got = support.expect("message.deleted", id(deleted), "unread.changed", id(deleted), "conversation.updated", id(deleted))
	if u := decode[agentUnread](t, got[1]); u.Unread != 0 || u.Customers != 0 {
		t.Errorf("unread.changed after the only message was deleted = %s, want 0 and 0", got[1].Data)
	}
	widget.expect("message.updated", id(edited), "conversation.updated", id(edited),
		"message.deleted", id(deleted), "unread.changed", id(deleted), "conversation.updated", id(deleted))

	// Support files a ticket, links it, and assigns the teammate: from then
	// on the teammate sees the conversation ("mine"), and is told so.
	sam := principals["support"]
	f.append("item-i1", domain.NoStream, item.Created{Meta: f.meta(sam), ItemID: "i1", Kind: item.Ticket, Title: "Late order"})
	linked := f.append("conversation-c1", 4, conversation.ItemLinked{Meta: f.meta(sam), ItemID: "i1"})[0]
	got = support.expect("conversation.updated", id(linked))
	if !strings.Contains(got[0].Data, `"item_id":"i1"`) {
		t.Errorf("conversation.updated after linking = %s, want the link", got[0].Data)
	}
	assigned := f.append("item-i1", 1, item.Assigned{Meta: f.meta(sam), UserID: "u-team"})[0]
	got = teammate.expect("conversation.updated", id(assigned))
	if row := decode[rowData](t, got[0]); row.ID != "c1" {
		t.Errorf("teammate's conversation.updated = %s, want c1", got[0].Data)
	}
	support.expect("conversation.updated", id(assigned))
}

// waitClients waits until n streams are open.
func waitClients(t *testing.T, s *Streams, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for s.Clients() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", s.Clients(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// want is an event a stream should send.
type want struct {
	event string
	pos   uint64
}

// chatEvents returns what support's stream sends for a conversation
// started at started and its messages posted at posted.
func chatEvents(started uint64, posted ...uint64) []want {
	out := []want{{"conversation.created", started}}
	for i, p := range posted {
		out = append(out, want{"message.created", p}, want{"unread.changed", p})
		if i > 0 {
			out = append(out, want{"conversation.updated", p})
		}
	}
	return out
}

func TestResumeSendsWhatWasMissedThenLive(t *testing.T) {
	f := newFixture(t, options{})
	c := f.open("/v1/stream", "support", "")
	waitClients(t, f.streams, 1)
	started, posted := f.startChat("c1", principals["cust1"], "first")
	c.expect("conversation.created", id(started), "message.created", id(posted), "unread.changed", id(posted))
	token := c.lastID
	c.close()
	waitClients(t, f.streams, 0)

	// Missed while away.
	var expected []want
	m2 := f.post("c1", 2, principals["cust1"], "second")
	expected = append(expected, want{"message.created", m2}, want{"unread.changed", m2}, want{"conversation.updated", m2})
	s2, p2 := f.startChat("c2", principals["cust2"], "other")
	expected = append(expected, chatEvents(s2, p2)...)

	// More arrive while the stream replays, and after.
	var wg sync.WaitGroup
	wg.Add(1)
	live := make(chan []want, 1)
	go func() {
		defer wg.Done()
		var w []want
		for n := 3; n <= 12; n++ {
			p := f.post("c1", n, principals["cust1"], fmt.Sprint("message ", n))
			w = append(w, want{"message.created", p}, want{"unread.changed", p}, want{"conversation.updated", p})
		}
		live <- w
	}()
	r := f.open("/v1/stream", "support", token)
	wg.Wait()
	expected = append(expected, (<-live)...)

	for i, w := range expected {
		ev, ok := r.next(3 * time.Second)
		if !ok {
			t.Fatalf("event %d: got none, want %s id %d", i, w.event, w.pos)
		}
		if ev.Event != w.event || ev.ID != id(w.pos) {
			t.Fatalf("event %d: got %s id %s, want %s id %d", i, ev.Event, ev.ID, w.event, w.pos)
		}
	}
	r.expectNothing(100 * time.Millisecond)

	// ?last_event_id= serves browsers that cannot set the header.
	q := f.open("/v1/stream?last_event_id="+id(m2), "support", "")
	q.expect("conversation.created", id(s2), "message.created", id(p2), "unread.changed", id(p2))
}

// holding runs f holding mu, and lets mu go however f ends: a test that
// fails holding the change feed or the replay would otherwise leave the
// fixture's projector or streams waiting, and the test's end with them.
func holding(mu *sync.Mutex, f func()) {
	mu.Lock()
	defer mu.Unlock()
	f()
}

// TestResumeWhileTheFeedLags resumes while the read models have applied
// changes that have not reached the hub yet: the replay sends them, and the
// stream must not send them again when the hub gets them.
func TestResumeWhileTheFeedLags(t *testing.T) {
	var feed sync.Mutex
	f := newFixture(t, options{feed: &feed})
	started, posted := f.startChat("c1", principals["cust1"], "first")
	// The projector publishes after the read models have applied: let it
	// finish with that batch before holding the feed, or it holds the
	// projector too.
	for deadline := time.Now().Add(3 * time.Second); f.hub.Head() < posted; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("hub head %d, want %d", f.hub.Head(), posted)
		}
	}

	var r *client
	holding(&feed, func() {
		m2 := f.post("c1", 2, principals["cust1"], "second") // applied, not on the hub
		if head := f.hub.Head(); head >= m2 {
			t.Fatalf("hub head %d, want it behind %d", head, m2)
		}
		r = f.open("/v1/stream", "support", id(started))
		r.expect("message.created", id(posted), "unread.changed", id(posted),
			"message.created", id(m2), "unread.changed", id(m2), "conversation.updated", id(m2))
	})

	m3 := f.post("c1", 3, principals["cust1"], "third")
	r.expect("message.created", id(m3), "unread.changed", id(m3), "conversation.updated", id(m3))

	// And a fresh stream opened while the feed lags starts after what the
	// read models hold, sending none of it.
	var fresh *client
	holding(&feed, func() {
		f.post("c1", 4, principals["cust1"], "fourth")
		fresh = f.open("/v1/stream", "support", "")
	})
	m5 := f.post("c1", 5, principals["cust1"], "fifth")
	fresh.expect("message.created", id(m5))
	if fresh.lastID != id(m5) {
		t.Errorf("token %s, want %d", fresh.lastID, m5)
	}
}

// TestLiveDuringReplay appends while a resuming stream reads the log: what
// comes after the replay's end reaches the stream live.
func TestLiveDuringReplay(t *testing.T) {
	var replay sync.Mutex
	f := newFixture(t, options{replay: &replay})
	started, posted := f.startChat("c1", principals["cust1"], "first")

	var r *client
	var m2 uint64
	holding(&replay, func() {
		r = f.open("/v1/stream", "support", id(started)) // answered; its replay waits
		waitClients(t, f.streams, 1)
		m2 = f.post("c1", 2, principals["cust1"], "during the replay")
	})
	r.expect("message.created", id(posted), "unread.changed", id(posted),
		"message.created", id(m2), "unread.changed", id(m2), "conversation.updated", id(m2))
	r.expectNothing(50 * time.Millisecond)
}

func TestResetForTokensThatCannotBeReplayed(t *testing.T) {
	f := newFixture(t, options{streams: StreamConfig{MaxReplay: 3}})
	s1, _ := f.startChat("c1", principals["cust1"], "one")
	for n := 2; n <= 4; n++ {
		f.post("c1", n, principals["cust1"], "more")
	}
	head := f.proj.Applied()
	for _, token := range []string{"abc", "-1", "007", id(head + 5), id(s1)} {
		c := f.open("/v1/stream", "support", token)
		got := c.expect("reset", id(head))
		if got[0].Data != "{}" {
			t.Errorf("token %q: reset data %q, want {}", token, got[0].Data)
		}
		on := f.helpdeskOnline(len(token)%2 == 0, int64(f.helpdeskVersion()))
		c.expect("helpdesk.status_changed", id(on))
		c.close()
		head = on
	}
	// Within MaxReplay: replayed, no reset.
	c := f.open("/v1/stream", "support", id(head-2))
	c.expect("helpdesk.status_changed", id(head-1), "helpdesk.status_changed", id(head))
}

// helpdeskVersion returns the version of the helpdesk stream.
func (f *fixture) helpdeskVersion() int {
	recs, err := f.store.ReadStream(context.Background(), "helpdesk")
	if err != nil {
		f.t.Fatal(err)
	}
	return len(recs)
}

func TestHeartbeatAndTokenOfUnseenEvents(t *testing.T) {
	f := newFixture(t, options{streams: StreamConfig{Heartbeat: 30 * time.Millisecond}})
	c := f.open("/v1/stream", "teammate", "")
	// Without a token the stream starts where the log stands, with that as its token.
	start := f.proj.Applied()
	_, posted := f.startChat("c1", principals["cust1"], "not for teammates")

	pings, advanced := 0, false
	deadline := time.After(3 * time.Second)
	for pings < 3 || !advanced {
		select {
		case fr, ok := <-c.frames:
			if !ok {
				t.Fatal("stream ended")
			}
			if fr.HasData {
				t.Fatalf("got %s id %s, want nothing but heartbeats and tokens", fr.Event, fr.ID)
			}
			if fr.Comment == "ping" {
				pings++
			}
			if fr.HasID {
				n, _ := strconv.ParseUint(fr.ID, 10, 64)
				if prev, _ := strconv.ParseUint(c.lastID, 10, 64); n < start || n > posted || n < prev {
					t.Fatalf("token frame id %s after %q, want a growing token from %d to %d", fr.ID, c.lastID, start, posted)
				}
				advanced = n == posted
				c.lastID = fr.ID
			}
		case <-deadline:
			t.Fatalf("after 3s: %d pings, token advanced %v; want 3 pings and the token at %d", pings, advanced, posted)
		}
	}
	c.close()

	// Resuming from that token replays nothing, and goes on live.
	r := f.open("/v1/stream", "teammate", c.lastID)
	on := f.helpdeskOnline(true, domain.NoStream)
	r.expect("helpdesk.status_changed", id(on))
}

func TestStuckClientDoesNotDelayOthers(t *testing.T) {
	// Small socket buffers, so that a client that does not read soon stalls
	// its handler's writes.
	f := newFixture(t, options{
		hub:     HubConfig{ClientBuffer: 64},
		streams: StreamConfig{WriteTimeout: 300 * time.Millisecond},
		listen:  func(l net.Listener) net.Listener { return smallBuffers{l} },
	})
	started, first := f.startChat("c1", principals["cust1"], "hi")

	// A client that reads nothing, on a connection with tiny buffers.
	d := smallReceiver(1024)
	conn, err := d.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer support\r\nLast-Event-ID: %d\r\n\r\n", started-1)

	healthy := f.open("/v1/stream", "support", id(first))
	waitClients(t, f.streams, 2)

	pending := f.longMessages("c1", 2, 81)
	start := time.Now()
	for i := 0; i < len(pending); i += 10 {
		// Ten messages make 30 changes: the healthy client's buffer of 64
		// takes them while its handler renders.
		for _, p := range f.append("conversation-c1", int64(i+2), pending[i:i+10]...) {
			healthy.expect("message.created", id(p), "unread.changed", id(p), "conversation.updated", id(p))
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the healthy client took %v to get %d messages", d, len(pending))
	}
	// The stuck one is cut: by the hub when its buffer overflowed, its
	// handler by the write timeout.
	waitClients(t, f.streams, 1)
	last := f.helpdeskOnline(true, domain.NoStream)
	healthy.expect("helpdesk.status_changed", id(last))
}

// smallBuffers gives the connections it accepts a small send buffer.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// until reads frames up to and including the first event with id pos, and
// returns the events among them.
func (c *client) until(pos uint64) []frame {
	c.t.Helper()
	var got []frame
	for {
		f, ok := c.next(3 * time.Second)
		if !ok {
			c.t.Fatalf("no event with id %d (got %v)", pos, got)
		}
		got = append(got, f)
		if f.ID == id(pos) {
			return got
		}
	}
}

// TestUnreadTotalsFollowTheReadModels: the totals of unread.changed, kept
// by each stream from the changes it sees, are at every step those the read
// models count (GET /v1/unread), through posts, replies, reads, deletions,
// internal conversations and items that make a conversation someone's.
func TestUnreadTotalsFollowTheReadModels(t *testing.T) {
	f := newFixture(t, options{})
	sam, tia := principals["support"], principals["teammate"]
	cust1, cust2 := principals["cust1"], principals["cust2"]
	auditor := directory.Principal{Kind: domain.ActorUser, ID: "u-audit", Role: directory.Auditor}
	agents := map[string]directory.Principal{"support": sam, "teammate": tia}
	streams := map[string]*client{"support": f.open("/v1/stream", "support", ""), "teammate": f.open("/v1/stream", "teammate", "")}
	waitClients(t, f.streams, 2)
	helpdesk := 0
	checked := map[string]int{}

	// step appends events, then a helpdesk switch that every stream gets,
	// and checks the last unread.changed each stream got before it.
	step := func(name, stream string, expected int64, events ...domain.Event) {
		t.Helper()
		f.append(stream, expected, events...)
		barrier := f.helpdeskOnline(helpdesk%2 == 0, int64(helpdesk))
		helpdesk++
		for who, c := range streams {
			var last *agentUnread
			for _, ev := range c.until(barrier) {
				if ev.Event == "unread.changed" {
					u := decode[agentUnread](t, ev)
					last = &u
				}
			}
			if last == nil {
				continue
			}
			customers, mine, err := f.streams.rm.Unread(context.Background(), agents[who])
			if err != nil {
				t.Fatal(err)
			}
			checked[who]++
			if last.Customers != customers || last.Mine != mine {
				t.Errorf("%s: %s's unread.changed says customers %d, mine %d; the read models %d, %d",
					name, who, last.Customers, last.Mine, customers, mine)
			}
		}
	}

	f.startChat("c1", cust1, "first chat")
	f.startChat("c2", cust2, "second chat")
	step("a reply", "conversation-c1", 2, conversation.MessagePosted{Meta: f.meta(sam), MessageID: "c1-m2", Body: "hello"})
	step("the customer answers", "conversation-c1", 3, conversation.MessagePosted{Meta: f.meta(cust1), MessageID: "c1-m3", Body: "thanks"})
	step("support reads", "conversation-c1", 4, conversation.Read{Meta: f.meta(sam), UpToSeq: 3})
	step("an internal conversation", "conversation-c3", domain.NoStream,
		conversation.Started{Meta: f.meta(sam), ConversationID: "c3", Channel: conversation.Internal, Participants: []string{"u-support", "u-team"}},
		conversation.MessagePosted{Meta: f.meta(sam), MessageID: "c3-m1", Body: "about c2"})
	f.append("item-i1", domain.NoStream, item.Created{Meta: f.meta(sam), ItemID: "i1", Kind: item.Task, Title: "c2"})
	f.append("conversation-c2", 2, conversation.ItemLinked{Meta: f.meta(sam), ItemID: "i1"})
	step("the teammate is given c2", "item-i1", 1, item.Assigned{Meta: f.meta(sam), UserID: "u-team"})
	step("support writes in c3", "conversation-c3", 2, conversation.MessagePosted{Meta: f.meta(sam), MessageID: "c3-m2", Body: "c2 is yours"})
	step("the customer of c2 writes", "conversation-c2", 3, conversation.MessagePosted{Meta: f.meta(cust2), MessageID: "c2-m2", Body: "any news?"})
	step("and deletes it", "conversation-c2", 4, conversation.MessageDeleted{Meta: f.meta(cust2), MessageID: "c2-m2"})
	step("the teammate reads c2", "conversation-c2", 5, conversation.Read{Meta: f.meta(tia), UpToSeq: 1})
	step("the teammate reads c3", "conversation-c3", 3, conversation.Read{Meta: f.meta(tia), UpToSeq: 2})
	step("the customer of c2 deletes the first message", "conversation-c2", 6, conversation.MessageDeleted{Meta: f.meta(cust2), MessageID: "c2-m1"})

	// A stream opened now starts from the read models' sets and goes on.
	agents["auditor"] = auditor
	principals["auditor"] = auditor
	t.Cleanup(func() { delete(principals, "auditor") })
	streams["auditor"] = f.open("/v1/stream", "auditor", "")
	waitClients(t, f.streams, 3)
	step("a new chat", "conversation-c4", domain.NoStream,
		conversation.Started{Meta: f.meta(cust1), ConversationID: "c4", Channel: conversation.LiveChat, CustomerID: cust1.ID},
		conversation.MessagePosted{Meta: f.meta(cust1), MessageID: "c4-m1", Body: "me again"})
	step("support answers c4", "conversation-c4", 2, conversation.MessagePosted{Meta: f.meta(sam), MessageID: "c4-m2", Body: "yes?"})
	if checked["support"] < 6 || checked["teammate"] < 4 || checked["auditor"] < 2 {
		t.Errorf("unread.changed checked %v times, want at least support 6, teammate 4, auditor 2", checked)
	}
}

// TestRoutedStreamForgetsWhatItNoLongerSees: a teammate's stream is told
// only of its own conversations' changes, yet the change that takes an
// unread conversation from them (its item unlinked) reaches it, so that
// its count of My conversations follows the read models.
func TestRoutedStreamForgetsWhatItNoLongerSees(t *testing.T) {
	f := newFixture(t, options{})
	sam, tia, cust1 := principals["support"], principals["teammate"], principals["cust1"]
	c := f.open("/v1/stream", "teammate", "")
	waitClients(t, f.streams, 1)
	helpdesk := 0
	check := func(name string, want int) {
		t.Helper()
		barrier := f.helpdeskOnline(helpdesk%2 == 0, int64(helpdesk))
		helpdesk++
		var last *agentUnread
		for _, ev := range c.until(barrier) {
			if ev.Event == "unread.changed" {
				u := decode[agentUnread](t, ev)
				last = &u
			}
		}
		_, mine, err := f.streams.rm.Unread(context.Background(), tia)
		if err != nil {
			t.Fatal(err)
		}
		if last == nil || last.Mine != mine || mine != want {
			t.Errorf("%s: the stream's last unread.changed %+v, the read models' mine %d; want both %d", name, last, mine, want)
		}
	}
	f.startChat("c1", cust1, "hello")
	f.append("conversation-c3", domain.NoStream,
		conversation.Started{Meta: f.meta(sam), ConversationID: "c3", Channel: conversation.Internal, Participants: []string{"u-support", "u-team"}},
		conversation.MessagePosted{Meta: f.meta(sam), MessageID: "c3-m1", Body: "hi"})
	f.append("item-i1", domain.NoStream, item.Created{Meta: f.meta(sam), ItemID: "i1", Kind: item.Task, Title: "c1"},
		item.Assigned{Meta: f.meta(sam), UserID: "u-team"})
	f.append("conversation-c1", 2, conversation.ItemLinked{Meta: f.meta(sam), ItemID: "i1"})
	f.append("conversation-c1", 3, conversation.MessagePosted{Meta: f.meta(cust1), MessageID: "c1-m2", Body: "any news?"})
	check("c1 is the teammate's, unread", 2)
	f.append("conversation-c1", 4, conversation.ItemUnlinked{Meta: f.meta(sam), ItemID: "i1"})
	f.append("conversation-c3", 2, conversation.MessagePosted{Meta: f.meta(sam), MessageID: "c3-m2", Body: "c1 is not yours"})
	check("c1 is no longer the teammate's", 1)
}

// TestSharedRowsAreEachViewersRow: the inbox rows a stream splices its
// viewer's unread count into are the rows encoded for that viewer, whatever
// the strings of the conversation hold.
func TestSharedRowsAreEachViewersRow(t *testing.T) {
	f := newFixture(t, options{})
	cust1 := principals["cust1"]
	f.append("customer-cu1", domain.NoStream, directory.CustomerRegistered{Meta: f.meta(cust1),
		CustomerID: "cu1", Name: `Carla ,"unread":1, "\ <b>`, Email: "c@example.com", TokenHash: commands.HashToken("cust1")})
	f.append("conversation-c1", domain.NoStream,
		conversation.Started{Meta: f.meta(cust1), ConversationID: "c1", Channel: conversation.LiveChat, CustomerID: "cu1",
			Subject: `,"unread":0,"links":[]}`},
		conversation.MessagePosted{Meta: f.meta(cust1), MessageID: "c1-m1", Body: "\"unread\":2\n\u2028 <script>"})
	f.post("c1", 2, principals["support"], `,"unread":1,`)
	f.append("conversation-c1", 3, conversation.Read{Meta: f.meta(cust1), UpToSeq: 1})

	ctx := context.Background()
	r := newRenderings(f.streams.rm, func() uint64 { return 0 })
	cv, err := r.conversation(ctx, f.proj.Applied(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if cv.rowHead == nil {
		t.Fatal("the row was not split: every stream encodes it again")
	}
	for name, p := range principals {
		st := &stream{p: p, widget: p.IsCustomer()}
		st.out = &sseWriter{}
		n, ok := st.see(1, cv)
		if !ok {
			continue
		}
		st.row(1, projections.ConversationUpdated, cv, n)
		got := string(*st.out.buf)
		want, err := json.Marshal(cv.snap.Row(p))
		if err != nil {
			t.Fatal(err)
		}
		if wantFrame := "id: 1\nevent: conversation.updated\ndata: " + string(want) + "\n\n"; got != wantFrame {
			t.Errorf("%s: got %q, want %q", name, got, wantFrame)
		}
		row, ok, err := f.streams.rm.InboxRow(ctx, p, "c1")
		if err != nil || !ok {
			t.Fatalf("InboxRow: %v %v", ok, err)
		}
		if fromQuery, _ := json.Marshal(row); string(fromQuery) != string(want) {
			t.Errorf("%s: snapshot row %s, inbox query %s", name, want, fromQuery)
		}
	}
}

// TestFlightsReadOnceAndNeverGoBack: a value read for a position serves
// every ask at or below the position the read models stood at when it was
// read, once however many ask together; an ask beyond reads again; a
// failed read is not kept.
func TestFlightsReadOnceAndNeverGoBack(t *testing.T) {
	ctx := context.Background()
	f := newFlights[string, int](2)
	applied := uint64(10)
	at := func() uint64 { return applied }
	var reads atomic.Int64
	release := make(chan struct{})
	load := func(context.Context) (int, error) {
		<-release
		return int(reads.Add(1)), nil
	}

	// 50 streams ask for the change at 7 together: one read, as of 10.
	var wg sync.WaitGroup
	got := make([]int, 50)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], _ = f.get(ctx, 7, at, "c", load) }()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, v := range got {
		if v != 1 {
			t.Fatalf("ask %d got read %d, want the one read 1", i, v)
		}
	}
	applied = 20
	for _, pos := range []uint64{1, 7, 10} {
		if v, _ := f.get(ctx, pos, at, "c", load); v != 1 {
			t.Errorf("ask at %d got read %d, want 1: it shows every change up to 10", pos, v)
		}
	}
	if v, _ := f.get(ctx, 11, at, "c", load); v != 2 {
		t.Errorf("ask at 11 got read %d, want a new read", v)
	}
	if v, _ := f.get(ctx, 20, at, "c", load); v != 2 {
		t.Errorf("ask at 20 got read %d, want the read made as of 20", v)
	}

	// A failed read is not kept.
	boom := errors.New("boom")
	if _, err := f.get(ctx, 30, at, "d", func(context.Context) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	if v, err := f.get(ctx, 30, at, "d", load); err != nil || v != 3 {
		t.Errorf("after a failed read got %d, %v; want a new read 3", v, err)
	}

	// A waiter that leaves does not cancel the read for others.
	slow := make(chan struct{})
	started := make(chan struct{})
	leaving, leave := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		v, _ := f.get(ctx, 40, at, "e", func(ctx context.Context) (int, error) {
			close(started)
			<-slow
			return 40, ctx.Err()
		})
		done <- v
	}()
	<-started
	errc := make(chan error)
	go func() { _, err := f.get(leaving, 40, at, "e", load); errc <- err }()
	leave()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("the waiter that left got %v, want its context's error", err)
	}
	close(slow)
	if v := <-done; v != 40 {
		t.Errorf("the reader got %d, want 40", v)
	}

	// At most twice the limit are kept, those asked for last: k0, asked
	// for again after each other key, stays.
	for i := range 10 {
		f.get(ctx, 1, at, fmt.Sprint("k", i), func(context.Context) (int, error) { return i, nil })
		f.get(ctx, 1, at, "k0", func(context.Context) (int, error) { return -1, nil })
	}
	if n := len(f.entries); n > 4 {
		t.Errorf("%d entries kept, want at most 4", n)
	}
	if v, _ := f.get(ctx, 1, at, "k0", func(context.Context) (int, error) { return -1, nil }); v != 0 {
		t.Errorf("k0, asked for all along, was read again (%d): the sweep dropped it", v)
	}
}

// TestWriteTimeoutCutsOnlyStalledClients: a client that reads, however
// slowly, keeps its stream while each write reaches it within WriteTimeout;
// one that stops reading is cut off once a write has waited that long, and
// not long after.
func TestWriteTimeoutCutsOnlyStalledClients(t *testing.T) {
	const timeout = time.Second
	f := newFixture(t, options{
		streams: StreamConfig{WriteTimeout: timeout},
		listen:  func(l net.Listener) net.Listener { return smallBuffers{l} },
	})
	started, _ := f.startChat("c1", principals["cust1"], "hi")
	// Small socket buffers: a write of more than a few kB waits for the
	// client to read.
	dial := func(rcvbuf int) net.Conn {
		t.Helper()
		d := smallReceiver(rcvbuf)
		conn, err := d.Dial("tcp", f.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer support\r\nLast-Event-ID: %d\r\n\r\n", started)
		return conn
	}
	dial(1024) // stalls: it reads nothing
	slow := dial(4096)
	waitClients(t, f.streams, 2)

	// The slow client reads 4 kB every 20ms: writes wait for it, none
	// long, though all it is sent takes longer than the timeout.
	var read atomic.Int64
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := slow.Read(buf)
			read.Add(int64(n))
			if err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	pending := f.longMessages("c1", 2, 81)
	posted := time.Now()
	f.append("conversation-c1", 2, pending...)

	// The stalled one goes once a write has waited the timeout.
	waitFor := func(n int, within time.Duration) time.Duration {
		t.Helper()
		for d := time.Duration(0); d < within; d = time.Since(posted) {
			if f.streams.Clients() == n {
				return d
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%d streams open after %v, want %d", f.streams.Clients(), within, n)
		return 0
	}
	if d := waitFor(1, 5*timeout); d < timeout {
		t.Errorf("the stalled client was cut off %v after the posts, before the write timeout %v", d, timeout)
	}
	// The slow one keeps its stream and gets everything (80 messages of
	// 3.5 kB, their unread counts and rows: 4 kB each at least).
	for deadline := time.Now().Add(20 * time.Second); read.Load() < 80*4000; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the slow client read %d bytes", read.Load())
		}
	}
	if n := f.streams.Clients(); n != 1 {
		t.Errorf("%d streams open, want the slow client's", n)
	}
}

// failingTransport fails the next publishes while fail is above zero:
// those batches are lost.
type failingTransport struct {
	message.Publisher
	fail *atomic.Int32
}

func (f failingTransport) Publish(topic string, msgs ...*message.Message) error {
	if f.fail.Add(-1) >= 0 {
		return errors.New("broker down")
	}
	return f.Publisher.Publish(topic, msgs...)
}

// TestLostBatchIsReplayed: the change feed loses a batch (its publish
// fails). The consumer finds the next batch's predecessor missing, gives up
// waiting after bus.ReorderWait and marks the gap, at which the hub cuts
// the streams off: a client resuming from its last event gets the lost
// batch's events from the log, then the next batch's, none twice.
func TestLostBatchIsReplayed(t *testing.T) {
	var fail atomic.Int32
	f := newFixture(t, options{transport: func(p message.Publisher) message.Publisher { return failingTransport{p, &fail} }})
	c := f.open("/v1/stream", "support", "")
	waitClients(t, f.streams, 1)
	started, posted := f.startChat("c1", principals["cust1"], "first")
	// Delivered: its batch is published, the next publish is m2's.
	c.expect("conversation.created", id(started), "message.created", id(posted), "unread.changed", id(posted))

	fail.Store(1)
	m2 := f.post("c1", 2, principals["cust1"], "lost on the feed")
	m3 := f.post("c1", 3, principals["cust1"], "third")
	if !c.ended(bus.ReorderWait + 5*time.Second) {
		t.Fatal("the stream goes on after its feed lost a batch")
	}
	if c.lastID != id(posted) {
		t.Fatalf("the stream's last event %s, want %d: it sent what followed the lost batch", c.lastID, posted)
	}
	r := f.open("/v1/stream", "support", c.lastID)
	r.expect("message.created", id(m2), "unread.changed", id(m2), "conversation.updated", id(m2),
		"message.created", id(m3), "unread.changed", id(m3), "conversation.updated", id(m3))
	r.expectNothing(100 * time.Millisecond)
	m4 := f.post("c1", 4, principals["cust1"], "fourth")
	r.expect("message.created", id(m4), "unread.changed", id(m4), "conversation.updated", id(m4))
}

// TestWidgetPassesOverOthersChanges: a widget's stream is told of its
// customer's changes only; others', more than the hub holds, pass it by
// without cutting it off, and its heartbeat's token moves past them, so
// that a resume replays none of them.
func TestWidgetPassesOverOthersChanges(t *testing.T) {
	f := newFixture(t, options{hub: HubConfig{ClientBuffer: 4}, streams: StreamConfig{Heartbeat: 50 * time.Millisecond}})
	widget1 := f.open("/v1/widget/stream", "cust1", "")
	support := f.open("/v1/stream", "support", "")
	waitClients(t, f.streams, 2)

	started, posted := f.startChat("c1", principals["cust1"], "Hello")
	widget1.expect("conversation.created", id(started), "message.created", id(posted), "unread.changed", id(posted))
	// The agent's stream gets them all: read as they come, so that it
	// never lags by more than the hub holds for it (under -race on a busy
	// machine it did, and was cut off, as a slow client is).
	agentGets := func(pos uint64) {
		t.Helper()
		for got := (frame{}); got.ID != id(pos); {
			var ok bool
			if got, ok = support.next(3 * time.Second); !ok {
				t.Fatal("the agent's stream missed cust2's changes")
			}
		}
	}
	_, last := f.startChat("c2", principals["cust2"], "Hi there")
	agentGets(last)
	for n := 2; n <= 6; n++ { // with the chat's start, more changes than the hub holds
		last = f.post("c2", n, principals["cust2"], fmt.Sprintf("message %d", n))
		agentGets(last)
	}
	// The widget's heartbeat moves its token to the last of them.
	deadline := time.Now().Add(3 * time.Second)
	for widget1.lastID != id(last) {
		if time.Now().After(deadline) {
			t.Fatalf("the widget's token is %s, want %d: past cust2's changes", widget1.lastID, last)
		}
		widget1.ended(60 * time.Millisecond)
	}
	if s := f.hub.Subscribers(); s != 2 {
		t.Fatalf("%d subscribers, want 2: the widget was cut off", s)
	}
	reply := f.post("c1", 2, principals["support"], "Let me check")
	widget1.expect("message.created", id(reply), "unread.changed", id(reply), "conversation.updated", id(reply))
}

// TestStreamsApartFromTheirRequests: a stream runs apart from its request,
// on the connection taken from net/http: it ends when the client leaves,
// at once, not at the next heartbeat's failed write; and End ends the
// others, which Wait then sees over, their clients at the body's end.
func TestStreamsApartFromTheirRequests(t *testing.T) {
	f := newFixture(t, options{})
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not %s in 2 s (%d streams open)", what, f.streams.Clients())
			}
		}
	}
	leaving := f.open("/v1/stream", "support", "")
	until("open", func() bool { return f.streams.Clients() == 1 })
	leaving.close()
	until("closed when its client left", func() bool { return f.streams.Clients() == 0 })

	a, b := f.open("/v1/stream", "support", ""), f.open("/v1/widget/stream", "cust1", "")
	until("open", func() bool { return f.streams.Clients() == 2 })
	f.streams.End()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := f.streams.Wait(ctx); err != nil {
		t.Fatalf("the streams are not over after End: %v", err)
	}
	for _, c := range []*client{a, b} {
		for range c.frames { // to the body's end
		}
	}
	if n := f.streams.Clients(); n != 0 {
		t.Errorf("%d streams open after End", n)
	}
	// A stream opened after End (the server shutting down) ends at once.
	c := f.open("/v1/stream", "support", "")
	for range c.frames {
	}
}

// TestStreamFaultEndsOnlyTheStream: a stream runs out of reach of the
// middleware's recovery; a fault in it ends it, not the process, and the
// others go on.
func TestStreamFaultEndsOnlyTheStream(t *testing.T) {
	f := newFixture(t, options{})
	var once sync.Once
	hook := func(st *stream) {
		if st.widget {
			once.Do(func() { panic("a bug") })
		}
	}
	liveHook.Store(&hook)
	t.Cleanup(func() { liveHook.Store(nil) })
	agent := f.open("/v1/stream", "support", "")
	faulty := f.open("/v1/widget/stream", "cust1", "")
	if !faulty.ended(2 * time.Second) {
		t.Fatal("the faulty stream goes on")
	}
	again := f.open("/v1/widget/stream", "cust1", "")
	for deadline := time.Now().Add(2 * time.Second); f.streams.Clients() != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want the agent's and the widget's again", f.streams.Clients())
		}
	}
	if agent.ended(100*time.Millisecond) || again.ended(100*time.Millisecond) {
		t.Error("a stream ended with the faulty one")
	}
}

// TestFlightsBoundedByWeight: a message's rendering holds its text, so the
// cache of them keeps at most its budget (twice as much between sweeps),
// drops those asked for longest ago but never the one asked for last, and
// counts a value read again for a later position once.
func TestFlightsBoundedByWeight(t *testing.T) {
	ctx := context.Background()
	f := newWeighedFlights[string, []byte](1000, 100, func(b []byte) int { return len(b) })
	applied := uint64(1)
	at := func() uint64 { return applied }
	value := func(n int) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { return []byte(strings.Repeat("x", n)), nil }
	}
	kept := func() int {
		t.Helper()
		f.mu.Lock()
		defer f.mu.Unlock()
		sum := 0
		for _, e := range f.entries {
			sum += len(e.val)
		}
		if sum != f.weight {
			t.Fatalf("the values kept weigh %d, counted %d", sum, f.weight)
		}
		return sum
	}
	for i := range 50 {
		if _, err := f.get(ctx, 1, at, strconv.Itoa(i), value(10)); err != nil {
			t.Fatal(err)
		}
		if w := kept(); w > 200 {
			t.Fatalf("after %d values of 10 bytes, %d bytes kept, want at most twice the budget of 100", i+1, w)
		}
	}
	if _, ok := f.peek("49", 1); !ok {
		t.Error("the value asked for last was dropped")
	}
	if _, ok := f.peek("0", 1); ok {
		t.Error("the value asked for first is still kept")
	}
	applied = 5 // "49" is read again for a later position
	if _, err := f.get(ctx, 5, at, "49", value(20)); err != nil {
		t.Fatal(err)
	}
	kept()
	f.fill(ctx, 6, at, []string{"a", "b", "49"}, func(_ context.Context, keys []string) (map[string][]byte, error) {
		out := map[string][]byte{}
		for _, k := range keys {
			out[k] = []byte("yy")
		}
		return out, nil
	})
	kept()
	// A value heavier than the budget stays while it is the last asked for.
	if _, err := f.get(ctx, 6, at, "big", value(500)); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.peek("big", 6); !ok {
		t.Error("a value heavier than the budget, asked for last, was dropped at once")
	}
	if w := kept(); w != 500 {
		t.Errorf("with a value of 500 bytes asked for last, %d bytes kept, want it alone", w)
	}
}

// TestConvViewSizeCountsWhatItHolds: a view weighs something, a missing
// one nothing (projections' tests weigh snapshots).
func TestConvViewSizeCountsWhatItHolds(t *testing.T) {
	var none *convView
	if none.size() != 0 {
		t.Errorf("a missing view weighs %d", none.size())
	}
	empty, err := newConvView("c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if empty.size() <= 0 {
		t.Errorf("a view of no conversation weighs %d", empty.size())
	}
}

// h2cAndHTTP1 are HTTP/1.1 and HTTP/2 without TLS, as messengerd serves.
func h2cAndHTTP1() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// h2cClient speaks HTTP/2 without TLS only, with conf's settings if not nil.
func h2cClient(conf *http.HTTP2Config) *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, HTTP2: conf}}
}

// TestStreamsOverHTTP2: over HTTP/2 (without TLS, as from a proxy) a
// stream cannot take its connection, which others share; it lifts the
// server's write timeout through net/http instead, gets its events, and a
// client that stops reading is cut off once a write has waited the
// stream's timeout, while one that reads slowly, on another connection,
// keeps its stream and gets everything.
func TestStreamsOverHTTP2(t *testing.T) {
	const timeout = time.Second
	f := newFixture(t, options{h2c: true, streams: StreamConfig{WriteTimeout: timeout}})
	started, _ := f.startChat("c1", principals["cust1"], "hi")
	c := f.open("/v1/stream", "support", id(started))
	if c.resp.StatusCode != http.StatusOK || c.resp.ProtoMajor != 2 {
		t.Fatalf("stream: %s over %s", c.resp.Status, c.resp.Proto)
	}
	c.until(started + 1)
	time.Sleep(400 * time.Millisecond) // twice the server's write timeout
	f.post("c1", 2, principals["support"], "still there?")
	for {
		fr, ok := c.next(3 * time.Second)
		if !ok {
			t.Fatal("the stream ended or went quiet before the reply")
		}
		if fr.Event == "message.created" && strings.Contains(fr.Data, "still there?") {
			break
		}
	}

	// A client whose windows hold 64 kB and which reads nothing: the
	// server's writes wait once they are full.
	stalledClient := h2cClient(&http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 64 << 10})
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer support")
	req.Header.Set("Last-Event-ID", id(started))
	stalled, err := stalledClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Body.Close()
	waitClients(t, f.streams, 2)

	pending := f.longMessages("c1", 3, 82)
	posted := time.Now()
	last := f.append("conversation-c1", 3, pending...)
	for d := time.Duration(0); f.streams.Clients() != 1; d = time.Since(posted) {
		if d > 5*timeout {
			t.Fatalf("%d streams open %v after the posts, want the reading one", f.streams.Clients(), d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(posted); d < timeout {
		t.Errorf("the stalled client was cut off %v after the posts, before the write timeout %v", d, timeout)
	}
	got := 0
	for _, fr := range c.until(last[len(last)-1]) {
		if fr.Event == "message.created" {
			got++
		}
	}
	if got != len(pending) {
		t.Errorf("the reading client got %d messages, want %d", got, len(pending))
	}
}
