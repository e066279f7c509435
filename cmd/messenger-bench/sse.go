package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// The SSE client holds each stream on its own connection, read by one
// goroutine: it writes the request itself and reads the response with
// http.ReadResponse, so no Transport goroutines or pool sit in between.

// streamTimeout is how long a stream may stay silent before the client
// takes it for dead and reconnects: well above the server's 15 s heartbeat.
const streamTimeout = 60 * time.Second

// eventKind is the SSE event types the client tells apart.
type eventKind uint8

const (
	evOther eventKind = iota
	evMessageCreated
	evReset
)

var (
	nameMessageCreated = []byte("message.created")
	nameReset          = []byte("reset")
)

// delivery is what a stream reports for each message.created it reads.
type delivery struct {
	id   []byte // the message id; valid only during the call
	seq  uint64 // the bench's sequence number from the body
	ours bool   // whether the body carries this run's marker
	at   time.Duration
}

// stream is one SSE subscription, reconnecting with Last-Event-ID until its
// context ends. Its fields other than the atomics are owned by the goroutine
// running it.
type stream struct {
	target *url.URL
	path   string // path and query
	token  string
	marker []byte // `"body":"bench:<run>:`: how this run's messages start
	clock  func() time.Duration
	dialer *net.Dialer
	tls    *tls.Config
	h2     *http.Client // if set, the stream goes over HTTP/2 through it, sharing connections

	// onMessage is called for every message.created event, from the
	// stream's goroutine.
	onMessage func(d delivery)
	// onReady is called once, when the first id of the first connection
	// arrives: from then on the stream misses nothing.
	onReady func()
	// onError is called for every failed connection attempt: the HTTP
	// status, or 0 for a network error.
	onError func(status int, err error)

	lastID []byte
	ready  bool
	data   []byte // the data of the event being read
	long   []byte // a line longer than the read buffer
	br     *bufio.Reader
	lr     *bufio.Reader
	bufLen int

	frames     atomic.Int64 // events dispatched (id-only frames included)
	reconnects atomic.Int64
	resets     atomic.Int64
}

// run holds the stream until ctx is done, reconnecting after each failure
// with the last id received.
func (s *stream) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for first := true; ctx.Err() == nil; first = false {
		if !first {
			s.reconnects.Add(1)
		}
		before := s.frames.Load()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		var se *statusError
		if errors.As(err, &se) {
			s.onError(se.status, err)
		} else if s.frames.Load() == before {
			s.onError(0, err) // could not connect, or cut before anything arrived
		}
		if s.frames.Load() > before {
			backoff = 50 * time.Millisecond
		} else {
			backoff = min(backoff*2, 2*time.Second)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// statusError is a stream request answered with a status other than 200.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("stream: status %d: %s", e.status, e.body) }

// session connects once and reads events until the connection ends.
func (s *stream) session(ctx context.Context) error {
	if s.h2 != nil {
		return s.sessionHTTP2(ctx)
	}
	host := s.target.Host
	if s.target.Port() == "" {
		if s.target.Scheme == "https" {
			host += ":443"
		} else {
			host += ":80"
		}
	}
	conn, err := s.dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	if s.target.Scheme == "https" {
		conn = tls.Client(conn, s.tls)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		stop()
		conn.Close()
	}()

	var req bytes.Buffer
	req.WriteString("GET ")
	req.WriteString(s.path)
	req.WriteString(" HTTP/1.1\r\nHost: ")
	req.WriteString(s.target.Host)
	req.WriteString("\r\nUser-Agent: messenger-bench\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nAuthorization: Bearer ")
	req.WriteString(s.token)
	if len(s.lastID) > 0 {
		req.WriteString("\r\nLast-Event-ID: ")
		req.Write(s.lastID)
	}
	req.WriteString("\r\n\r\n")
	conn.SetDeadline(time.Now().Add(streamTimeout))
	if _, err := conn.Write(req.Bytes()); err != nil {
		return err
	}

	if s.br == nil {
		s.br = bufio.NewReaderSize(conn, s.bufLen)
	} else {
		s.br.Reset(conn)
	}
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{status: resp.StatusCode, body: string(bytes.TrimSpace(b))}
	}
	if s.lr == nil {
		s.lr = bufio.NewReaderSize(resp.Body, s.bufLen)
	} else {
		s.lr.Reset(resp.Body)
	}
	return s.read(s.lr, conn.SetDeadline)
}

// errSilent ends an HTTP/2 stream that stayed silent for streamTimeout.
var errSilent = errors.New("stream: silent for too long")

// sessionHTTP2 is session over HTTP/2: the request goes through the
// stream's client, on a connection other streams share, and a timer in
// place of the connection's deadline cancels it when it falls silent.
func (s *stream) sessionHTTP2(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silent := time.AfterFunc(streamTimeout, func() { cancel(errSilent) })
	defer silent.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.target.Scheme+"://"+s.target.Host+s.path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "messenger-bench")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("Authorization", "Bearer "+s.token)
	if len(s.lastID) > 0 {
		req.Header.Set("Last-Event-ID", string(s.lastID))
	}
	resp, err := s.h2.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{status: resp.StatusCode, body: string(bytes.TrimSpace(b))}
	}
	if resp.ProtoMajor != 2 {
		return fmt.Errorf("stream answered over %s, not HTTP/2", resp.Proto)
	}
	if s.lr == nil {
		s.lr = bufio.NewReaderSize(resp.Body, s.bufLen)
	} else {
		s.lr.Reset(resp.Body)
	}
	err = s.read(s.lr, func(t time.Time) error {
		silent.Reset(time.Until(t))
		return nil
	})
	if cause := context.Cause(ctx); errors.Is(cause, errSilent) {
		return cause
	}
	return err
}

