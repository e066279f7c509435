package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStreams serves /v1/stream from a script: connection n (from 0) gets
// frames[n], then ends, except the last, which stays open.
type fakeStreams struct {
	t      *testing.T
	frames []string

	mu      sync.Mutex
	n       int
	resumes []string // the Last-Event-ID of each connection
}

func (f *fakeStreams) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	n := f.n
	f.n++
	f.resumes = append(f.resumes, r.Header.Get("Last-Event-ID"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	if n < len(f.frames) {
		fmt.Fprint(w, f.frames[n])
	}
	w.(http.Flusher).Flush()
	if n < len(f.frames)-1 {
		return
	}
	<-r.Context().Done()
}

// message is the data of a message.created of run's post seq.
func message(id, run string, seq int) string {
	return fmt.Sprintf(`{"id":"%s","conversation_id":"c1","author":{"kind":"customer","id":"u","name":"A: \"body\":\"x"},"body":"bench:%s:%d Hello","created_at":"2026-01-01T00:00:00.000Z","edited":false,"deleted":false,"position":"7"}`, id, run, seq)
}

func newTestStream(t *testing.T, srv *httptest.Server, run string) (*stream, *[]delivery, *sync.Mutex) {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	start := time.Now()
	var mu sync.Mutex
	var got []delivery
	st := &stream{
		target: u, path: "/v1/stream", token: "tok", marker: markerOf(run),
		clock: func() time.Duration { return time.Since(start) }, dialer: &net.Dialer{}, bufLen: 64,
		onMessage: func(d delivery) {
			mu.Lock()
			d.id = append([]byte(nil), d.id...)
			got = append(got, d)
			mu.Unlock()
		},
		onReady: func() {},
		onError: func(status int, err error) { t.Logf("stream error %d: %v", status, err) },
	}
	return st, &got, &mu
}

func TestStreamResumesWithLastEventIDAndParsesMessages(t *testing.T) {
	long := strings.Repeat("x", 300) // longer than the 64-byte buffers
	f := &fakeStreams{t: t, frames: []string{
		"id: 5\n\n" +
			"id: 6\nevent: message.created\ndata: " + message("m1", "r1", 0) + "\n\n" +
			"id: 6\nevent: unread.changed\ndata: {\"conversation_id\":\"c1\",\"unread\":1}\n\n" +
			": ping\n\n",
		// The resume: CRLF line ends, a long comment, another run's message, then ours.
		"id: 7\r\nevent: conversation.updated\r\ndata: {\"id\":\"c1\",\"subject\":\"" + long + "\"}\r\n\r\n" +
			": " + long + "\n\n" +
			"id: 8\nevent: message.created\ndata: " + message("m9", "other", 9) + "\n\n" +
			"id: 9\nevent: message.created\ndata: " + message("m2", "r1", 1) + "\n\n",
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	st, got, mu := newTestStream(t, srv, "r1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { st.run(ctx); close(done) }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(*got)
		mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages in 5 s, want 3", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	want := []struct {
		id   string
		seq  uint64
		ours bool
	}{{"m1", 0, true}, {"m9", 0, false}, {"m2", 1, true}}
	if len(*got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(*got), len(want))
	}
	for i, w := range want {
		d := (*got)[i]
		if string(d.id) != w.id || d.ours != w.ours || (w.ours && d.seq != w.seq) {
			t.Errorf("message %d: got id %s seq %d ours %v, want %s %d %v", i, d.id, d.seq, d.ours, w.id, w.seq, w.ours)
		}
	}
	if got, want := st.reconnects.Load(), int64(1); got != want {
		t.Errorf("reconnects: got %d, want %d", got, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.resumes) != 2 || f.resumes[0] != "" || f.resumes[1] != "6" {
		t.Errorf("Last-Event-ID of each connection: got %q, want [\"\" \"6\"]", f.resumes)
	}
}

// TestDeliverCountsDuplicatesAcrossReconnects replays a message after a
// reconnect, as a server resuming from too old a position would: the bench
// must count it as duplicated, once, and not as a second delivery.
func TestDeliverCountsDuplicatesAcrossReconnects(t *testing.T) {
	f := &fakeStreams{t: t, frames: []string{
		"id: 1\n\nid: 2\nevent: message.created\ndata: " + message("m0", "r1", 0) + "\n\n",
		"id: 2\nevent: message.created\ndata: " + message("m0", "r1", 0) + "\n\n" +
			"id: 3\nevent: message.created\ndata: " + message("m1", "r1", 1) + "\n\n",
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()

	b, err := newBench(config{Server: srv.URL, Writers: 1, Setup: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.runID, b.fanout = "r1", 2
	b.customers = []customer{{token: "tok"}}
	for range 3 {
		_, p := b.posts.add()
		p.sent.Store(1)
		p.state.Store(postAcked)
	}
	id := "m0"
	b.posts.get(0).id.Store(&id)
	sub := &subscriber{kind: subWidget, customer: 0}
	st, _, _ := newTestStream(t, srv, "r1")
	st.onMessage = func(d delivery) { b.deliver(0, sub, d) }
	sub.st = st
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { st.run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for b.delivered.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done

	if got, want := b.delivered.Load(), int64(2); got != want {
		t.Errorf("delivered: got %d, want %d", got, want)
	}
	if got, want := b.duplicated.Load(), int64(1); got != want {
		t.Errorf("duplicated: got %d, want %d", got, want)
	}
	if got := b.mismatched.Load(); got != 0 {
		t.Errorf("mismatched: got %d, want 0", got)
	}
	if got := b.posts.get(2).got.Load(); got != 0 {
		t.Errorf("post 2 was never sent by the server, yet counts %d deliveries", got)
	}
}

func TestParseSeq(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"12 Hello", 12, true},
		{"0 x", 0, true},
		{"12", 0, false},
		{" 12 ", 0, false},
		{"12x ", 0, false},
	} {
		got, ok := parseSeq([]byte(tc.in))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseSeq(%q): got %d %v, want %d %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if body := bodyOf("r1", 42, 80); len(body) != 80 || !strings.HasPrefix(body, "bench:r1:42 ") {
		t.Errorf("bodyOf: got %q (%d bytes)", body, len(body))
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(i, time.Duration(i)*time.Millisecond)
	}
	s := h.snapshot()
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := s.quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff < 0 || diff > 0.02 {
			t.Errorf("quantile %v: got %v, want %v within +2%%", tc.q, got, tc.want)
		}
	}
	if got := s.maximum(); got != time.Second {
		t.Errorf("max: got %v, want 1s", got)
	}
	for us := uint64(0); us < 1<<30; us = us*3/2 + 1 {
		if top := bucketTop(bucketOf(us)); top < us || float64(top-us) > 0.016*float64(us)+1 {
			t.Fatalf("bucket of %d µs tops at %d", us, top)
		}
	}
}

// BenchmarkStreamRead measures the client's cost per message.created and
// unread.changed pair, which bounds how many deliveries per second one
// bench process can take.
func BenchmarkStreamRead(b *testing.B) {
	frame := "id: 123456\nevent: message.created\ndata: " + message("0192aaaa-bbbb-7ccc-8ddd-eeeeffff0000", "r1", 1234) + "\n\n" +
		"id: 123456\nevent: unread.changed\ndata: {\"conversation_id\":\"c1\",\"unread\":1,\"customers\":3,\"mine\":0}\n\n"
	n := 0
	st := &stream{marker: markerOf("r1"), clock: func() time.Duration { return 0 }, onReady: func() {},
		onMessage: func(d delivery) {
			if d.ours && d.seq == 1234 {
				n++
			}
		}}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	lr := bufio.NewReaderSize(&repeatReader{frame: frame, n: b.N}, 4096)
	b.ResetTimer()
	st.read(lr, func(time.Time) error { return nil })
	if n != b.N {
		b.Fatalf("got %d messages, want %d", n, b.N)
	}
}

// repeatReader reads frame n times.
type repeatReader struct {
	frame string
	n     int
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	c := copy(p, r.frame[r.off:])
	if r.off += c; r.off == len(r.frame) {
		r.off, r.n = 0, r.n-1
	}
	return c, nil
}
