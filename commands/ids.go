package commands

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"

	"github.com/google/uuid"
)

// NewID returns a new UUIDv7: unique, and ordered by creation time.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// stableID returns the same UUID for the same parts, so that a retried
// command appends events with the same ids (an idempotent append).
func stableID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return uuid.NewHash(sha256.New(), uuid.NameSpaceOID, h.Sum(nil), 5).String()
}

// NewToken returns a fresh bearer token: 32 random bytes, hex-encoded.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return "msg_" + hex.EncodeToString(b)
}

// HashToken returns the hash under which a token is stored; tokens
// themselves are never stored.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
