// Package readapi serves the queries and the live streams over HTTP: inbox,
// unread counts, conversations, items, history, the audit export, and the
// Server-Sent Events of agents and the widget.
package readapi

import (
	"context"

	"github.com/helpdesk/messenger/domain"
)

// Log is the event log as the read side needs it: a conversation's history,
// the audit export, and the replay of a resuming stream.
type Log interface {
	// ReadStream returns the events of stream in version order.
	ReadStream(ctx context.Context, stream string) ([]domain.Recorded, error)
	// ReadAll returns up to limit events after position after, in log order.
	ReadAll(ctx context.Context, after uint64, limit int) ([]domain.Recorded, error)
}

// Progress tells how far the read models have applied the log.
type Progress interface {
	// Applied is the position up to which the read models have applied the log.
	Applied() uint64
	// WaitFor returns once the read models have applied position, or with ctx's error.
	WaitFor(ctx context.Context, position uint64) error
}
