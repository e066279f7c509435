package main

import (
	"bytes"
	"os"
	"testing"
)

// The served contract is an embedded copy of the repository's openapi.yaml
// (go:embed cannot reach outside the package); `go generate ./cmd/messengerd`
// refreshes it. This test keeps the two from drifting.
func TestOpenAPICopyIsCurrent(t *testing.T) {
	root, err := os.ReadFile("../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, openapiYAML) {
		t.Fatal("cmd/messengerd/openapi.yaml differs from openapi.yaml: run go generate ./cmd/messengerd")
	}
}
