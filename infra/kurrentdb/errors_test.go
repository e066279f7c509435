package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
)

// The client's *esdb.Error has unexported fields and no constructor, so
// these tests get its errors the way a program does: from the client's
// own code paths, through the fake server's gRPC answers (a
// wrong-expected-version result, a stream-not-found message, a
// stream-deleted trailer, a failed status).

// clientErrors returns real errors of the client, by what produced them.
func clientErrors(t *testing.T) map[string]error {
	t.Helper()
	f := startFake(t)
	s := openFake(t, f)
	client, _ := s.conn()
	ctx := ctxFor(t)
	data, err := encodeEvent(pending(1)[0])
	if err != nil {
		t.Fatal(err)
	}
	stream := "conversation-" + uuid.NewString()
	if _, err := client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, data); err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{}

	_, errs["wrong expected version"] = client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(7)}, data)

	rs, err := client.ReadStream(ctx, "conversation-missing", esdb.ReadStreamOptions{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	_, errs["stream not found"] = rs.Recv()
	rs.Close()

	f.set(func(f *fakeServer) { f.deleted["conversation-deleted"] = true })
	rs, err = client.ReadStream(ctx, "conversation-deleted", esdb.ReadStreamOptions{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	_, errs["stream deleted"] = rs.Recv()
	rs.Close()

	f.set(func(f *fakeServer) { f.failNext = codes.PermissionDenied })
	_, errs["access denied"] = client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, data)

	s.Close()
	_, errs["closed"] = client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, data)
	return errs
}

func TestClientErrors(t *testing.T) {
	errs := clientErrors(t)
	tests := []struct {
		name                          string
		code                          esdb.ErrorCode
		conflict, notFound, connClose bool
	}{
		{"wrong expected version", esdb.ErrorCodeWrongExpectedVersion, true, false, false},
		{"stream not found", esdb.ErrorCodeResourceNotFound, false, true, false},
		{"stream deleted", esdb.ErrorCodeStreamDeleted, false, false, false},
		{"access denied", esdb.ErrorCodeAccessDenied, false, false, false},
		{"closed", esdb.ErrorCodeConnectionClosed, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := errs[tt.name]
			if err == nil {
				t.Fatal("the client returned no error")
			}
			// As the client returns it, and wrapped as the adapter and the
			// client itself wrap errors.
			for _, e := range []error{err, fmt.Errorf("append to x: %w", err)} {
				if c, ok := code(e); !ok || c != tt.code {
					t.Errorf("code(%v) = %d, %t; want %d", e, c, ok, tt.code)
				}
				if got := isWrongExpectedVersion(e); got != tt.conflict {
					t.Errorf("isWrongExpectedVersion(%v) = %t, want %t", e, got, tt.conflict)
				}
				if got := isStreamNotFound(e); got != tt.notFound {
					t.Errorf("isStreamNotFound(%v) = %t, want %t", e, got, tt.notFound)
				}
				if got := isConnectionClosed(e); got != tt.connClose {
					t.Errorf("isConnectionClosed(%v) = %t, want %t", e, got, tt.connClose)
				}
			}
		})
	}
	// Why errors.As: esdb.FromError looks at the error itself only, and
	// calls a wrapped one unknown.
	wrapped := fmt.Errorf("append: %w", errs["wrong expected version"])
	if e, _ := esdb.FromError(wrapped); e.Code() != esdb.ErrorCodeUnknown {
		t.Errorf("esdb.FromError(wrapped) = code %d; the client changed, reconsider the note in code", e.Code())
	}
	if isWrongExpectedVersion(errors.New("wrong expected version")) || isStreamNotFound(io.EOF) {
		t.Error("an error that is not the client's is classified as the client's")
	}
}

// TestErrorMapping checks what the Store's callers get for each of the
// client's errors.
func TestErrorMapping(t *testing.T) {
	f := startFake(t)
	s := openFake(t, f)
	ctx := ctxFor(t)
	stream := "conversation-" + uuid.NewString()
	if _, err := s.Append(ctx, stream, domain.NoStream, pending(2)); err != nil {
		t.Fatal(err)
	}

	t.Run("wrong expected version is a conflict", func(t *testing.T) {
		for _, expected := range []int64{domain.NoStream, 1, 3} {
			_, err := s.Append(ctx, stream, expected, pending(1))
			if !errors.Is(err, commands.ErrConflict) {
				t.Errorf("Append at %d: got %v, want one wrapping commands.ErrConflict", expected, err)
			}
			if !isWrongExpectedVersion(err) {
				t.Errorf("Append at %d: got %v, want the client's error kept in the chain", expected, err)
			}
		}
	})
	t.Run("missing stream is empty", func(t *testing.T) {
		recs, err := s.ReadStream(ctx, "conversation-"+uuid.NewString())
		if err != nil || len(recs) != 0 {
			t.Errorf("ReadStream: %d events, %v; want none and no error", len(recs), err)
		}
	})
	t.Run("deleted stream is an error", func(t *testing.T) {
		f.set(func(f *fakeServer) { f.deleted["conversation-gone"] = true })
		_, err := s.ReadStream(ctx, "conversation-gone")
		if c, _ := code(err); c != esdb.ErrorCodeStreamDeleted || errors.Is(err, commands.ErrConflict) {
			t.Errorf("ReadStream: got %v, want a stream-deleted error", err)
		}
	})
	t.Run("access denied is not a conflict", func(t *testing.T) {
		var err error
		for _, op := range []string{"read", "append"} {
			f.set(func(f *fakeServer) { f.failNext = codes.PermissionDenied })
			if op == "read" {
				_, err = s.ReadStream(ctx, stream)
			} else {
				_, err = s.Append(ctx, stream, 2, pending(1))
			}
			if err == nil || errors.Is(err, commands.ErrConflict) {
				t.Errorf("%s: got %v, want an error that is not a conflict", op, err)
			}
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.ReadStream(cctx, stream); !errors.Is(err, context.Canceled) {
			t.Errorf("ReadStream: got %v, want context.Canceled", err)
		}
		if _, err := s.Append(cctx, stream, 2, pending(1)); !errors.Is(err, context.Canceled) {
			t.Errorf("Append: got %v, want context.Canceled", err)
		}
	})
}
