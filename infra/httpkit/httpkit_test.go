package httpkit

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

type postRequest struct {
	Body         string   `json:"body"`
	ClientID     string   `json:"client_id"`
	Participants []string `json:"participants"`
	Online       *bool    `json:"online"`
}

// TestDecodeMessages checks that what the decoder answers speaks JSON,
// not Go: the types named are JSON's, and U+0000 is refused by name.
func TestDecodeMessages(t *testing.T) {
	for in, want := range map[string]string{
		`[1,2]`:                  "request body must be a JSON object",
		`"str"`:                  "request body must be a JSON object",
		`{"body":1}`:             "body must be a string",
		`{"online":"yes"}`:       "online must be true or false",
		`{"participants":"a"}`:   "participants must be an array",
		`{"body":"hi\u0000"}`:    "body must not contain the character U+0000",
		`{"client_id":"\u0000"}`: "client_id must not contain the character U+0000",
		"{\"body\":\"caf\xe9\"}": "request body must be UTF-8",
	} {
		var v postRequest
		err := DecodeBytes([]byte(in), &v)
		if err == nil || err.Error() != want {
			t.Errorf("DecodeBytes(%s) = %v, want %q", in, err, want)
		}
	}
}

func TestNulField(t *testing.T) {
	type inner struct {
		Tags map[string]string `json:"tags"`
		Skip string            `json:"-"`
		Bare string
	}
	type outer struct {
		In  *inner `json:"in,omitempty"`
		Any any    `json:"any"`
	}
	for _, tt := range []struct {
		v    any
		want string
		ok   bool
	}{
		{outer{}, "", false},
		{outer{In: &inner{Tags: map[string]string{"k": "v"}, Bare: "x"}}, "", false},
		{outer{In: &inner{Tags: map[string]string{"k\x00": "v"}}}, "in.tags", true},
		{outer{In: &inner{Tags: map[string]string{"k": "\x00"}}}, "in.tags", true},
		{outer{In: &inner{Skip: "\x00"}}, "", false},
		{outer{In: &inner{Bare: "\x00"}}, "in.Bare", true},
		{outer{Any: []any{"a", map[string]any{"b": "\x00"}}}, "any", true},
		{"\x00", "", true},
	} {
		got, ok := nulField(reflect.ValueOf(&tt.v), "")
		if got != tt.want || ok != tt.ok {
			t.Errorf("nulField(%#v) = %q, %v; want %q, %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCheckParams(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(CheckParams())
	r.GET("/things/:id", func(c *gin.Context) { c.String(http.StatusOK, c.Param("id")) })
	for path, want := range map[string]int{
		"/things/abc":           200,
		"/things/%C3%A9t%C3%A9": 200,
		"/things/a%00b":         404,
		"/things/%FF":           404,
		"/things/%C3":           404,
	} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("GET %s: %d %s, want %d", path, w.Code, w.Body, want)
			continue
		}
		if want == 404 {
			var body struct{ Error Error }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != CodeNotFound {
				t.Errorf("GET %s: body %s, want a not_found error", path, w.Body)
			}
		}
	}
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
		{`"str"`, true, ""},
		{`{"body":"a\u0000b"}`, true, "body"},
		{`{"body":"ok","participants":["a","\u0000"]}`, true, "participants"},
		{`{"body":"a\\u0000b"}`, false, ""},  // a backslash, then "u0000": no U+0000
		{"{\"body\":\"caf\xe9\"}", true, ""}, // Latin-1
		{"{\"body\":\"ok\"}\xff", true, ""},  // after the value
		{"{\"x\xc3\":1}", true, ""},          // in a key
		{`{"body":"caf\u00e9 \ud83d\ude00"}`, false, ""},
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
// every rejection as a 400 API error, and accepts only documents in UTF-8
// with no unknown field that decode the same way again.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"body":"hi"}`, `{"body":"hi","client_id":"c1"}`, `{"participants":["a"]}`, `{"online":false}`, `{"x":1}`, `{`, `"str"`, `{"body":"\u00e9"}`, `{"participants":["a\u0000"]}`, "{\"body\":\"\xe9\"}"} {
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
		if strings.Contains(v.Body+v.ClientID+strings.Join(v.Participants, ""), "\x00") {
			t.Fatalf("accepted U+0000 in %q", in)
		}
		if !utf8.Valid(in) {
			t.Fatalf("accepted a body that is not UTF-8: %q", in)
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
