package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/infra/lease"
	"github.com/helpdesk/messenger/infra/postgres"
	"github.com/helpdesk/messenger/infra/postgres/pgtest"
	"github.com/helpdesk/messenger/infra/readmodel"
	"github.com/helpdesk/messenger/projections"
)

// people are the principals of the seed scenario.
type people struct {
	admin, support, agent, follower, auditor string // tokens
	supportID, agentID, followerID           string
	customer, other                          string // customer tokens
	customerID                               string
}

func createUser(t *testing.T, s *server, name, email, role string, support bool) (id, token string) {
	t.Helper()
	r := s.do("POST", "/v1/users", s.admin, map[string]any{"name": name, "email": email, "role": role, "support": support}).want(t, 201)
	return r.str("id"), r.str("token")
}

func seedPeople(t *testing.T, s *server) people {
	t.Helper()
	var p people
	p.admin = s.admin
	p.supportID, p.support = createUser(t, s, "Sam Support", "sam@helpdesk.test", "agent", true)
	p.agentID, p.agent = createUser(t, s, "Nora Agent", "nora@helpdesk.test", "agent", false)
	p.followerID, p.follower = createUser(t, s, "Fred Follower", "fred@helpdesk.test", "agent", false)
	_, p.auditor = createUser(t, s, "Ada Auditor", "ada@helpdesk.test", "auditor", false)
	c := s.do("POST", "/v1/widget/sessions", "", map[string]any{"name": "Alice Customer", "email": "alice@example.com"}).want(t, 201)
	p.customer, p.customerID = c.str("token"), c.str("customer_id")
	p.other = s.do("POST", "/v1/widget/sessions", "", map[string]any{"name": "Bob"}).want(t, 201).str("token")
	return p
}

// countEvents returns how many events the log holds, through the audit export.
func countEvents(t *testing.T, s *server) int {
	t.Helper()
	n, cursor := 0, ""
	for {
		path := "/v1/audit/events?limit=200"
		if cursor != "" {
			path += "&after=" + cursor
		}
		r := s.do("GET", path, s.admin, nil).want(t, 200)
		n += len(r.list("events"))
		next, _ := r.Body["next_cursor"].(string)
		if next == "" {
			return n
		}
		cursor = next
	}
}

func inboxRow(t *testing.T, s *server, token, query, id string) map[string]any {
	t.Helper()
	r := s.do("GET", "/v1/inbox?"+query, token, nil).want(t, 200)
	for _, row := range r.list("conversations") {
		if row["id"] == id {
			return row
		}
	}
	return nil
}

// backends are the storage configurations every end-to-end scenario runs on.
var backends = []struct {
	name string
	vars func(t *testing.T) map[string]string
}{
	{"embedded", func(t *testing.T) map[string]string { return map[string]string{} }},
	{"postgres+nats", func(t *testing.T) map[string]string {
		return pgAndNATS(t)
	}},
}

func TestSeedScenario(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { seedScenario(t, b.vars(t)) })
	}
}

