// Package pgtest gives tests a database of their own on a real PostgreSQL
// server: MESSENGER_TEST_POSTGRES_URL names the server, for example
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. Unset, such
// tests skip, unless MESSENGER_TEST_REQUIRE_SERVICES=1 (as in CI), where they
// fail; so does an unreachable server when it is required.
//
// Every call of NewDatabase creates a fresh database, so tests and packages
// that use it may run in parallel without seeing each other's tables.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by NewDatabase.
const (
	// URLEnv names the server tests connect to. The user must be allowed to
	// create databases.
	URLEnv = "MESSENGER_TEST_POSTGRES_URL"
	// RequireEnv, set to 1, makes a missing or unreachable server fail the
	// test instead of skipping it.
	RequireEnv = "MESSENGER_TEST_REQUIRE_SERVICES"
)

// Prefix starts the name of every database NewDatabase creates.
const Prefix = "messenger_test_"

// NewDatabase creates an empty database named Prefix and 16 random hex
// digits on the server of MESSENGER_TEST_POSTGRES_URL and returns the URL of
// that server with the new database's name in place of the original one.
// The database is dropped, even while connections to it remain open
// (DROP DATABASE … WITH (FORCE)), when t and its subtests end.
//
// It skips t when the variable is unset or the server is unreachable, and
// fails it instead when MESSENGER_TEST_REQUIRE_SERVICES=1.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv(URLEnv)
	required := os.Getenv(RequireEnv) == "1"
	if base == "" {
		if required {
			t.Fatalf("%s is not set, and %s=1 requires PostgreSQL", URLEnv, RequireEnv)
		}
		t.Skipf("%s is not set: skipping a test that needs PostgreSQL", URLEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		if required {
			t.Fatalf("PostgreSQL at %s is unreachable: %v", redact(base), err)
		}
		t.Skipf("PostgreSQL at %s is unreachable: %v", redact(base), err)
	}
	defer admin.Close(ctx)

	name := Prefix + randomHex(8)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(base, name)
	if err != nil {
		t.Fatalf("%s: %v", URLEnv, err)
	}
	return u
}

// withDatabase returns the connection string base with its database set
// to name. base is a URL (postgres://…) or a keyword/value string.
func withDatabase(base, name string) (string, error) {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// A later keyword overrides an earlier one.
	return base + " dbname=" + name, nil
}

// redact hides the password of a URL.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
