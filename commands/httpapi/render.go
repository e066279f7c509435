package httpapi

import (
	"encoding/json"
	"strconv"
	"strings"
)

// pos renders a position as the API's opaque token.
func pos(p uint64) string { return strconv.FormatUint(p, 10) }

func trim(s string) string { return strings.TrimSpace(s) }

// positioned renders a view with its "position" set to the write's.
type positioned struct {
	v   any
	pos uint64
}

// MarshalJSON renders the view's object with "position" replaced.
func (p positioned) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(p.v)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return b, nil // not an object: leave it as it is
	}
	m["position"] = json.RawMessage(strconv.Quote(pos(p.pos)))
	return json.Marshal(m)
}
