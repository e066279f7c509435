package httpkit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

type postRequest struct {
	Body         string   `json:"body"`
	ClientID     string   `json:"client_id"`
	Participants []string `json:"participants"`
	Online       *bool    `json:"online"`
}

func TestDecodeBytes(t *testing.T) {
	tests := []struct {
		in        string
		wantErr   bool
		wantField string
	}{
		{`{"body":"hi"}`, false, ""},
		{`{"body":"hi","participants":["a","b"],"online":true}`, false, ""},
		{`  {"body":"hi"}  `, false, ""},
		{``, true, ""},
		{`   `, true, ""},
		{`null`, false, ""},
		{`{"body":"hi","extra":1}`, true, "extra"},
		{`{"body":1}`, true, "body"},
		{`{"body":"a"}{"body":"b"}`, true, ""},
		{`{"body":"a"} x`, true, ""},
		{`{"body":`, true, ""},
		{`[1,2]`, true, ""},
	}
	for _, tt := range tests {
		var v postRequest
		err := DecodeBytes([]byte(tt.in), &v)
		if (err != nil) != tt.wantErr {
			t.Errorf("DecodeBytes(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		var ae *Error
		if err != nil {
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != CodeInvalid {
				t.Errorf("DecodeBytes(%q) = %#v, want a 400 invalid_request", tt.in, err)
			} else if ae.Field != tt.wantField {
				t.Errorf("DecodeBytes(%q) field = %q, want %q", tt.in, ae.Field, tt.wantField)
			}
		}
	}
}

// FuzzDecodeRequest checks the request decoder: it never panics, answers
// every rejection as a 400 API error, and accepts only documents with no
// unknown field that decode the same way again.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"body":"hi"}`, `{"body":"hi","client_id":"c1"}`, `{"participants":["a"]}`, `{"online":false}`, `{"x":1}`, `{`, `"str"`, `{"body":"\u00e9"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var v postRequest
		err := DecodeBytes(in, &v)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Fatalf("rejection %v is not a 400 API error", err)
			}
			return
		}
		var generic map[string]any
		if json.Unmarshal(in, &generic) == nil {
			for k := range generic {
				switch strings.ToLower(k) {
				case "body", "client_id", "participants", "online":
				default:
					t.Fatalf("accepted unknown field %q in %q", k, in)
				}
			}
		}
		again, _ := json.Marshal(v)
		var w postRequest
		if err := DecodeBytes(again, &w); err != nil {
			t.Fatalf("round trip of %q: %v", in, err)
		}
		if twice, _ := json.Marshal(w); string(twice) != string(again) {
			t.Fatalf("round trip of %q: %s != %s", in, again, twice)
		}
	})
}

func TestLimiter(t *testing.T) {
	l := &limiter{rate: 1, burst: 3, buckets: map[string]*bucket{}}
	now := time.Unix(1000, 0)
	for i := range 3 {
		if w := l.take("a", now); w != 0 {
			t.Fatalf("take %d waited %v within the burst", i, w)
		}
	}
	if w := l.take("a", now); w <= 0 || w > time.Second {
		t.Fatalf("take past the burst waited %v, want (0, 1s]", w)
	}
	if w := l.take("b", now); w != 0 {
		t.Fatalf("another client waited %v", w)
	}
	if w := l.take("a", now.Add(1100*time.Millisecond)); w != 0 {
		t.Fatalf("after a second a token is back, but waited %v", w)
	}
}
