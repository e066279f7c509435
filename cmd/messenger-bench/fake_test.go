package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer speaks just enough of messengerd's API for the bench: users,
// widget sessions, conversations, posts, reads and both streams, fanning
// each message.created out to its customer's widget streams and every
// support agent's streams, without a store. drop, dup and leak, when set,
// make it lose, repeat or wrongly send the event of the bench's post seq at
// stream s; they are called with the server's lock held.
type fakeServer struct {
	admin string
	drop  func(s *fakeStream, seq int) bool
	dup   func(s *fakeStream, seq int) bool
	leak  func(s *fakeStream, seq int) bool // send it to a stream that may not see it

	mu      sync.Mutex
	next    int
	pos     uint64
	support map[string]bool   // token → support
	convOf  map[string]string // conversation → customer token
	streams []*fakeStream
}

type fakeStream struct {
	token   string
	support bool
	c       chan []byte
}

func newFakeServer(admin string) *fakeServer {
	return &fakeServer{admin: admin, support: map[string]bool{}, convOf: map[string]string{}}
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	path := r.URL.Path
	f.mu.Lock()
	f.next++
	n := f.next
	f.mu.Unlock()
	switch {
	case path == "/readyz":
		fmt.Fprint(w, `{"status":"ready","lag":0}`)
	case path == "/v1/me":
		if token != f.admin {
			http.Error(w, `{"error":{"code":"unauthorized"}}`, http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"kind":"user"}`)
	case path == "/v1/users":
		var req struct{ Support bool }
		json.NewDecoder(r.Body).Decode(&req)
		t := "agent-" + strconv.Itoa(n)
		f.mu.Lock()
		f.support[t] = req.Support
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"u%d","token":%q}`, n, t)
	case path == "/v1/widget/sessions":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"customer_id":"c%d","token":"customer-%d"}`, n, n)
	case path == "/v1/conversations" && r.Method == http.MethodPost:
		id := "conv-" + strconv.Itoa(n)
		f.mu.Lock()
		f.convOf[id] = token
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q}`, id)
	case strings.HasSuffix(path, "/messages") && r.Method == http.MethodPost:
		f.post(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/v1/conversations/"), "/messages"))
	case path == "/v1/stream" || path == "/v1/widget/stream":
		f.stream(w, r, token)
	default:
		fmt.Fprint(w, `{}`)
	}
}

func (f *fakeServer) post(w http.ResponseWriter, r *http.Request, conv string) {
	var req struct{ Body, ClientID string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	seq := -1
	if _, rest, ok := strings.Cut(req.Body, ":"); ok {
		if _, rest, ok = strings.Cut(rest, ":"); ok {
			s, _, _ := strings.Cut(rest, " ")
			seq, _ = strconv.Atoi(s)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pos++
	msg, _ := json.Marshal(map[string]any{"id": "m" + strconv.FormatUint(f.pos, 10), "conversation_id": conv, "body": req.Body})
	// The server encodes the id first; map keys are sorted: put it first by hand.
	msg = append([]byte(`{"id":"m`+strconv.FormatUint(f.pos, 10)+`",`), bytes.TrimPrefix(msg, []byte(`{`))...)
	frame := fmt.Appendf(nil, "id: %d\nevent: message.created\ndata: %s\n\n", f.pos, msg)
	for _, s := range f.streams {
		if !s.support && s.token != f.convOf[conv] && (f.leak == nil || !f.leak(s, seq)) {
			continue
		}
		if f.drop != nil && f.drop(s, seq) {
			continue
		}
		s.c <- frame
		if f.dup != nil && f.dup(s, seq) {
			s.c <- frame
		}
	}
	w.WriteHeader(http.StatusCreated)
	w.Write(msg)
}

func (f *fakeServer) stream(w http.ResponseWriter, r *http.Request, token string) {
	f.mu.Lock()
	s := &fakeStream{token: token, support: f.support[token], c: make(chan []byte, 1<<14)}
	f.streams = append(f.streams, s)
	pos := f.pos
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "id: %d\n\n", pos)
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-s.c:
			w.Write(b)
			for more := true; more; {
				select {
				case b := <-s.c:
					w.Write(b)
				default:
					more = false
				}
			}
			w.(http.Flusher).Flush()
		}
	}
}

