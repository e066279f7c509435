package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/infra/natsbus"
	"github.com/helpdesk/messenger/infra/natsbus/natstest"
	"github.com/helpdesk/messenger/infra/postgres"
	"github.com/helpdesk/messenger/infra/postgres/pgtest"
)

// server is a messengerd started by run for one test.
type server struct {
	t       *testing.T
	base    string
	dir     string
	admin   string
	cancel  context.CancelFunc
	stopped chan error
	// client sends the requests and opens the streams; nil:
	// http.DefaultClient (HTTP/1.1).
	client *http.Client
}

// httpClient is the client of s's requests and streams.
func (s *server) httpClient() *http.Client {
	if s.client != nil {
		return s.client
	}
	return http.DefaultClient
}

// env returns a getenv over vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// startServer runs messengerd on a free port with data in dir, and waits
// until it is ready.
func startServer(t *testing.T, dir string, vars map[string]string) *server {
	t.Helper()
	s := startListening(t, dir, vars)
	if !untilReady(s.base, 20*time.Second) {
		t.Fatal("server not ready in 20 s")
	}
	return s
}

// untilReady asks base's /readyz until it answers 200, for at most within,
// and reports whether it did.
func untilReady(base string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startListening runs messengerd on a free port with data in dir, and
// returns once it listens, ready or not.
func startListening(t *testing.T, dir string, vars map[string]string) *server {
	t.Helper()
	if vars == nil {
		vars = map[string]string{}
	}
	if vars["MESSENGER_ADMIN_TOKEN"] == "" {
		vars["MESSENGER_ADMIN_TOKEN"] = "admin-secret-token"
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{t: t, dir: dir, admin: vars["MESSENGER_ADMIN_TOKEN"], cancel: cancel, stopped: make(chan error, 1)}
	addr := make(chan string, 1)
	cfgVars := vars
	go func() {
		s.stopped <- runWith(ctx, []string{"-addr", "127.0.0.1:0", "-data-dir", dir}, env(cfgVars), func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		s.base = "http://" + a
	case err := <-s.stopped:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("server did not start in 20 s")
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// stop shuts the server down as SIGTERM would, and waits for run to return.
func (s *server) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.stopped:
		if err != nil {
			s.t.Errorf("run returned %v", err)
		}
	case <-time.After(20 * time.Second):
		s.t.Error("server did not stop in 20 s")
	}
}

// runWith is run with a ready callback.
func runWith(ctx context.Context, args []string, getenv func(string) string, ready func(string)) error {
	cfg, err := parseConfig("messengerd", args, getenv, io.Discard)
	if err != nil {
		return err
	}
	cfg.Ready = ready
	return serve(ctx, cfg, io.Discard, io.Discard)
}

// response is a decoded answer.
type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// do sends a request with token (none if "") and a JSON body (none if nil;
// a string or []byte is sent as it is).
func (s *server) do(method, path, token string, body any) response {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.base+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.httpClient().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

// want fails the test unless r has status.
func (r response) want(t *testing.T, status int) response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Raw)
	}
	return r
}

func (r response) str(key string) string {
	v, _ := r.Body[key].(string)
	return v
}

func (r response) list(key string) []map[string]any {
	raw, _ := r.Body[key].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, x := range raw {
		m, _ := x.(map[string]any)
		out = append(out, m)
	}
	return out
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID, Event string
	Data      map[string]any
}

// stream is an open SSE connection being read in the background.
type stream struct {
	t      *testing.T
	resp   *http.Response
	mu     sync.Mutex
	events []sseEvent
	more   chan struct{}
	done   chan struct{}
}

// openStream connects to path with token, resuming after lastID if not "".
func (s *server) openStream(path, token, lastID string) *stream {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := s.httpClient().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s.t.Fatalf("stream %s: status %d: %s", path, resp.StatusCode, b)
	}
	st := &stream{t: s.t, resp: resp, more: make(chan struct{}, 1), done: make(chan struct{})}
	go st.read()
	s.t.Cleanup(st.close)
	return st
}

func (st *stream) read() {
	defer close(st.done)
	sc := bufio.NewScanner(st.resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var ev sseEvent
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" || data.Len() > 0 {
				_ = json.Unmarshal([]byte(data.String()), &ev.Data)
				st.mu.Lock()
				st.events = append(st.events, ev)
				st.mu.Unlock()
				select {
				case st.more <- struct{}{}:
				default:
				}
			}
			ev, data = sseEvent{}, strings.Builder{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			ev.ID = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "event:"):
			ev.Event = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(line[5:], " "))
		}
	}
}

func (st *stream) close() {
	st.resp.Body.Close()
	<-st.done
}

