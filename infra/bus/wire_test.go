package bus

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/projections"
)

// wireExamples are batches of every shape the projector publishes, with
// strings that JSON escapes.
func wireExamples() [][]projections.Change {
	user := domain.Actor{Kind: domain.ActorUser, ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}
	return [][]projections.Change{
		{{Position: 1, Kind: projections.ConversationCreated, ConversationID: "c1", Actor: domain.Actor{Kind: domain.ActorCustomer, ID: "cu1"}, Customer: "cu1"}},
		{
			{Position: 7, Kind: projections.CountsChanged, Actor: user, Counts: &projections.Counts{LiveChats: 12, CaughtUp: map[string]int{"user:b": 3, "user:a": -1, "customer:z": 0}}},
			{Position: 7, Kind: projections.MessageCreated, ConversationID: "c2", MessageID: "m-1", Actor: user, Customer: "cu2"},
			{Position: 8, Kind: projections.ItemChanged, ItemID: "it-9", Actor: user},
			{Position: 9, Kind: projections.CountsChanged, Actor: user, Counts: &projections.Counts{}},
			{Position: 18446744073709551615, Kind: projections.HelpdeskChanged, Actor: domain.Actor{Kind: domain.ActorSystem}},
		},
		{{Position: 3, Kind: "odd <kind> & \"quoted\"", ConversationID: "tab\there\nnew\\line\u0001\b\f\r", MessageID: "ümlaut 雪 😀",
			Actor: domain.Actor{Kind: "k", ID: "line\u2028para\u2029"}, Customer: "<script>"}},
	}
}

// TestWireWritesWhatEncodingJSONWrites: the feed's messages are the bytes
// json.Marshal writes, which every replica reads, and read back as
// json.Unmarshal reads them: by the parser, not through encoding/json,
// unless a string holds escapes (the last example).
func TestWireWritesWhatEncodingJSONWrites(t *testing.T) {
	examples := wireExamples()
	for i, changes := range examples {
		want, err := json.Marshal(changes)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendChanges(nil, changes)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("batch %d: wrote (%v)\n%s\nwant\n%s", i, ok, got, want)
		}
		_, parsed := parseChanges(want)
		if escapes := i == len(examples)-1; parsed == escapes {
			t.Errorf("batch %d: parsed by hand: %v, want %v: %s", i, parsed, !escapes, want)
		}
		read, err := decodeChanges(want)
		if err != nil {
			t.Fatal(err)
		}
		var std []projections.Change
		if err := json.Unmarshal(want, &std); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(read, std) {
			t.Errorf("batch %d: read %+v, encoding/json reads %+v", i, read, std)
		}
	}
}

// TestWireLeavesTheRestToEncodingJSON: what the parser does not read
// exactly, encoding/json reads, so a message means the same.
func TestWireLeavesTheRestToEncodingJSON(t *testing.T) {
	for _, in := range []string{
		` [{"position":1,"kind":"read","actor":{"Kind":"user","ID":"u"}}]`,
		`[{"position":1,"kind":"read","actor":{"Kind":"user","ID":"u\u0041"}}]`,
		`[{"Position":1,"kind":"read","actor":{"kind":"user","id":"u"}}]`,
		`[{"position":1,"kind":"read","extra":[1,2],"actor":{"Kind":"user","ID":"u"}}]`,
		`[{"position":1,"kind":"read","actor":{"Kind":"user"},"actor":{"ID":"u"}}]`,
		`[{"position":1,"kind":"counts","counts":{"caught_up":{"a":1}},"counts":{"caught_up":{"b":2}}}]`,
		`[{"position":1,"kind":"counts","counts":null}]`,
		`[null,{"position":2,"kind":"read"}]`,
		"[{\"position\":1,\"kind\":\"\xff\"}]",
		`[{"position":01,"kind":"read"}]`,
		`[{"position":1.0,"kind":"read"}]`,
		`[{"position":-1,"kind":"read"}]`,
		`[{"position":18446744073709551616,"kind":"read"}]`,
		`[{"position":1,"kind":"counts","counts":{"live_chats":1e2}}]`,
		`[{"position":1,"kind":"read"}] `,
		`[{"position":1,"kind":"read"}]x`,
		`[]`,
		`null`,
	} {
		_, parsed := parseChanges([]byte(in))
		got, gotErr := decodeChanges([]byte(in))
		var want []projections.Change
		wantErr := json.Unmarshal([]byte(in), &want)
		if (gotErr != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s (parsed: %v): got %+v, %v; encoding/json %+v, %v", in, parsed, got, gotErr, want, wantErr)
		}
	}
}

// FuzzWire: whatever the bytes, decodeChanges reads what json.Unmarshal
// reads; whatever the changes, the feed writes what json.Marshal writes.
func FuzzWire(f *testing.F) {
	for _, changes := range wireExamples() {
		b, _ := json.Marshal(changes)
		f.Add(b, "", "", uint64(0), -1)
	}
	f.Add([]byte(`[{"position":1,"kind":"read","actor":{"Kind":"user","ID":"u"}}]`), "c\xff", "u\u2028", uint64(42), 3)
	f.Fuzz(func(t *testing.T, data []byte, s1, s2 string, pos uint64, n int) {
		got, gotErr := decodeChanges(data)
		var want []projections.Change
		wantErr := json.Unmarshal(data, &want)
		if (gotErr != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %+v, %v; encoding/json %+v, %v", data, got, gotErr, want, wantErr)
		}
		changes := []projections.Change{{Position: pos, Kind: projections.ChangeKind(s1), ConversationID: s2, Actor: domain.Actor{Kind: domain.ActorKind(s2), ID: s1}, Customer: s1 + s2}}
		if n >= 0 {
			changes = append(changes, projections.Change{Position: pos, Kind: projections.CountsChanged, Counts: &projections.Counts{LiveChats: n, CaughtUp: map[string]int{s1: n, s2: -n}}})
		}
		enc, err := encodeChanges(changes)
		if err != nil {
			t.Fatal(err)
		}
		std, err := json.Marshal(changes)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, std) {
			t.Fatalf("wrote %s, json.Marshal %s", enc, std)
		}
	})
}

// BenchmarkWire encodes and decodes a batch of the feed by hand and, beside
// it, through encoding/json: 64 posts, each a message.created and a
// conversation.updated, after the batch's counts.
func BenchmarkWire(b *testing.B) {
	user := domain.Actor{Kind: domain.ActorUser, ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}
	changes := []projections.Change{{Position: 1000, Kind: projections.CountsChanged, Actor: user,
		Counts: &projections.Counts{LiveChats: 200, CaughtUp: map[string]int{"user:a": 3, "user:b": 4}}}}
	for i := range 64 {
		pos := uint64(1000 + i)
		conv := "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f" + string(rune('a'+i%26)) + "000"
		changes = append(changes,
			projections.Change{Position: pos, Kind: projections.MessageCreated, ConversationID: conv, MessageID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a6c", Actor: user, Customer: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a7d"},
			projections.Change{Position: pos, Kind: projections.ConversationUpdated, ConversationID: conv, Actor: user, Customer: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a7d"})
	}
	data, _ := json.Marshal(changes)
	b.Run("wire", func(b *testing.B) {
		for b.Loop() {
			out, _ := encodeChanges(changes)
			if _, err := decodeChanges(out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			out, _ := json.Marshal(changes)
			var back []projections.Change
			if err := json.Unmarshal(out, &back); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.SetBytes(int64(len(data)))
}
