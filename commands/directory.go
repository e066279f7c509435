package commands

import (
	"context"
	"strings"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/helpdesk"
)

// System is the principal of what the server does by itself, such as the
// bootstrap of the first admin.
var System = directory.Principal{Kind: domain.ActorSystem, ID: "messengerd"}

// BootstrapAdminID is the id of the admin created at the first start.
const BootstrapAdminID = "00000000-0000-7000-8000-000000000001"

// EnsureAdmin makes sure the bootstrap admin exists and holds token.
func (s *Service) EnsureAdmin(ctx context.Context, token string) (Result, error) {
	hash := HashToken(token)
	return execute(ctx, s, directory.UserStream(BootstrapAdminID), directory.EvolveUser,
		func(u directory.User) ([]directory.Event, error) {
			if !u.Exists() {
				return directory.DecideUser(u, directory.CreateUser{Meta: s.meta(System), UserID: BootstrapAdminID,
					Name: "Admin", Email: "admin@localhost", Role: directory.Admin, Support: true, TokenHash: hash})
			}
			return directory.DecideUser(u, directory.IssueUserToken{Meta: s.meta(System), TokenHash: hash})
		}, nil, nil)
}

// NewUser is a user as CreateUser made it, with its token (shown once).
type NewUser struct {
	ID, Token string
	Result    Result
}

// CreateUser adds a user; only admins may.
func (s *Service) CreateUser(ctx context.Context, p directory.Principal, name, email string, role directory.Role, support bool) (NewUser, error) {
	if !p.IsAdmin() {
		return NewUser{}, ErrForbidden
	}
	if e := strings.TrimSpace(email); e != "" {
		taken, err := s.access.EmailTaken(ctx, e)
		if err != nil {
			return NewUser{}, err
		}
		if taken {
			return NewUser{}, ErrEmailTaken
		}
	}
	id, token := s.cfg.NewID(), NewToken()
	cmd := directory.CreateUser{Meta: s.meta(p), UserID: id, Name: name, Email: email, Role: role, Support: support, TokenHash: HashToken(token)}
	res, err := execute(ctx, s, directory.UserStream(id), directory.EvolveUser,
		func(u directory.User) ([]directory.Event, error) { return directory.DecideUser(u, cmd) }, nil, nil)
	return NewUser{ID: id, Token: token, Result: res}, err
}

// ErrEmailTaken: another user already has this email.
var ErrEmailTaken = &conflictError{"a user with this email already exists"}

type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *conflictError) Unwrap() error { return ErrConflict }

// RegisterCustomer adds a widget visitor and returns its id and token.
func (s *Service) RegisterCustomer(ctx context.Context, name, email string) (NewUser, error) {
	id, token := s.cfg.NewID(), NewToken()
	cmd := directory.RegisterCustomer{Meta: domain.Meta{At: s.meta(System).At, Actor: domain.Actor{Kind: domain.ActorCustomer, ID: id}},
		CustomerID: id, Name: name, Email: email, TokenHash: HashToken(token)}
	res, err := execute(ctx, s, directory.CustomerStream(id), directory.EvolveCustomer,
		func(c directory.Customer) ([]directory.Event, error) { return directory.DecideCustomer(c, cmd) }, nil, nil)
	return NewUser{ID: id, Token: token, Result: res}, err
}

func decideHelpdesk(cmd helpdesk.Command) func(helpdesk.State) ([]helpdesk.Event, error) {
	return func(s helpdesk.State) ([]helpdesk.Event, error) { return helpdesk.Decide(s, cmd) }
}

// SetHelpdeskStatus switches the helpdesk online or offline; support staff only.
func (s *Service) SetHelpdeskStatus(ctx context.Context, p directory.Principal, online bool) (helpdesk.State, Result, error) {
	if !p.IsSupport() {
		return helpdesk.State{}, Result{}, ErrForbidden
	}
	var st helpdesk.State
	res, err := execute(ctx, s, helpdesk.Stream, helpdesk.Evolve, decideHelpdesk(helpdesk.SetStatus{Meta: s.meta(p), Online: online}),
		nil, func(after helpdesk.State) { st = after })
	return st, res, err
}

// ConfigureHelpdesk sets the widget's online and offline messages; admins only.
func (s *Service) ConfigureHelpdesk(ctx context.Context, p directory.Principal, online, offline string) (helpdesk.State, Result, error) {
	if !p.IsAdmin() {
		return helpdesk.State{}, Result{}, ErrForbidden
	}
	cmd := helpdesk.ConfigureMessages{Meta: s.meta(p), OnlineMessage: online, OfflineMessage: offline}
	var st helpdesk.State
	res, err := execute(ctx, s, helpdesk.Stream, helpdesk.Evolve, decideHelpdesk(cmd), nil, func(after helpdesk.State) { st = after })
	return st, res, err
}
