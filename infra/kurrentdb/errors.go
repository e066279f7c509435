package kurrentdb

import (
	"context"
	"errors"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// code returns the code of the client's error in err's chain, and false if
// there is none. The client wraps its own errors with fmt.Errorf in places
// (a failed append's set-up, a subscription), so the code is found with
// errors.As: esdb.FromError looks at err itself only, and calls a wrapped
// wrong-expected-version error "unknown".
func code(err error) (esdb.ErrorCode, bool) {
	var e *esdb.Error
	if !errors.As(err, &e) {
		return 0, false
	}
	return e.Code(), true
}

// isWrongExpectedVersion reports whether err is KurrentDB's answer to an
// append whose expected revision was not the stream's.
func isWrongExpectedVersion(err error) bool {
	c, ok := code(err)
	return ok && c == esdb.ErrorCodeWrongExpectedVersion
}

// isStreamNotFound reports whether err is the answer to a read of a stream
// that does not exist (or was soft-deleted and holds nothing since).
func isStreamNotFound(err error) bool {
	c, ok := code(err)
	return ok && c == esdb.ErrorCodeResourceNotFound
}

// isConnectionClosed reports whether err says that the client gave up on
// the server for good: it does after a failed discovery (the server was
// down for all its attempts) and never connects again.
func isConnectionClosed(err error) bool {
	c, ok := code(err)
	return ok && c == esdb.ErrorCodeConnectionClosed
}

// isInvalidPosition reports whether err is KurrentDB's answer to a read of
// $all from a position that is not an event's: the gRPC status
// InvalidArgument ("Trying to read from an invalid position"), which the
// client calls an unknown error.
func isInvalidPosition(err error) bool {
	return err != nil && status.Code(err) == codes.InvalidArgument
}

// ctxErr returns ctx's error if ctx is done, else err: a call cut short by
// its context fails with a gRPC status that errors.Is does not relate to
// context.Canceled or context.DeadlineExceeded.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
