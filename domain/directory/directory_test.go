package directory_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	d "github.com/helpdesk/messenger/domain/directory"
)

var (
	t0    = time.Date(2025, 1, 2, 9, 0, 0, 0, time.UTC)
	admin = domain.Actor{Kind: domain.ActorUser, ID: "admin"}
	anon  = domain.Actor{Kind: domain.ActorCustomer, ID: "cust-1"}
)

func meta(a domain.Actor, n int) domain.Meta {
	return domain.Meta{At: t0.Add(time.Duration(n) * time.Minute), Actor: a}
}

// outcome checks a decision: exactly one of then, err, field and anyErr
// describes it; none means "no events, no error".
type outcome struct {
	then   []d.Event
	err    error
	field  string
	anyErr bool
}

func (o outcome) check(t *testing.T, got []d.Event, err error) {
	t.Helper()
	switch {
	case o.err != nil:
		if !errors.Is(err, o.err) {
			t.Fatalf("error: got %v, want %v", err, o.err)
		}
	case o.field != "":
		var fe *domain.FieldError
		if !errors.As(err, &fe) || fe.Field != o.field {
			t.Fatalf("error: got %v, want a FieldError for %q", err, o.field)
		}
	case o.anyErr:
		if err == nil {
			t.Fatalf("error: got nil, want one")
		}
		var fe *domain.FieldError
		if errors.As(err, &fe) {
			t.Fatalf("error: got FieldError %v, want an error that is not the client's", err)
		}
	case err != nil:
		t.Fatalf("error: got %v, want nil", err)
	}
	if len(o.then) == 0 {
		if len(got) != 0 {
			t.Errorf("events: got %#v, want none", got)
		}
		return
	}
	if !reflect.DeepEqual(got, o.then) {
		t.Errorf("events:\n got %#v\nwant %#v", got, o.then)
	}
}

// emailOf returns a syntactically valid address of n characters.
func emailOf(n int) string {
	const domainPart = "@example.com"
	return strings.Repeat("a", n-len(domainPart)) + domainPart
}

func created(name, email string, role d.Role, support bool) d.UserCreated {
	return d.UserCreated{Meta: meta(admin, 0), UserID: "u1", Name: name, Email: email, Role: role, Support: support, TokenHash: "h1"}
}

