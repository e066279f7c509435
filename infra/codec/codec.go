// Package codec is the stored form of domain events: a type name, a schema
// version and a JSON object of the event's own fields. The metadata (when,
// who) is not part of the data; the event store keeps it in the envelope and
// hands it back to Decode.
//
// The JSON keys are the Go field names in snake_case (MessageID is
// "message_id"), written in field order. The stored form is a contract
// forever: testdata holds a golden copy of every event type's JSON, and a
// change to an event that breaks old data needs a new schema version and an
// upcaster from the old one.
package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/helpdesk"
	"github.com/helpdesk/messenger/domain/item"
)

// ErrUnknownType is wrapped by the error of Encode and Decode for an event
// type that is not registered.
var ErrUnknownType = errors.New("unknown event type")

// schemas holds the current schema version of each type whose data changed
// shape since it was first stored; every other type is at schema 1. Raising
// a type's schema to n needs upcasters for schemas 1 … n-1.
var schemas = map[string]int{}

// upcasters rewrite the data of one type at one schema into the data of the
// next schema. None exist yet.
var upcasters = map[typeSchema]upcaster{}

// upcaster rewrites the JSON data of an event from schema s to schema s+1.
type upcaster func(data []byte) ([]byte, error)

// typeSchema names the data of one event type at one schema version.
type typeSchema struct {
	Type   string
	Schema int
}

// std is the registry of every event of every aggregate.
var std = mustRegistry(Events(), schemas, upcasters)

// Events returns a zero value of every registered event type, aggregate by
// aggregate. The slice is new on every call.
func Events() []domain.Event {
	var evs []domain.Event
	for _, e := range conversation.Events() {
		evs = append(evs, e)
	}
	for _, e := range item.Events() {
		evs = append(evs, e)
	}
	for _, e := range helpdesk.Events() {
		evs = append(evs, e)
	}
	for _, e := range directory.Events() {
		evs = append(evs, e)
	}
	return evs
}

// Encode returns the stored form of e: its type name, the schema version of
// data, and data, the JSON of e's fields without its metadata. It returns an
// error wrapping ErrUnknownType if e's type is not registered (a pointer to an
// event is not), and an error if a string is not valid UTF-8.
func Encode(e domain.Event) (typ string, schema int, data []byte, err error) {
	return std.encode(e)
}

// Decode returns the event of type typ stored as data at schema version
// schema, as a value of its concrete type (conversation.MessagePosted, not a
// pointer), with its metadata set to meta. Data of an older schema is
// upcast first. Unknown keys are ignored and missing keys (or null) leave the
// field's zero value; an empty list decodes as a nil slice. Decode returns an
// error for an unknown type or schema, data that is not one JSON object, a
// duplicate key, or a value of the wrong kind or out of range.
func Decode(typ string, schema int, data []byte, meta domain.Meta) (domain.Event, error) {
	return std.decode(typ, schema, data, meta)
}

// registry maps type names to the shape of their events.
type registry struct {
	types     map[string]*eventType
	order     []string // type names in registration order
	upcasters map[typeSchema]upcaster
}

// eventType is how one registered event type is stored.
type eventType struct {
	name   string
	typ    reflect.Type // a struct type, never a pointer
	schema int          // current schema version, ≥ 1
	meta   int          // index of the embedded domain.Meta
	fields []field
	// scratch holds pointers to values of typ (as any) that decode fills in.
	scratch sync.Pool
}

// field is one stored field of an event.
type field struct {
	index int
	name  string // the Go name
	key   string // the JSON key
	kind  kind
}

// kind is the stored kind of a field.
type kind int

const (
	kindString kind = iota + 1
	kindBool
	kindInt
	kindUint
	kindStrings
	kindTime
)

var (
	metaType = reflect.TypeFor[domain.Meta]()
	timeType = reflect.TypeFor[time.Time]()
)

func mustRegistry(events []domain.Event, schemas map[string]int, ups map[typeSchema]upcaster) *registry {
	r, err := newRegistry(events, schemas, ups)
	if err != nil {
		panic(err)
	}
	return r
}

