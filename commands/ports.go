// Package commands is the write side: each handler loads a stream, lets the
// domain decide, and appends the events with the expected version, retrying
// from a fresh read on a version conflict. It also checks who may do what.
package commands

import (
	"context"
	"errors"

	"github.com/helpdesk/messenger/domain"
)

// ErrConflict is returned by an EventStore when the stream's version is not
// the expected one. Every adapter translates its own library's error into it.
var ErrConflict = errors.New("wrong expected version")

// EventStore is the log as the write side needs it.
type EventStore interface {
	// ReadStream returns the events of stream in version order; none (and no
	// error) when the stream does not exist.
	ReadStream(ctx context.Context, stream string) ([]domain.Recorded, error)
	// Append adds events to stream if its version is expected (domain.NoStream,
	// domain.AnyVersion or an exact version), durably, and returns them as
	// recorded. It returns an error wrapping ErrConflict when the version
	// differs, unless the events' ids are already in the stream in that order:
	// then it returns those records and writes nothing.
	Append(ctx context.Context, stream string, expected int64, events []domain.Pending) ([]domain.Recorded, error)
}