func TestDecideUserCreate(t *testing.T) {
	create := func(name, email string, role d.Role, support bool) d.CreateUser {
		return d.CreateUser{Meta: meta(admin, 0), UserID: "u1", Name: name, Email: email, Role: role, Support: support, TokenHash: "h1"}
	}
	tests := []struct {
		name  string
		given []d.Event
		when  d.Command
		outcome
	}{
		{
			name:    "an agent",
			when:    create("Ann Lee", "ann@example.com", d.Agent, false),
			outcome: outcome{then: []d.Event{created("Ann Lee", "ann@example.com", d.Agent, false)}},
		},
		{
			name:    "a support agent",
			when:    create("Ann Lee", "ann@example.com", d.Agent, true),
			outcome: outcome{then: []d.Event{created("Ann Lee", "ann@example.com", d.Agent, true)}},
		},
		{
			name:    "an admin",
			when:    create("Root", "root@example.com", d.Admin, false),
			outcome: outcome{then: []d.Event{created("Root", "root@example.com", d.Admin, false)}},
		},
		{
			name:    "an auditor",
			when:    create("Audrey", "audit@example.com", d.Auditor, false),
			outcome: outcome{then: []d.Event{created("Audrey", "audit@example.com", d.Auditor, false)}},
		},
		{
			name:    "name and email are trimmed",
			when:    create("  Ann Lee\n", "\tann@example.com ", d.Agent, false),
			outcome: outcome{then: []d.Event{created("Ann Lee", "ann@example.com", d.Agent, false)}},
		},
		{
			name:    "a name of 200 characters",
			when:    create(strings.Repeat("é", domain.MaxNameLen), "ann@example.com", d.Agent, false),
			outcome: outcome{then: []d.Event{created(strings.Repeat("é", domain.MaxNameLen), "ann@example.com", d.Agent, false)}},
		},
		{
			name:    "an email of 254 characters",
			when:    create("Ann", emailOf(domain.MaxEmailLen), d.Agent, false),
			outcome: outcome{then: []d.Event{created("Ann", emailOf(domain.MaxEmailLen), d.Agent, false)}},
		},
		{name: "no name", when: create("", "ann@example.com", d.Agent, false), outcome: outcome{field: "name"}},
		{name: "a whitespace name", when: create(" \t ", "ann@example.com", d.Agent, false), outcome: outcome{field: "name"}},
		{name: "a name of 201 characters", when: create(strings.Repeat("é", domain.MaxNameLen+1), "ann@example.com", d.Agent, false), outcome: outcome{field: "name"}},
		{name: "a name that is not UTF-8", when: create("Ann \xff", "ann@example.com", d.Agent, false), outcome: outcome{field: "name"}},
		{name: "no email", when: create("Ann", "", d.Agent, false), outcome: outcome{field: "email"}},
		{name: "a whitespace email", when: create("Ann", "  ", d.Agent, false), outcome: outcome{field: "email"}},
		{name: "not an address", when: create("Ann", "ann", d.Agent, false), outcome: outcome{field: "email"}},
		{name: "no local part", when: create("Ann", "@example.com", d.Agent, false), outcome: outcome{field: "email"}},
		{name: "no domain", when: create("Ann", "ann@", d.Agent, false), outcome: outcome{field: "email"}},
		{name: "two addresses", when: create("Ann", "ann@example.com, bob@example.com", d.Agent, false), outcome: outcome{field: "email"}},
		{name: "an address with a display name", when: create("Ann", "Ann <ann@example.com>", d.Agent, false), outcome: outcome{field: "email"}},
		{name: "an address in angle brackets", when: create("Ann", "<ann@example.com>", d.Agent, false), outcome: outcome{field: "email"}},
		{name: "an email of 255 characters", when: create("Ann", emailOf(domain.MaxEmailLen+1), d.Agent, false), outcome: outcome{field: "email"}},
		{name: "no role", when: create("Ann", "ann@example.com", "", false), outcome: outcome{field: "role"}},
		{name: "an unknown role", when: create("Ann", "ann@example.com", "owner", false), outcome: outcome{field: "role"}},
		{name: "a role in capitals", when: create("Ann", "ann@example.com", "Agent", false), outcome: outcome{field: "role"}},
		{name: "an auditor cannot be support", when: create("Ann", "ann@example.com", d.Auditor, true), outcome: outcome{field: "support"}},
		{
			name:    "a user needs a token",
			when:    d.CreateUser{Meta: meta(admin, 0), UserID: "u1", Name: "Ann", Email: "ann@example.com", Role: d.Agent},
			outcome: outcome{anyErr: true},
		},
		{
			name:    "a user that exists",
			given:   []d.Event{created("Ann", "ann@example.com", d.Agent, false)},
			when:    create("Bob", "bob@example.com", d.Agent, false),
			outcome: outcome{err: d.ErrExists},
		},
		{name: "a customer command", when: d.RegisterCustomer{Meta: meta(anon, 0), CustomerID: "c1", TokenHash: "h"}, outcome: outcome{anyErr: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.DecideUser(d.FoldUser(tt.given), tt.when)
			tt.check(t, got, err)
		})
	}
}

func TestDecideUserToken(t *testing.T) {
	user := []d.Event{created("Ann", "ann@example.com", d.Agent, false)}
	issue := func(hash string) d.IssueUserToken { return d.IssueUserToken{Meta: meta(admin, 1), TokenHash: hash} }
	tests := []struct {
		name  string
		given []d.Event
		when  d.Command
		outcome
	}{
		{name: "a new token", given: user, when: issue("h2"), outcome: outcome{then: []d.Event{d.UserTokenIssued{Meta: meta(admin, 1), TokenHash: "h2"}}}},
		{name: "the same token", given: user, when: issue("h1"), outcome: outcome{}},
		{name: "no token", given: user, when: issue(""), outcome: outcome{anyErr: true}},
		{
			name:    "the token before the current one",
			given:   append(user[:1:1], d.UserTokenIssued{Meta: meta(admin, 1), TokenHash: "h2"}),
			when:    issue("h1"),
			outcome: outcome{then: []d.Event{d.UserTokenIssued{Meta: meta(admin, 1), TokenHash: "h1"}}},
		},
		{name: "a missing user", when: issue("h2"), outcome: outcome{err: d.ErrNotFound}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.DecideUser(d.FoldUser(tt.given), tt.when)
			tt.check(t, got, err)
		})
	}
}

