package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/helpdesk/messenger/projections"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// TestMain removes the binary that messengerdBinary built, when the tests
// are over: one per run was left in the temporary directory, 54 MB each.
func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

// messengerdBinary builds messengerd once per test run.
func messengerdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "messengerd-test-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "messengerd")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// nextBinary builds messengerd as the next version of the read models
// would be: projections.Name set to name.
func nextBinary(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "messengerd-next")
	out, err := exec.Command("go", "build", "-o", bin, "-ldflags", "-X github.com/helpdesk/messenger/projections.Name="+name, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a messengerd running as a child process, which a test may SIGKILL.
type process struct {
	*server
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs the messengerd binary with vars and waits until it is ready.
func startProcess(t *testing.T, dir string, vars map[string]string) *process {
	t.Helper()
	return startBinary(t, messengerdBinary(t), dir, vars)
}

// startBinary runs the messengerd binary bin with vars and waits until it is ready.
func startBinary(t *testing.T, bin, dir string, vars map[string]string) *process {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "-addr", addr, "-data-dir", dir)
	cmd.Env = append(os.Environ(), "MESSENGER_ADMIN_TOKEN=admin-secret-token", "MESSENGER_SESSION_RATE=0")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{server: &server{t: t, base: "http://" + addr, dir: dir, admin: "admin-secret-token"}, cmd: cmd, logs: logs}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", addr, logs)
		}
	})
	if !untilReady(p.base, 30*time.Second) {
		t.Fatalf("messengerd at %s not ready in 30 s:\n%s", addr, logs)
	}
	return p
}

// kill ends the process with SIGKILL: no shutdown, no flush.
func (p *process) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// projecting reports whether p runs the projector now.
func (p *process) projecting() bool {
	resp, err := http.Get(p.base + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body struct{ Projecting bool }
	json.NewDecoder(resp.Body).Decode(&body)
	return body.Projecting
}

// post sends a message; it returns the message id when the server
// acknowledged it (201), else "".
func post(client *http.Client, base, token, conv, body, clientID string) string {
	b, _ := json.Marshal(map[string]string{"body": body, "client_id": clientID})
	req, _ := http.NewRequest("POST", base+"/v1/conversations/"+conv+"/messages", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		return ""
	}
	var m struct{ ID string }
	json.Unmarshal(raw, &m)
	return m.ID
}

// load posts from writers goroutines to each of targets until stop, and
// returns the ids of the acknowledged messages.
func load(ctx context.Context, targets []string, token, conv string, writers int) map[string]bool {
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for ti, base := range targets {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					key := fmt.Sprintf("t%d-w%d-%d", ti, w, i)
					if id := post(client, base, token, conv, "load "+key, key); id != "" {
						mu.Lock()
						acked[id] = true
						mu.Unlock()
					} else {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}()
		}
	}
	wg.Wait()
	return acked
}

// allMessages returns the ids of every message of conversation conv, read through base.
func allMessages(t *testing.T, s *server, token, conv string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	cursor := ""
	for {
		path := "/v1/conversations/" + conv + "?limit=200"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := s.do("GET", path, token, nil).want(t, 200)
		for _, m := range r.list("messages") {
			id := m["id"].(string)
			if ids[id] {
				t.Fatalf("message %s listed twice", id)
			}
			ids[id] = true
		}
		next, _ := r.Body["next_cursor"].(string)
		if next == "" {
			return ids
		}
		cursor = next
	}
}

