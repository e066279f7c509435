package eventstore

import (
	"context"
	"fmt"

	"github.com/helpdesk/messenger/domain"
)

// Request is one Append call on its way to a group-committing store's
// writer: the events as the store writes them (R, a row of its table) and
// as the caller gets them back, position and version unset in both.
type Request[R any] struct {
	Ctx      context.Context
	Stream   string
	Expected int64
	Rows     []R
	Recs     []domain.Recorded // the rows as recorded
	reply    chan Result[R]    // buffered: the writer never waits on it
}

// Result is a writer's answer to one Request: where its events went, or
// the events of the log when they were there already (an idempotent
// retry), or why it failed.
type Result[R any] struct {
	Positions []int64 // of the rows appended, in order
	Version   int64   // of the first row appended
	Stored    []R     // when the events were in the log already
	Err       error
}

// NewRequest returns a Request ready to be sent to a writer.
func NewRequest[R any](ctx context.Context, stream string, expected int64, rows []R, recs []domain.Recorded) *Request[R] {
	return &Request[R]{Ctx: ctx, Stream: stream, Expected: expected, Rows: rows, Recs: recs, reply: make(chan Result[R], 1)}
}

// Answer gives r its result; a writer answers each request once.
func (r *Request[R]) Answer(res Result[R]) { r.reply <- res }

// Answered is where r's result arrives.
func (r *Request[R]) Answered() <-chan Result[R] { return r.reply }

// Fail answers r with err, saying which stream it was for.
func (r *Request[R]) Fail(err error) {
	r.Answer(Result[R]{Err: fmt.Errorf("append to %s: %w", r.Stream, err)})
}

// Submit sends r to whichever writer takes it from reqs and waits for the
// answer; it returns r's events as recorded: numbered as the writer says,
// or the stored ones decoded by records. It returns closed (wrapped) once
// done is closed, and ctx's error if ctx ends first: the events may then
// have been appended or not.
func Submit[R any](r *Request[R], reqs chan<- *Request[R], done <-chan struct{}, closed error, records func([]R) ([]domain.Recorded, error)) ([]domain.Recorded, error) {
	select {
	case <-done: // closed: never hand a writer that may still take it a request
		return nil, fmt.Errorf("append to %s: %w", r.Stream, closed)
	default:
	}
	select {
	case reqs <- r:
	case <-done:
		return nil, fmt.Errorf("append to %s: %w", r.Stream, closed)
	case <-r.Ctx.Done():
		return nil, fmt.Errorf("append to %s: %w", r.Stream, r.Ctx.Err())
	}
	var res Result[R]
	select {
	case res = <-r.reply:
	case <-r.Ctx.Done():
		return nil, fmt.Errorf("append to %s: %w", r.Stream, r.Ctx.Err())
	}
	if res.Err != nil {
		return nil, res.Err
	}
	if res.Stored != nil {
		recs, err := records(res.Stored)
		if err != nil {
			return nil, fmt.Errorf("append to %s: %w", r.Stream, err)
		}
		return recs, nil
	}
	recs := r.Recs
	for i := range recs {
		recs[i].Position = uint64(res.Positions[i])
		recs[i].Version = res.Version + int64(i)
	}
	return recs, nil
}

// Live answers the requests of batch whose callers have gone with their
// context's error and returns the others, in order.
func Live[R any](batch []*Request[R]) []*Request[R] {
	live := make([]*Request[R], 0, len(batch))
	for _, r := range batch {
		if err := r.Ctx.Err(); err != nil {
			r.Fail(err)
			continue
		}
		live = append(live, r)
	}
	return live
}

// Appended returns the events that reqs appended, as results say, numbered
// as their store committed them, in the order of the requests (the order
// one transaction numbered them in); for a Tail. A result whose positions
// do not match its request's events adds none.
func Appended[R any](reqs []*Request[R], results []Result[R]) []domain.Recorded {
	var kept []domain.Recorded
	for i, r := range reqs {
		res := results[i]
		if res.Err != nil || res.Stored != nil || len(res.Positions) != len(r.Recs) {
			continue
		}
		for j, rec := range r.Recs {
			rec.Position, rec.Version = uint64(res.Positions[j]), res.Version+int64(j)
			kept = append(kept, rec)
		}
	}
	return kept
}
