package bus

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/projections"
)

// The change feed's messages are JSON: a batch's changes as encoding/json
// writes []projections.Change, which replicas of every version read.
// Encoding and decoding them through reflection took a twentieth of the
// server's CPU at 2,000 posts a second (encoding/json.Unmarshal alone 4 %),
// so the feed writes and reads its one shape by hand: appendChanges writes
// the bytes json.Marshal writes, and parseChanges reads them. Anything
// else (whitespace, escapes, keys in other cases, null, invalid UTF-8) goes
// to encoding/json, so a message means the same whoever sent it.

// encodeChanges returns changes as the JSON of a feed message.
func encodeChanges(changes []projections.Change) ([]byte, error) {
	if buf, ok := appendChanges(make([]byte, 0, 200*len(changes)), changes); ok {
		return buf, nil
	}
	return json.Marshal(changes)
}

// decodeChanges reads the JSON of a feed message.
func decodeChanges(data []byte) ([]projections.Change, error) {
	if changes, ok := parseChanges(data); ok {
		return changes, nil
	}
	var changes []projections.Change
	err := json.Unmarshal(data, &changes)
	return changes, err
}

// appendChanges appends changes as json.Marshal writes them. It reports
// false, leaving json.Marshal to do it, when a string is not valid UTF-8
// (encoding/json replaces what is not).
func appendChanges(buf []byte, changes []projections.Change) ([]byte, bool) {
	ok := true
	str := func(s string) {
		var valid bool
		buf, valid = appendJSONString(buf, s)
		ok = ok && valid
	}
	buf = append(buf, '[')
	for i, c := range changes {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"position":`...)
		buf = strconv.AppendUint(buf, c.Position, 10)
		buf = append(buf, `,"kind":`...)
		str(string(c.Kind))
		if c.ConversationID != "" {
			buf = append(buf, `,"conversation_id":`...)
			str(c.ConversationID)
		}
		if c.MessageID != "" {
			buf = append(buf, `,"message_id":`...)
			str(c.MessageID)
		}
		if c.ItemID != "" {
			buf = append(buf, `,"item_id":`...)
			str(c.ItemID)
		}
		buf = append(buf, `,"actor":{"Kind":`...)
		str(string(c.Actor.Kind))
		buf = append(buf, `,"ID":`...)
		str(c.Actor.ID)
		buf = append(buf, '}')
		if c.Customer != "" {
			buf = append(buf, `,"customer":`...)
			str(c.Customer)
		}
		if c.Counts != nil {
			buf = append(buf, `,"counts":{"live_chats":`...)
			buf = strconv.AppendInt(buf, int64(c.Counts.LiveChats), 10)
			if len(c.Counts.CaughtUp) > 0 {
				// In order, as encoding/json writes a map's keys.
				buf = append(buf, `,"caught_up":{`...)
				for j, k := range slices.Sorted(maps.Keys(c.Counts.CaughtUp)) {
					if j > 0 {
						buf = append(buf, ',')
					}
					str(k)
					buf = append(buf, ':')
					buf = strconv.AppendInt(buf, int64(c.Counts.CaughtUp[k]), 10)
				}
				buf = append(buf, '}')
			}
			buf = append(buf, '}')
		}
		buf = append(buf, '}')
	}
	return append(buf, ']'), ok
}

// safeASCII holds the ASCII characters encoding/json writes as they are.
var safeASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it. valid is false if s is not valid UTF-8, whose invalid bytes
// encoding/json would write as U+FFFD where this copies them.
func appendJSONString(buf []byte, s string) (_ []byte, valid bool) {
	const hex = "0123456789abcdef"
	valid = true
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if safeASCII[c] {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				valid = false
			}
			if r == '\u2028' || r == '\u2029' {
				buf = append(buf, s[start:i]...)
				buf = append(buf, '\\', 'u', '2', '0', '2', hex[r&0xf])
				start = i + size
			}
			i += size
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\b':
			buf = append(buf, '\\', 'b')
		case '\f':
			buf = append(buf, '\\', 'f')
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"'), valid
}

// wireParser reads the shape appendChanges writes. Each method reports
// false at anything it does not read exactly as encoding/json would.
type wireParser struct {
	data []byte
	i    int
}

// parseChanges reads a message as json.Unmarshal into []projections.Change
// would, or reports false.
func parseChanges(data []byte) ([]projections.Change, bool) {
	p := &wireParser{data: data}
	if !p.byte('[') {
		return nil, false
	}
	changes := make([]projections.Change, 0, 1+len(data)/128)
	if p.byte(']') {
		return changes, p.i == len(data)
	}
	for {
		changes = append(changes, projections.Change{})
		if !p.change(&changes[len(changes)-1]) {
			return nil, false
		}
		if p.byte(',') {
			continue
		}
		if !p.byte(']') {
			return nil, false
		}
		return changes, p.i == len(data)
	}
}

// byte consumes b if it comes next.
func (p *wireParser) byte(b byte) bool {
	if p.i < len(p.data) && p.data[p.i] == b {
		p.i++
		return true
	}
	return false
}

// next reads what follows a member of an object: more reports a comma,
// and ok is false if neither a comma nor the end of the object comes.
func (p *wireParser) next() (more, ok bool) {
	if p.byte(',') {
		return true, true
	}
	return false, p.byte('}')
}

// key reads a member's key and its colon, and returns the key's bit in
// keys, the object's keys in order, unless seen holds it already: a key
// may not come twice (encoding/json would merge what the parser would
// replace), nor one the parser does not know.
func (p *wireParser) key(keys []string, seen *uint16) (int, bool) {
	k, ok := p.raw()
	if !ok || !p.byte(':') {
		return 0, false
	}
	for i, want := range keys {
		if string(k) == want {
			if *seen&(1<<i) != 0 {
				return 0, false
			}
			*seen |= 1 << i
			return i, true
		}
	}
	return 0, false
}

var (
	changeKeys = []string{"position", "kind", "conversation_id", "message_id", "item_id", "actor", "customer", "counts"}
	actorKeys  = []string{"Kind", "ID"}
	countsKeys = []string{"live_chats", "caught_up"}
)

// object reads an object whose keys are among keys, each at most once,
// member reading the value of the key at index k into dst.
func object[T any](p *wireParser, keys []string, dst T, member func(p *wireParser, dst T, k int) bool) bool {
	if !p.byte('{') {
		return false
	}
	if p.byte('}') {
		return true
	}
	var seen uint16
	for {
		k, ok := p.key(keys, &seen)
		if !ok || !member(p, dst, k) {
			return false
		}
		more, ok := p.next()
		if !more {
			return ok
		}
	}
}

func (p *wireParser) change(c *projections.Change) bool {
	return object(p, changeKeys, c, changeMember)
}

func changeMember(p *wireParser, c *projections.Change, k int) (ok bool) {
	switch k {
	case 0:
		c.Position, ok = p.uint()
	case 1:
		var s string
		s, ok = p.string(kinds)
		c.Kind = projections.ChangeKind(s)
	case 2:
		c.ConversationID, ok = p.string(nil)
	case 3:
		c.MessageID, ok = p.string(nil)
	case 4:
		c.ItemID, ok = p.string(nil)
	case 5:
		ok = object(p, actorKeys, &c.Actor, actorMember)
	case 6:
		c.Customer, ok = p.string(nil)
	case 7:
		c.Counts = &projections.Counts{}
		ok = object(p, countsKeys, c.Counts, countsMember)
	}
	return ok
}

func actorMember(p *wireParser, a *domain.Actor, k int) (ok bool) {
	if k == 0 {
		var s string
		s, ok = p.string(actorKinds)
		a.Kind = domain.ActorKind(s)
		return ok
	}
	a.ID, ok = p.string(nil)
	return ok
}

func countsMember(p *wireParser, c *projections.Counts, k int) (ok bool) {
	if k == 0 {
		c.LiveChats, ok = p.int()
		return ok
	}
	c.CaughtUp, ok = p.caughtUp()
	return ok
}

func (p *wireParser) caughtUp() (map[string]int, bool) {
	if !p.byte('{') {
		return nil, false
	}
	m := map[string]int{}
	if p.byte('}') {
		return m, true
	}
	for {
		k, ok := p.string(nil)
		if !ok || !p.byte(':') {
			return nil, false
		}
		if _, dup := m[k]; dup {
			return nil, false
		}
		if m[k], ok = p.int(); !ok {
			return nil, false
		}
		more, ok := p.next()
		if !more {
			return m, ok
		}
	}
}

// The values of the kinds, which the parser returns instead of copies.
var (
	kinds = []string{string(projections.ConversationCreated), string(projections.ConversationUpdated),
		string(projections.MessageCreated), string(projections.MessageUpdated), string(projections.MessageDeleted),
		string(projections.ReadChanged), string(projections.ItemChanged), string(projections.HelpdeskChanged),
		string(projections.TokenIssued), string(projections.CountsChanged), string(projections.FeedGap)}
	actorKinds = []string{string(domain.ActorUser), string(domain.ActorCustomer), string(domain.ActorSystem)}
)

// raw reads a string without escapes, of valid UTF-8 and no control
// characters, and returns its bytes.
func (p *wireParser) raw() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	data, start := p.data, p.i
	ascii := true
	for i := start; i < len(data); i++ {
		c := data[i]
		if safeASCII[c] {
			continue
		}
		switch {
		case c == '"':
			p.i = i + 1
			s := data[start:i]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c >= utf8.RuneSelf:
			ascii = false
		default: // '\\', a control character, or one encoding/json escapes
			if c == '\\' || c < 0x20 {
				return nil, false
			}
		}
	}
	return nil, false
}

// string reads a string as raw does; one of known comes back as itself.
func (p *wireParser) string(known []string) (string, bool) {
	b, ok := p.raw()
	if !ok {
		return "", false
	}
	for _, k := range known {
		if string(b) == k {
			return k, true
		}
	}
	return string(b), true
}

// digits reads a JSON integer's digits, with a minus sign if signed, and
// returns them.
func (p *wireParser) digits(signed bool) ([]byte, bool) {
	start := p.i
	if signed {
		p.byte('-')
	}
	first := p.i
	for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
		p.i++
	}
	n := p.i - first
	if n == 0 || n > 1 && p.data[first] == '0' {
		return nil, false
	}
	if p.i < len(p.data) && (p.data[p.i] == '.' || p.data[p.i] == 'e' || p.data[p.i] == 'E') {
		return nil, false
	}
	return p.data[start:p.i], true
}

func (p *wireParser) uint() (uint64, bool) {
	b, ok := p.digits(false)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	return n, err == nil
}

func (p *wireParser) int() (int, bool) {
	b, ok := p.digits(true)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, strconv.IntSize)
	return int(n), err == nil
}
