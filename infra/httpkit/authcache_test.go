package httpkit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
)

// countingAuth knows one token hash and counts the lookups; during, if
// set, runs inside each lookup.
type countingAuth struct {
	calls  int
	during func()
}

func (a *countingAuth) Principal(_ context.Context, hash string) (directory.Principal, string, bool, error) {
	a.calls++
	if a.during != nil {
		a.during()
	}
	if !strings.HasPrefix(hash, "known") {
		return directory.Principal{}, "", false, nil
	}
	return directory.Principal{Kind: domain.ActorUser, ID: "u1", Name: "Una"}, hash, true, nil
}

func TestAuthCache(t *testing.T) {
	ctx := context.Background()
	inner := &countingAuth{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewAuthCache(inner, 2*time.Second, 10)
	c.now = func() time.Time { return now }

	lookup := func(hash string, wantOK bool, wantCalls int) {
		t.Helper()
		p, stored, ok, err := c.Principal(ctx, hash)
		if err != nil || ok != wantOK || (ok && (p.ID != "u1" || stored != hash)) {
			t.Fatalf("Principal(%q) = %v %q %v %v", hash, p, stored, ok, err)
		}
		if inner.calls != wantCalls {
			t.Fatalf("after Principal(%q): %d lookups, want %d", hash, inner.calls, wantCalls)
		}
	}
	lookup("known", true, 1)
	lookup("known", true, 1) // kept
	lookup("nobody", false, 2)
	lookup("nobody", false, 3) // unknown tokens are asked every time
	now = now.Add(2 * time.Second)
	lookup("known", true, 4) // expired
	c.Forget()
	lookup("known", true, 5) // forgotten

	// A lookup that a Forget overtakes is not kept: it may be older.
	inner.during = c.Forget
	c.Forget()
	lookup("known", true, 6)
	inner.during = nil
	lookup("known", true, 7)
	lookup("known", true, 7)

	// Never more than max entries.
	for i := range 25 {
		inner.calls = 0
		lookup(fmt.Sprintf("known%d", i), true, 1)
		if len(c.entries) > 10 {
			t.Fatalf("%d entries kept, at most 10", len(c.entries))
		}
	}
}
