// Package directory decides who exists: users (staff, with a role and a
// support flag) in streams "user-<id>", and customers (widget visitors) in
// streams "customer-<id>". Tokens are kept only as hashes.
package directory

import (
	"errors"
	"net/mail"
	"strings"
	"time"

	"github.com/helpdesk/messenger/domain"
)

// Role is what a user may do.
type Role string

// The roles.
const (
	Admin   Role = "admin"
	Agent   Role = "agent"
	Auditor Role = "auditor"
)

// UserStream returns the stream of user id.
func UserStream(id string) string { return "user-" + id }

// CustomerStream returns the stream of customer id.
func CustomerStream(id string) string { return "customer-" + id }

// Errors returned by Decide.
var (
	// ErrExists: the user or customer was already created.
	ErrExists = errors.New("already exists")
	// ErrNotFound: the user or customer does not exist.
	ErrNotFound = errors.New("does not exist")
)

// User is a user's state; the zero User does not exist.
type User struct {
	ID        string
	Name      string
	Email     string
	Role      Role
	Support   bool
	TokenHash string
	CreatedAt time.Time
}

// Exists reports whether the user has been created.
func (u User) Exists() bool { return u.ID != "" }

// Customer is a customer's state; the zero Customer does not exist.
type Customer struct {
	ID        string
	Name      string
	Email     string
	TokenHash string
	CreatedAt time.Time
}

// Exists reports whether the customer has been registered.
func (c Customer) Exists() bool { return c.ID != "" }

// Command is one of the commands below.
type Command interface{ isCommand() }

// CreateUser adds a user with a token (given as its hash).
type CreateUser struct {
	domain.Meta
	UserID    string
	Name      string
	Email     string
	Role      Role
	Support   bool
	TokenHash string
}

// IssueUserToken replaces a user's token.
type IssueUserToken struct {
	domain.Meta
	TokenHash string
}

// RegisterCustomer adds a widget visitor with a token (given as its hash).
type RegisterCustomer struct {
	domain.Meta
	CustomerID string
	Name       string
	Email      string
	TokenHash  string
}

func (CreateUser) isCommand()       {}
func (IssueUserToken) isCommand()   {}
func (RegisterCustomer) isCommand() {}

// Event is one of the events below.
type Event interface {
	domain.Event
	isEvent()
}

// UserCreated adds a user.
type UserCreated struct {
	domain.Meta
	UserID    string
	Name      string
	Email     string
	Role      Role
	Support   bool
	TokenHash string
}

// UserTokenIssued replaces a user's token.
type UserTokenIssued struct {
	domain.Meta
	TokenHash string
}

// CustomerRegistered adds a customer.
type CustomerRegistered struct {
	domain.Meta
	CustomerID string
	Name       string
	Email      string
	TokenHash  string
}

func (UserCreated) EventType() string        { return "user.created" }
func (UserTokenIssued) EventType() string    { return "user.token_issued" }
func (CustomerRegistered) EventType() string { return "customer.registered" }
func (UserCreated) isEvent()                 {}
func (UserTokenIssued) isEvent()             {}
func (CustomerRegistered) isEvent()          {}

// Events lists one zero value of every event type.
func Events() []Event { return []Event{UserCreated{}, UserTokenIssued{}, CustomerRegistered{}} }

// DecideUser returns the events cmd causes to user u.
func DecideUser(u User, cmd Command) ([]Event, error) {
	switch c := cmd.(type) {
	case CreateUser:
		if u.Exists() {
			return nil, ErrExists
		}
		name := strings.TrimSpace(c.Name)
		if name == "" {
			return nil, domain.Invalid("name", "is required")
		}
		if err := domain.CheckLen("name", name, domain.MaxNameLen); err != nil {
			return nil, err
		}
		if strings.ContainsAny(name, "\r\n") {
			return nil, domain.Invalid("name", "must be one line")
		}
		email, err := checkEmail(c.Email, true)
		if err != nil {
			return nil, err
		}
		switch c.Role {
		case Admin, Agent, Auditor:
		default:
			return nil, domain.Invalid("role", `must be "agent", "auditor" or "admin"`)
		}
		if c.Role == Auditor && c.Support {
			return nil, domain.Invalid("support", "an auditor cannot be a support agent")
		}
		if c.TokenHash == "" {
			return nil, errors.New("directory: a user needs a token")
		}
		return []Event{UserCreated{Meta: c.Meta, UserID: c.UserID, Name: name, Email: email, Role: c.Role,
			Support: c.Support, TokenHash: c.TokenHash}}, nil
	case IssueUserToken:
		if !u.Exists() {
			return nil, ErrNotFound
		}
		if c.TokenHash == "" {
			return nil, errors.New("directory: a user needs a token")
		}
		if c.TokenHash == u.TokenHash {
			return nil, nil
		}
		return []Event{UserTokenIssued{Meta: c.Meta, TokenHash: c.TokenHash}}, nil
	}
	return nil, errors.New("directory: not a user command")
}

// DecideCustomer returns the events cmd causes to customer c.
func DecideCustomer(cu Customer, cmd Command) ([]Event, error) {
	c, ok := cmd.(RegisterCustomer)
	if !ok {
		return nil, errors.New("directory: not a customer command")
	}
	if cu.Exists() {
		return nil, ErrExists
	}
	name := strings.TrimSpace(c.Name)
	if err := domain.CheckLen("name", name, domain.MaxNameLen); err != nil {
		return nil, err
	}
	if strings.ContainsAny(name, "\r\n") {
		return nil, domain.Invalid("name", "must be one line")
	}
	email, err := checkEmail(c.Email, false)
	if err != nil {
		return nil, err
	}
	if c.TokenHash == "" {
		return nil, errors.New("directory: a customer needs a token")
	}
	return []Event{CustomerRegistered{Meta: c.Meta, CustomerID: c.CustomerID, Name: name, Email: email, TokenHash: c.TokenHash}}, nil
}

func checkEmail(s string, required bool) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		if required {
			return "", domain.Invalid("email", "is required")
		}
		return "", nil
	}
	if err := domain.CheckLen("email", s, domain.MaxEmailLen); err != nil {
		return "", err
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return "", domain.Invalid("email", "must be an email address")
	}
	return s, nil
}

// EvolveUser returns the user after e.
func EvolveUser(u User, e Event) User {
	switch e := e.(type) {
	case UserCreated:
		return User{ID: e.UserID, Name: e.Name, Email: e.Email, Role: e.Role, Support: e.Support, TokenHash: e.TokenHash, CreatedAt: e.At}
	case UserTokenIssued:
		u.TokenHash = e.TokenHash
	}
	return u
}

// EvolveCustomer returns the customer after e.
func EvolveCustomer(c Customer, e Event) Customer {
	if e, ok := e.(CustomerRegistered); ok {
		return Customer{ID: e.CustomerID, Name: e.Name, Email: e.Email, TokenHash: e.TokenHash, CreatedAt: e.At}
	}
	return c
}

// FoldUser applies events in order to the zero User.
func FoldUser(events []Event) User {
	var u User
	for _, e := range events {
		u = EvolveUser(u, e)
	}
	return u
}

// FoldCustomer applies events in order to the zero Customer.
func FoldCustomer(events []Event) Customer {
	var c Customer
	for _, e := range events {
		c = EvolveCustomer(c, e)
	}
	return c
}
