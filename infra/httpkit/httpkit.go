// Package httpkit is the HTTP plumbing shared by the write routes
// (commands/httpapi) and the read routes (readapi): the error table, strict
// JSON decoding with limits, and authentication by bearer token.
package httpkit

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/conversation"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/item"
)

// MaxBody is the largest request body accepted, in bytes.
const MaxBody = 64 << 10

// Error is an API error as clients see it.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with status and code.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// The error codes of API.md.
const (
	CodeInvalid      = "invalid_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeTooLarge     = "too_large"
	CodeRateLimited  = "rate_limited"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

// kinds maps error sentinels to status and code: the one table of the API.
var kinds = []struct {
	err    error
	status int
	code   string
}{
	{conversation.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{conversation.ErrMessageNotFound, http.StatusNotFound, CodeNotFound},
	{conversation.ErrNotLinked, http.StatusNotFound, CodeNotFound},
	{item.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{directory.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{conversation.ErrNotAuthor, http.StatusForbidden, CodeForbidden},
	{conversation.ErrMessageDeleted, http.StatusConflict, CodeConflict},
	{conversation.ErrExists, http.StatusConflict, CodeConflict},
	{conversation.ErrTooManyLinks, http.StatusConflict, CodeConflict},
	{item.ErrExists, http.StatusConflict, CodeConflict},
	{item.ErrTooManyPeople, http.StatusConflict, CodeConflict},
	{directory.ErrExists, http.StatusConflict, CodeConflict},
}

// Register adds err to the error table: errors.Is(x, err) answers status with code.
// Call it at start-up only.
func Register(err error, status int, code string) {
	kinds = append(kinds, struct {
		err    error
		status int
		code   string
	}{err, status, code})
}

// Fail answers err as an API error and aborts the request. Errors of no
// known kind are logged once here and answered 500 with a generic message.
func Fail(c *gin.Context, err error) {
	c.AbortWithStatusJSON(toAPI(c, err))
}

func toAPI(c *gin.Context, err error) (int, gin.H) {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Status, gin.H{"error": ae}
	}
	var fe *domain.FieldError
	if errors.As(err, &fe) {
		return http.StatusBadRequest, gin.H{"error": &Error{Code: CodeInvalid, Message: fe.Error(), Field: fe.Field}}
	}
	if errors.Is(err, conversation.ErrCustomerParticipants) {
		return http.StatusBadRequest, gin.H{"error": &Error{Code: CodeInvalid, Message: err.Error(), Field: "participants"}}
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.status, gin.H{"error": &Error{Code: k.code, Message: err.Error()}}
		}
	}
	if errors.Is(err, context.Canceled) {
		return 499, gin.H{"error": &Error{Code: CodeUnavailable, Message: "request canceled"}}
	}
	slog.ErrorContext(c.Request.Context(), "request failed", "method", c.Request.Method, "path", c.FullPath(), "err", err)
	return http.StatusInternalServerError, gin.H{"error": &Error{Code: CodeInternal, Message: "internal error"}}
}

// Decode reads the request body as JSON into v: at most MaxBody bytes, no
// unknown fields, nothing after the value.
func Decode(c *gin.Context, v any) error {
	if c.Request.ContentLength > MaxBody {
		return Errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body is over %d bytes", MaxBody)
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, MaxBody+1))
	if err != nil {
		return Errorf(http.StatusBadRequest, CodeInvalid, "cannot read request body")
	}
	if len(body) > MaxBody {
		return Errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body is over %d bytes", MaxBody)
	}
	return DecodeBytes(body, v)
}

// DecodeBytes decodes body as one strict JSON value into v. It refuses a
// string holding U+0000 anywhere in it (JSON's "\u0000"): no id holds one,
// and PostgreSQL's text columns refuse it, so that it could only fail
// later, as an internal error, or stop the read models at its event. It
// refuses a body that is not UTF-8, as JSON must be, which encoding/json
// would take with each invalid byte turned into U+FFFD: a client sending
// Latin-1 saw "café" kept as "caf\uFFFD", without an error.
func DecodeBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return Errorf(http.StatusBadRequest, CodeInvalid, "request body must be a JSON object")
	}
	if !utf8.Valid(body) {
		return Errorf(http.StatusBadRequest, CodeInvalid, "request body must be UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		e := Errorf(http.StatusBadRequest, CodeInvalid, "malformed JSON: %v", err)
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				e.Message = "request body must be " + jsonType(te.Type)
			} else {
				e.Field, e.Message = te.Field, te.Field+" must be "+jsonType(te.Type)
			}
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			e.Field, e.Message = strings.Trim(f, `"`), "unknown field "+f
		}
		return e
	}
	if dec.More() {
		return Errorf(http.StatusBadRequest, CodeInvalid, "request body holds more than one JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return Errorf(http.StatusBadRequest, CodeInvalid, "request body holds more than one JSON value")
	}
	if field, ok := nulField(reflect.ValueOf(v), ""); ok {
		e := Errorf(http.StatusBadRequest, CodeInvalid, "request body must not contain the character U+0000")
		if field != "" {
			e.Field, e.Message = field, field+" must not contain the character U+0000"
		}
		return e
	}
	return nil
}

