// Package projections builds the read models from the log: inbox rows,
// unread counts, links, items, the directory and search. Each projection
// applies an event's row changes in the same transaction as its checkpoint.
package projections

import (
	"context"

	"github.com/helpdesk/messenger/domain"
)

// Log is the global log as the projector reads it.
type Log interface {
	// ReadAll returns up to limit events with a position above after, in log
	// order. It never skips an event that a later call could return below the
	// highest position it returned.
	ReadAll(ctx context.Context, after uint64, limit int) ([]domain.Recorded, error)
	// Wait returns once the log may hold an event with a position above
	// after, or with ctx's error. It may return early; callers read and wait again.
	Wait(ctx context.Context, after uint64) error
}
