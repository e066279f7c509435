package kurrentdb

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/infra/codec"
	"github.com/helpdesk/messenger/infra/eventstore/storetest"
	"github.com/helpdesk/messenger/projections"
)

// recorded returns ev as the client hands back an event it read: what
// encodeEvent sent, with the server's stream, revision and position.
func recorded(ev esdb.EventData, stream string, revision, pos uint64) *esdb.RecordedEvent {
	return &esdb.RecordedEvent{
		EventID:        ev.EventID,
		EventType:      ev.EventType,
		ContentType:    "application/json",
		StreamID:       stream,
		EventNumber:    revision,
		Position:       esdb.Position{Commit: pos, Prepare: pos},
		CreatedDate:    time.Now(),
		Data:           ev.Data,
		SystemMetadata: map[string]string{"type": ev.EventType, "content-type": "application/json"},
		UserMetadata:   ev.Metadata,
	}
}

// TestEncodeDecodeEveryEventType round-trips one example of every event
// type through the stored form in KurrentDB.
func TestEncodeDecodeEveryEventType(t *testing.T) {
	for i, e := range storetest.Examples(t) {
		id := uuid.NewString()
		if i%2 == 1 {
			id = "evt-" + e.EventType() // not a UUID: kept in the metadata
		}
		p := domain.Pending{EventID: id, Event: e}
		ev, err := encodeEvent(p)
		if err != nil {
			t.Fatalf("%s: encodeEvent: %v", e.EventType(), err)
		}
		typ, schema, data, _ := codec.Encode(e)
		if ev.EventType != typ || ev.ContentType != esdb.ContentTypeJson || !bytes.Equal(ev.Data, data) || ev.EventID != EventUUID(id) {
			t.Errorf("%s: encoded as %s %d %x %s, want %s JSON %x %s", e.EventType(), ev.EventType, ev.ContentType, ev.Data, ev.EventID, typ, data, EventUUID(id))
		}
		var md map[string]any
		if err := json.Unmarshal(ev.Metadata, &md); err != nil {
			t.Fatalf("%s: metadata %s: %v", e.EventType(), ev.Metadata, err)
		}
		want := map[string]any{
			"schema": float64(schema), "at": e.EventMeta().At.UTC().Format(time.RFC3339Nano),
			"actor_kind": string(e.EventMeta().Actor.Kind), "actor_id": e.EventMeta().Actor.ID,
		}
		if i%2 == 1 {
			want["event_id"] = id
		}
		if !reflect.DeepEqual(md, want) {
			t.Errorf("%s: metadata %v, want %v", e.EventType(), md, want)
		}

		pos := uint64(1<<33 + 4096*i) // byte offsets: not dense
		rec, err := decodeEvent(recorded(ev, "conversation-c1", uint64(i), pos))
		if err != nil {
			t.Fatalf("%s: decodeEvent: %v", e.EventType(), err)
		}
		wantRec := domain.Recorded{
			Position: pos, Stream: "conversation-c1", Version: int64(i) + 1, EventID: id,
			Type: typ, Schema: schema, At: e.EventMeta().At.UTC(), Actor: e.EventMeta().Actor, Data: data, Event: e,
		}
		if !reflect.DeepEqual(rec, wantRec) {
			t.Errorf("%s: decoded\n got %+v\nwant %+v", e.EventType(), rec, wantRec)
		}
	}
}

// TestGoldenFilesLoad: the stored data of every event type, as the codec's
// golden files fix it forever, loads from KurrentDB's envelope and is
// written again byte for byte.
func TestGoldenFilesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "codec", "testdata", "*.golden"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in ../codec/testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".golden")
		golden, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ev := esdb.EventData{
			EventID: uuid.New(), EventType: name, ContentType: esdb.ContentTypeJson, Data: golden,
			Metadata: []byte(`{"schema":1,"at":"2024-02-29T23:59:59.123456789Z","actor_kind":"customer","actor_id":"cu-1"}`),
		}
		rec, err := decodeEvent(recorded(ev, "stream-1", 0, 1234))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		wantMeta := domain.Meta{At: time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.UTC), Actor: domain.Actor{Kind: domain.ActorCustomer, ID: "cu-1"}}
		if rec.Event.EventMeta() != wantMeta || rec.Event.EventType() != name {
			t.Errorf("%s: decoded as %s with %+v, want %+v", name, rec.Event.EventType(), rec.Event.EventMeta(), wantMeta)
		}
		again, err := encodeEvent(domain.Pending{EventID: rec.EventID, Event: rec.Event})
		if err != nil || !bytes.Equal(again.Data, golden) || again.EventID != ev.EventID {
			t.Errorf("%s: encoded again as %s (%v), want the golden data %s", name, again.Data, err, golden)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := encodeEvent(pending(1)[0])
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(ev *esdb.RecordedEvent)
		is     error
	}{
		{"no position", func(ev *esdb.RecordedEvent) {
			ev.Position = esdb.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64}
		}, errNoPosition},
		{"position beyond int64", func(ev *esdb.RecordedEvent) { ev.Position = esdb.Position{Commit: math.MaxInt64 + 1} }, nil},
		{"no metadata", func(ev *esdb.RecordedEvent) { ev.UserMetadata = nil }, nil},
		{"metadata without a schema", func(ev *esdb.RecordedEvent) { ev.UserMetadata = []byte(`{"at":"2024-01-01T00:00:00Z"}`) }, nil},
		{"bad time", func(ev *esdb.RecordedEvent) {
			ev.UserMetadata = []byte(`{"schema":1,"at":"yesterday","actor_kind":"user","actor_id":"u"}`)
		}, nil},
		{"unknown type", func(ev *esdb.RecordedEvent) { ev.EventType = "conversation.teleported" }, codec.ErrUnknownType},
		{"data not JSON", func(ev *esdb.RecordedEvent) { ev.Data = []byte{0xff, 0x00} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := recorded(good, "conversation-c1", 4, 100)
			tt.change(ev)
			_, err := decodeEvent(ev)
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("decodeEvent: got %v, want an error (wrapping %v)", err, tt.is)
			}
			if err != nil && !strings.Contains(err.Error(), "conversation-c1@4") {
				t.Errorf("decodeEvent: %v does not say which event", err)
			}
		})
	}
}

