package directory_test

import (
	"testing"

	"github.com/helpdesk/messenger/domain"
	d "github.com/helpdesk/messenger/domain/directory"
)

// TestPrincipal checks the roles of API.md's "Principals" table.
func TestPrincipal(t *testing.T) {
	user := func(role d.Role, support bool) d.Principal {
		return d.Principal{Kind: domain.ActorUser, ID: "u1", Name: "Ann", Role: role, Support: support}
	}
	type can struct{ staff, customer, admin, auditor, support, seesCustomers, write bool }
	tests := []struct {
		name string
		p    d.Principal
		want can
	}{
		{"admin", user(d.Admin, false), can{staff: true, admin: true, support: true, seesCustomers: true, write: true}},
		{"support agent", user(d.Agent, true), can{staff: true, support: true, seesCustomers: true, write: true}},
		{"agent", user(d.Agent, false), can{staff: true, write: true}},
		{"auditor", user(d.Auditor, false), can{staff: true, auditor: true, seesCustomers: true}},
		{"auditor wrongly flagged support", user(d.Auditor, true), can{staff: true, auditor: true, seesCustomers: true}},
		{"customer", d.Principal{Kind: domain.ActorCustomer, ID: "c1"}, can{customer: true, write: true}},
		{"customer carrying a role", d.Principal{Kind: domain.ActorCustomer, ID: "c1", Role: d.Admin, Support: true}, can{customer: true, write: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := can{tt.p.IsStaff(), tt.p.IsCustomer(), tt.p.IsAdmin(), tt.p.IsAuditor(), tt.p.IsSupport(), tt.p.SeesCustomers(), tt.p.CanWrite()}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if a := tt.p.Actor(); a.Kind != tt.p.Kind || a.ID != tt.p.ID {
				t.Errorf("Actor: got %+v, want %s:%s", a, tt.p.Kind, tt.p.ID)
			}
		})
	}
}
