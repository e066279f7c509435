package eventstore

import (
	"testing"

	"github.com/helpdesk/messenger/domain"
)

// run returns records at positions from, from+1, … to.
func run(from, to uint64) []domain.Recorded {
	var recs []domain.Recorded
	for p := from; p <= to; p++ {
		recs = append(recs, domain.Recorded{Position: p, EventID: "e"})
	}
	return recs
}

// positions returns the positions of recs.
func positions(recs []domain.Recorded) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}

func TestTail(t *testing.T) {
	tail := NewTail(8)
	check := func(after uint64, limit int, wantOK bool, from, to uint64) {
		t.Helper()
		recs, ok := tail.Read(after, limit)
		if ok != wantOK {
			t.Fatalf("Read(%d, %d): ok = %v, want %v", after, limit, ok, wantOK)
		}
		if !ok {
			return
		}
		want := positions(run(from, to))
		if got := positions(recs); len(got) != len(want) || (len(got) > 0 && (got[0] != want[0] || got[len(got)-1] != want[len(want)-1])) {
			t.Fatalf("Read(%d, %d) = %v, want %v", after, limit, got, want)
		}
	}
	check(0, 10, false, 0, 0) // empty
	newest := func(want uint64) {
		t.Helper()
		if got := tail.Newest(); got != want {
			t.Fatalf("Newest = %d, want %d", got, want)
		}
	}
	newest(0)

	tail.Add(run(5, 7))
	newest(7)
	check(3, 10, false, 0, 0) // 4 is not held: the database has it
	check(4, 10, true, 5, 7)
	check(5, 1, true, 6, 6) // limit
	check(7, 10, false, 0, 0)
	check(6, 0, false, 0, 0)

	tail.Add(run(8, 10)) // follows
	check(4, 100, true, 5, 10)

	tail.Add(run(11, 14)) // 5 and 6 are overwritten: 7 … 14 are held
	check(4, 100, false, 0, 0)
	check(5, 100, false, 0, 0)
	check(6, 100, true, 7, 14)
	check(13, 100, true, 14, 14)

	tail.Add(run(20, 21)) // another process appended 15 … 19: a new run
	newest(21)
	check(14, 100, false, 0, 0)
	check(10, 100, false, 0, 0)
	check(19, 100, true, 20, 21)

	tail.Add(run(22, 40)) // more than the tail holds: the newest 8
	check(31, 100, false, 0, 0)
	check(32, 100, true, 33, 40)

	tail.Add([]domain.Recorded{{Position: 41}, {Position: 43}}) // not a run
	check(40, 100, false, 0, 0)
	check(32, 100, false, 0, 0)
	newest(0)
	tail.Add(run(44, 45))
	check(43, 100, true, 44, 45)

	tail.Reset()
	check(43, 100, false, 0, 0)
	newest(0)
}

func TestTailBytes(t *testing.T) {
	tail := NewTail(100)
	tail.maxBytes = 35
	withData := func(from, to uint64, size int) []domain.Recorded {
		recs := run(from, to)
		for i := range recs {
			recs[i].Data = make([]byte, size)
		}
		return recs
	}
	tail.Add(withData(1, 5, 10)) // 50 bytes: the newest 3 stay
	if _, ok := tail.Read(1, 10); ok {
		t.Error("the tail holds 2, beyond its bytes")
	}
	if recs, ok := tail.Read(2, 10); !ok || len(recs) != 3 {
		t.Errorf("Read(2) = %d events, %v; want 3", len(recs), ok)
	}
	tail.Add(withData(6, 6, 100)) // one event above the bound is kept alone
	if recs, ok := tail.Read(5, 10); !ok || len(recs) != 1 {
		t.Errorf("Read(5) = %d events, %v; want the one", len(recs), ok)
	}
	if _, ok := tail.Read(4, 10); ok {
		t.Error("the tail holds 5 beside an event above its bytes")
	}
	tail.Add(withData(7, 8, 10))
	if recs, ok := tail.Read(6, 10); !ok || len(recs) != 2 || tail.bytes != 20 {
		t.Errorf("Read(6) = %d events, %v, %d bytes held; want 2 and 20", len(recs), ok, tail.bytes)
	}
}