func TestEventUUID(t *testing.T) {
	canonical := "0190f3a2-7c4e-7d2b-9a61-2f0c5e8b1d33"
	tests := []struct {
		id   string
		same bool // the id is the UUID's text
	}{
		{canonical, true},
		{strings.ToUpper(canonical), false},
		{"{" + canonical + "}", false},
		{strings.ReplaceAll(canonical, "-", ""), false},
		{"00000000-0000-0000-0000-000000000000", false}, // the nil UUID would become a random one
		{"evt-42", false},
		{"é", false},
	}
	seen := map[uuid.UUID]string{}
	for _, tt := range tests {
		u := EventUUID(tt.id)
		if u == uuid.Nil {
			t.Errorf("EventUUID(%q) is the nil UUID", tt.id)
		}
		if u != EventUUID(tt.id) {
			t.Errorf("EventUUID(%q) changes between calls", tt.id)
		}
		if got := u.String() == tt.id; got != tt.same {
			t.Errorf("EventUUID(%q) = %s: same text %t, want %t", tt.id, u, got, tt.same)
		}
		if !tt.same && u.Version() != 5 {
			t.Errorf("EventUUID(%q) = %s: version %d, want a UUIDv5", tt.id, u, u.Version())
		}
		if other, dup := seen[u]; dup {
			t.Errorf("EventUUID(%q) = EventUUID(%q) = %s", tt.id, other, u)
		}
		seen[u] = tt.id
	}
	// Fixed forever: the KurrentDB ids of stored events with non-UUID ids
	// depend on it.
	if got, want := EventUUID("evt-42").String(), "0c4cdfd4-910b-5145-826d-b724c36203fe"; got != want {
		t.Errorf("EventUUID(evt-42) = %s, want %s as always", got, want)
	}
}

func TestExpectedRevision(t *testing.T) {
	tests := []struct {
		expected int64
		want     esdb.ExpectedRevision
	}{
		{domain.NoStream, esdb.NoStream{}},
		{domain.AnyVersion, esdb.Any{}},
		{1, esdb.Revision(0)},
		{2, esdb.Revision(1)},
		{1000, esdb.Revision(999)},
		{math.MaxInt64, esdb.Revision(math.MaxInt64 - 1)},
	}
	for _, tt := range tests {
		got, err := ExpectedRevision(tt.expected)
		if err != nil || got != tt.want {
			t.Errorf("ExpectedRevision(%d) = %#v, %v; want %#v", tt.expected, got, err, tt.want)
		}
	}
	for _, bad := range []int64{-2, math.MinInt64} {
		if got, err := ExpectedRevision(bad); err == nil {
			t.Errorf("ExpectedRevision(%d) = %#v, want an error", bad, got)
		}
	}
	// Versions and revisions: an event at revision r is at version r+1,
	// and a stream whose last event is at version n is expected as n.
	ev, _ := encodeEvent(pending(1)[0])
	for _, rev := range []uint64{0, 1, 41} {
		rec, err := decodeEvent(recorded(ev, "s", rev, 1))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := ExpectedRevision(rec.Version); got != esdb.Revision(rev) {
			t.Errorf("revision %d: version %d, expected as %#v", rev, rec.Version, got)
		}
	}
}

// TestPositionTokens: an event's position, as SSE ids and resume tokens
// show it, reads back as the same position and resumes $all there.
func TestPositionTokens(t *testing.T) {
	ev, _ := encodeEvent(pending(1)[0])
	for _, p := range []uint64{1, 4096, 123_456_789, 1 << 40, math.MaxInt64} {
		rec, err := decodeEvent(recorded(ev, "s", 0, p))
		if err != nil {
			t.Fatal(err)
		}
		token := projections.Position(rec.Position).String()
		back, ok := projections.ParsePosition(token)
		if !ok || uint64(back) != p {
			t.Errorf("position %d: token %q reads back as %d, %t", p, token, back, ok)
		}
		if got := allFrom(uint64(back)); got != (esdb.Position{Commit: p, Prepare: p}) {
			t.Errorf("position %d: resumes $all from %#v", p, got)
		}
		if int64(rec.Position) < 0 {
			t.Errorf("position %d does not fit the read models' int64", p)
		}
	}
	if got := allFrom(0); got != (esdb.Start{}) {
		t.Errorf("allFrom(0) = %#v, want the start of $all", got)
	}
}

func TestIsSystem(t *testing.T) {
	tests := []struct {
		stream, typ string
		want        bool
	}{
		{"conversation-1", "conversation.started", false},
		{"$stats-127.0.0.1:2113", "$statsCollected", true},
		{"$$conversation-1", "$metadata", true},
		{"$ce-conversation", "$>", true},
		{"conversation-1", "$streamDeleted", true},
		{"$projections-x", "conversation.started", true},
	}
	for _, tt := range tests {
		if got := IsSystem(tt.stream, tt.typ); got != tt.want {
			t.Errorf("IsSystem(%q, %q) = %t, want %t", tt.stream, tt.typ, got, tt.want)
		}
	}
}
