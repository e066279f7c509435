package pgtest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestNewDatabaseIsFreshAndDropped(t *testing.T) {
	base := os.Getenv(URLEnv)
	var names []string
	t.Run("use", func(t *testing.T) {
		for range 2 {
			url := NewDatabase(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatalf("connect to the new database: %v", err)
			}
			var name string
			var tables int
			if err := conn.QueryRow(ctx, `SELECT current_database(),
				(SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables); err != nil {
				t.Fatal(err)
			}
			// Open connections must not stop the drop.
			t.Cleanup(func() { conn.Close(context.Background()) })
			if !strings.HasPrefix(name, Prefix) || tables != 0 {
				t.Errorf("database %q with %d tables, want a fresh one named %s…", name, tables, Prefix)
			}
			names = append(names, name)
		}
		if len(names) == 2 && names[0] == names[1] {
			t.Errorf("two calls gave the same database %s", names[0])
		}
	})
	if len(names) == 0 {
		return // skipped
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d of the databases %v remain after the test", left, names)
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct{ base, want string }{
		{"postgres://u:p@h:5432/postgres?sslmode=disable", "postgres://u:p@h:5432/db1?sslmode=disable"},
		{"postgresql://h/", "postgresql://h/db1"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=db1"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.base, "db1")
		if err != nil || got != tt.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tt.base, got, err, tt.want)
		}
	}
}

// TestMissingServer runs NewDatabase in a child process without a usable
// server: it skips, unless the server is required, when it fails.
func TestMissingServer(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		NewDatabase(t)
		return
	}
	tests := []struct {
		name, url, require string
		fail               bool
		output             string
	}{
		{"unset", "", "", false, "SKIP"},
		{"unset and required", "", "1", true, URLEnv + " is not set"},
		{"unreachable", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2", "", false, "SKIP"},
		{"unreachable and required", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2", "1", true, "is unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMissingServer$", "-test.v")
			cmd.Env = append(os.Environ(), "PGTEST_CHILD=1", URLEnv+"="+tt.url, RequireEnv+"="+tt.require)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tt.fail || !strings.Contains(string(out), tt.output) {
				t.Errorf("child: error %v, output:\n%s\nwant failure %t and %q", err, out, tt.fail, tt.output)
			}
		})
	}
}
