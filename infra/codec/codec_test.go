package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/helpdesk"
	"github.com/helpdesk/messenger/domain/item"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden and the fuzz seed corpus from the examples")

// exampleMeta is the metadata of every example; the golden data does not hold it.
var exampleMeta = domain.Meta{
	At:    time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC),
	Actor: domain.Actor{Kind: domain.ActorUser, ID: "u-ada"},
}

// examples returns a fully populated example of every event type, by type
// name. A new event type needs one here, with every field set.
func examples() map[string]domain.Event {
	m := exampleMeta
	evs := []domain.Event{
		conversation.Started{Meta: m, ConversationID: "c-1", Channel: conversation.LiveChat, Subject: "Refund for order #42", CustomerID: "cu-7", Participants: []string{"u-ada", "u-bob"}},
		conversation.MessagePosted{Meta: m, MessageID: "m-1", Body: "Hello \"there\" <b>&</b>\n\tÉté 🎉 \\ \u0001", ClientID: "cl-1"},
		conversation.MessageEdited{Meta: m, MessageID: "m-1", Body: "Hello again"},
		conversation.MessageDeleted{Meta: m, MessageID: "m-1"},
		conversation.Closed{Meta: m},
		conversation.Reopened{Meta: m, Cause: conversation.CustomerReplied, MessageID: "m-2"},
		conversation.Read{Meta: m, UpToSeq: 12},
		conversation.ItemLinked{Meta: m, ItemID: "i-3"},
		conversation.ItemUnlinked{Meta: m, ItemID: "i-3"},
		item.Created{Meta: m, ItemID: "i-3", Kind: item.Ticket, Title: "Refund", Description: "Customer wants a refund.", RequesterID: "cu-7", SourceConversationID: "c-1", Assignees: []string{"u-ada"}},
		item.Assigned{Meta: m, UserID: "u-bob"},
		item.Followed{Meta: m, UserID: "u-cy"},
		helpdesk.StatusChanged{Meta: m, Online: true},
		helpdesk.MessagesConfigured{Meta: m, OnlineMessage: "We're here!", OfflineMessage: "Back at 9."},
		directory.UserCreated{Meta: m, UserID: "u-ada", Name: "Ada Lovelace", Email: "ada@example.com", Role: directory.Admin, Support: true, TokenHash: "sha256:9f86d081884c7d65"},
		directory.UserTokenIssued{Meta: m, TokenHash: "sha256:60303ae22b998861"},
		directory.CustomerRegistered{Meta: m, CustomerID: "cu-7", Name: "Grace", Email: "grace@example.com", TokenHash: "sha256:fd61a03af4f77d87"},
	}
	out := make(map[string]domain.Event, len(evs))
	for _, e := range evs {
		out[e.EventType()] = e
	}
	return out
}

func TestGolden(t *testing.T) {
	if *update {
		if err := writeGoldens(std, "testdata", examples()); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range goldenProblems(std, "testdata", examples()) {
		t.Error(p)
	}
}

// writeGoldens writes the golden file of every registered type and a fuzz
// seed for each.
func writeGoldens(r *registry, dir string, examples map[string]domain.Event) error {
	for _, name := range r.order {
		ex, ok := examples[name]
		if !ok {
			return fmt.Errorf("no example for %s", name)
		}
		typ, schema, data, err := r.encode(ex)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".golden"), data, 0o644); err != nil {
			return err
		}
		seed := fmt.Sprintf("go test fuzz v1\nstring(%q)\nint(%d)\n[]byte(%q)\n", typ, schema, data)
		if err := os.WriteFile(filepath.Join(dir, "fuzz", "FuzzDecode", name), []byte(seed), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// goldenProblems checks every type of r against its golden file in dir and
// its example, and every golden file in dir against r. It returns one line
// per problem, none when all is well.
func goldenProblems(r *registry, dir string, examples map[string]domain.Event) []string {
	var problems []string
	for _, name := range r.order {
		ex, ok := examples[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: no example", name))
			continue
		}
		v := reflect.ValueOf(ex)
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				problems = append(problems, fmt.Sprintf("%s: the example leaves %s zero", name, v.Type().Field(i).Name))
			}
		}
		golden, err := os.ReadFile(filepath.Join(dir, name+".golden"))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: no golden file (go test ./infra/codec -update writes it): %v", name, err))
			continue
		}
		got, err := r.decode(name, 1, golden, ex.EventMeta())
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: decode golden: %v", name, err))
		} else if !reflect.DeepEqual(got, ex) {
			problems = append(problems, fmt.Sprintf("%s: decode golden: got %#v, want %#v", name, got, ex))
		}
		_, schema, data, err := r.encode(ex)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: encode: %v", name, err))
		} else if schema != 1 || !bytes.Equal(data, golden) {
			problems = append(problems, fmt.Sprintf("%s: encode: got schema %d %s, want schema 1 %s", name, schema, data, golden))
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.golden"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".golden")
		if _, ok := r.types[name]; !ok {
			problems = append(problems, fmt.Sprintf("%s: golden file of a type no longer registered; stored events of it would not load", name))
		}
	}
	return problems
}

