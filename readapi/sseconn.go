package readapi

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// sseSink is where an sseWriter's bytes go: the response, through net/http
// (responseSink), or the connection itself, taken from net/http once the
// stream has begun (connSink).
type sseSink interface {
	// write sends p; with push, it makes sure p leaves for the client now.
	write(p []byte, push bool) error
	setWriteDeadline(t time.Time) error
	// end ends the response, once nothing more is written.
	end()
}

// responseSink writes through net/http's response, which keeps the
// connection's buffers (4 kB to read, 6 kB to write) and the request's
// goroutine for as long as the stream lasts.
type responseSink struct {
	w  gin.ResponseWriter
	rc *http.ResponseController
}

func (s responseSink) write(p []byte, push bool) error {
	if _, err := s.w.Write(p); err != nil || !push {
		return err
	}
	return s.rc.Flush()
}

func (s responseSink) setWriteDeadline(t time.Time) error {
	if err := s.rc.SetWriteDeadline(t); !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (responseSink) end() {}

// connSink writes the response's body in chunks, as net/http would, on a
// connection taken from it (hijack): nothing is buffered, each write is one
// chunk, and end closes the connection.
type connSink struct{ conn net.Conn }

func (s connSink) write(p []byte, _ bool) error {
	if len(p) == 0 {
		return nil
	}
	var size [20]byte
	head := append(strconv.AppendInt(size[:0], int64(len(p)), 16), '\r', '\n')
	bufs := net.Buffers{head, p, crlf}
	_, err := bufs.WriteTo(s.conn)
	return err
}

var crlf = []byte("\r\n")

func (s connSink) setWriteDeadline(t time.Time) error { return s.conn.SetWriteDeadline(t) }

// end writes the last chunk, if the client still reads, and closes.
func (s connSink) end() {
	s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	s.conn.Write([]byte("0\r\n\r\n"))
	s.conn.Close()
}

// hijack takes the connection of c's request from net/http, once the
// stream's status and headers, which it writes, are all the response has
// had; nil where it cannot be taken (HTTP/2, a test's recorder) or should
// not (HTTP/1.0 knows no chunks). The request's goroutine may then return
// while the stream goes on: net/http's buffers of the connection, the
// request, and the stack that answering it grew are left to the collector,
// and an idle stream keeps a few kilobytes and two small goroutines.
func hijack(c *gin.Context) (net.Conn, error) {
	if c.Request.ProtoMajor != 1 || c.Request.ProtoMinor < 1 || c.Writer.Written() {
		return nil, nil
	}
	if u, ok := c.Writer.(interface{ Unwrap() http.ResponseWriter }); !ok {
		return nil, nil
	} else if _, ok := u.Unwrap().(http.Hijacker); !ok {
		return nil, nil
	}
	h := c.Writer.Header()
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Connection", "close") // net/http no longer has it to keep
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	if err := h.Write(&head); err != nil { // values cleaned of line breaks, as net/http's
		return nil, err
	}
	head.WriteString("\r\n")
	conn, rw, err := c.Writer.Hijack()
	if err != nil {
		return nil, err
	}
	if rw.Reader.Buffered() > 0 {
		// The client sent more than its request: nothing a stream's client does.
		conn.Close()
		return nil, errors.New("the client sent more than its request")
	}
	if _, err := conn.Write(head.Bytes()); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// watchClose cancels when the client closes the connection (or sends
// anything: a stream's client sends nothing), as net/http's read in the
// background does for a request; end closing it also returns.
func watchClose(conn net.Conn, cancel func()) {
	var b [1]byte
	conn.Read(b[:])
	cancel()
}