func TestDecideCustomer(t *testing.T) {
	register := func(name, email string) d.RegisterCustomer {
		return d.RegisterCustomer{Meta: meta(anon, 0), CustomerID: "c1", Name: name, Email: email, TokenHash: "h1"}
	}
	registered := func(name, email string) d.CustomerRegistered {
		return d.CustomerRegistered{Meta: meta(anon, 0), CustomerID: "c1", Name: name, Email: email, TokenHash: "h1"}
	}
	tests := []struct {
		name  string
		given []d.Event
		when  d.Command
		outcome
	}{
		{name: "an anonymous visitor", when: register("", ""), outcome: outcome{then: []d.Event{registered("", "")}}},
		{name: "a visitor with a name and email", when: register("Carla", "carla@example.org"), outcome: outcome{then: []d.Event{registered("Carla", "carla@example.org")}}},
		{name: "a name only", when: register("Carla", ""), outcome: outcome{then: []d.Event{registered("Carla", "")}}},
		{name: "an email only", when: register("", "carla@example.org"), outcome: outcome{then: []d.Event{registered("", "carla@example.org")}}},
		{name: "name and email are trimmed", when: register(" Carla\n", " carla@example.org\t"), outcome: outcome{then: []d.Event{registered("Carla", "carla@example.org")}}},
		{name: "a whitespace email is no email", when: register("Carla", "   "), outcome: outcome{then: []d.Event{registered("Carla", "")}}},
		{name: "a name of 200 characters", when: register(strings.Repeat("é", 200), ""), outcome: outcome{then: []d.Event{registered(strings.Repeat("é", 200), "")}}},
		{name: "a name of 201 characters", when: register(strings.Repeat("é", 201), ""), outcome: outcome{field: "name"}},
		{name: "a name on two lines", when: register("Carla\nRossi", ""), outcome: outcome{field: "name"}},
		{name: "a name with a carriage return", when: register("Carla\rRossi", ""), outcome: outcome{field: "name"}},
		{name: "an invalid email", when: register("Carla", "carla"), outcome: outcome{field: "email"}},
		{name: "an email with a display name", when: register("Carla", "Carla <carla@example.org>"), outcome: outcome{field: "email"}},
		{name: "an email of 255 characters", when: register("Carla", emailOf(domain.MaxEmailLen+1)), outcome: outcome{field: "email"}},
		{
			name:    "a customer needs a token",
			when:    d.RegisterCustomer{Meta: meta(anon, 0), CustomerID: "c1"},
			outcome: outcome{anyErr: true},
		},
		{name: "a customer that exists", given: []d.Event{registered("", "")}, when: register("Carla", ""), outcome: outcome{err: d.ErrExists}},
		{name: "a user command", when: d.CreateUser{Meta: meta(admin, 0), UserID: "u1", Name: "Ann", Email: "ann@example.com", Role: d.Agent, TokenHash: "h"}, outcome: outcome{anyErr: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.DecideCustomer(d.FoldCustomer(tt.given), tt.when)
			tt.check(t, got, err)
		})
	}
}

func TestFoldUser(t *testing.T) {
	u := d.FoldUser([]d.Event{
		created("Ann", "ann@example.com", d.Agent, true),
		d.UserTokenIssued{Meta: meta(admin, 5), TokenHash: "h2"},
		d.CustomerRegistered{Meta: meta(anon, 6), CustomerID: "c1", TokenHash: "hc"}, // not a user event
	})
	want := d.User{ID: "u1", Name: "Ann", Email: "ann@example.com", Role: d.Agent, Support: true, TokenHash: "h2", CreatedAt: t0}
	if u != want {
		t.Errorf("user:\n got %+v\nwant %+v", u, want)
	}
	if d.FoldUser(nil).Exists() {
		t.Errorf("FoldUser(nil).Exists: got true, want false")
	}
}

func TestFoldCustomer(t *testing.T) {
	c := d.FoldCustomer([]d.Event{
		d.CustomerRegistered{Meta: meta(anon, 3), CustomerID: "c1", Name: "Carla", Email: "carla@example.org", TokenHash: "h1"},
		d.UserTokenIssued{Meta: meta(admin, 5), TokenHash: "h2"}, // not a customer event
	})
	want := d.Customer{ID: "c1", Name: "Carla", Email: "carla@example.org", TokenHash: "h1", CreatedAt: t0.Add(3 * time.Minute)}
	if c != want {
		t.Errorf("customer:\n got %+v\nwant %+v", c, want)
	}
	if d.FoldCustomer(nil).Exists() {
		t.Errorf("FoldCustomer(nil).Exists: got true, want false")
	}
}

func TestStreams(t *testing.T) {
	if got, want := d.UserStream("0192"), "user-0192"; got != want {
		t.Errorf("UserStream: got %q, want %q", got, want)
	}
	if got, want := d.CustomerStream("0192"), "customer-0192"; got != want {
		t.Errorf("CustomerStream: got %q, want %q", got, want)
	}
}

func TestEventTypes(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range d.Events() {
		name := e.EventType()
		if !(strings.HasPrefix(name, "user.") || strings.HasPrefix(name, "customer.")) || seen[name] {
			t.Errorf("%T: type %q is not a unique user.* or customer.* name", e, name)
		}
		seen[name] = true
	}
	if len(seen) != 3 {
		t.Errorf("Events: got %d types, want 3", len(seen))
	}
}