// probe is an event type of the tests only, with every supported kind.
type probe struct {
	domain.Meta
	Name    string
	Count   int8
	Size    uint16
	On      bool
	Tags    []string
	When    time.Time
	Kind    probeKind
	Kinds   []probeKind
	URLPath string
}

type probeKind string

func (probe) EventType() string { return "test.probe" }

var fullProbe = probe{
	Meta: exampleMeta, Name: "n", Count: -3, Size: 600, On: true, Tags: []string{"a", "b"},
	When: time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.UTC), Kind: "k", Kinds: []probeKind{"x", "y"}, URLPath: "h",
}

const fullProbeJSON = `{"name":"n","count":-3,"size":600,"on":true,"tags":["a","b"],"when":"2024-02-29T23:59:59.123456789Z","kind":"k","kinds":["x","y"],"url_path":"h"}`

func TestGoldenProblems(t *testing.T) {
	closed := conversation.Closed{Meta: exampleMeta}
	closedJSON := `{}`
	tests := []struct {
		name     string
		events   []domain.Event
		goldens  map[string]string
		examples []domain.Event
		want     []string // a substring of each problem, in order
	}{
		{"complete", []domain.Event{conversation.Closed{}, probe{}},
			map[string]string{"conversation.closed": closedJSON, "test.probe": fullProbeJSON},
			[]domain.Event{closed, fullProbe}, nil},
		{"type without golden", []domain.Event{conversation.Closed{}, probe{}},
			map[string]string{"conversation.closed": closedJSON},
			[]domain.Event{closed, fullProbe}, []string{"test.probe: no golden file"}},
		{"type without example", []domain.Event{conversation.Closed{}, probe{}},
			map[string]string{"conversation.closed": closedJSON, "test.probe": fullProbeJSON},
			[]domain.Event{closed}, []string{"test.probe: no example"}},
		{"example with a zero field", []domain.Event{probe{}},
			map[string]string{"test.probe": fullProbeJSON},
			[]domain.Event{func() probe { p := fullProbe; p.On = false; return p }()},
			[]string{"leaves On zero", "decode golden", "encode"}},
		{"golden in another key order", []domain.Event{probe{}},
			map[string]string{"test.probe": `{"count":-3,"name":"n","size":600,"on":true,"tags":["a","b"],"when":"2024-02-29T23:59:59.123456789Z","kind":"k","kinds":["x","y"],"url_path":"h"}`},
			[]domain.Event{fullProbe}, []string{"test.probe: encode"}},
		{"golden of an unregistered type", []domain.Event{conversation.Closed{}},
			map[string]string{"conversation.closed": closedJSON, "test.gone": `{}`},
			[]domain.Event{closed}, []string{"test.gone: golden file of a type no longer registered"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := newRegistry(tt.events, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			for name, data := range tt.goldens {
				if err := os.WriteFile(filepath.Join(dir, name+".golden"), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			exs := make(map[string]domain.Event)
			for _, e := range tt.examples {
				exs[e.EventType()] = e
			}
			got := goldenProblems(r, dir, exs)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems %q, want %d like %q", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d: got %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestEventsAreRegistered(t *testing.T) {
	evs := Events()
	if len(evs) != len(std.order) {
		t.Fatalf("got %d registered types, want %d", len(std.order), len(evs))
	}
	for _, e := range evs {
		typ, schema, data, err := Encode(e)
		if err != nil {
			t.Errorf("Encode(%T{}): %v", e, err)
			continue
		}
		got, err := Decode(typ, schema, data, domain.Meta{})
		if err != nil {
			t.Errorf("Decode(%s): %v", typ, err)
			continue
		}
		if reflect.TypeOf(got) != reflect.TypeOf(e) || !reflect.DeepEqual(got, e) {
			t.Errorf("round trip of %T{}: got %#v", e, got)
		}
	}
}

func TestSnake(t *testing.T) {
	tests := []struct{ in, want string }{
		{"MessageID", "message_id"},
		{"ConversationID", "conversation_id"},
		{"UpToSeq", "up_to_seq"},
		{"TokenHash", "token_hash"},
		{"SourceConversationID", "source_conversation_id"},
		{"ID", "id"},
		{"Online", "online"},
		{"HTTPServer", "http_server"},
		{"Item2ID", "item2_id"},
		{"UserIDs", "user_ids"},
		{"URLs", "urls"},
		{"IDsSeen", "ids_seen"},
		{"HTTPID", "httpid"},
		{"Status", "status"},
	}
	for _, tt := range tests {
		if got := snake(tt.in); got != tt.want {
			t.Errorf("snake(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDecode(t *testing.T) {
	r, err := newRegistry([]domain.Event{probe{}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
		want probe
	}{
		{"every field", fullProbeJSON, fullProbe},
		{"unknown keys are ignored", `{"name":"n","future":{"a":[1,2]},"x":null}`, probe{Meta: exampleMeta, Name: "n"}},
		{"missing keys are zero", `{}`, probe{Meta: exampleMeta}},
		{"null is zero", `{"name":null,"count":null,"tags":null,"when":null,"on":null}`, probe{Meta: exampleMeta}},
		{"an empty list is nil", `{"tags":[],"kinds":[]}`, probe{Meta: exampleMeta}},
		{"white space", " {\n \"name\" : \"n\" } \n", probe{Meta: exampleMeta, Name: "n"}},
		{"time in another zone is UTC", `{"when":"2024-03-01T01:00:00+02:00"}`, probe{Meta: exampleMeta, When: time.Date(2024, 2, 29, 23, 0, 0, 0, time.UTC)}},
		{"keys are case-sensitive", `{"Name":"n","NAME":"m"}`, probe{Meta: exampleMeta}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.decode("test.probe", 1, []byte(tt.data), exampleMeta)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	r, err := newRegistry([]domain.Event{probe{}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		typ    string
		schema int
		data   string
	}{
		{"unknown type", "test.nope", 1, `{}`},
		{"schema 0", "test.probe", 0, `{}`},
		{"schema from the future", "test.probe", 2, `{}`},
		{"empty", "test.probe", 1, ``},
		{"null", "test.probe", 1, `null`},
		{"array", "test.probe", 1, `[]`},
		{"string", "test.probe", 1, `"x"`},
		{"truncated", "test.probe", 1, `{"name":"n"`},
		{"data after the object", "test.probe", 1, `{} {}`},
		{"garbage after the object", "test.probe", 1, `{}x`},
		{"duplicate key", "test.probe", 1, `{"name":"a","name":"b"}`},
		{"number for a string", "test.probe", 1, `{"name":1}`},
		{"string for an int", "test.probe", 1, `{"count":"1"}`},
		{"fraction for an int", "test.probe", 1, `{"count":1.5}`},
		{"int8 overflow", "test.probe", 1, `{"count":128}`},
		{"negative uint", "test.probe", 1, `{"size":-1}`},
		{"uint16 overflow", "test.probe", 1, `{"size":65536}`},
		{"string for a bool", "test.probe", 1, `{"on":"true"}`},
		{"string for a list", "test.probe", 1, `{"tags":"a"}`},
		{"number in a list", "test.probe", 1, `{"tags":["a",1]}`},
		{"bad time", "test.probe", 1, `{"when":"yesterday"}`},
		{"time without zone", "test.probe", 1, `{"when":"2024-01-01T00:00:00"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.decode(tt.typ, tt.schema, []byte(tt.data), exampleMeta)
			if err == nil {
				t.Fatalf("decode(%q, %d, %s) = %#v, want an error", tt.typ, tt.schema, tt.data, got)
			}
		})
	}
	if _, err := Decode("test.nope", 1, []byte(`{}`), domain.Meta{}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Decode of an unknown type: got %v, want ErrUnknownType", err)
	}
}

func TestDecodeReturnsValueWithMeta(t *testing.T) {
	meta := domain.Meta{At: time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.UTC), Actor: domain.Actor{Kind: domain.ActorCustomer, ID: "cu-1"}}
	got, err := Decode("conversation.message_posted", 1, []byte(`{"message_id":"m-9","body":"hi","client_id":"k"}`), meta)
	if err != nil {
		t.Fatal(err)
	}
	want := conversation.MessagePosted{Meta: meta, MessageID: "m-9", Body: "hi", ClientID: "k"}
	if got, ok := got.(conversation.MessagePosted); !ok || got != want {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

// TestParseObjectManyMembers checks objects past manyMembers, whose keys
// parseObject checks with a map: every member kept, in order, and a key
// repeated anywhere refused, as the decoder's tokens refuse it.
func TestParseObjectManyMembers(t *testing.T) {
	object := func(keys []string) []byte {
		var b strings.Builder
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%d", k, i)
		}
		b.WriteByte('}')
		return []byte(b.String())
	}
	var keys []string
	for i := range 3 * manyMembers {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	got, err := parseObject(object(keys), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("%d members, want %d", len(got), len(keys))
	}
	for i, k := range keys {
		if string(got[i].key) != k || string(got[i].val) != fmt.Sprint(i) {
			t.Fatalf("member %d: %s = %s, want %s = %d", i, got[i].key, got[i].val, k, i)
		}
	}
	for _, at := range []int{1, manyMembers - 1, manyMembers, manyMembers + 1, len(keys)} {
		for _, of := range []int{0, at - 1} {
			dup := append(slices.Clone(keys[:at]), keys[of])
			if _, err := parseObject(object(dup), nil); err == nil {
				t.Errorf("%d keys, the last repeating key %d: no error", len(dup), of)
			}
			if _, err := parseObjectTokens(object(dup), nil); err == nil {
				t.Errorf("the tokens took %d keys, the last repeating key %d", len(dup), of)
			}
		}
	}
}

func TestEncode(t *testing.T) {
	r, err := newRegistry([]domain.Event{probe{}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   probe
		want string
	}{
		{"every field", fullProbe, fullProbeJSON},
		{"zero", probe{}, `{"name":"","count":0,"size":0,"on":false,"tags":[],"when":"0001-01-01T00:00:00Z","kind":"","kinds":[],"url_path":""}`},
		{"meta is left out", probe{Meta: domain.Meta{Actor: domain.Actor{ID: "x"}}}, `{"name":"","count":0,"size":0,"on":false,"tags":[],"when":"0001-01-01T00:00:00Z","kind":"","kinds":[],"url_path":""}`},
		{"an empty list is []", probe{Tags: []string{}, When: time.Date(2024, 1, 1, 2, 0, 0, 0, time.FixedZone("x", 7200))}, `{"name":"","count":0,"size":0,"on":false,"tags":[],"when":"2024-01-01T00:00:00Z","kind":"","kinds":[],"url_path":""}`},
		{"escapes", probe{Name: "\"\\\n\r\t\x00\x1f<>&\u2028é", When: time.Unix(0, 0)}, `{"name":"\"\\\n\r\t\u0000\u001f<>&` + "\u2028é" + `","count":0,"size":0,"on":false,"tags":[],"when":"1970-01-01T00:00:00Z","kind":"","kinds":[],"url_path":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, schema, data, err := r.encode(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if typ != "test.probe" || schema != 1 || string(data) != tt.want {
				t.Errorf("got %s %d %s, want test.probe 1 %s", typ, schema, data, tt.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      domain.Event
		unknown bool
	}{
		{"nil", nil, false},
		{"unregistered type", probe{}, true},
		{"pointer to an event", &conversation.Closed{}, true},
		{"invalid UTF-8", conversation.MessagePosted{Body: "a\xffb"}, false},
		{"invalid UTF-8 in a list", item.Created{Assignees: []string{"ok", "\xc3"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, _, data, err := Encode(tt.in)
			if err == nil {
				t.Fatalf("got %s %s, want an error", typ, data)
			}
			if got := errors.Is(err, ErrUnknownType); got != tt.unknown {
				t.Errorf("errors.Is(%v, ErrUnknownType) = %t, want %t", err, got, tt.unknown)
			}
		})
	}
}

// Bad event types for TestNewRegistryRejects.
type (
	noMeta  struct{ X string }
	withMap struct {
		domain.Meta
		M map[string]string
	}
	withPrivate struct {
		domain.Meta
		x string
	}
	collide struct {
		domain.Meta
		UserID string
		UserId string //nolint:revive // the collision is the point
	}
	embedsActor struct {
		domain.Meta
		domain.Actor
	}
	noName struct{ domain.Meta }
)

func (noMeta) EventType() string      { return "test.no_meta" }
func (noMeta) EventMeta() domain.Meta { return domain.Meta{} }
func (withMap) EventType() string     { return "test.with_map" }
func (withPrivate) EventType() string { return "test.with_private" }
func (collide) EventType() string     { return "test.collide" }
func (embedsActor) EventType() string { return "test.embeds_actor" }
func (noName) EventType() string      { return "" }

func TestNewRegistryRejects(t *testing.T) {
	up := func(b []byte) ([]byte, error) { return b, nil }
	tests := []struct {
		name    string
		events  []domain.Event
		schemas map[string]int
		ups     map[typeSchema]upcaster
	}{
		{"pointer", []domain.Event{&conversation.Closed{}}, nil, nil},
		{"no meta", []domain.Event{noMeta{}}, nil, nil},
		{"unsupported kind", []domain.Event{withMap{}}, nil, nil},
		{"unexported field", []domain.Event{withPrivate{}}, nil, nil},
		{"two fields, one key", []domain.Event{collide{}}, nil, nil},
		{"another embedded struct", []domain.Event{embedsActor{}}, nil, nil},
		{"empty type name", []domain.Event{noName{}}, nil, nil},
		{"nil", []domain.Event{nil}, nil, nil},
		{"registered twice", []domain.Event{probe{}, probe{}}, nil, nil},
		{"schema without upcaster", []domain.Event{probe{}}, map[string]int{"test.probe": 3}, map[typeSchema]upcaster{{"test.probe", 1}: up}},
		{"schema 0", []domain.Event{probe{}}, map[string]int{"test.probe": 0}, nil},
		{"upcaster of an unknown type", []domain.Event{probe{}}, nil, map[typeSchema]upcaster{{"test.nope", 1}: up}},
		{"upcaster from the current schema", []domain.Event{probe{}}, nil, map[typeSchema]upcaster{{"test.probe", 1}: up}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := newRegistry(tt.events, tt.schemas, tt.ups); err == nil {
				t.Error("got no error")
			}
		})
	}
}

func TestUpcast(t *testing.T) {
	renameTitle := func(b []byte) ([]byte, error) {
		return bytes.Replace(b, []byte(`"title"`), []byte(`"name"`), 1), nil
	}
	addCount := func(b []byte) ([]byte, error) {
		if !bytes.HasSuffix(b, []byte("}")) {
			return nil, errors.New("not an object")
		}
		return append(b[:len(b)-1:len(b)-1], []byte(`,"count":2}`)...), nil
	}
	r, err := newRegistry([]domain.Event{probe{}}, map[string]int{"test.probe": 3},
		map[typeSchema]upcaster{{"test.probe", 1}: renameTitle, {"test.probe", 2}: addCount})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		schema  int
		data    string
		want    probe
		wantErr bool
	}{
		{"from schema 1", 1, `{"title":"t"}`, probe{Meta: exampleMeta, Name: "t", Count: 2}, false},
		{"from schema 2", 2, `{"name":"t"}`, probe{Meta: exampleMeta, Name: "t", Count: 2}, false},
		{"current schema", 3, `{"name":"t","count":5}`, probe{Meta: exampleMeta, Name: "t", Count: 5}, false},
		{"upcaster fails", 2, `[]`, probe{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.decode("test.probe", tt.schema, []byte(tt.data), exampleMeta)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %t", err, tt.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
	if _, schema, _, err := r.encode(probe{}); err != nil || schema != 3 {
		t.Errorf("encode: got schema %d, %v; want 3", schema, err)
	}
}

// TestSchemasHaveUpcasters guards the real tables: raising a type's schema
// without an upcaster would leave its stored events unreadable.
func TestSchemasHaveUpcasters(t *testing.T) {
	for name, s := range schemas {
		for from := 1; from < s; from++ {
			if upcasters[typeSchema{name, from}] == nil {
				t.Errorf("%s is at schema %d but has no upcaster from %d", name, s, from)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	meta := domain.Meta{At: time.Date(2025, 1, 1, 0, 0, 0, 1_000_000, time.UTC), Actor: domain.Actor{Kind: domain.ActorSystem, ID: "s"}}
	f.Fuzz(func(t *testing.T, typ string, schema int, data []byte) {
		ev, err := Decode(typ, schema, data, meta)
		if err != nil {
			return
		}
		if ev.EventType() != typ {
			t.Fatalf("decoded a %s from type %q", ev.EventType(), typ)
		}
		if !reflect.DeepEqual(ev.EventMeta(), meta) {
			t.Fatalf("meta: got %#v, want %#v", ev.EventMeta(), meta)
		}
		typ2, schema2, data2, err := Encode(ev)
		if err != nil {
			t.Fatalf("a decoded event does not encode: %v", err)
		}
		ev2, err := Decode(typ2, schema2, data2, meta)
		if err != nil {
			t.Fatalf("decode of the re-encoded %s: %v", data2, err)
		}
		if !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("round trip: got %#v, want %#v", ev2, ev)
		}
		if _, _, data3, _ := Encode(ev2); !bytes.Equal(data2, data3) {
			t.Fatalf("encoding is not stable: %s then %s", data2, data3)
		}
	})
}

// FuzzParseObject checks that parseObject, which scans valid JSON itself,
// answers as parseObjectTokens, the decoder's tokens, on any input; and
// that unquote and parseInt decode any member as json.Unmarshal does.
func FuzzParseObject(f *testing.F) {
	for _, s := range []string{`{}`, ` {"a" : "b\u00e9\"" , "n":-12,"l":[1,{"x":"]"}],"o":{"k":[]}} `, `{"a":1,"a":2}`,
		`{"\u0061":1,"a":2}`, `{"t":true,"f":false,"z":null,"e":1e3,"d":-0.5}`, `[]`, `{"a":}`, `{"s":"\ud800"}`, "{\"s\":\"\xff\"}",
		`{"n":01}`, `{"n":9223372036854775808}`, `{"n":-9223372036854775808}`, `{} x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf [4]member
		got, err := parseObject(data, buf[:0])
		want, wantErr := parseObjectTokens(data, nil)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("parseObject(%q): error %v, the tokens' %v", data, err, wantErr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("parseObject(%q) = %q, the tokens' %q", data, got, want)
		}
		for i, w := range want { // both in the object's order
			k, v := string(w.key), w.val
			if g := got[i]; string(g.key) != k || !bytes.Equal(g.val, v) {
				t.Fatalf("parseObject(%q) member %d = %q: %q, the tokens' %q: %q", data, i, g.key, g.val, k, v)
			}
			s, err := unquote(v)
			var ws string
			werr := json.Unmarshal(v, &ws)
			if (err != nil) != (werr != nil) || s != ws {
				t.Fatalf("unquote(%s) = %q, %v; json.Unmarshal: %q, %v", v, s, err, ws, werr)
			}
			n, err := parseInt(v)
			var wn int64
			werr = json.Unmarshal(v, &wn)
			if (err != nil) != (werr != nil) || n != wn {
				t.Fatalf("parseInt(%s) = %d, %v; json.Unmarshal: %d, %v", v, n, err, wn, werr)
			}
		}
	})
}

// BenchmarkDecode decodes the events a rebuild reads most: messages posted,
// conversations started and reads.
func BenchmarkDecode(b *testing.B) {
	type stored struct {
		typ    string
		schema int
		data   []byte
	}
	var all []stored
	for _, ev := range []domain.Event{
		conversation.MessagePosted{Meta: exampleMeta, MessageID: "m-0b6a3f9e-4f7c-4c8e", Body: "Hello, my parcel has not arrived yet: could you check the tracking?", ClientID: "cl-1"},
		conversation.Started{Meta: exampleMeta, ConversationID: "c-1", Channel: conversation.LiveChat, Subject: "Refund for order #42", CustomerID: "cu-7"},
		conversation.Read{Meta: exampleMeta, UpToSeq: 12},
	} {
		typ, schema, data, err := Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, stored{typ, schema, data})
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s := all[i%len(all)]
		if _, err := Decode(s.typ, s.schema, s.data, exampleMeta); err != nil {
			b.Fatal(err)
		}
	}
}