func runFake(t *testing.T, f *fakeServer, extra ...string) (report, error, string) {
	t.Helper()
	srv := httptest.NewServer(f)
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	args := append([]string{"-server", srv.URL, "-admin-token", f.admin, "-json", "-customers", "3", "-agents", "3",
		"-support-share", "0.67", "-rate", "100", "-duration", "500ms", "-warmup", "0s", "-grace", "300ms"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, args, &stdout, &stderr)
	var r report
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		t.Fatalf("the report is not JSON: %v (run: %v)\n%s\n%s", jerr, err, &stdout, &stderr)
	}
	return r, err, stderr.String()
}

func TestRunPassesWhenEveryStreamGetsEveryPostOnce(t *testing.T) {
	t.Parallel()
	r, err, stderr := runFake(t, newFakeServer("admin"))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	// 2 support agents: each post reaches its customer's widget and both.
	if d := r.Deliveries; d.Expected == 0 || d.Delivered != d.Expected || d.Expected != 3*r.PostsTotal || d.Lost != 0 || d.Duplicated != 0 || d.Unexpected != 0 {
		t.Errorf("deliveries: got %+v for %d posts, want 3 each, none lost or duplicated", d, r.PostsTotal)
	}
}

func TestRunFailsOnLostDuplicatedOrUnexpectedDeliveries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fault  func(f *fakeServer)
		check  func(d deliveryReport) bool
		reason string
	}{
		{"lost at an agent", func(f *fakeServer) {
			dropped := false
			f.drop = func(s *fakeStream, seq int) bool {
				if s.support && seq == 7 && !dropped {
					dropped = true
					return true
				}
				return false
			}
		}, func(d deliveryReport) bool { return d.Lost == 1 && d.LostAgent == 1 && d.Delivered == d.Expected-1 }, "1 deliveries lost"},
		{"lost at a widget", func(f *fakeServer) {
			f.drop = func(s *fakeStream, seq int) bool { return !s.support && seq == 5 }
		}, func(d deliveryReport) bool { return d.Lost == 1 && d.LostWidget == 1 }, "1 deliveries lost"},
		{"duplicated", func(f *fakeServer) {
			f.dup = func(s *fakeStream, seq int) bool { return s.support && seq%10 == 0 }
		}, func(d deliveryReport) bool { return d.Duplicated > 0 && d.Lost == 0 && d.Delivered == d.Expected }, "deliveries duplicated"},
		{"unexpected", func(f *fakeServer) {
			f.leak = func(s *fakeStream, seq int) bool { return strings.HasPrefix(s.token, "agent-") && seq == 3 }
		}, func(d deliveryReport) bool { return d.Unexpected == 1 && d.Lost == 0 }, "streams that may not see them"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeServer("admin")
			tc.fault(f)
			r, err, _ := runFake(t, f)
			if !tc.check(r.Deliveries) {
				t.Errorf("deliveries: got %+v", r.Deliveries)
			}
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("run: got %v, want an error saying %q", err, tc.reason)
			}
		})
	}
}

// TestScaleAgainstFake measures how many deliveries per second this
// process takes, against a fake server that renders nothing, in the same
// process: set MESSENGER_BENCH_SCALE=<agents>[,<rate>] to run it.
func TestScaleAgainstFake(t *testing.T) {
	v := os.Getenv("MESSENGER_BENCH_SCALE")
	if v == "" {
		t.Skip("set MESSENGER_BENCH_SCALE=<agents>[,<posts/s>]")
	}
	agents, rate, _ := strings.Cut(v, ",")
	if rate == "" {
		rate = "100"
	}
	srv := httptest.NewServer(newFakeServer("admin"))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-server", srv.URL, "-admin-token", "admin", "-customers", "50", "-agents", agents,
		"-support-share", "1", "-rate", rate, "-mix", "0", "-duration", "10s", "-warmup", "2s"}, &stdout, &stderr)
	t.Logf("\n%s", &stdout)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, &stderr)
	}
}