// read parses events until the stream ends. Only id, event and data
// fields are kept; a message.created's data is scanned, not decoded.
// deadline moves the connection's deadline.
func (s *stream) read(lr *bufio.Reader, deadline func(time.Time) error) error {
	kind := evOther
	s.data = s.data[:0]
	hasData := false
	refreshed, dispatched := time.Now(), 0
	for {
		line, err := lr.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			s.long = append(s.long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = lr.ReadSlice('\n')
				s.long = append(s.long, line...)
			}
			line = s.long
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF // the server ended the stream
			}
			return err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})

		if len(line) == 0 { // dispatch
			s.frames.Add(1)
			switch {
			case kind == evMessageCreated && hasData:
				s.message(s.data)
			case kind == evReset:
				s.resets.Add(1)
			}
			kind, hasData = evOther, false
			s.data = s.data[:0]
			if dispatched++; dispatched%64 == 0 { // reading the clock costs: not at every frame
				refresh(deadline, &refreshed)
			}
			continue
		}
		if line[0] == ':' {
			s.frames.Add(1) // a heartbeat: the connection lives
			refresh(deadline, &refreshed)
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) { // no allocation: the compiler compares in place
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.lastID = append(s.lastID[:0], value...)
			}
			if !s.ready {
				s.ready = true
				s.onReady()
			}
		case "event":
			switch {
			case bytes.Equal(value, nameMessageCreated):
				kind = evMessageCreated
			case bytes.Equal(value, nameReset):
				kind = evReset
			default:
				kind = evOther
			}
		case "data":
			if hasData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			hasData = true
		}
	}
}

// refresh moves the connection's deadline forward, at most every quarter
// of streamTimeout, since a live connection is one that keeps sending.
func refresh(deadline func(time.Time) error, at *time.Time) {
	if now := time.Now(); now.Sub(*at) > streamTimeout/4 {
		deadline(now.Add(streamTimeout))
		*at = now
	}
}

// idPrefix is how a message's JSON starts: the server encodes its id first.
var idPrefix = []byte(`{"id":"`)

// message reports a message.created event: its id read from the front of
// data, and this run's sequence number from the body's marker.
func (s *stream) message(data []byte) {
	d := delivery{at: s.clock()}
	if bytes.HasPrefix(data, idPrefix) {
		rest := data[len(idPrefix):]
		if i := bytes.IndexByte(rest, '"'); i >= 0 {
			d.id = rest[:i]
		}
	}
	if i := bytes.Index(data, s.marker); i >= 0 {
		d.seq, d.ours = parseSeq(data[i+len(s.marker):])
	}
	if d.id == nil {
		// Another encoder's field order: decode, which is slower but exact.
		var m struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(data, &m) != nil {
			return
		}
		d.id = []byte(m.ID)
	}
	s.onMessage(d)
}

// parseSeq reads the decimal number at the front of b, which must be
// followed by a space.
func parseSeq(b []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0')
	}
	return n, i > 0 && i < len(b) && b[i] == ' '
}

// bodyOf returns the text of post seq of run: the marker, then filler up
// to size bytes.
func bodyOf(run string, seq uint64, size int) string {
	b := make([]byte, 0, max(size, 32))
	b = append(b, "bench:"...)
	b = append(b, run...)
	b = append(b, ':')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ' ')
	const filler = "Hello! My order has not arrived yet and the tracking page says nothing. Could you look into it? "
	for len(b) < size {
		b = append(b, filler[:min(len(filler), size-len(b))]...)
	}
	return string(b)
}

// markerOf is what the JSON of a message of run holds just before its
// sequence number.
func markerOf(run string) []byte { return []byte(`"body":"bench:` + run + ":") }
