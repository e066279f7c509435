package kurrentdb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/infra/codec"
)

// idNamespace is the namespace of the UUIDv5 that stands for an event id
// that is not a canonical UUID. It is part of the stored form: changing it
// would break the idempotency of retries across the change.
var idNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/helpdesk/messenger/event-id"))

// EventUUID returns the KurrentDB event id of the domain event id id: the
// UUID itself when id is a canonical UUID (lower-case, hyphenated, as
// uuid.UUID.String writes it) other than the nil UUID, and otherwise the
// UUIDv5 of id in a fixed namespace. The result depends on id alone and is
// never the nil UUID, which the client would replace by a random one and so
// defeat the idempotency of a retried append.
func EventUUID(id string) uuid.UUID {
	if u, err := uuid.Parse(id); err == nil && u != uuid.Nil && u.String() == id {
		return u
	}
	return uuid.NewSHA1(idNamespace, []byte(id))
}

// metadata is the user metadata stored with each event: what the codec
// leaves out of the data.
type metadata struct {
	Schema    int    `json:"schema"`
	At        string `json:"at"` // RFC 3339 with nanoseconds, UTC
	ActorKind string `json:"actor_kind"`
	ActorID   string `json:"actor_id"`
	// EventID is the domain event id when it is not the text of the
	// KurrentDB event id (see EventUUID); empty otherwise.
	EventID string `json:"event_id,omitempty"`
}

// encodeEvent returns p as KurrentDB stores it: the codec's data as a JSON
// event of the codec's type name, the schema, time and actor as JSON
// metadata, and the event id of EventUUID(p.EventID). p has passed
// eventstore.Check (prepareAppend): an id, an event.
func encodeEvent(p domain.Pending) (esdb.EventData, error) {
	typ, schema, data, err := codec.Encode(p.Event)
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("event %s: %w", p.EventID, err)
	}
	id := EventUUID(p.EventID)
	m := p.Event.EventMeta()
	md := metadata{
		Schema:    schema,
		At:        m.At.UTC().Format(time.RFC3339Nano),
		ActorKind: string(m.Actor.Kind),
		ActorID:   m.Actor.ID,
	}
	if id.String() != p.EventID {
		md.EventID = p.EventID
	}
	meta, err := json.Marshal(md)
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("event %s: metadata: %w", p.EventID, err)
	}
	return esdb.EventData{
		EventID:     id,
		EventType:   typ,
		ContentType: esdb.ContentTypeJson,
		Data:        data,
		Metadata:    meta,
	}, nil
}

// IsSystem reports whether an event of type typ in stream stream is one of
// KurrentDB's own (stream metadata, statistics, projections' links, …),
// which the log of Messenger leaves out: its type or its stream begins
// with "$".
func IsSystem(stream, typ string) bool {
	return strings.HasPrefix(typ, "$") || strings.HasPrefix(stream, "$")
}

// errNoPosition is wrapped by the error of decoding an event whose log
// position the server did not send.
var errNoPosition = errors.New("the server sent no log position for the event (stream reads carry one since the EventStoreDB 22 releases)")

// decodeEvent returns the domain record of ev, an event written by
// encodeEvent. Its Version is ev's revision + 1 and its Position ev's
// commit position.
func decodeEvent(ev *esdb.RecordedEvent) (domain.Recorded, error) {
	if ev == nil {
		return domain.Recorded{}, errors.New("no event (an unresolved link?)")
	}
	where := fmt.Sprintf("%s@%d", ev.StreamID, ev.EventNumber)
	pos, err := position(ev.Position)
	if err != nil {
		return domain.Recorded{}, fmt.Errorf("event %s: %w", where, err)
	}
	var md metadata
	dec := json.NewDecoder(bytes.NewReader(ev.UserMetadata))
	if err := dec.Decode(&md); err != nil {
		return domain.Recorded{}, fmt.Errorf("event %s: metadata %q: %w", where, ev.UserMetadata, err)
	}
	at, err := time.Parse(time.RFC3339Nano, md.At)
	if err != nil {
		return domain.Recorded{}, fmt.Errorf("event %s: metadata time: %w", where, err)
	}
	if ev.EventNumber >= math.MaxInt64 {
		return domain.Recorded{}, fmt.Errorf("event %s: revision out of range", where)
	}
	at = at.UTC()
	actor := domain.Actor{Kind: domain.ActorKind(md.ActorKind), ID: md.ActorID}
	e, err := codec.Decode(ev.EventType, md.Schema, ev.Data, domain.Meta{At: at, Actor: actor})
	if err != nil {
		return domain.Recorded{}, fmt.Errorf("event %s: %w", where, err)
	}
	id := md.EventID
	if id == "" {
		id = ev.EventID.String()
	}
	return domain.Recorded{
		Position: pos,
		Stream:   ev.StreamID,
		Version:  int64(ev.EventNumber) + 1,
		EventID:  id,
		Type:     ev.EventType,
		Schema:   md.Schema,
		At:       at,
		Actor:    actor,
		Data:     ev.Data,
		Event:    e,
	}, nil
}

// position returns the log position of an event: its commit position. A
// gRPC append commits each event by itself, so its commit and prepare
// positions are the same byte offset in the transaction log; positions
// therefore grow with the log but are not dense. The server sends
// math.MaxUint64 for a position it does not know. Positions above
// math.MaxInt64 are refused, as the read models store them as int64.
func position(p esdb.Position) (uint64, error) {
	switch {
	case p.Commit == math.MaxUint64:
		return 0, errNoPosition
	case p.Commit > math.MaxInt64:
		return 0, fmt.Errorf("log position %d is above the int64 range", p.Commit)
	}
	return p.Commit, nil
}

// ExpectedRevision returns the expected revision of an append for the
// port's expected version: domain.NoStream is esdb.NoStream, domain.AnyVersion
// is esdb.Any, and a version n ≥ 1 (the stream holds n events) is the
// revision of its last event, n-1, as KurrentDB counts revisions from 0.
// It returns an error for a version below domain.AnyVersion.
func ExpectedRevision(expected int64) (esdb.ExpectedRevision, error) {
	switch {
	case expected == domain.NoStream:
		return esdb.NoStream{}, nil
	case expected == domain.AnyVersion:
		return esdb.Any{}, nil
	case expected > 0:
		return esdb.Revision(uint64(expected - 1)), nil
	}
	return nil, fmt.Errorf("expected version %d is below AnyVersion", expected)
}

// allFrom returns where a read or subscription of $all starts to see the
// events after position after: the start of the log for 0, else after
// itself, which a read of $all includes and a subscription excludes.
func allFrom(after uint64) esdb.AllPosition {
	if after == 0 {
		return esdb.Start{}
	}
	return esdb.Position{Commit: after, Prepare: after}
}
