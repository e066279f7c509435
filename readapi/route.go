package readapi

import (
	"sync"
	"unique"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/projections"
)

// Staff who see only their own conversations (not support, not auditors)
// subscribe for the changes routed to them (Hub.SubscribeStaff), so that a
// customer's post wakes the support streams and the conversation's own
// people, not every agent's stream. A change of a conversation is routed
// to the staff its snapshot, read for the change, shows as its people
// (those who may see it now), to the streams that count it among their
// unread My conversations (so that the change that takes it from someone
// reaches them: they must count it no longer), and to the streams whose
// count is still being read. When the snapshot was not read, to every
// staff stream.

// routing is what Streams.route knows of the routed streams.
type routing struct {
	mu sync.Mutex
	// mine counts, for each conversation, the routed streams of each key
	// whose unread My conversations hold it.
	mine map[unique.Handle[string]]map[string]int
	// loading counts, for each key, the routed streams subscribed whose
	// unread My conversations are still being read.
	loading map[string]int
}

func newRouting() *routing {
	return &routing{mine: map[unique.Handle[string]]map[string]int{}, loading: map[string]int{}}
}

// startLoading counts a stream of key that subscribes before it reads its
// conversations: every conversation's change is routed to it meanwhile.
func (r *routing) startLoading(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loading[key]++
}

// stopLoading undoes startLoading for a stream that ends before loaded.
func (r *routing) stopLoading(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stop(key)
}

func (r *routing) stop(key string) {
	if r.loading[key]--; r.loading[key] <= 0 {
		delete(r.loading, key)
	}
}

// loaded ends the loading of a stream of key, whose unread My
// conversations are mine.
func (r *routing) loaded(key string, mine convSet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stop(key)
	for id := range mine {
		r.add(key, id)
	}
}

// set records that a loaded stream of key has conversation id among its
// unread My conversations, or no longer.
func (r *routing) set(key string, id unique.Handle[string], in bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in {
		r.add(key, id)
	} else {
		r.remove(key, id)
	}
}

// forget drops a loaded stream of key that ends with mine.
func (r *routing) forget(key string, mine convSet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range mine {
		r.remove(key, id)
	}
}

func (r *routing) add(key string, id unique.Handle[string]) {
	keys := r.mine[id]
	if keys == nil {
		keys = map[string]int{}
		r.mine[id] = keys
	}
	keys[key]++
}

func (r *routing) remove(key string, id unique.Handle[string]) {
	keys := r.mine[id]
	if keys[key]--; keys[key] <= 0 {
		delete(keys, key)
	}
	if len(keys) == 0 {
		delete(r.mine, id)
	}
}

// keys appends to people the keys of the streams that hold conversation id
// or are loading.
func (r *routing) keys(id unique.Handle[string], people []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.mine[id] {
		people = append(people, key)
	}
	for key := range r.loading {
		people = append(people, key)
	}
	return people
}

// route is the Route of the changes the streams deliver: a conversation's
// change goes to its people as the snapshot read for it shows them, and to
// the routed streams that hold it or are loading; to every staff stream
// when no snapshot was read for it.
func (s *Streams) route(ch projections.Change) ([]string, bool) {
	cv, ok := s.shared.convs.peek(ch.ConversationID, ch.Position)
	if !ok {
		return nil, false
	}
	var keys []string
	if cv.snap != nil {
		for _, id := range cv.snap.Staff() {
			keys = append(keys, domain.Actor{Kind: domain.ActorUser, ID: id}.Key())
		}
	}
	return s.routes.keys(cv.id, keys), true
}
