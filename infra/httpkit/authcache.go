package httpkit

import (
	"context"
	"sync"
	"time"

	"github.com/helpdesk/messenger/domain/directory"
)

// AuthCache remembers the principals of recent tokens for a short while,
// so that a busy client is not looked up on every request. Only tokens
// found are kept (unknown ones are asked every time, and cannot fill it);
// Forget drops them all when a token is reissued, and none is kept longer
// than the TTL, so a replaced token stops working within it even if the
// news of its replacement were lost.
type AuthCache struct {
	inner Authenticator
	ttl   time.Duration
	max   int
	now   func() time.Time

	mu      sync.Mutex
	entries map[string]authEntry
	gen     uint64 // counts Forget calls
}

type authEntry struct {
	p       directory.Principal
	stored  string
	expires time.Time
}

// NewAuthCache returns a cache in front of inner keeping each principal for
// ttl, and at most max of them.
func NewAuthCache(inner Authenticator, ttl time.Duration, max int) *AuthCache {
	return &AuthCache{inner: inner, ttl: ttl, max: max, now: time.Now, entries: map[string]authEntry{}}
}

// Principal returns the principal holding the token with hash.
func (a *AuthCache) Principal(ctx context.Context, hash string) (directory.Principal, string, bool, error) {
	now := a.now()
	a.mu.Lock()
	e, ok := a.entries[hash]
	gen := a.gen
	a.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.p, e.stored, true, nil
	}
	p, stored, ok, err := a.inner.Principal(ctx, hash)
	if err != nil || !ok {
		return p, stored, ok, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen != gen {
		return p, stored, true, nil // read before a Forget: do not keep it
	}
	if len(a.entries) >= a.max {
		clear(a.entries) // rare: cheaper than keeping an order
	}
	a.entries[hash] = authEntry{p: p, stored: stored, expires: now.Add(a.ttl)}
	return p, stored, true, nil
}

// Forget drops every principal kept.
func (a *AuthCache) Forget() {
	a.mu.Lock()
	clear(a.entries)
	a.gen++
	a.mu.Unlock()
}