func seedScenario(t *testing.T, vars map[string]string) {
	dir := t.TempDir()
	restartVars := map[string]string{}
	for k, v := range vars {
		restartVars[k] = v
	}
	s := startServer(t, dir, vars)
	p := seedPeople(t, s)

	widget := s.openStream("/v1/widget/stream", p.customer, "")
	agentStream := s.openStream("/v1/stream", p.support, "")

	// A customer starts a conversation in the widget.
	conv := s.do("POST", "/v1/conversations", p.customer, map[string]any{
		"subject": "Refund for order 42", "body": "Hello, I would like a refund for order 42.",
	}).want(t, 201)
	id := conv.str("id")
	if conv.str("channel") != "livechat" || conv.str("status") != "open" {
		t.Fatalf("conversation = %s", conv.Raw)
	}
	agentStream.waitFor(0, func(e sseEvent) bool { return e.Event == "conversation.created" && e.Data["id"] == id })
	agentStream.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["conversation_id"] == id })

	// A support agent sees it under From customers, open, unread 1.
	row := inboxRow(t, s, p.support, "section=customers&status=open", id)
	if row == nil || row["unread"] != 1.0 {
		t.Fatalf("support inbox row = %v, want unread 1", row)
	}
	if u := s.do("GET", "/v1/unread", p.support, nil).want(t, 200); u.Body["customers"] != 1.0 {
		t.Fatalf("unread = %s, want customers 1", u.Raw)
	}
	// A non-support agent neither sees that section nor can open the conversation.
	s.do("GET", "/v1/inbox?section=customers", p.agent, nil).want(t, 403)
	s.do("GET", "/v1/conversations/"+id, p.agent, nil).want(t, 404)
	s.do("POST", "/v1/conversations/"+id+"/messages", p.agent, map[string]any{"body": "hi"}).want(t, 404)
	if row := inboxRow(t, s, p.agent, "section=mine", id); row != nil {
		t.Fatalf("agent's mine holds the customer conversation: %v", row)
	}

	// The agent replies and the widget stream receives it.
	reply := s.do("POST", "/v1/conversations/"+id+"/messages", p.support, map[string]any{"body": "Sure, let me check that for you."}).want(t, 201)
	rid := reply.str("id")
	ev, _ := widget.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["id"] == rid })
	if ev.Data["body"] != "Sure, let me check that for you." {
		t.Fatalf("widget got %v", ev.Data)
	}
	if ev.ID != reply.str("position") {
		t.Errorf("SSE id = %s, want the message's position %s", ev.ID, reply.str("position"))
	}
	// Posting counts as reading; the customer's first message is unread until then.
	// Reading clears unread.
	s.do("POST", "/v1/conversations/"+id+"/read", p.support, map[string]any{}).want(t, 200)
	if row := inboxRow(t, s, p.support, "section=customers", id); row["unread"] != 0.0 {
		t.Fatalf("after read, unread = %v", row["unread"])
	}
	if u := s.do("GET", "/v1/unread", p.support, nil).want(t, 200); u.Body["customers"] != 0.0 {
		t.Fatalf("unread after read = %s", u.Raw)
	}

	// Closing moves it to closed; closing again changes nothing.
	s.do("POST", "/v1/conversations/"+id+"/close", p.support, nil).want(t, 200)
	if inboxRow(t, s, p.support, "section=customers&status=open", id) != nil || inboxRow(t, s, p.support, "section=customers&status=closed", id) == nil {
		t.Fatal("closed conversation is not under closed only")
	}
	before := countEvents(t, s)
	again := s.do("POST", "/v1/conversations/"+id+"/close", p.support, nil).want(t, 200)
	if again.str("status") != "closed" || countEvents(t, s) != before {
		t.Fatalf("closing again appended or changed: %s", again.Raw)
	}
	time.Sleep(5 * time.Millisecond) // let the clock move past the close, for the history below

	// The customer's reply reopens it, and it is unread again.
	reopening := s.do("POST", "/v1/conversations/"+id+"/messages", p.customer, map[string]any{"body": "Thanks! Any news on my refund?"}).want(t, 201)
	// A post's answer is the message exactly as reading it shows it (the
	// answer is rendered from the write, without reading it back), also when
	// the post reopened the conversation.
	thread := s.do("GET", "/v1/conversations/"+id, p.support, nil).want(t, 200)
	for _, posted := range []response{reply, reopening} {
		found := false
		for _, m := range thread.Body["messages"].([]any) {
			if m.(map[string]any)["id"] == posted.str("id") {
				found = true
				if !reflect.DeepEqual(m, posted.Body) {
					t.Errorf("posted %s\nread   %v", posted.Raw, m)
				}
			}
		}
		if !found {
			t.Errorf("posted message %s not in the thread %s", posted.str("id"), thread.Raw)
		}
	}
	row = inboxRow(t, s, p.support, "section=customers&status=open", id)
	if row == nil || row["unread"] != 1.0 || row["status"] != "open" {
		t.Fatalf("after the customer's reply: %v", row)
	}

	// A ticket created from it has the subject as title and the customer as requester.
	ticket := s.do("POST", "/v1/conversations/"+id+"/items", p.support, map[string]any{"kind": "ticket"}).want(t, 201)
	if ticket.str("title") != "Refund for order 42" {
		t.Errorf("ticket title = %q", ticket.str("title"))
	}
	if req, _ := ticket.Body["requester"].(map[string]any); req["id"] != p.customerID {
		t.Errorf("ticket requester = %v, want %s", ticket.Body["requester"], p.customerID)
	}
	if ticket.str("description") != "Hello, I would like a refund for order 42." {
		t.Errorf("ticket description = %q", ticket.str("description"))
	}
	ticketID := ticket.str("id")
	// An existing task is linked.
	task := s.do("POST", "/v1/items", p.support, map[string]any{"kind": "task", "title": "Check the payment provider"}).want(t, 201)
	linked := s.do("POST", "/v1/conversations/"+id+"/links", p.support, map[string]any{"item_id": task.str("id")}).want(t, 200)
	if links, _ := linked.Body["links"].([]any); len(links) != 2 {
		t.Fatalf("links = %v, want the ticket and the task", linked.Body["links"])
	}
	item := s.do("GET", "/v1/items/"+ticketID, p.support, nil).want(t, 200)
	if convs, _ := item.Body["conversations"].([]any); len(convs) != 1 || convs[0] != id {
		t.Errorf("ticket conversations = %v", item.Body["conversations"])
	}

	// A follower of that ticket finds the conversation under My conversations.
	if inboxRow(t, s, p.follower, "section=mine", id) != nil {
		t.Fatal("follower sees it before following")
	}
	s.do("POST", "/v1/items/"+ticketID+"/followers", p.support, map[string]any{"user_id": p.followerID}).want(t, 200)
	if inboxRow(t, s, p.follower, "section=mine", id) == nil {
		t.Fatal("follower does not find the conversation under mine")
	}
	s.do("GET", "/v1/conversations/"+id, p.follower, nil).want(t, 200)
	// Unlinking the ticket takes it out of the follower's conversations; linking it again brings it back.
	s.do("DELETE", "/v1/conversations/"+id+"/links/"+ticketID, p.support, nil).want(t, 200)
	if inboxRow(t, s, p.follower, "section=mine", id) != nil {
		t.Fatal("the follower still finds the conversation after the unlink")
	}
	s.do("GET", "/v1/conversations/"+id, p.follower, nil).want(t, 404)
	s.do("POST", "/v1/conversations/"+id+"/links", p.support, map[string]any{"item_id": ticketID}).want(t, 200)
	if inboxRow(t, s, p.follower, "section=mine", id) == nil {
		t.Fatal("the follower does not find the conversation after linking again")
	}

	// The customer edits a message; the agent deletes one (a tombstone in place).
	detail := s.do("GET", "/v1/conversations/"+id, p.customer, nil).want(t, 200)
	msgs := detail.list("messages")
	if len(msgs) != 3 {
		t.Fatalf("messages = %d, want 3", len(msgs))
	}
	first := msgs[0]["id"].(string)
	edited := s.do("PATCH", "/v1/conversations/"+id+"/messages/"+first, p.customer, map[string]any{"body": "Hello, I would like a refund for order 43."}).want(t, 200)
	if edited.Body["edited"] != true {
		t.Errorf("edited = %s", edited.Raw)
	}
	s.do("PATCH", "/v1/conversations/"+id+"/messages/"+first, p.support, map[string]any{"body": "not mine"}).want(t, 403)
	deleted := s.do("DELETE", "/v1/conversations/"+id+"/messages/"+rid, p.support, nil).want(t, 200)
	if deleted.Body["deleted"] != true || deleted.str("body") != "" {
		t.Errorf("deleted = %s", deleted.Raw)
	}
	msgs = s.do("GET", "/v1/conversations/"+id, p.support, nil).want(t, 200).list("messages")
	if len(msgs) != 3 || msgs[1]["id"] != rid || msgs[1]["deleted"] != true || msgs[1]["body"] != "" {
		t.Fatalf("thread after delete = %v", msgs)
	}
	if msgs[0]["body"] != "Hello, I would like a refund for order 43." {
		t.Errorf("edited message body = %v", msgs[0]["body"])
	}

	// Search by message text and by customer email.
	for q, want := range map[string]bool{"news": true, "alice@example.com": true, "order 43": true, "check that": false, "zebra": false} {
		got := inboxRow(t, s, p.support, "section=customers&q="+url.QueryEscape(q), id) != nil
		if got != want {
			t.Errorf("search %q found = %v, want %v", q, got, want)
		}
	}

	// The helpdesk going offline and online reaches the widget with the configured messages.
	s.do("PUT", "/v1/helpdesk/messages", p.admin, map[string]any{"online_message": "We are here!", "offline_message": "Back tomorrow."}).want(t, 200)
	on := s.do("PUT", "/v1/helpdesk/status", p.support, map[string]any{"online": true}).want(t, 200)
	if on.str("message") != "We are here!" {
		t.Errorf("status answer = %s", on.Raw)
	}
	widget.waitFor(0, func(e sseEvent) bool {
		return e.Event == "helpdesk.status_changed" && e.Data["online"] == true && e.Data["message"] == "We are here!"
	})
	s.do("PUT", "/v1/helpdesk/status", p.support, map[string]any{"online": false}).want(t, 200)
	widget.waitFor(0, func(e sseEvent) bool {
		return e.Event == "helpdesk.status_changed" && e.Data["online"] == false && e.Data["message"] == "Back tomorrow."
	})
	if st := s.do("GET", "/v1/widget/status", "", nil).want(t, 200); st.Body["online"] != false || st.str("message") != "Back tomorrow." {
		t.Errorf("widget status = %s", st.Raw)
	}
	// Staff list the team, a page at a time.
	team := map[string]bool{}
	for cursor := ""; ; {
		page := s.do("GET", "/v1/users?limit=2&cursor="+url.QueryEscape(cursor), p.agent, nil).want(t, 200)
		for _, u := range page.list("users") {
			team[u["name"].(string)] = true
		}
		next, _ := page.Body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	for _, name := range []string{"Sam Support", "Nora Agent", "Fred Follower", "Ada Auditor"} {
		if !team[name] {
			t.Errorf("the team lacks %s: %v", name, team)
		}
	}
	// Staff read both messages, as an admin edits them.
	if hd := s.do("GET", "/v1/helpdesk", p.auditor, nil).want(t, 200); hd.Body["online"] != false ||
		hd.str("online_message") != "We are here!" || hd.str("offline_message") != "Back tomorrow." || hd.str("position") == "" {
		t.Errorf("helpdesk = %s", hd.Raw)
	}
	s.do("PUT", "/v1/helpdesk/status", p.agent, map[string]any{"online": true}).want(t, 403)

	// An auditor reads the history and the state as it was before the close.
	hist := s.do("GET", "/v1/conversations/"+id+"/history", p.auditor, nil).want(t, 200)
	events := hist.list("events")
	var closedAt string
	for i, e := range events {
		if e["version"] != float64(i+1) {
			t.Fatalf("event %d has version %v", i, e["version"])
		}
		if e["type"] == "conversation.closed" {
			closedAt = e["at"].(string)
		}
	}
	if closedAt == "" {
		t.Fatal("no close in the history")
	}
	ct, _ := time.Parse(time.RFC3339Nano, closedAt)
	at := ct.Add(-time.Millisecond).Format(time.RFC3339Nano)
	past := s.do("GET", "/v1/conversations/"+id+"/history?at="+url.QueryEscape(at), p.auditor, nil).want(t, 200)
	state, _ := past.Body["state"].(map[string]any)
	if state == nil || state["status"] != "open" {
		t.Fatalf("state before the close = %v", past.Body["state"])
	}
	if m, _ := state["messages"].([]any); len(m) != 2 {
		t.Errorf("messages before the close = %d, want 2", len(m))
	}
	after := s.do("GET", "/v1/conversations/"+id+"/history?at="+url.QueryEscape(closedAt), p.auditor, nil).want(t, 200)
	if st, _ := after.Body["state"].(map[string]any); st["status"] != "closed" {
		t.Errorf("state at the close = %v", st["status"])
	}
	early := s.do("GET", "/v1/conversations/"+id+"/history?at=2000-01-01T00:00:00Z", p.auditor, nil).want(t, 200)
	if v, ok := early.Body["state"]; !ok || v != nil {
		t.Errorf("state before the conversation = %v, want null", v)
	}
	s.do("POST", "/v1/conversations/"+id+"/messages", p.auditor, map[string]any{"body": "audit"}).want(t, 403)

	// A stream reconnecting with Last-Event-ID receives what it missed, once each.
	lastSeen := agentStream.all()
	lastID := lastSeen[len(lastSeen)-1].ID
	agentStream.close()
	missed := s.do("POST", "/v1/conversations/"+id+"/messages", p.customer, map[string]any{"body": "Are you still there?"}).want(t, 201)
	resumed := s.openStream("/v1/stream", p.support, lastID)
	resumed.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["id"] == missed.str("id") })
	live := s.do("POST", "/v1/conversations/"+id+"/messages", p.support, map[string]any{"body": "Yes, refund issued."}).want(t, 201)
	resumed.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["id"] == live.str("id") })
	seen := map[string]int{}
	for _, e := range resumed.all() {
		if e.Event == "message.created" {
			seen[e.Data["id"].(string)]++
		}
	}
	for mid, n := range seen {
		if n != 1 {
			t.Errorf("message %s delivered %d times after resume", mid, n)
		}
	}
	if seen[rid] != 0 {
		t.Errorf("resume replayed a message from before the token")
	}
	resumed.close()
	widget.close()

	// After a restart nothing is lost.
	total := countEvents(t, s)
	beforeDetail := s.do("GET", "/v1/conversations/"+id, p.support, nil).want(t, 200)
	beforeInbox := s.do("GET", "/v1/inbox?section=customers&status=open", p.support, nil).want(t, 200)
	s.stop()
	// Rebuilding the read models from the log gives the same answers.
	var progress strings.Builder
	if err := run(context.Background(), []string{"rebuild", "-data-dir", dir}, env(restartVars), io.Discard, &progress); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if !strings.Contains(progress.String(), "events/s") || !strings.Contains(progress.String(), "rebuilt the read models") {
		t.Errorf("rebuild progress = %q", progress.String())
	}
	restartVars["MESSENGER_ADMIN_TOKEN"] = s.admin
	s2 := startServer(t, dir, restartVars)
	if got := s2.do("GET", "/v1/inbox?section=customers&status=open", p.support, nil).want(t, 200); string(got.Raw) != string(beforeInbox.Raw) {
		t.Errorf("inbox after rebuild:\n%s\nbefore:\n%s", got.Raw, beforeInbox.Raw)
	}
	if got := countEvents(t, s2); got != total {
		t.Fatalf("after restart the log holds %d events, want %d", got, total)
	}
	afterDetail := s2.do("GET", "/v1/conversations/"+id, p.support, nil).want(t, 200)
	if len(afterDetail.list("messages")) != len(beforeDetail.list("messages")) || afterDetail.str("status") != beforeDetail.str("status") {
		t.Fatalf("after restart: %s\nbefore: %s", afterDetail.Raw, beforeDetail.Raw)
	}
	s2.do("GET", "/v1/me", p.customer, nil).want(t, 200)
	// The change feed goes on from the read models the server started on:
	// the first post after the restart reaches a stream at once (it was
	// held two seconds, the feed's wait for a predecessor that had been
	// published before the server subscribed).
	agentLive := s2.openStream("/v1/stream", p.support, "")
	start := time.Now()
	posted := s2.do("POST", "/v1/conversations/"+id+"/messages", p.customer, map[string]any{"body": "Back again"}).want(t, 201)
	agentLive.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["id"] == posted.str("id") })
	if took := time.Since(start); took > time.Second {
		t.Errorf("the first post after a restart reached a stream after %v", took)
	}
}