// newRegistry describes each of events, which must be distinct struct types
// embedding domain.Meta, with exported fields of supported kinds only. A type
// whose schema in schemas is above 1 must have an upcaster for every older
// schema in ups.
func newRegistry(events []domain.Event, schemas map[string]int, ups map[typeSchema]upcaster) (*registry, error) {
	r := &registry{types: make(map[string]*eventType), upcasters: ups}
	for _, e := range events {
		et, err := describe(e)
		if err != nil {
			return nil, fmt.Errorf("register %T: %w", e, err)
		}
		if _, dup := r.types[et.name]; dup {
			return nil, fmt.Errorf("register %T: type name %q is registered twice", e, et.name)
		}
		if s, ok := schemas[et.name]; ok {
			if s < 1 {
				return nil, fmt.Errorf("register %T: schema %d is below 1", e, s)
			}
			et.schema = s
		}
		for s := 1; s < et.schema; s++ {
			if ups[typeSchema{et.name, s}] == nil {
				return nil, fmt.Errorf("register %T: no upcaster from schema %d to %d", e, s, s+1)
			}
		}
		r.types[et.name] = et
		r.order = append(r.order, et.name)
	}
	for ts := range ups {
		et, ok := r.types[ts.Type]
		if !ok || ts.Schema < 1 || ts.Schema >= et.schema {
			return nil, fmt.Errorf("upcaster for %s schema %d: no such type or schema", ts.Type, ts.Schema)
		}
	}
	return r, nil
}

// describe reads the stored shape of e's type.
func describe(e domain.Event) (*eventType, error) {
	if e == nil {
		return nil, errors.New("nil event")
	}
	t := reflect.TypeOf(e)
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("kind %s: an event must be a struct value", t.Kind())
	}
	et := &eventType{name: e.EventType(), typ: t, schema: 1, meta: -1}
	et.scratch.New = func() any { return reflect.New(t).Interface() }
	if et.name == "" {
		return nil, errors.New("empty type name")
	}
	keys := make(map[string]string)
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type == metaType {
			et.meta = i
			continue
		}
		if !f.IsExported() {
			return nil, fmt.Errorf("field %s is not exported", f.Name)
		}
		if f.Anonymous {
			return nil, fmt.Errorf("embedded field %s: only domain.Meta may be embedded", f.Name)
		}
		k, err := kindOf(f.Type)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Name, err)
		}
		key := snake(f.Name)
		if other, dup := keys[key]; dup {
			return nil, fmt.Errorf("fields %s and %s both have the key %q", other, f.Name, key)
		}
		keys[key] = f.Name
		et.fields = append(et.fields, field{index: i, name: f.Name, key: key, kind: k})
	}
	if et.meta < 0 {
		return nil, errors.New("does not embed domain.Meta")
	}
	return et, nil
}

func kindOf(t reflect.Type) (kind, error) {
	switch {
	case t == timeType:
		return kindTime, nil
	case t.Kind() == reflect.String:
		return kindString, nil
	case t.Kind() == reflect.Bool:
		return kindBool, nil
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return kindInt, nil
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return kindUint, nil
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return kindStrings, nil
	}
	return 0, fmt.Errorf("type %s is not supported by the codec", t)
}

