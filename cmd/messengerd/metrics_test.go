package main

import (
	"regexp"
	"strconv"
	"testing"
)

// A write that appends counts once in each of its two stages on /metrics,
// so that an operator sees whether the log or the read models hold posts
// back; a write that changes nothing counts in neither.
func TestMetricsSplitWritesIntoStages(t *testing.T) {
	s := startServer(t, t.TempDir(), nil)
	counts := func() (appends, applies int) {
		t.Helper()
		raw := string(s.do("GET", "/metrics", "", nil).want(t, 200).Raw)
		count := func(name string) int {
			m := regexp.MustCompile(`(?m)^` + name + `_count (\d+)$`).FindStringSubmatch(raw)
			if m == nil {
				t.Fatalf("/metrics has no %s", name)
			}
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return count("messenger_write_append_duration_seconds"), count("messenger_write_apply_wait_seconds")
	}
	a0, w0 := counts()
	p := seedPeople(t, s) // four users and two customers' sessions: six writes
	conv := s.do("POST", "/v1/conversations", p.customer, map[string]any{"body": "hello"}).want(t, 201).str("id")
	s.do("POST", "/v1/conversations/"+conv+"/close", p.support, nil).want(t, 200)
	s.do("POST", "/v1/conversations/"+conv+"/close", p.support, nil).want(t, 200) // closed already: nothing appended
	a1, w1 := counts()
	if a1-a0 != 8 || w1-w0 != 8 {
		t.Fatalf("stages counted %d appends and %d waits for 8 writes", a1-a0, w1-w0)
	}
}