// TestBadInputAppendsNothing sends hostile requests, on every backend:
// each is answered with its JSON error, appends nothing, and leaves the
// read models running (PostgreSQL's refused U+0000: a customer's name
// holding one stopped them at its event, and ids holding one were
// internal errors).
func TestBadInputAppendsNothing(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { badInputAppendsNothing(t, b.vars(t)) })
	}
}

func badInputAppendsNothing(t *testing.T, vars map[string]string) {
	s := startServer(t, t.TempDir(), vars)
	p := seedPeople(t, s)
	id := s.do("POST", "/v1/conversations", p.customer, map[string]any{"body": "hello"}).want(t, 201).str("id")
	msgs := "/v1/conversations/" + id + "/messages"
	mid := s.do("POST", msgs, p.customer, map[string]any{"body": "mine"}).want(t, 201).str("id")
	item := s.do("POST", "/v1/items", p.support, map[string]any{"kind": "task", "title": "Check"}).want(t, 201).str("id")
	forged := base64.RawURLEncoding.EncodeToString([]byte("1:a\x00b"))
	before := countEvents(t, s)
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code, field               string
	}{
		{"empty body", "POST", msgs, p.customer, map[string]any{"body": ""}, 400, "invalid_request", "body"},
		{"whitespace body", "POST", msgs, p.customer, map[string]any{"body": " \n\t "}, 400, "invalid_request", "body"},
		{"too long body", "POST", msgs, p.customer, map[string]any{"body": strings.Repeat("é", 10001)}, 400, "invalid_request", "body"},
		{"unknown field", "POST", msgs, p.customer, `{"body":"hi","sneaky":1}`, 400, "invalid_request", "sneaky"},
		{"malformed JSON", "POST", msgs, p.customer, `{"body":`, 400, "invalid_request", ""},
		{"wrong type", "POST", msgs, p.customer, `{"body":42}`, 400, "invalid_request", "body"},
		{"two values", "POST", msgs, p.customer, `{"body":"a"}{"body":"b"}`, 400, "invalid_request", ""},
		{"200 KB body", "POST", msgs, p.customer, `{"body":"` + strings.Repeat("a", 200<<10) + `"}`, 413, "too_large", ""},
		{"missing token", "POST", msgs, "", map[string]any{"body": "hi"}, 401, "unauthorized", ""},
		{"wrong token", "POST", msgs, "not-a-token", map[string]any{"body": "hi"}, 401, "unauthorized", ""},
		{"auditor may not post", "POST", msgs, p.auditor, map[string]any{"body": "hi"}, 403, "forbidden", ""},
		{"other customer", "POST", msgs, p.other, map[string]any{"body": "hi"}, 404, "not_found", ""},
		{"unknown conversation", "POST", "/v1/conversations/nope/messages", p.customer, map[string]any{"body": "hi"}, 404, "not_found", ""},
		{"agent may not create users", "POST", "/v1/users", p.agent, map[string]any{"name": "x", "email": "x@y.z", "role": "agent"}, 403, "forbidden", ""},
		{"bad role", "POST", "/v1/users", p.admin, map[string]any{"name": "x", "email": "x@y.z", "role": "king"}, 400, "invalid_request", "role"},
		{"bad email", "POST", "/v1/users", p.admin, map[string]any{"name": "x", "email": "nope", "role": "agent"}, 400, "invalid_request", "email"},
		{"customer names participants", "POST", "/v1/conversations", p.customer, map[string]any{"body": "hi", "participants": []string{p.agentID}}, 400, "invalid_request", "participants"},
		{"unknown participant", "POST", "/v1/conversations", p.agent, map[string]any{"body": "hi", "participants": []string{"ghost"}}, 400, "invalid_request", "participants"},
		{"bad item kind", "POST", "/v1/items", p.support, map[string]any{"kind": "bug", "title": "x"}, 400, "invalid_request", "kind"},
		{"unknown item to link", "POST", "/v1/conversations/" + id + "/links", p.support, map[string]any{"item_id": "ghost"}, 400, "invalid_request", "item_id"},
		{"helpdesk status missing", "PUT", "/v1/helpdesk/status", p.support, `{}`, 400, "invalid_request", "online"},
		{"bad limit", "GET", "/v1/inbox?section=mine&limit=500", p.support, nil, 400, "invalid_request", "limit"},
		{"bad cursor", "GET", "/v1/inbox?section=mine&cursor=not-a-cursor", p.support, nil, 400, "invalid_request", ""},
		{"bad section", "GET", "/v1/inbox?section=all", p.support, nil, 400, "invalid_request", "section"},
		{"bad history time", "GET", "/v1/conversations/" + id + "/history?at=yesterday", p.auditor, nil, 400, "invalid_request", "at"},
		{"client_id too long", "POST", msgs, p.customer, map[string]any{"body": "hi", "client_id": strings.Repeat("x", 65)}, 400, "invalid_request", "client_id"},
		{"unlink an unknown item", "DELETE", "/v1/conversations/" + id + "/links/ghost", p.support, nil, 404, "not_found", ""},
		{"follow an unknown item", "POST", "/v1/items/ghost/followers", p.support, map[string]any{"user_id": "ghost"}, 404, "not_found", ""},
		{"array for an object", "POST", msgs, p.customer, `[1,2]`, 400, "invalid_request", ""},
		{"U+0000 in a body", "POST", msgs, p.customer, `{"body":"hi\u0000there"}`, 400, "invalid_request", "body"},
		{"Latin-1 body", "POST", msgs, p.customer, "{\"body\":\"caf\xe9\"}", 400, "invalid_request", ""},
		{"Latin-1 widget name", "POST", "/v1/widget/sessions", "", "{\"name\":\"Ren\xe9e\"}", 400, "invalid_request", ""},
		{"U+0000 in a client_id", "POST", msgs, p.customer, `{"body":"hi","client_id":"c\u0000"}`, 400, "invalid_request", "client_id"},
		{"U+0000 in an edit", "PATCH", msgs + "/" + mid, p.customer, `{"body":"x\u0000"}`, 400, "invalid_request", "body"},
		{"U+0000 in a widget name", "POST", "/v1/widget/sessions", "", `{"name":"Eve\u0000"}`, 400, "invalid_request", "name"},
		{"U+0000 in an email", "POST", "/v1/users", p.admin, `{"name":"x","email":"x\u0000@y.z","role":"agent"}`, 400, "invalid_request", "email"},
		{"U+0000 in a subject", "POST", "/v1/conversations", p.customer, `{"body":"hi","subject":"a\u0000"}`, 400, "invalid_request", "subject"},
		{"U+0000 in a participant", "POST", "/v1/conversations", p.agent, `{"body":"hi","participants":["\u0000"]}`, 400, "invalid_request", "participants"},
		{"U+0000 in an assignee", "POST", "/v1/items", p.support, `{"kind":"task","title":"x","assignees":["a\u0000"]}`, 400, "invalid_request", "assignees"},
		{"U+0000 in an item title", "POST", "/v1/items", p.support, `{"kind":"task","title":"x\u0000"}`, 400, "invalid_request", "title"},
		{"U+0000 in an item to link", "POST", "/v1/conversations/" + id + "/links", p.support, `{"item_id":"\u0000"}`, 400, "invalid_request", "item_id"},
		{"U+0000 in a follower", "POST", "/v1/items/" + item + "/followers", p.support, `{"user_id":"a\u0000"}`, 400, "invalid_request", "user_id"},
		{"U+0000 in a helpdesk message", "PUT", "/v1/helpdesk/messages", p.admin, `{"online_message":"hi\u0000","offline_message":"bye"}`, 400, "invalid_request", "online_message"},
		{"U+0000 in a path id", "POST", "/v1/conversations/a%00b/messages", p.customer, map[string]any{"body": "hi"}, 404, "not_found", ""},
		{"U+0000 in a read's path id", "GET", "/v1/conversations/a%00b", p.support, nil, 404, "not_found", ""},
		{"invalid UTF-8 in a path id", "GET", "/v1/conversations/%FF/history", p.auditor, nil, 404, "not_found", ""},
		{"U+0000 in a user id", "GET", "/v1/users/%00", p.support, nil, 404, "not_found", ""},
		{"U+0000 in an item id", "GET", "/v1/items/x%00", p.support, nil, 404, "not_found", ""},
		{"U+0000 in a customer id", "GET", "/v1/customers/x%00", p.support, nil, 404, "not_found", ""},
		{"U+0000 in a link's path", "DELETE", "/v1/conversations/" + id + "/links/%00", p.support, nil, 404, "not_found", ""},
		{"forged cursor", "GET", "/v1/inbox?section=customers&cursor=" + forged, p.support, nil, 400, "invalid_request", ""},
		{"forged team cursor", "GET", "/v1/users?cursor=" + forged, p.support, nil, 400, "invalid_request", ""},
		{"team page too long", "GET", "/v1/users?limit=1000", p.support, nil, 400, "invalid_request", "limit"},
		{"U+0000 in an item search", "GET", "/v1/items?q=a%00", p.support, nil, 400, "invalid_request", "q"},
		{"invalid UTF-8 in an item search", "GET", "/v1/items?q=%FF", p.support, nil, 400, "invalid_request", "q"},
		{"item search too long", "GET", "/v1/items?q=" + strings.Repeat("x", 201), p.support, nil, 400, "invalid_request", "q"},
		{"customers find no items", "GET", "/v1/items", p.customer, nil, 403, "forbidden", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(c.method, c.path, c.token, c.body).want(t, c.status)
			e, _ := r.Body["error"].(map[string]any)
			if e == nil || e["code"] != c.code || e["message"] == "" {
				t.Fatalf("error = %s, want code %s", r.Raw, c.code)
			}
			if c.field != "" && e["field"] != c.field {
				t.Errorf("field = %v, want %s", e["field"], c.field)
			}
		})
	}
	if after := countEvents(t, s); after != before {
		t.Fatalf("bad input appended %d events", after-before)
	}
	// A retried post with the same client_id returns the first message and appends nothing.
	first := s.do("POST", msgs, p.customer, map[string]any{"body": "once", "client_id": "c-1"}).want(t, 201)
	n := countEvents(t, s)
	again := s.do("POST", msgs, p.customer, map[string]any{"body": "once", "client_id": "c-1"}).want(t, 200)
	if again.str("id") != first.str("id") || countEvents(t, s) != n {
		t.Fatalf("retried post: %s (first %s)", again.Raw, first.Raw)
	}
	if r := s.do("GET", "/v1/nope", "", nil); r.Status != http.StatusNotFound {
		t.Errorf("unknown route: %d", r.Status)
	}
	// A trailing slash names no route: a JSON 404, not a redirect.
	for _, path := range []string{"/v1/inbox/?section=mine", msgs + "/" + mid + "/", "/v1/conversations/" + id + "/links/x/"} {
		r := s.do("PATCH", path, p.support, map[string]any{"body": "x"})
		if e, _ := r.Body["error"].(map[string]any); r.Status != http.StatusNotFound || e["code"] != "not_found" {
			t.Errorf("PATCH %s: %d %s", path, r.Status, r.Raw)
		}
	}
	// The read models are still running: a new post is read back at once,
	// and the readiness check shows no lag.
	posted := s.do("POST", msgs, p.customer, map[string]any{"body": "still here"}).want(t, 201).str("id")
	found := false
	for _, m := range s.do("GET", "/v1/conversations/"+id, p.support, nil).want(t, 200).list("messages") {
		found = found || m["id"] == posted
	}
	if !found {
		t.Errorf("the post after the bad input is not in the conversation")
	}
	if r := s.do("GET", "/readyz", "", nil).want(t, 200); r.Body["lag"] != float64(0) {
		t.Errorf("readyz: %s", r.Raw)
	}
}