// jsonType names the JSON values that decode into t, for a client.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonType(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	}
	return "another JSON value"
}

// nulField returns the JSON name of the first value of v, a decoded
// request named name, that holds a string with U+0000 (a map's key too),
// and whether there is one: "" for v itself, "a.b" for field b of a.
func nulField(v reflect.Value, name string) (string, bool) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return nulField(v.Elem(), name)
		}
	case reflect.String:
		return name, strings.IndexByte(v.String(), 0) >= 0
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if f, ok := nulField(v.Index(i), name); ok {
				return f, true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if f, ok := nulField(it.Key(), name); ok {
				return f, true
			}
			if f, ok := nulField(it.Value(), name); ok {
				return f, true
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if !sf.IsExported() || tag == "-" {
				continue
			}
			if tag == "" {
				tag = sf.Name
			}
			if name != "" {
				tag = name + "." + tag
			}
			if f, ok := nulField(v.Field(i), tag); ok {
				return f, true
			}
		}
	}
	return "", false
}

// CheckParams answers 404 to a request whose path parameters are not
// valid UTF-8 or hold U+0000: no id is such, and PostgreSQL would refuse
// to look them up (an internal error, else).
func CheckParams() gin.HandlerFunc {
	return func(c *gin.Context) {
		for _, p := range c.Params {
			if !domain.IsText(p.Value) {
				Fail(c, Errorf(http.StatusNotFound, CodeNotFound, "%s %q does not exist", p.Key, p.Value))
				return
			}
		}
		c.Next()
	}
}

// Limit reads ?limit= (1–200, default 50).
func Limit(c *gin.Context) (int, error) {
	s := c.Query("limit")
	if s == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 200 {
		return 0, &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Message: "limit must be a whole number from 1 to 200", Field: "limit"}
	}
	return n, nil
}

// Authenticator finds the principal holding a token, by the token's hash,
// and returns the hash it has stored for that principal.
type Authenticator interface {
	Principal(ctx context.Context, tokenHash string) (p directory.Principal, storedHash string, ok bool, err error)
}

const principalKey = "messenger.principal"

// Authenticate returns middleware that sets the caller's principal from
// "Authorization: Bearer <token>" (or ?access_token= when queryToken) and
// answers 401 when the token is missing or unknown.
func Authenticate(auth Authenticator, queryToken bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		if !ok && queryToken {
			token = c.Query("access_token")
		}
		token = strings.TrimSpace(token)
		if token == "" || len(token) > 256 {
			Fail(c, Errorf(http.StatusUnauthorized, CodeUnauthorized, "a bearer token is required"))
			return
		}
		hash := commands.HashToken(token) // the hash the directory stored
		p, stored, ok, err := auth.Principal(c.Request.Context(), hash)
		if err != nil {
			Fail(c, err)
			return
		}
		// The lookup was by hash; the stored hash is compared in constant time
		// all the same, so a store that matched loosely cannot let a wrong token in.
		if !ok || subtle.ConstantTimeCompare([]byte(hash), []byte(stored)) != 1 {
			Fail(c, Errorf(http.StatusUnauthorized, CodeUnauthorized, "the token is not valid"))
			return
		}
		c.Set(principalKey, p)
		c.Next()
	}
}

// Caller returns the principal Authenticate set.
func Caller(c *gin.Context) directory.Principal {
	p, _ := c.Get(principalKey)
	pr, _ := p.(directory.Principal)
	return pr
}

// NotFound answers 404 for a resource the caller may not see or that does not exist.
func NotFound(what, id string) *Error {
	return Errorf(http.StatusNotFound, CodeNotFound, "%s %s does not exist", what, id)
}

// Forbidden answers 403.
func Forbidden(msg string) *Error { return Errorf(http.StatusForbidden, CodeForbidden, "%s", msg) }

// SetCaller sets the principal of the request, as Authenticate does; for
// tests and for other authentication schemes.
func SetCaller(c *gin.Context, p directory.Principal) { c.Set(principalKey, p) }