// TestTwoReplicas runs two messengerd processes on one PostgreSQL and one
// NATS: what is posted to A reaches a stream on B; A is SIGKILLed under load;
// B takes over projecting; nothing acknowledged is missing from B's read
// models or from a stream resuming with Last-Event-ID.
func TestTwoReplicas(t *testing.T) {
	vars := pgAndNATS(t)
	a := startProcess(t, t.TempDir(), vars)
	b := startProcess(t, t.TempDir(), vars)
	if !a.projecting() || b.projecting() {
		t.Fatalf("A projecting %v, B projecting %v: want A only", a.projecting(), b.projecting())
	}
	_, support := createUser(t, a.server, "Sam", "sam@helpdesk.test", "agent", true)
	cust := a.do("POST", "/v1/widget/sessions", "", map[string]any{"name": "Alice"}).want(t, 201).str("token")
	conv := a.do("POST", "/v1/conversations", cust, map[string]any{"body": "hello"}).want(t, 201)
	id, start := conv.str("id"), conv.str("position")

	// A message posted to A reaches an SSE client connected to B.
	onB := b.openStream("/v1/stream", support, "")
	m := a.do("POST", "/v1/conversations/"+id+"/messages", cust, map[string]any{"body": "via A"}).want(t, 201)
	onB.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["id"] == m.str("id") })
	// And a write answered by A is readable on B at once.
	if got := allMessages(t, b.server, support, id); !got[m.str("id")] {
		t.Fatal("B does not show the message A acknowledged")
	}

	ctx, stop := context.WithCancel(context.Background())
	ackedCh := make(chan map[string]bool)
	go func() { ackedCh <- load(ctx, []string{a.base, b.base}, cust, id, 4) }()
	time.Sleep(700 * time.Millisecond)
	a.kill()
	time.Sleep(700 * time.Millisecond)
	stop()
	acked := <-ackedCh
	acked[m.str("id")] = true
	if len(acked) < 20 {
		t.Fatalf("only %d messages acknowledged under load", len(acked))
	}
	deadline := time.Now().Add(15 * time.Second)
	for !b.projecting() {
		if time.Now().After(deadline) {
			t.Fatal("B did not take over projecting within 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// B's read models hold every acknowledged message (a write to B waits for them).
	final := b.do("POST", "/v1/conversations/"+id+"/messages", cust, map[string]any{"body": "after the take-over"}).want(t, 201)
	acked[final.str("id")] = true
	got := allMessages(t, b.server, support, id)
	for mid := range acked {
		if !got[mid] {
			t.Errorf("acknowledged message %s is missing from B's read models", mid)
		}
	}
	// A stream resuming on B from before the load gets every one, once.
	resumed := b.openStream("/v1/stream", support, start)
	resumed.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["id"] == final.str("id") })
	seen := map[string]int{}
	for _, e := range resumed.all() {
		if e.Event == "message.created" {
			seen[e.Data["id"].(string)]++
		}
	}
	for mid := range acked {
		if seen[mid] != 1 {
			t.Errorf("resumed stream delivered message %s %d times", mid, seen[mid])
		}
	}
	t.Logf("%d messages acknowledged across the kill; %d in B's read models", len(acked), len(got))
}