func TestCORS(t *testing.T) {
	s := startServer(t, t.TempDir(), map[string]string{"MESSENGER_ALLOWED_ORIGINS": "https://shop.example, https://other.example"})
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", s.base+"/v1/conversations", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	ok := preflight("https://shop.example")
	if ok.StatusCode != 204 || ok.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		!strings.Contains(ok.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("allowed preflight: %d %v", ok.StatusCode, ok.Header)
	}
	if ok.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials mode is on")
	}
	bad := preflight("https://evil.example")
	if bad.StatusCode == 204 || bad.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("disallowed preflight: %d %v", bad.StatusCode, bad.Header)
	}
	req, _ := http.NewRequest("GET", s.base+"/v1/widget/status", nil)
	req.Header.Set("Origin", "https://other.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://other.example" {
		t.Errorf("simple request from an allowed origin: %v", resp.Header)
	}
}

func TestExportsHideTokenHashes(t *testing.T) {
	s := startServer(t, t.TempDir(), nil)
	seedPeople(t, s)
	r := s.do("GET", "/v1/audit/events?limit=200", s.admin, nil).want(t, 200)
	if strings.Contains(string(r.Raw), HashTokenForTest(s.admin)) {
		t.Fatal("the audit export shows the admin token's hash")
	}
	if !strings.Contains(string(r.Raw), `"token_hash":"[redacted]"`) {
		t.Fatalf("no redacted token hash in %s", r.Raw)
	}
}