// snake returns name in snake_case: a word starts at an upper-case letter
// after a lower-case letter or a digit, and at the last letter of a run of
// upper-case letters followed by a lower-case one (HTTPServer is
// http_server), unless that is a plural "s" (UserIDs is user_ids). Two
// initialisms in a row stay one word (HTTPID is httpid).
func snake(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 {
				prev := rs[i-1]
				nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
				plural := i+1 < len(rs) && rs[i+1] == 's' && (i+2 == len(rs) || !unicode.IsLower(rs[i+2]))
				if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower && !plural) {
					b.WriteByte('_')
				}
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (r *registry) encode(e domain.Event) (string, int, []byte, error) {
	if e == nil {
		return "", 0, nil, errors.New("encode: nil event")
	}
	typ := e.EventType()
	et, ok := r.types[typ]
	if !ok || reflect.TypeOf(e) != et.typ {
		return "", 0, nil, fmt.Errorf("encode %T (%q): %w", e, typ, ErrUnknownType)
	}
	v := reflect.ValueOf(e)
	buf := make([]byte, 0, 128)
	buf = append(buf, '{')
	for i, f := range et.fields {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, f.key)
		buf = append(buf, ':')
		fv := v.Field(f.index)
		switch f.kind {
		case kindString:
			s := fv.String()
			if !utf8.ValidString(s) {
				return "", 0, nil, fmt.Errorf("encode %s: field %s is not valid UTF-8", typ, f.name)
			}
			buf = appendString(buf, s)
		case kindBool:
			buf = strconv.AppendBool(buf, fv.Bool())
		case kindInt:
			buf = strconv.AppendInt(buf, fv.Int(), 10)
		case kindUint:
			buf = strconv.AppendUint(buf, fv.Uint(), 10)
		case kindStrings:
			buf = append(buf, '[')
			for j := range fv.Len() {
				if j > 0 {
					buf = append(buf, ',')
				}
				s := fv.Index(j).String()
				if !utf8.ValidString(s) {
					return "", 0, nil, fmt.Errorf("encode %s: field %s[%d] is not valid UTF-8", typ, f.name, j)
				}
				buf = appendString(buf, s)
			}
			buf = append(buf, ']')
		case kindTime:
			t := fv.Interface().(time.Time)
			buf = appendString(buf, t.UTC().Format(time.RFC3339Nano))
		}
	}
	buf = append(buf, '}')
	return typ, et.schema, buf, nil
}

// appendString appends s as a JSON string. s must be valid UTF-8. Only '"',
// '\\' and control characters are escaped, so the stored text stays readable.
func appendString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c == '\n':
			buf = append(buf, '\\', 'n')
		case c == '\r':
			buf = append(buf, '\\', 'r')
		case c == '\t':
			buf = append(buf, '\\', 't')
		case c < 0x20:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}

func (r *registry) decode(typ string, schema int, data []byte, meta domain.Meta) (domain.Event, error) {
	et, ok := r.types[typ]
	if !ok {
		return nil, fmt.Errorf("decode %q: %w", typ, ErrUnknownType)
	}
	if schema < 1 || schema > et.schema {
		return nil, fmt.Errorf("decode %s: schema %d is not between 1 and %d", typ, schema, et.schema)
	}
	for s := schema; s < et.schema; s++ {
		up := r.upcasters[typeSchema{typ, s}]
		if up == nil {
			return nil, fmt.Errorf("decode %s: no upcaster from schema %d", typ, s)
		}
		var err error
		if data, err = up(data); err != nil {
			return nil, fmt.Errorf("decode %s: upcast from schema %d: %w", typ, s, err)
		}
	}
	var buf [16]member
	obj, err := parseObject(data, buf[:0])
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	// The fields are set on a value of the type's own, kept for the next
	// decode, and the event returned is its copy: one allocation, where a
	// new value would be allocated and then copied into the interface.
	p := et.scratch.Get() // a pointer, which the pool holds without an allocation
	defer et.scratch.Put(p)
	v := reflect.ValueOf(p).Elem()
	v.SetZero()
	// Through a pointer, which converts to an interface without the
	// allocation a Meta would take.
	*v.Field(et.meta).Addr().Interface().(*domain.Meta) = meta
	for _, f := range et.fields {
		raw, ok := obj.get(f.key)
		if !ok || bytes.Equal(raw, []byte("null")) {
			continue
		}
		if err := decodeField(v.Field(f.index), f.kind, raw); err != nil {
			return nil, fmt.Errorf("decode %s: key %q: %w", typ, f.key, err)
		}
	}
	return v.Interface().(domain.Event), nil
}

// member is one member of a JSON object: its key, as written between the
// quotes, and its value.
type member struct {
	key []byte
	val json.RawMessage
}

// members are the members of a JSON object, in order, with distinct keys.
type members []member

// get returns the value of key.
func (ms members) get(key string) (json.RawMessage, bool) {
	for _, m := range ms {
		if string(m.key) == key {
			return m.val, true
		}
	}
	return nil, false
}

// manyMembers is how many members an object may have before parseObject
// checks its keys for duplicates with a map rather than one by one.
const manyMembers = 32

