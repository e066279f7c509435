package readapi

import (
	"sync"
	"testing"

	"github.com/helpdesk/messenger/projections"
)

// BenchmarkHubDeliver5000 hands a log event's two changes to 5,000 waiting
// subscribers and waits until each has taken them, beside the hub this one
// replaced (a buffered channel a subscriber, a non-blocking send to each
// for each change) in the same run. An op is one event to all.
//
//	go test -run '^$' -bench HubDeliver ./readapi
func BenchmarkHubDeliver5000(b *testing.B) {
	const subs = 5000
	b.Run("ring", func(b *testing.B) {
		h := NewHub(HubConfig{})
		var round sync.WaitGroup
		stop := make(chan struct{})
		var done sync.WaitGroup
		for range subs {
			s := h.Subscribe()
			done.Add(1)
			go func() {
				defer done.Done()
				defer s.Close()
				buf := make([]projections.Change, 8)
				for {
					n, ok := s.Next(buf)
					if !ok {
						return
					}
					for range n / 2 {
						round.Done()
					}
					if n < len(buf) {
						select {
						case <-s.Ready():
						case <-stop:
							return
						}
					}
				}
			}()
		}
		pos := uint64(0)
		for b.Loop() {
			pos++
			round.Add(subs)
			h.Deliver(changesAt(pos, pos))
			round.Wait()
		}
		close(stop)
		done.Wait()
	})
	b.Run("channels", func(b *testing.B) {
		h := &chanHub{subs: map[chan projections.Change]struct{}{}}
		var round sync.WaitGroup
		var done sync.WaitGroup
		for range subs {
			c := make(chan projections.Change, 1024)
			h.subs[c] = struct{}{}
			done.Add(1)
			go func() {
				defer done.Done()
				n := 0
				for range c {
					if n++; n%2 == 0 {
						round.Done()
					}
				}
			}()
		}
		pos := uint64(0)
		for b.Loop() {
			pos++
			round.Add(subs)
			h.deliver(changesAt(pos, pos))
			round.Wait()
		}
		for c := range h.subs {
			close(c)
		}
		done.Wait()
	})
}

// chanHub is the fan-out of the hub before the ring: a channel of 1,024
// changes a subscriber, each change sent to each without waiting.
type chanHub struct {
	mu   sync.Mutex
	subs map[chan projections.Change]struct{}
}

func (h *chanHub) deliver(changes []projections.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range changes {
		for c := range h.subs {
			select {
			case c <- ch:
			default:
			}
		}
	}
}