// With MESSENGER_EVENTSTORE_URL the log is KurrentDB's: a server that is not
// there stops the start with an error that names it, without its password.
func TestKurrentDBUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	err := run(ctx, []string{"-addr", "127.0.0.1:0", "-data-dir", t.TempDir()},
		env(map[string]string{"MESSENGER_EVENTSTORE_URL": "esdb://admin:secret@127.0.0.1:1?tls=false&maxDiscoverAttempts=1"}), &out, &out)
	if err == nil {
		t.Fatal("messengerd started without its event store")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the password: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the start did not fail fast")
	}
}

// TestStartBuildsEmptyReadModelsInBulk: read models recreated at a start
// (an upgrade changed projections.Name), even of a short log, are built
// through the rebuild's path, which leaves the planner its statistics and
// marks them unfinished meanwhile, and answer as before.
func TestStartBuildsEmptyReadModelsInBulk(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			vars, dir := b.vars(t), t.TempDir()
			s := startServer(t, dir, vars)
			c := startChat(t, s, 5)
			s.stop()
			db, _ := openData(t, vars, dir)
			// The read models of an older version.
			if _, err := db.Exec(`UPDATE checkpoints SET name = 'readmodel/v0' WHERE name LIKE 'readmodel/%'`); err != nil {
				t.Fatal(err)
			}
			vars["MESSENGER_ADMIN_TOKEN"] = s.admin
			s = startServer(t, dir, vars)
			c.sameOn(t, s, "after the start")
			if vars["MESSENGER_DATABASE_URL"] != "" {
				analyzed(t, db)
			}
		})
	}
}