// TestCrashLosesNothing SIGKILLs a single embedded server under concurrent
// posting: after a restart every acknowledged message is there, and the read
// models are exactly what the log rebuilds.
func TestCrashLosesNothing(t *testing.T) {
	dir := t.TempDir()
	p := startProcess(t, dir, nil)
	_, support := createUser(t, p.server, "Sam", "sam@helpdesk.test", "agent", true)
	cust := p.do("POST", "/v1/widget/sessions", "", map[string]any{"name": "Alice"}).want(t, 201).str("token")
	id := p.do("POST", "/v1/conversations", cust, map[string]any{"body": "hello"}).want(t, 201).str("id")

	ctx, stop := context.WithCancel(context.Background())
	ackedCh := make(chan map[string]bool)
	go func() { ackedCh <- load(ctx, []string{p.base}, cust, id, 8) }()
	time.Sleep(800 * time.Millisecond)
	p.kill()
	stop()
	acked := <-ackedCh
	if len(acked) < 20 {
		t.Fatalf("only %d messages acknowledged under load", len(acked))
	}

	p2 := startProcess(t, dir, nil)
	got := allMessages(t, p2.server, support, id)
	for mid := range acked {
		if !got[mid] {
			t.Errorf("acknowledged message %s lost in the crash", mid)
		}
	}
	// The read models hold exactly what the log holds.
	posted := 0
	for after := ""; ; {
		path := "/v1/audit/events?limit=200"
		if after != "" {
			path += "&after=" + after
		}
		r := p2.do("GET", path, p2.admin, nil).want(t, 200)
		for _, e := range r.list("events") {
			if e["type"] == "conversation.message_posted" {
				posted++
			}
		}
		next, _ := r.Body["next_cursor"].(string)
		if next == "" {
			break
		}
		after = next
	}
	if posted != len(got) {
		t.Errorf("the log holds %d messages, the read models %d", posted, len(got))
	}
	before := p2.do("GET", "/v1/inbox?section=customers", support, nil).want(t, 200)
	p2.kill()
	if err := run(context.Background(), []string{"rebuild", "-data-dir", dir}, env(nil), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	p3 := startProcess(t, dir, nil)
	after := p3.do("GET", "/v1/inbox?section=customers", support, nil).want(t, 200)
	if string(after.Raw) != string(before.Raw) {
		t.Errorf("read models after restart differ from a rebuild:\n%s\n%s", before.Raw, after.Raw)
	}
	t.Logf("%d messages acknowledged before the kill, %d in the log", len(acked), posted)
}

// TestRollingUpgrade upgrades a running installation to a build whose read
// models differ (another projections.Name) the way a rolling deployment
// does: the new build starts beside the old one, builds its own read models
// from the log while the old one goes on serving, without one refused or
// lost write, and then both serve the same log; the old replica stops, and
// messengerd prune drops its read models. Before, the new build recreated
// the tables the old one served from: the old replica answered from
// half-filled tables, or failed, until it was stopped.
func TestRollingUpgrade(t *testing.T) {
	vars := pgAndNATS(t)
	next := nextBinary(t, "readmodel/vnext")
	old := startProcess(t, t.TempDir(), vars)
	p := seedPeople(t, old.server)
	conv := old.do("POST", "/v1/conversations", p.customer, map[string]any{"body": "hello"}).want(t, 201).str("id")
	for i := range 50 {
		old.do("POST", "/v1/conversations/"+conv+"/messages", p.support, map[string]any{"body": fmt.Sprint("before ", i)}).want(t, 201)
	}

	// Writes to the old replica all through the new one's start.
	ctx, stopLoad := context.WithCancel(context.Background())
	var refused atomic.Int64
	loaded := make(chan map[string]bool, 1)
	go func() {
		acked := map[string]bool{}
		client := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ctx.Err() == nil; i++ {
			key := fmt.Sprint("during-", i)
			if id := post(client, old.base, p.support, conv, key, key); id != "" {
				acked[id] = true
			} else if ctx.Err() == nil {
				refused.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
		loaded <- acked
	}()
	nu := startBinary(t, next, t.TempDir(), vars)
	time.Sleep(300 * time.Millisecond) // writes to the old one after the new one is ready, too
	stopLoad()
	acked := <-loaded
	if refused.Load() > 0 || len(acked) == 0 {
		t.Errorf("the old replica refused %d writes during the upgrade (%d acknowledged)", refused.Load(), len(acked))
	}
	if r := nu.do("GET", "/readyz", "", nil); r.Body["projecting"] != true {
		t.Errorf("the new version's only replica does not project: %s", r.Raw)
	}

	// Both versions hold the whole log, and go on following it.
	stream := nu.openStream("/v1/stream", p.support, "")
	id := old.do("POST", "/v1/conversations/"+conv+"/messages", p.support, map[string]any{"body": "after"}).want(t, 201).str("id")
	stream.waitFor(0, func(e sseEvent) bool { return e.Event == "message.created" && e.Data["id"] == id })
	onNew := nu.do("POST", "/v1/conversations/"+conv+"/messages", p.support, map[string]any{"body": "on the new one"}).want(t, 201).str("id")
	// Each version's projector follows the log on its own: the old one
	// shows the new one's write once it has applied it (read-your-writes
	// holds on the replica written to).
	var want map[string]bool
	until(t, "the old version shows the message written to the new one", 10*time.Second, func() bool {
		want = allMessages(t, old.server, p.support, conv)
		return want[onNew]
	})
	got := allMessages(t, nu.server, p.support, conv)
	if len(got) != len(want) || len(got) != 50+1+len(acked)+2 {
		t.Errorf("messages: new version %d, old %d, want %d", len(got), len(want), 50+1+len(acked)+2)
	}
	for id := range acked {
		if !got[id] {
			t.Errorf("message %s acknowledged by the old replica is missing from the new one", id)
		}
	}
	inbox := "/v1/inbox?section=customers&status=open"
	if a, b := old.do("GET", inbox, p.support, nil).want(t, 200), nu.do("GET", inbox, p.support, nil).want(t, 200); string(a.Raw) != string(b.Raw) {
		t.Errorf("inbox, old version:\n%s\nnew:\n%s", a.Raw, b.Raw)
	}

	// The old version's read models go once its last replica is gone.
	prune := func() string {
		t.Helper()
		cmd := exec.Command(next, "prune")
		cmd.Env = os.Environ()
		for k, v := range vars {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("prune: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := prune(); !strings.Contains(out, "kept "+projections.Schema()) {
		t.Errorf("prune while the old version runs:\n%s", out)
	}
	old.kill()
	if out := prune(); !strings.Contains(out, "dropped "+projections.Schema()) || !strings.Contains(out, "deleted the NATS stream messenger_changes_") {
		t.Errorf("prune after the old version stopped:\n%s", out)
	}
	nu.do("GET", "/v1/conversations/"+conv, p.support, nil).want(t, 200)
	nu.do("POST", "/v1/conversations/"+conv+"/messages", p.support, map[string]any{"body": "after the prune"}).want(t, 201)
	nu.kill()
	if logs := nu.logs.String(); !strings.Contains(logs, "read models of other versions") || !strings.Contains(logs, projections.Schema()) {
		t.Errorf("the new version's start did not point at the old one's read models:\n%s", logs)
	}
}
