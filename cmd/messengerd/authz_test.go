package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// roles are the callers of the authorization matrix, in column order.
var roles = []string{"admin", "support", "agent", "auditor", "customer", "other", "anonymous"}

// TestAuthorizationMatrix calls every route as every role and checks the
// status: what a role may never do is 403, what it may not see is 404, no
// token is 401.
func TestAuthorizationMatrix(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { authorizationMatrix(t, b.vars(t)) })
	}
}

func authorizationMatrix(t *testing.T, vars map[string]string) {
	s := startServer(t, t.TempDir(), vars)
	p := seedPeople(t, s)
	bystanderID, _ := createUser(t, s, "Bea Bystander", "bea@helpdesk.test", "agent", false)
	tokens := map[string]string{"admin": p.admin, "support": p.support, "agent": p.agent, "auditor": p.auditor,
		"customer": p.customer, "other": p.other, "anonymous": ""}

	conv := s.do("POST", "/v1/conversations", p.customer, map[string]any{"subject": "Help", "body": "first"}).want(t, 201).str("id")
	c := "/v1/conversations/" + conv
	item := s.do("POST", "/v1/items", p.support, map[string]any{"kind": "ticket", "title": "Matrix ticket"}).want(t, 201).str("id")
	customerMsg := func() string {
		return "/messages/" + s.do("POST", c+"/messages", p.customer, map[string]any{"body": "mine"}).want(t, 201).str("id")
	}
	n := 0
	uniqueUser := func() any {
		n++
		return map[string]any{"name": "U", "email": fmt.Sprintf("u%d@helpdesk.test", n), "role": "agent"}
	}

	type route struct {
		method, path string
		body         func() any // nil: no body
		pathFn       func() string
		want         [7]int // in the order of roles
	}
	body := func(v any) func() any { return func() any { return v } }
	routes := []route{
		{"POST", "/v1/users", uniqueUser, nil, [7]int{201, 403, 403, 403, 403, 403, 401}},
		{"GET", "/v1/users/" + p.supportID, nil, nil, [7]int{200, 200, 200, 200, 403, 403, 401}},
		{"GET", "/v1/me", nil, nil, [7]int{200, 200, 200, 200, 200, 200, 401}},
		{"POST", "/v1/widget/sessions", body(map[string]any{"name": "V"}), nil, [7]int{201, 201, 201, 201, 201, 201, 201}},
		{"GET", "/v1/customers/" + p.customerID, nil, nil, [7]int{200, 200, 403, 200, 403, 403, 401}},
		{"GET", "/v1/widget/status", nil, nil, [7]int{200, 200, 200, 200, 200, 200, 200}},
		{"PUT", "/v1/helpdesk/status", body(map[string]any{"online": true}), nil, [7]int{200, 200, 403, 403, 403, 403, 401}},
		{"PUT", "/v1/helpdesk/messages", body(map[string]any{"online_message": "on", "offline_message": "off"}), nil, [7]int{200, 403, 403, 403, 403, 403, 401}},
		{"POST", "/v1/conversations", body(map[string]any{"body": "new"}), nil, [7]int{201, 201, 201, 403, 201, 201, 401}},
		{"POST", c + "/messages", body(map[string]any{"body": "hello"}), nil, [7]int{201, 201, 404, 403, 201, 404, 401}},
		{"PATCH", "", body(map[string]any{"body": "edited"}), func() string { return c + customerMsg() }, [7]int{403, 403, 404, 403, 200, 404, 401}},
		{"DELETE", "", nil, func() string { return c + customerMsg() }, [7]int{200, 403, 404, 403, 200, 404, 401}},
		{"POST", c + "/close", nil, nil, [7]int{200, 200, 404, 403, 403, 403, 401}},
		{"POST", c + "/reopen", nil, nil, [7]int{200, 200, 404, 403, 403, 403, 401}},
		{"POST", c + "/read", body(map[string]any{}), nil, [7]int{200, 200, 404, 403, 200, 404, 401}},
		{"POST", c + "/items", body(map[string]any{"kind": "task"}), nil, [7]int{201, 201, 404, 403, 403, 403, 401}},
		{"POST", c + "/links", body(map[string]any{"item_id": item}), nil, [7]int{200, 200, 404, 403, 403, 403, 401}},
		{"DELETE", c + "/links/" + item, nil, nil, [7]int{200, 200, 404, 403, 403, 403, 401}},
		{"POST", "/v1/items", body(map[string]any{"kind": "task", "title": "t"}), nil, [7]int{201, 201, 201, 403, 403, 403, 401}},
		{"POST", "/v1/items/" + item + "/assignees", body(map[string]any{"user_id": bystanderID}), nil, [7]int{200, 200, 200, 403, 403, 403, 401}},
		{"POST", "/v1/items/" + item + "/followers", body(map[string]any{"user_id": bystanderID}), nil, [7]int{200, 200, 200, 403, 403, 403, 401}},
		{"GET", "/v1/items/" + item, nil, nil, [7]int{200, 200, 200, 200, 403, 403, 401}},
		{"GET", "/v1/inbox?section=customers", nil, nil, [7]int{200, 200, 403, 200, 403, 403, 401}},
		{"GET", "/v1/inbox?section=mine", nil, nil, [7]int{200, 200, 200, 200, 403, 403, 401}},
		{"GET", "/v1/unread", nil, nil, [7]int{200, 200, 200, 200, 403, 403, 401}},
		{"GET", c, nil, nil, [7]int{200, 200, 404, 200, 200, 404, 401}},
		{"GET", "/v1/widget/conversations", nil, nil, [7]int{403, 403, 403, 403, 200, 200, 401}},
		{"GET", c + "/history", nil, nil, [7]int{200, 200, 404, 200, 403, 403, 401}},
		{"GET", "/v1/audit/events", nil, nil, [7]int{200, 403, 403, 200, 403, 403, 401}},
		{"GET", "/v1/helpdesk", nil, nil, [7]int{200, 200, 200, 200, 403, 403, 401}},
		{"GET", "/v1/users", nil, nil, [7]int{200, 200, 200, 200, 403, 403, 401}},
		{"GET", "/v1/items?q=matrix", nil, nil, [7]int{200, 200, 200, 200, 403, 403, 401}},
		{"GET", "/v1/stream", nil, nil, [7]int{200, 200, 200, 200, 403, 403, 401}},
		{"GET", "/v1/widget/stream", nil, nil, [7]int{403, 403, 403, 403, 200, 200, 401}},
	}
	for _, r := range routes {
		for i, role := range roles {
			path := r.path
			if r.pathFn != nil {
				path = r.pathFn()
			}
			var b any
			if r.body != nil {
				b = r.body()
			}
			got := statusOf(t, s, r.method, path, tokens[role], b)
			if got != r.want[i] {
				t.Errorf("%s %s as %s: status %d, want %d", r.method, r.path, role, got, r.want[i])
			}
		}
	}
}

// statusOf returns the status of a request without reading a streaming body.
func statusOf(t *testing.T, s *server, method, path, token string, body any) int {
	t.Helper()
	if method != "GET" || (path != "/v1/stream" && path != "/v1/widget/stream") {
		return s.do(method, path, token, body).Status
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, s.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