// TestStartsWithReadModelsBehind: a start whose read models cannot apply
// the log yet (rebuilt after an upgrade, far behind it; here, refusing the
// admin's new token) serves at once, not ready, and gets ready when they
// catch up. It waited for them to apply its bootstrap of the admin, and
// stopped when that took over 10 s: a crash at every start after an
// upgrade, on a log longer than 10 s of projection.
func TestStartsWithReadModelsBehind(t *testing.T) {
	vars := map[string]string{"MESSENGER_DATABASE_URL": pgtest.NewDatabase(t)}
	dir := t.TempDir()
	startServer(t, dir, vars).stop()
	db, _ := openData(t, vars, dir)
	const token = "the-admin-token-after-the-upgrade"
	if _, err := db.Exec(`ALTER TABLE tokens ADD CONSTRAINT poison CHECK (hash <> '` + commands.HashToken(token) + `')`); err != nil {
		t.Fatal(err)
	}
	vars["MESSENGER_ADMIN_TOKEN"] = token
	began := time.Now()
	s := startListening(t, dir, vars)
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("listening after %s", took)
	}
	// The bootstrap is in the log, not yet in the read models.
	if r := s.do("GET", "/readyz", "", nil); r.Status != http.StatusServiceUnavailable || r.Body["status"] != "catching_up" || r.Body["lag"] != float64(1) {
		t.Errorf("readyz with the bootstrap not applied: %d %s", r.Status, r.Raw)
	}
	s.do("GET", "/v1/me", token, nil).want(t, 401)
	if _, err := db.Exec(`ALTER TABLE tokens DROP CONSTRAINT poison`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for r := s.do("GET", "/readyz", "", nil); r.Status != http.StatusOK || r.Body["lag"] != float64(0); r = s.do("GET", "/readyz", "", nil) {
		if time.Now().After(deadline) {
			t.Fatalf("not caught up 15 s after the read models could: %s", r.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.do("GET", "/v1/me", token, nil).want(t, 200)
}

// TestStalledProjectorIsNotReady makes the read models refuse an event,
// as a bug or a broken database would: the readiness check must say so
// once they have not moved for stallAfter, on the replica whose projector
// fails and on one that only follows its checkpoint, and recover on both
// when the event applies at last. Before, they answered ready, with a lag
// of 1, while every write waited for the read models in vain.
func TestStalledProjectorIsNotReady(t *testing.T) {
	old := stallAfter
	stallAfter = 300 * time.Millisecond
	t.Cleanup(func() { stallAfter = old })
	vars := pgAndNATS(t)
	s := startServer(t, t.TempDir(), vars)
	follower := startServer(t, t.TempDir(), vars)
	for _, r := range []struct {
		s    *server
		lead bool
	}{{s, true}, {follower, false}} {
		if got := r.s.do("GET", "/readyz", "", nil).Body["projecting"]; got != r.lead {
			t.Fatalf("projecting %v, want %v", got, r.lead)
		}
	}
	p := seedPeople(t, s)
	id := s.do("POST", "/v1/conversations", p.customer, map[string]any{"body": "hello"}).want(t, 201).str("id")
	db, _ := openData(t, vars, "")
	if _, err := db.Exec(`ALTER TABLE messages ADD CONSTRAINT poison CHECK (body <> 'poison')`); err != nil {
		t.Fatal(err)
	}
	posted := make(chan int, 1)
	go func() {
		// Appended at once; its answer waits for the read models.
		body := strings.NewReader(`{"body":"poison"}`)
		req, _ := http.NewRequest("POST", s.base+"/v1/conversations/"+id+"/messages", body)
		req.Header.Set("Authorization", "Bearer "+p.customer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			posted <- 0
			return
		}
		resp.Body.Close()
		posted <- resp.StatusCode
	}()
	waitReady := func(s *server, want string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := s.do("GET", "/readyz", "", nil)
			if r.Body["status"] == want {
				return r.Body
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz never said %s: last %d %s", want, r.Status, r.Raw)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, s := range []*server{s, follower} {
		stalled := waitReady(s, "stalled")
		if stalled["lag"] != float64(1) {
			t.Errorf("stalled: %v, want a lag of 1", stalled)
		}
		if r := s.do("GET", "/readyz", "", nil); r.Status != http.StatusServiceUnavailable {
			t.Errorf("stalled readyz answered %d", r.Status)
		}
	}
	metrics := string(s.do("GET", "/metrics", "", nil).Raw)
	if !strings.Contains(metrics, "messenger_projector_errors_total ") || strings.Contains(metrics, "messenger_projector_errors_total 0\n") {
		t.Errorf("no projector errors counted")
	}
	if _, err := db.Exec(`ALTER TABLE messages DROP CONSTRAINT poison`); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*server{s, follower} {
		if ready := waitReady(s, "ready"); ready["lag"] != float64(0) {
			t.Errorf("after the fix: %v", ready)
		}
	}
	if code := <-posted; code != 201 && code != 503 {
		t.Errorf("the poisoned post answered %d", code)
	}
}

// pausingWriter blocks the first write that does not start with skip
// until release is closed, having closed paused: a rebuild's progress bar,
// written once its tables are recreated and its first batch applied.
type pausingWriter struct {
	skip            string
	paused, release chan struct{}
	once            sync.Once
}

func (w *pausingWriter) Write(p []byte) (int, error) {
	if !strings.HasPrefix(string(p), w.skip) {
		w.once.Do(func() { close(w.paused); <-w.release })
	}
	return len(p), nil
}

// TestReplicaWaitsForRebuild: a replica started while messengerd rebuild
// runs on the same PostgreSQL database waits for its end before it
// migrates and serves. Migrating then, it took the rebuild's tables,
// marked unfinished, for those of a rebuild that had stopped, and
// recreated them under it.
func TestReplicaWaitsForRebuild(t *testing.T) {
	vars := map[string]string{"MESSENGER_DATABASE_URL": pgtest.NewDatabase(t)}
	dir := t.TempDir()
	s := startServer(t, dir, vars)
	c := startChat(t, s, 1)
	s.stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &pausingWriter{skip: "waiting for the projector lease", paused: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(w.release)
		}
	}()
	rebuilt := make(chan error, 1)
	go func() {
		cfg, err := parseConfig("messengerd rebuild", []string{"-data-dir", dir}, env(vars), io.Discard)
		if err != nil {
			rebuilt <- err
			return
		}
		rebuilt <- rebuild(ctx, cfg, w)
	}()
	select {
	case <-w.paused:
	case err := <-rebuilt:
		t.Fatalf("the rebuild ended before its first batch was shown: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the rebuild showed no progress in 20 s")
	}

	// A replica starts in the middle of the rebuild.
	vars["MESSENGER_ADMIN_TOKEN"] = s.admin
	addr, stopped := make(chan string, 1), make(chan error, 1)
	go func() {
		stopped <- runWith(ctx, []string{"-addr", "127.0.0.1:0", "-data-dir", dir}, env(vars), func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		t.Fatalf("the replica serves on %s while the read models are being rebuilt", a)
	case err := <-stopped:
		t.Fatalf("the replica stopped during the rebuild: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	close(w.release)
	released = true
	if err := <-rebuilt; err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-stopped:
		t.Fatalf("the replica stopped after the rebuild: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the replica did not start in 20 s after the rebuild")
	}
	if !untilReady(base, 20*time.Second) {
		t.Fatal("the replica is not ready 20 s after the rebuild")
	}
	c.sameOn(t, &server{t: t, dir: dir, base: base, admin: s.admin}, "after the rebuild")
	cancel()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("the replica returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("the replica did not stop in 20 s")
	}
}

// openData opens the database of a server run with vars and dir.
func openData(t *testing.T, vars map[string]string, dir string) (*sql.DB, projections.Dialect) {
	t.Helper()
	var db *sql.DB
	var d projections.Dialect
	var err error
	if url := vars["MESSENGER_DATABASE_URL"]; url != "" {
		// The read models' schema first, the log's after.
		var cc *pgx.ConnConfig
		if cc, err = pgx.ParseConfig(url); err != nil {
			t.Fatal(err)
		}
		cc.RuntimeParams["search_path"] = projections.Schema() + ", public"
		db, d = stdlib.OpenDB(*cc), readmodel.Postgres{}
	} else {
		db, err = sql.Open("sqlite", filepath.Join(dir, "messenger.db")+"?_pragma=busy_timeout(5000)")
		d = readmodel.SQLite{}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, d
}

// TestAPIWaitsForReadModelsBuiltFromScratch: a start that finds the read
// models empty beside a log answers the API 503 unavailable, with
// Retry-After, until they hold it. They held the tokens of part of the
// users then, so a valid token got 401 (the agent app signed out, a
// widget's session ended), pages missed conversations, and a write was
// appended only to fail after waiting for them. Here their first batch
// fails until the test lets it through.
func TestAPIWaitsForReadModelsBuiltFromScratch(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			vars, dir := b.vars(t), t.TempDir()
			s := startServer(t, dir, vars)
			c := startChat(t, s, 0)
			p := c.p
			s.stop()

			ctx := context.Background()
			db, d := openData(t, vars, dir)
			if err := projections.Drop(ctx, db, d); err != nil {
				t.Fatal(err)
			}
			if _, err := projections.Migrate(ctx, db, d); err != nil {
				t.Fatal(err)
			}
			poison, cure := `ALTER TABLE tokens ADD CONSTRAINT poison CHECK (hash = '')`, `ALTER TABLE tokens DROP CONSTRAINT poison`
			if _, ok := d.(readmodel.SQLite); ok {
				poison, cure = `CREATE TRIGGER poison BEFORE INSERT ON tokens BEGIN SELECT RAISE(ABORT, 'poison'); END`, `DROP TRIGGER poison`
			}
			if _, err := db.Exec(poison); err != nil {
				t.Fatal(err)
			}
			var events int
			if err := db.QueryRow(`SELECT count(*) FROM events`).Scan(&events); err != nil {
				t.Fatal(err)
			}

			vars["MESSENGER_ADMIN_TOKEN"] = s.admin
			s = startListening(t, dir, vars)
			for _, token := range []string{p.support, p.customer, s.admin} {
				r := s.do("GET", "/v1/me", token, nil).want(t, http.StatusServiceUnavailable)
				if e, _ := r.Body["error"].(map[string]any); e["code"] != "unavailable" {
					t.Errorf("me while the read models are built: %s", r.Raw)
				}
			}
			r := s.do("POST", "/v1/conversations/"+c.id+"/messages", p.support, map[string]any{"body": "not now"}).want(t, http.StatusServiceUnavailable)
			if got := r.Header.Get("Retry-After"); got != retryBuilding {
				t.Errorf("Retry-After %q, want %q", got, retryBuilding)
			}
			var after int
			if err := db.QueryRow(`SELECT count(*) FROM events`).Scan(&after); err != nil {
				t.Fatal(err)
			}
			if after != events { // the admin's bootstrap appends nothing for a known token
				t.Errorf("the log went from %d to %d events while the API refused writes", events, after)
			}
			if r := s.do("GET", "/readyz", "", nil); r.Status != http.StatusServiceUnavailable || r.Body["status"] != "rebuilding" {
				t.Errorf("readyz: %d %s", r.Status, r.Raw)
			}
			s.do("GET", "/healthz", "", nil).want(t, 200)
			if resp, err := http.Get(s.base + "/app/"); err != nil || resp.StatusCode != 200 {
				t.Errorf("the agent app's page while the read models are built: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}

			if _, err := db.Exec(cure); err != nil {
				t.Fatal(err)
			}
			if !untilReady(s.base, 20*time.Second) {
				t.Fatal("not ready 20 s after the read models could be built")
			}
			s.do("GET", "/v1/me", p.support, nil).want(t, 200)
			c.sameOn(t, s, "once built")
			s.do("POST", "/v1/conversations/"+c.id+"/messages", p.support, map[string]any{"body": "now"}).want(t, 201)
		})
	}
}

// TestAPIWaitsForARebuild: while a rebuild's mark is in the checkpoints
// (messengerd rebuild, or another replica's bulk build, fills the read
// models from the log's start), a serving instance answers the API 503 and
// /readyz "rebuilding"; once it is gone, it serves again.
func TestAPIWaitsForARebuild(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			vars, dir := b.vars(t), t.TempDir()
			s := startServer(t, dir, vars)
			p := seedPeople(t, s)
			db, d := openData(t, vars, dir)
			if _, err := db.Exec(d.Rebind(`INSERT INTO checkpoints (name, position) VALUES (?, 0)`), "rebuild/unfinished"); err != nil {
				t.Fatal(err)
			}
			until(t, "refused", 5*time.Second, func() bool { return s.do("GET", "/v1/me", p.support, nil).Status == http.StatusServiceUnavailable })
			if r := s.do("GET", "/readyz", "", nil); r.Status != http.StatusServiceUnavailable || r.Body["status"] != "rebuilding" {
				t.Errorf("readyz during a rebuild: %d %s", r.Status, r.Raw)
			}
			if _, err := db.Exec(d.Rebind(`DELETE FROM checkpoints WHERE name = ?`), "rebuild/unfinished"); err != nil {
				t.Fatal(err)
			}
			until(t, "serving again", 5*time.Second, func() bool { return s.do("GET", "/v1/me", p.support, nil).Status == http.StatusOK })
			s.do("GET", "/readyz", "", nil).want(t, 200)
		})
	}
}

// TestOneProcessPerDataDirectory: the embedded store is one process's. A
// second server, or a rebuild, on the data directory of a running server
// stops at once with an error that says why, and has written nothing; the
// directory is free again once the server stops.
func TestOneProcessPerDataDirectory(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, nil)
	p := seedPeople(t, s)
	id := s.do("POST", "/v1/conversations", p.customer, map[string]any{"body": "hello"}).want(t, 201).str("id")
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:0", "-data-dir", dir},
		{"rebuild", "-data-dir", dir},
		{"seed", "-data-dir", dir, "-conversations", "10", "-messages", "20", "-agents", "2", "-customers", "5"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out strings.Builder
		err := run(ctx, args, env(nil), &out, &out)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), dir) {
			t.Errorf("%v on a data directory in use: %v\n%s", args[0], err, out.String())
		}
	}
	// The running server was not disturbed.
	s.do("POST", "/v1/conversations/"+id+"/messages", p.support, map[string]any{"body": "still here"}).want(t, 201)
	if got := len(s.do("GET", "/v1/conversations/"+id, p.support, nil).want(t, 200).list("messages")); got != 2 {
		t.Errorf("%d messages, want 2", got)
	}
	s.stop()
	startServer(t, dir, map[string]string{"MESSENGER_ADMIN_TOKEN": s.admin}).do("GET", "/v1/conversations/"+id, p.support, nil).want(t, 200)
}

