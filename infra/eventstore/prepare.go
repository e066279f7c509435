package eventstore

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/infra/codec"
)

// Check checks what no store takes in an append, before anything is
// encoded: an empty stream name, no events, an expected version below
// AnyVersion, an empty or repeated event id, a nil event; a stream name,
// event id or actor that is not text every store keeps (domain.IsText:
// PostgreSQL refuses it, which would fail a whole batch of other callers'
// appends, and gRPC's strings are UTF-8); a time outside the years 1 to
// 9999, which a store could write but not read back (RFC 3339's four
// digits, PostgreSQL's timestamptz).
func Check(stream string, expected int64, events []domain.Pending) error {
	switch {
	case stream == "":
		return errors.New("empty stream name")
	case !domain.IsText(stream):
		return fmt.Errorf("stream name %q is not valid UTF-8 without NUL", stream)
	case len(events) == 0:
		return errors.New("no events")
	case expected < domain.AnyVersion:
		return fmt.Errorf("expected version %d is below AnyVersion", expected)
	}
	ids := make(map[string]bool, len(events))
	for i, p := range events {
		switch {
		case p.EventID == "":
			return fmt.Errorf("event %d: empty event id", i)
		case !domain.IsText(p.EventID):
			return fmt.Errorf("event %d: event id %q is not valid UTF-8 without NUL", i, p.EventID)
		case ids[p.EventID]:
			return fmt.Errorf("event %d: event id %s appears twice", i, p.EventID)
		case p.Event == nil:
			return fmt.Errorf("event %s: nil event", p.EventID)
		}
		ids[p.EventID] = true
		meta := p.Event.EventMeta()
		if y := meta.At.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("event %s: time %v is outside years 1 to 9999", p.EventID, meta.At)
		}
		if !domain.IsText(string(meta.Actor.Kind)) || !domain.IsText(meta.Actor.ID) {
			return fmt.Errorf("event %s: actor %q %q is not valid UTF-8 without NUL", p.EventID, meta.Actor.Kind, meta.Actor.ID)
		}
	}
	return nil
}

// Prepare checks an append (Check) and returns its events as a store
// records them in stream, position and version unset: encoded by the
// codec and decoded again, so that each holds its event as a later read
// will, with its time in UTC as round leaves it (what the store keeps of
// it). It refuses a schema beyond 32 bits (PostgreSQL's integer).
func Prepare(stream string, expected int64, events []domain.Pending, round func(time.Time) time.Time) ([]domain.Recorded, error) {
	if err := Check(stream, expected, events); err != nil {
		return nil, err
	}
	recs := make([]domain.Recorded, len(events))
	for i, p := range events {
		typ, schema, data, err := codec.Encode(p.Event)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", p.EventID, err)
		}
		if schema > math.MaxInt32 {
			return nil, fmt.Errorf("event %s: schema %d is out of range", p.EventID, schema)
		}
		meta := p.Event.EventMeta()
		meta.At = round(meta.At.UTC())
		ev, err := codec.Decode(typ, schema, data, meta)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", p.EventID, err)
		}
		recs[i] = domain.Recorded{
			Stream: stream, EventID: p.EventID, Type: typ, Schema: schema,
			At: meta.At, Actor: meta.Actor, Data: data, Event: ev,
		}
	}
	return recs, nil
}
