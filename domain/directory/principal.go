package directory

import "github.com/helpdesk/messenger/domain"

// Principal is an authenticated caller: a user (staff) or a customer.
type Principal struct {
	Kind    domain.ActorKind // ActorUser or ActorCustomer
	ID      string
	Name    string
	Role    Role // users only
	Support bool // users only
}

// Actor returns the principal as the actor of a command.
func (p Principal) Actor() domain.Actor { return domain.Actor{Kind: p.Kind, ID: p.ID} }

// IsStaff reports whether p is a user (admin, agent or auditor).
func (p Principal) IsStaff() bool { return p.Kind == domain.ActorUser }

// IsCustomer reports whether p is a widget visitor.
func (p Principal) IsCustomer() bool { return p.Kind == domain.ActorCustomer }

// IsAdmin reports whether p is an admin.
func (p Principal) IsAdmin() bool { return p.IsStaff() && p.Role == Admin }

// IsAuditor reports whether p is an auditor.
func (p Principal) IsAuditor() bool { return p.IsStaff() && p.Role == Auditor }

// IsSupport reports whether p answers customers: a support agent or an admin.
func (p Principal) IsSupport() bool {
	return p.IsStaff() && (p.Role == Admin || p.Role == Agent && p.Support)
}

// SeesCustomers reports whether p may see every customer conversation: the
// support staff and auditors.
func (p Principal) SeesCustomers() bool { return p.IsSupport() || p.IsAuditor() }

// CanWrite reports whether p may change anything; auditors only read.
func (p Principal) CanWrite() bool { return !p.IsAuditor() }