// TestLeaseTakerRedoesAnUnfinishedRebuild: a rebuild that died midway (its
// mark left in the checkpoints, the projector's lease free) is redone by
// the replica that takes the lease, which then serves again. Before, every
// replica answered 503 until one restarted.
func TestLeaseTakerRedoesAnUnfinishedRebuild(t *testing.T) {
	vars := pgAndNATS(t)
	a := startServer(t, t.TempDir(), vars)
	b := startServer(t, t.TempDir(), vars)
	c := startChat(t, a, 1)
	p := c.p
	if r := b.do("GET", "/readyz", "", nil); r.Body["projecting"] != false {
		t.Fatalf("B projects: %s", r.Raw)
	}
	db, d := openData(t, vars, "")
	if _, err := db.Exec(d.Rebind(`INSERT INTO checkpoints (name, position) VALUES (?, 0)`), "rebuild/unfinished"); err != nil {
		t.Fatal(err)
	}
	until(t, "refused", 5*time.Second, func() bool { return b.do("GET", "/v1/me", p.support, nil).Status == http.StatusServiceUnavailable })
	a.stop() // B takes the lease
	until(t, "serving again", 15*time.Second, func() bool { return b.do("GET", "/v1/me", p.support, nil).Status == http.StatusOK })
	c.sameOn(t, b, "after the rebuild")
	analyzed(t, db) // redone, not merely unmarked
	b.do("POST", "/v1/conversations/"+c.id+"/messages", p.support, map[string]any{"body": "after"}).want(t, 201)
}