// parseObject splits data, which must hold exactly one JSON object with
// distinct keys, into its members, appended to dst[:0] (which a caller
// with an array on its stack saves an allocation with). Once json.Valid has checked the syntax,
// it finds the members itself, which the decoder's tokens took six times
// as long to; anything else (invalid JSON, not an object, a key written
// with escapes or invalid UTF-8) goes to parseObjectTokens, which it agrees with on every
// input (FuzzParseObject).
func parseObject(data []byte, dst members) (members, error) {
	if !json.Valid(data) {
		return parseObjectTokens(data, dst)
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return parseObjectTokens(data, dst)
	}
	obj := dst[:0]
	if i = skipSpace(data, i+1); data[i] == '}' {
		return obj, nil
	}
	var seen map[string]bool // once there are many keys
	for {
		end := stringEnd(data, i) // data[i] is the key's opening quote
		key := data[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			return parseObjectTokens(data, dst) // the decoder rewrites such keys
		}
		i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		end = valueEnd(data, i)
		if len(obj) < manyMembers {
			if _, dup := obj.get(string(key)); dup {
				return nil, fmt.Errorf("duplicate key %q", key)
			}
		} else {
			if seen == nil {
				seen = make(map[string]bool, 2*manyMembers)
				for _, m := range obj {
					seen[string(m.key)] = true
				}
			}
			if seen[string(key)] {
				return nil, fmt.Errorf("duplicate key %q", key)
			}
			seen[string(key)] = true
		}
		obj = append(obj, member{key, data[i:end]})
		if i = skipSpace(data, end); data[i] == '}' {
			return obj, nil
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

// skipSpace returns the index of the first byte from i on that is not JSON
// white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the closing quote of the valid JSON
// string that opens at i.
func stringEnd(data []byte, i int) int {
	for i++; ; i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// valueEnd returns the index after the valid JSON value that starts at i.
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch data[i] {
			case '"':
				i = stringEnd(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for ; i < len(data); i++ { // a number, true, false or null
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

// parseObjectTokens is parseObject through the decoder's tokens.
func parseObjectTokens(data []byte, dst members) (members, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	obj := dst[:0]
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("malformed object")
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		obj = append(obj, member{[]byte(key), raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return obj, nil
}

func decodeField(v reflect.Value, k kind, raw json.RawMessage) error {
	switch k {
	case kindString:
		s, err := unquote(raw)
		if err != nil {
			return err
		}
		v.SetString(s)
	case kindBool:
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return err
		}
		v.SetBool(b)
	case kindInt:
		n, err := parseInt(raw)
		if err != nil {
			return err
		}
		if v.OverflowInt(n) {
			return fmt.Errorf("%d overflows %s", n, v.Type())
		}
		v.SetInt(n)
	case kindUint:
		var n uint64
		if err := json.Unmarshal(raw, &n); err != nil {
			return err
		}
		if v.OverflowUint(n) {
			return fmt.Errorf("%d overflows %s", n, v.Type())
		}
		v.SetUint(n)
	case kindStrings:
		var ss []string
		if err := json.Unmarshal(raw, &ss); err != nil {
			return err
		}
		if len(ss) == 0 {
			return nil // an empty list is a nil slice, as the zero value
		}
		out := reflect.MakeSlice(v.Type(), len(ss), len(ss))
		for i, s := range ss {
			out.Index(i).SetString(s)
		}
		v.Set(out)
	case kindTime:
		s, err := unquote(raw)
		if err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return err
		}
		*v.Addr().Interface().(*time.Time) = t.UTC()
	}
	return nil
}

// unquote decodes a JSON string value: at once when it has no escapes and
// is valid UTF-8 (as json.Unmarshal would return it), else through
// json.Unmarshal.
func unquote(raw json.RawMessage) (string, error) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		body := raw[1 : len(raw)-1]
		if bytes.IndexByte(body, '\\') < 0 && bytes.IndexByte(body, '"') < 0 && utf8.Valid(body) {
			return string(body), nil
		}
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// parseInt decodes a JSON integer: at once when it is digits after an
// optional minus, as JSON writes them, else (a fraction, an exponent, a
// string, an overflow) through json.Unmarshal, for its error.
func parseInt(raw json.RawMessage) (int64, error) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	plain := len(digits) > 0 && (digits[0] != '0' || len(digits) == 1)
	for _, c := range digits {
		plain = plain && c >= '0' && c <= '9'
	}
	if plain {
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return n, nil
		}
	}
	var n int64
	err := json.Unmarshal(raw, &n)
	return n, err
}
