package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
)

func TestCheckBody(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		invalid bool
	}{
		{"one character", "x", false},
		{"surrounding whitespace is kept and allowed", "  hi\n", false},
		{"10,000 two-byte characters", strings.Repeat("é", domain.MaxBodyLen), false},
		{"empty", "", true},
		{"whitespace only", " \t\r\n\u00a0\u2003", true},
		{"10,001 two-byte characters", strings.Repeat("é", domain.MaxBodyLen+1), true},
		{"invalid UTF-8", "hi \xff", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := domain.CheckBody("body", tt.body)
			if !tt.invalid {
				if err != nil {
					t.Fatalf("CheckBody: got %v, want nil", err)
				}
				return
			}
			var fe *domain.FieldError
			if !errors.As(err, &fe) || fe.Field != "body" {
				t.Fatalf("CheckBody: got %v, want a FieldError for body", err)
			}
			if !errors.Is(err, domain.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false, want true", err)
			}
		})
	}
}

func TestCheckLen(t *testing.T) {
	// The limit counts characters, not bytes: 3 characters of 4 bytes each fit in 3.
	if err := domain.CheckLen("name", "😀😀😀", 3); err != nil {
		t.Errorf("CheckLen(3 emoji, 3): got %v, want nil", err)
	}
	err := domain.CheckLen("name", "😀😀😀😀", 3)
	var fe *domain.FieldError
	if !errors.As(err, &fe) || fe.Field != "name" {
		t.Fatalf("CheckLen(4 emoji, 3): got %v, want a FieldError for name", err)
	}
	if got, want := err.Error(), "name: must be at most 3 characters"; got != want {
		t.Errorf("message: got %q, want %q", got, want)
	}
	if err := domain.CheckLen("name", "", 0); err != nil {
		t.Errorf("CheckLen(empty, 0): got %v, want nil", err)
	}
	err = domain.CheckLen("name", "x", 0)
	if got, want := err.Error(), "name: must be at most 0 characters"; got != want {
		t.Errorf("message: got %q, want %q", got, want)
	}
	err = domain.CheckLen("body", strings.Repeat("a", 10001), domain.MaxBodyLen)
	if got, want := err.Error(), "body: must be at most 10000 characters"; got != want {
		t.Errorf("message: got %q, want %q", got, want)
	}
	// PostgreSQL's text columns refuse U+0000 (the other control
	// characters they keep, and so do the events).
	for _, s := range []string{"\x00", "hello\x00world", "end\x00"} {
		err = domain.CheckLen("subject", s, domain.MaxSubjectLen)
		if !errors.As(err, &fe) || fe.Field != "subject" || fe.Reason != "must not contain the character U+0000" {
			t.Errorf("CheckLen(%q): got %v, want a FieldError for subject about U+0000", s, err)
		}
	}
	if err := domain.CheckLen("subject", "tab\tand\u0001bell", domain.MaxSubjectLen); err != nil {
		t.Errorf("CheckLen(other control characters): got %v, want nil", err)
	}
	for s, want := range map[string]bool{"": true, "tab\tand\u0001bell": true, "été": true, "a\x00": false, "\xff": false, "ok\xc3": false} {
		if got := domain.IsText(s); got != want {
			t.Errorf("IsText(%q) = %v, want %v", s, got, want)
		}
	}
	if err := domain.CheckBody("body", "hi\x00"); err == nil {
		t.Errorf("CheckBody(with U+0000): got nil, want an error")
	}
}

func TestInvalid(t *testing.T) {
	err := domain.Invalid("email", "must be an email address")
	if !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("errors.Is(Invalid(...), ErrInvalid) = false, want true")
	}
	wrapped := errors.Join(errors.New("create user"), err)
	var fe *domain.FieldError
	if !errors.As(wrapped, &fe) {
		t.Fatalf("errors.As through a wrapper: got false, want true")
	}
	if fe.Field != "email" || fe.Reason != "must be an email address" {
		t.Errorf("FieldError: got %+v, want email / must be an email address", fe)
	}
	if got, want := err.Error(), "email: must be an email address"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
}

func TestActorKey(t *testing.T) {
	user := domain.Actor{Kind: domain.ActorUser, ID: "42"}
	customer := domain.Actor{Kind: domain.ActorCustomer, ID: "42"}
	if got, want := user.Key(), "user:42"; got != want {
		t.Errorf("Key: got %q, want %q", got, want)
	}
	if user.Key() == customer.Key() {
		t.Errorf("a user and a customer with the same id share the key %q", user.Key())
	}
}

func TestMetaEventMeta(t *testing.T) {
	m := domain.Meta{At: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Actor: domain.Actor{Kind: domain.ActorSystem, ID: "boot"}}
	if got := m.EventMeta(); got != m {
		t.Errorf("EventMeta: got %+v, want %+v", got, m)
	}
}
