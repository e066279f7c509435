package eventstore

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/helpdesk/messenger/domain"
)

var errClosed = errors.New("closed")

func recsOf(ids ...string) []domain.Recorded {
	recs := make([]domain.Recorded, len(ids))
	for i, id := range ids {
		recs[i] = domain.Recorded{Stream: "s", EventID: id}
	}
	return recs
}

func noRecords([]string) ([]domain.Recorded, error) { return nil, errors.New("unexpected") }

func TestSubmitNumbersTheWritersAnswer(t *testing.T) {
	reqs := make(chan *Request[string])
	go func() {
		r := <-reqs
		r.Answer(Result[string]{Positions: []int64{7, 9}, Version: 3})
	}()
	r := NewRequest(context.Background(), "s", 2, []string{"a", "b"}, recsOf("a", "b"))
	got, err := Submit(r, reqs, nil, errClosed, noRecords)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Position != 7 || got[0].Version != 3 || got[1].Position != 9 || got[1].Version != 4 {
		t.Errorf("got %+v", got)
	}
}

func TestSubmitDecodesStoredEvents(t *testing.T) {
	reqs := make(chan *Request[string])
	go func() {
		r := <-reqs
		r.Answer(Result[string]{Stored: []string{"x"}})
	}()
	r := NewRequest(context.Background(), "s", 0, []string{"a"}, recsOf("a"))
	got, err := Submit(r, reqs, nil, errClosed, func(rows []string) ([]domain.Recorded, error) {
		return []domain.Recorded{{EventID: rows[0], Position: 1}}, nil
	})
	if err != nil || len(got) != 1 || got[0].EventID != "x" {
		t.Errorf("got %+v, %v; want the stored event", got, err)
	}
	go func() {
		r := <-reqs
		r.Answer(Result[string]{Stored: []string{"x"}})
	}()
	r = NewRequest(context.Background(), "s", 0, []string{"a"}, recsOf("a"))
	if _, err := Submit(r, reqs, nil, errClosed, noRecords); err == nil {
		t.Error("an undecodable stored event: no error")
	}
}

func TestSubmitAfterCloseSendsNothing(t *testing.T) {
	reqs := make(chan *Request[string], 1) // a writer that would take it
	done := make(chan struct{})
	close(done)
	r := NewRequest(context.Background(), "s", 0, []string{"a"}, recsOf("a"))
	if _, err := Submit(r, reqs, done, errClosed, noRecords); !errors.Is(err, errClosed) {
		t.Errorf("got %v, want %v", err, errClosed)
	}
	if len(reqs) != 0 {
		t.Error("a closed store was handed the request")
	}
}

func TestSubmitGivesUpWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	reqs := make(chan *Request[string])
	taken := make(chan struct{})
	go func() {
		<-reqs // taken, never answered
		close(taken)
	}()
	go func() {
		<-taken
		cancel()
	}()
	r := NewRequest(ctx, "s", 0, []string{"a"}, recsOf("a"))
	if _, err := Submit(r, reqs, nil, errClosed, noRecords); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestLiveAnswersTheGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := NewRequest(ctx, "gone", 0, []string{"a"}, recsOf("a"))
	here := NewRequest(context.Background(), "here", 0, []string{"b"}, recsOf("b"))
	live := Live([]*Request[string]{gone, here})
	if len(live) != 1 || live[0] != here {
		t.Fatalf("live: got %d requests, want the one whose caller waits", len(live))
	}
	select {
	case res := <-gone.Answered():
		if !errors.Is(res.Err, context.Canceled) {
			t.Errorf("the gone request: got %v", res.Err)
		}
	default:
		t.Error("the gone request has no answer")
	}
}

func TestAppendedNumbersInRequestOrder(t *testing.T) {
	reqs := []*Request[string]{
		NewRequest(context.Background(), "s", 0, []string{"a", "b"}, recsOf("a", "b")),
		NewRequest(context.Background(), "s", 0, []string{"c"}, recsOf("c")), // failed
		NewRequest(context.Background(), "s", 0, []string{"d"}, recsOf("d")), // in the log already
		NewRequest(context.Background(), "s", 0, []string{"e"}, recsOf("e")), // positions amiss
		NewRequest(context.Background(), "s", 0, []string{"f"}, recsOf("f")),
	}
	results := []Result[string]{
		{Positions: []int64{10, 11}, Version: 1},
		{Err: errors.New("conflict")},
		{Stored: []string{"d"}},
		{Positions: []int64{12, 13}, Version: 4},
		{Positions: []int64{14}, Version: 5},
	}
	var got []string
	for _, r := range Appended(reqs, results) {
		got = append(got, r.EventID+"@"+string(rune('0'+r.Position-10))+"v"+string(rune('0'+r.Version)))
	}
	if want := []string{"a@0v1", "b@1v2", "f@4v5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if reqs[0].Recs[0].Position != 0 {
		t.Error("Appended numbered the request's own records")
	}
}