// TestPruneReadModelsBesideTheLog: the builds before versioned schemas kept
// their read models beside the log. prune keeps them while a replica of
// such a build holds its projector's lease, then drops them, and nothing
// of the log.
func TestPruneReadModelsBesideTheLog(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, url, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := projections.Migrate(ctx, db.SQL(), readmodel.Postgres{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().Exec(`UPDATE checkpoints SET name = 'readmodel/v12' WHERE name LIKE 'readmodel/%'`); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig("messengerd prune", nil, env(map[string]string{"MESSENGER_DATABASE_URL": url}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tables := func() (n int) {
		db.SQL().QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n)
		return n
	}
	before := tables()
	// A replica of the old build projects.
	held, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.Exec(ctx, `SELECT pg_advisory_lock($1)`, lease.Key("projector")); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := prune(ctx, cfg, &out); err != nil || !strings.Contains(out.String(), "kept readmodel/v12 (beside the log)") || tables() != before {
		t.Errorf("prune while the old build projects: %v\n%s(%d tables, %d before)", err, out.String(), tables(), before)
	}
	held.Exec(ctx, `SELECT pg_advisory_unlock($1)`, lease.Key("projector"))
	held.Release()
	out.Reset()
	if err := prune(ctx, cfg, &out); err != nil || !strings.Contains(out.String(), "dropped readmodel/v12 (beside the log)") {
		t.Errorf("prune: %v\n%s", err, out.String())
	}
	var left []string
	rows, _ := db.SQL().Query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	for rows.Next() {
		var n string
		rows.Scan(&n)
		left = append(left, n)
	}
	if want := []string{"events", "log_head", postgres.VersionTable, "messenger_installation"}; !reflect.DeepEqual(left, want) {
		t.Errorf("tables left beside the log: %v, want %v", left, want)
	}
	out.Reset()
	if err := prune(ctx, cfg, &out); err != nil || out.String() != "" {
		t.Errorf("prune with nothing to prune: %v\n%s", err, out.String())
	}
}

// TestInstallationsShareANATSServer: two installations (two databases) on
// one NATS server. Their logs' positions run alike, and a replica took the
// other installation's batches of changes for its own: its agents saw the
// other's conversations live, and missed their own.
func TestInstallationsShareANATSServer(t *testing.T) {
	a := startServer(t, t.TempDir(), pgAndNATS(t))
	b := startServer(t, t.TempDir(), pgAndNATS(t))
	pa, pb := seedPeople(t, a), seedPeople(t, b)
	live := a.openStream("/v1/stream", pa.support, "")
	defer live.close()
	for i := range 5 {
		// The same positions in both logs, B's first.
		b.do("POST", "/v1/conversations", pb.customer, map[string]any{"body": fmt.Sprint("for B only ", i)}).want(t, 201)
		id := a.do("POST", "/v1/conversations", pa.customer, map[string]any{"body": fmt.Sprint("for A ", i)}).want(t, 201).str("id")
		live.waitFor(0, func(e sseEvent) bool { return e.Event == "conversation.created" && e.Data["id"] == id })
	}
	for _, e := range live.all() {
		if strings.Contains(fmt.Sprint(e.Data), "for B only") {
			t.Fatalf("A's stream delivered B's %s: %v", e.Event, e.Data)
		}
	}
}

// TestShutdownEndsStreams: SIGTERM ends the open streams at once (their
// clients resume elsewhere) and the server stops well within its grace,
// which it would wait out for each stream still open.
func TestShutdownEndsStreams(t *testing.T) {
	s := startServer(t, t.TempDir(), nil)
	p := seedPeople(t, s)
	agent := s.openStream("/v1/stream", p.support, "")
	widget := s.openStream("/v1/widget/stream", p.customer, "")
	stopEndsStreams(t, s, agent, widget)
}

// stopEndsStreams stops s and checks that it stopped, and that streams
// ended, within 3 s each.
func stopEndsStreams(t *testing.T, s *server, streams ...*stream) {
	t.Helper()
	began := time.Now()
	s.stop()
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("stopped after %s with %d streams open", took, len(streams))
	}
	for _, st := range streams {
		select {
		case <-st.done:
		case <-time.After(3 * time.Second):
			t.Errorf("a stream (%s) is still open after the server stopped", st.resp.Proto)
		}
	}
}

// h2cClient speaks HTTP/2 without TLS only, and counts the connections it
// opens.
func h2cClient(dials *atomic.Int32) *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Protocols: p,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// TestStreamsOverCleartextHTTP2: a proxy speaking HTTP/2 to messengerd
// without TLS carries the requests and several event streams on one
// connection; the streams outlive the server's write timeout's reach (they
// lift it as over HTTP/1.1), get their events, and end when the server
// stops. With MESSENGER_H2C=off the server speaks HTTP/1.1 only.
func TestStreamsOverCleartextHTTP2(t *testing.T) {
	s := startServer(t, t.TempDir(), nil)
	p := seedPeople(t, s)
	var dials atomic.Int32
	s.client = h2cClient(&dials)
	agent := s.openStream("/v1/stream", p.support, "")
	widget := s.openStream("/v1/widget/stream", p.customer, "")
	for _, st := range []*stream{agent, widget} {
		if st.resp.ProtoMajor != 2 {
			t.Fatalf("stream over %s, want HTTP/2", st.resp.Proto)
		}
	}
	conv := s.do("POST", "/v1/conversations", p.customer, map[string]any{"subject": "Over HTTP/2", "body": "Hello"}).want(t, 201)
	id := conv.str("id")
	agent.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["conversation_id"] == id })
	reply := s.do("POST", "/v1/conversations/"+id+"/messages", p.support, map[string]any{"body": "Hi there"}).want(t, 201)
	widget.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["id"] == reply.str("id") })
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for two streams and the requests, want one", n)
	}

	stopEndsStreams(t, s, agent, widget)

	off := startServer(t, t.TempDir(), map[string]string{"MESSENGER_H2C": "off"})
	var offDials atomic.Int32
	if resp, err := h2cClient(&offDials).Get(off.base + "/readyz"); err == nil {
		resp.Body.Close()
		t.Errorf("MESSENGER_H2C=off answered HTTP/2 (%s)", resp.Proto)
	}
	if resp, err := http.Get(off.base + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("MESSENGER_H2C=off: HTTP/1.1 readyz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestH2CSetting: MESSENGER_H2C is on unless set to off; any other value
// stops the start with a message that says which.
func TestH2CSetting(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
		fails bool
	}{{"", true, false}, {"on", true, false}, {"off", false, false}, {"false", false, true}, {"0", false, true}} {
		cfg, err := parseConfig("messengerd", nil, env(map[string]string{"MESSENGER_H2C": tc.value}), io.Discard)
		switch {
		case tc.fails && (err == nil || !strings.Contains(err.Error(), "MESSENGER_H2C")):
			t.Errorf("MESSENGER_H2C=%q: error %v, want one naming the variable", tc.value, err)
		case !tc.fails && err != nil:
			t.Errorf("MESSENGER_H2C=%q: %v", tc.value, err)
		case !tc.fails && cfg.H2C != tc.want:
			t.Errorf("MESSENGER_H2C=%q: h2c %v, want %v", tc.value, cfg.H2C, tc.want)
		}
	}
}
