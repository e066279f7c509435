// Package natstest gives tests the address of a real NATS server with
// JetStream: MESSENGER_TEST_NATS_URL. Unset, such tests skip, unless
// MESSENGER_TEST_REQUIRE_SERVICES=1 (as in CI), where they fail; so does an
// unreachable server when it is required.
package natstest

import (
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// URL returns the NATS server's URL, or skips or fails t.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("MESSENGER_TEST_NATS_URL")
	required := os.Getenv("MESSENGER_TEST_REQUIRE_SERVICES") == "1"
	if url == "" {
		if required {
			t.Fatal("MESSENGER_TEST_NATS_URL is not set, and MESSENGER_TEST_REQUIRE_SERVICES=1 requires NATS")
		}
		t.Skip("MESSENGER_TEST_NATS_URL is not set: skipping a test that needs NATS JetStream")
	}
	conn, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		if required {
			t.Fatalf("NATS at %s is unreachable: %v", url, err)
		}
		t.Skipf("NATS at %s is unreachable: %v", url, err)
	}
	conn.Close()
	return url
}