// waitFor returns the first event after index from that matches, waiting up to 10 s.
func (st *stream) waitFor(from int, match func(sseEvent) bool) (sseEvent, int) {
	st.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		st.mu.Lock()
		for i := from; i < len(st.events); i++ {
			if match(st.events[i]) {
				ev := st.events[i]
				st.mu.Unlock()
				return ev, i
			}
		}
		st.mu.Unlock()
		select {
		case <-st.more:
		case <-st.done:
			st.t.Fatalf("stream ended; events: %v", st.snapshot())
		case <-deadline:
			st.t.Fatalf("no matching event in 10 s; got %v", st.snapshot())
		}
	}
}

func (st *stream) snapshot() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for _, e := range st.events {
		out = append(out, fmt.Sprintf("%s#%s", e.Event, e.ID))
	}
	return out
}

func (st *stream) all() []sseEvent {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]sseEvent(nil), st.events...)
}

func kind(name string) func(sseEvent) bool {
	return func(e sseEvent) bool { return e.Event == name }
}

// HashTokenForTest is the stored hash of token.
func HashTokenForTest(token string) string { return commands.HashToken(token) }

// pgAndNATS returns the variables of an installation on a database of its
// own and the NATS server, whose streams it deletes when t ends (each
// installation has its own: they would pile up on the server).
func pgAndNATS(t *testing.T) map[string]string {
	t.Helper()
	dbURL, natsURL := pgtest.NewDatabase(t), natstest.URL(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		db, err := postgres.Open(ctx, dbURL, postgres.Config{MaxConns: 1})
		if err != nil {
			t.Errorf("delete the installation's streams: %v", err)
			return
		}
		defer db.Close()
		id, err := db.Installation(ctx)
		if err != nil {
			t.Errorf("delete the installation's streams: %v", err)
			return
		}
		prefix := changesTopicOf(id, "")
		if _, err := natsbus.DeleteStreams(ctx, natsURL, func(name string) bool { return strings.HasPrefix(name, prefix) }); err != nil {
			t.Errorf("delete the installation's streams: %v", err)
		}
	})
	return map[string]string{"MESSENGER_DATABASE_URL": dbURL, "MESSENGER_BUS_URL": natsURL}
}

// chat is a conversation a customer started and support answered, with what
// support saw of it then: read models built again must show the same.
type chat struct {
	p             people
	id            string
	inbox, thread response
}

// startChat seeds people on s, has the customer start a conversation that
// support answers replies times, and records what support sees.
func startChat(t *testing.T, s *server, replies int) chat {
	t.Helper()
	c := chat{p: seedPeople(t, s)}
	c.id = s.do("POST", "/v1/conversations", c.p.customer, map[string]any{"body": "hello"}).want(t, 201).str("id")
	for i := range replies {
		s.do("POST", "/v1/conversations/"+c.id+"/messages", c.p.support, map[string]any{"body": fmt.Sprint("reply ", i)}).want(t, 201)
	}
	c.inbox = s.do("GET", "/v1/inbox?section=customers&status=open", c.p.support, nil).want(t, 200)
	c.thread = s.do("GET", "/v1/conversations/"+c.id, c.p.support, nil).want(t, 200)
	return c
}

// sameOn checks that support sees on s the inbox and the conversation as
// startChat recorded them; when says after what.
func (c chat) sameOn(t *testing.T, s *server, when string) {
	t.Helper()
	if got := s.do("GET", "/v1/inbox?section=customers&status=open", c.p.support, nil).want(t, 200); string(got.Raw) != string(c.inbox.Raw) {
		t.Errorf("inbox %s:\n%s\nbefore:\n%s", when, got.Raw, c.inbox.Raw)
	}
	if got := s.do("GET", "/v1/conversations/"+c.id, c.p.support, nil).want(t, 200); string(got.Raw) != string(c.thread.Raw) {
		t.Errorf("conversation %s:\n%s\nbefore:\n%s", when, got.Raw, c.thread.Raw)
	}
}

// until fails t unless ok holds within that time, asked every 20 ms.
func until(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not %s in %s", what, within)
		}
	}
}

// analyzed checks that PostgreSQL's planner knows the read models' messages,
// as a rebuild leaves them; the live projector analyzes only every so many
// thousand events.
func analyzed(t *testing.T, db *sql.DB) {
	t.Helper()
	var tuples float64
	if err := db.QueryRow(`SELECT reltuples FROM pg_class WHERE relname = 'messages'`).Scan(&tuples); err != nil || tuples <= 0 {
		t.Errorf("messages: %v rows known to the planner (%v): not built in bulk", tuples, err)
	}
}
