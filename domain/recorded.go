package domain

import "time"

// Recorded is an event as the log holds it: the event with its place in its
// stream and in the global log.
type Recorded struct {
	// Position is the event's place in the global log: it grows strictly in
	// log order and a reader of the log never sees a lower one after a higher one.
	// Stores that cannot number densely may leave gaps.
	Position uint64
	Stream   string
	Version  int64 // 1, 2, … within Stream
	EventID  string
	Type     string // the stored type name, Event.EventType()
	Schema   int    // the schema version of Data
	At       time.Time
	Actor    Actor
	Data     []byte // the stored JSON of the event's own fields (no metadata)
	Event    Event  // decoded; never nil
}

// Pending is an event on its way into the log. EventID makes a retried append
// idempotent: appending a batch whose event ids are already in the stream
// returns the first append's result and writes nothing.
type Pending struct {
	EventID string
	Event   Event
}

// Expected versions for an append besides an exact version n ≥ 1.
const (
	// NoStream: the stream must not exist yet.
	NoStream int64 = 0
	// AnyVersion: append whatever the stream's version.
	AnyVersion int64 = -1
)
