package kurrentdb

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url         string
		address     string
		seeds       int
		discover    bool
		insecure    bool
		user        string
		maxAttempts int
	}{
		{"esdb://127.0.0.1:2113?tls=false", "127.0.0.1:2113", 0, false, true, "", 10},
		{"kurrentdb://127.0.0.1:2113?tls=false", "127.0.0.1:2113", 0, false, true, "", 10},
		{"KurrentDB://localhost?tls=false", "localhost:2113", 0, false, true, "", 10},
		{"kurrentdb://admin:changeit@db.example:2113", "db.example:2113", 0, false, false, "admin", 10},
		{"kurrentdb+discover://cluster.example:2113", "cluster.example:2113", 0, true, false, "", 10},
		{"esdb+discover://cluster.example:2113", "cluster.example:2113", 0, true, false, "", 10},
		{"kurrentdb://a:2113,b:2113,c:2113?maxDiscoverAttempts=3", "", 3, false, false, "", 3},
	}
	for _, tt := range tests {
		conf, err := ParseURL(tt.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.url, err)
			continue
		}
		if conf.Address != tt.address || len(conf.GossipSeeds) != tt.seeds || conf.DnsDiscover != tt.discover ||
			conf.DisableTLS != tt.insecure || conf.Username != tt.user || conf.MaxDiscoverAttempts != tt.maxAttempts {
			t.Errorf("ParseURL(%q) = address %q, %d seeds, discover %t, insecure %t, user %q, %d attempts; want %q, %d, %t, %t, %q, %d",
				tt.url, conf.Address, len(conf.GossipSeeds), conf.DnsDiscover, conf.DisableTLS, conf.Username, conf.MaxDiscoverAttempts,
				tt.address, tt.seeds, tt.discover, tt.insecure, tt.user, tt.maxAttempts)
		}
		if conf.Logger == nil {
			t.Errorf("ParseURL(%q): the client logs to the console", tt.url)
		}
	}
	for _, bad := range []string{
		"",
		"127.0.0.1:2113",
		"postgres://127.0.0.1:5432/messenger",
		"kurrent://127.0.0.1:2113",
		"kurrentdb://",
		"kurrentdb://127.0.0.1:2113/path",
		"kurrentdb://admin:s3cret@127.0.0.1:2113/path",
		"kurrentdb://admin:s3cret@127.0.0.1:badport",
		"kurrentdb://127.0.0.1:2113?tls=maybe",
	} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q): no error", bad)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseURL(%q): the error shows the password: %v", bad, err)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ url, want string }{
		{"kurrentdb://admin:changeit@db:2113?tls=false", "kurrentdb://admin:xxxxx@db:2113?tls=false"},
		{"esdb://admin@db:2113", "esdb://admin@db:2113"},
		{"esdb://db:2113?tls=false", "esdb://db:2113?tls=false"},
		{"esdb://u:p@a:1,b:2", "esdb://u:xxxxx@a:1,b:2"},
	}
	for _, tt := range tests {
		if got := Redact(tt.url); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.url, got, tt.want)
		}
	}
}

// TestOpenUnreachable: with no server, Open fails, within the discovery
// settings of the connection string, and names the address.
func TestOpenUnreachable(t *testing.T) {
	f := startFake(t)
	url := f.url()
	f.stop() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	s, err := Open(ctx, url)
	if err == nil {
		s.Close()
		t.Fatal("Open with no server: no error")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
	if !strings.Contains(err.Error(), f.addr) {
		t.Errorf("Open: %v does not name the address", err)
	}
}
