package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helpdesk/messenger/infra/cputime"
)

// The kinds of request the bench times.
const (
	opPost = iota
	opInbox
	opUnread
	opConversation
	numOps
)

var opNames = [numOps]string{"post", "inbox", "unread", "conversation"}

// The kinds of subscriber.
const (
	subWidget  = iota // a customer's widget stream: receives its conversation's messages
	subSupport        // a support agent's stream: receives every customer conversation's messages
	subAgent          // an agent without support: receives none of them
	subIdle           // an idle stream, of the idle agent: receives none of them
)

// subscriber is one stream and what it received.
type subscriber struct {
	kind     int
	customer int    // subWidget: the customer's index
	seen     bitset // posts received, owned by the stream's goroutine
	st       *stream
}

// expects reports whether s should receive p.
func (s *subscriber) expects(p *post) bool {
	switch s.kind {
	case subSupport:
		return true
	case subWidget:
		return int(p.conv) == s.customer
	}
	return false
}

type customer struct {
	id, token, conv string
}

type agent struct {
	id, token string
	support   bool
}

// bench is one run.
type bench struct {
	cfg    config
	stdout io.Writer
	stderr io.Writer
	runID  string // the run's id, in every body it posts
	api    *client
	target *url.URL
	start  time.Time // the origin of the bench's clock

	customers []customer
	agents    []agent
	support   []int // indices of the support agents
	idleToken string
	subs      []*subscriber
	fanout    int // subscribers expecting each post: its customer and every support agent

	posts    *postLog
	cmd      [numOps]histogram
	delivery histogram

	measureFrom, measureTo time.Duration // the measured window of scheduled times

	postsAcked, postsAckedMeasured, postsFailed atomic.Int64
	reads, unsent, requests                     atomic.Int64
	delivered, deliveredMeasured                atomic.Int64
	duplicated, unexpected, foreign, mismatched atomic.Int64

	errMu  sync.Mutex
	errs   map[string]int64
	errSum atomic.Int64
	errMsg string // the first error seen, for the report
}

func newBench(cfg config, stdout, stderr io.Writer) (*bench, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil {
		return nil, err
	}
	var id [4]byte
	rand.Read(id[:])
	idle := max(cfg.Writers, cfg.Setup) + 16
	return &bench{
		cfg: cfg, stdout: stdout, stderr: stderr,
		runID: hex.EncodeToString(id[:]), api: newClient(cfg.Server, idle, cfg.MaxConns, cfg.HTTP2), target: u,
		start: time.Now(), posts: new(postLog), errs: map[string]int64{},
	}, nil
}

// clock returns the time since the bench started, on the monotonic clock.
func (b *bench) clock() time.Duration { return time.Since(b.start) }

// fail counts a failed request of the given kind.
func (b *bench) fail(kind string, err error) {
	key := kind + " "
	if s := statusOf(err); s != 0 {
		key += strconv.Itoa(s)
	} else {
		key += "network"
	}
	b.errSum.Add(1)
	b.errMu.Lock()
	b.errs[key]++
	if b.errMsg == "" {
		b.errMsg = kind + ": " + err.Error()
	}
	b.errMu.Unlock()
}

func (b *bench) run(ctx context.Context) error {
	var r report
	r.Server, r.Run = b.cfg.Server, b.runID
	r.setConfig(b.cfg)
	r.RSS.Start, r.RSS.Peak, r.ServerCPU, r.HostCPU = b.api.sample(ctx, b.cfg.PID).rss, -1, -1, -1

	setupStart := time.Now()
	if err := b.setup(ctx); err != nil {
		return err
	}
	streamCtx, stopStreams := context.WithCancel(context.WithoutCancel(ctx))
	var streams sync.WaitGroup
	defer func() {
		stopStreams()
		streams.Wait()
	}()
	connectStart := time.Now()
	if err := b.openStreams(ctx, streamCtx, &streams); err != nil {
		return err
	}
	r.Streams.ConnectSeconds = round2(time.Since(connectStart).Seconds())
	r.SetupSeconds = round2(time.Since(setupStart).Seconds())
	ready := b.api.sample(ctx, b.cfg.PID)
	r.RSS.Ready = ready.rss

	// Load.
	jobs := make(chan job, 1<<16)
	var writers sync.WaitGroup
	reqCtx := context.WithoutCancel(ctx) // an interrupt lets requests in flight finish
	for w := range b.cfg.Writers {
		writers.Add(1)
		go func() {
			defer writers.Done()
			b.writer(reqCtx, ctx.Done(), w, jobs)
		}()
	}
	begin := b.clock() + 10*time.Millisecond
	b.measureFrom = begin + b.cfg.Warmup
	b.measureTo = b.measureFrom + b.cfg.Duration
	prog := b.startProgress(ctx, &r)
	cpu0, rusage0, host0, t0 := b.api.sample(ctx, b.cfg.PID).cpu, cputime.Self(), readHostCPU(), b.clock()
	b.schedule(ctx, jobs, begin)
	windowEnd := b.measureTo
	if ctx.Err() != nil {
		windowEnd = min(b.clock(), b.measureTo) // interrupted
	}
	window := windowEnd - b.measureFrom
	close(jobs)
	writers.Wait()
	cpu1, rusage1, host1, t1 := b.api.sample(reqCtx, b.cfg.PID).cpu, cputime.Self(), readHostCPU(), b.clock()
	r.HostCPU, r.HostCores = host1.busySince(host0), host1.cpus
	if wall := (t1 - t0).Seconds(); wall > 0 {
		if cpu0 >= 0 && cpu1 >= 0 {
			r.ServerCPU = round2((cpu1 - cpu0) / wall)
		}
		r.ClientCPU = round2((rusage1 - rusage0).Seconds() / wall)
	}

	// Let the last deliveries arrive.
	graceStart := time.Now()
	for time.Since(graceStart) < b.cfg.Grace && ctx.Err() == nil && !b.allDelivered() {
		time.Sleep(20 * time.Millisecond)
	}
	r.GraceSeconds = round2(time.Since(graceStart).Seconds())
	prog.stop()
	r.RSS.End = b.api.sample(reqCtx, b.cfg.PID).rss
	stopStreams()
	streams.Wait()

	b.fill(&r, window)
	r.RSS.Peak = max(r.RSS.Peak, r.RSS.Start, r.RSS.Ready, r.RSS.End)
	if ctx.Err() != nil {
		r.Failures = append(r.Failures, "interrupted")
	}
	if err := r.print(b.stdout, b.cfg.JSON); err != nil {
		return err
	}
	if r.Unsent > 0 {
		fmt.Fprintf(b.stderr, "messenger-bench: warning: %d requests were due but not sent: the rate was not sustained, and latencies understate\n", r.Unsent)
	}
	if len(r.Failures) > 0 {
		return fmt.Errorf("failed: %v", r.Failures)
	}
	return nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// hostCPU is a reading of this machine's CPU time from /proc/stat, in
// clock ticks summed over its CPUs; cpus is 0 when it could not be read.
type hostCPU struct {
	busy, total uint64
	cpus        int
}

// readHostCPU reads /proc/stat.
func readHostCPU() hostCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPU{}
	}
	return parseProcStat(string(b))
}

// parseProcStat reads the text of /proc/stat: busy is all but idle and
// iowait.
func parseProcStat(stat string) hostCPU {
	var h hostCPU
	for line := range strings.Lines(stat) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			h.cpus++ // cpu0, cpu1, …
			continue
		}
		for i, v := range f[1:] { // user nice system idle iowait irq softirq steal guest guest_nice
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || i >= 8 { // guest time is counted in user time already
				continue
			}
			h.total += n
			if i != 3 && i != 4 {
				h.busy += n
			}
		}
	}
	return h
}

// busySince returns how many of the machine's CPUs were busy, on average,
// from reading a to h; -1 when either could not be read.
func (h hostCPU) busySince(a hostCPU) float64 {
	if h.cpus == 0 || a.cpus == 0 || h.total <= a.total {
		return -1
	}
	return round2(float64(h.busy-a.busy) / float64(h.total-a.total) * float64(h.cpus))
}

// setup checks the admin token, then creates the agents, the idle agent
// and the customers with their conversations.
func (b *bench) setup(ctx context.Context) error {
	if err := b.api.do(ctx, http.MethodGet, "/v1/me", b.cfg.AdminToken, nil, nil); err != nil {
		return fmt.Errorf("check the admin token with GET /v1/me: %w", err)
	}
	nSupport := int(float64(b.cfg.Agents)*b.cfg.SupportShare + 0.5)
	b.agents = make([]agent, b.cfg.Agents)
	err := parallel(ctx, b.cfg.Agents, b.cfg.Setup, func(ctx context.Context, i int) error {
		a, err := b.createAgent(ctx, fmt.Sprintf("a%d", i), i < nSupport)
		b.agents[i] = a
		return err
	})
	if err != nil {
		return fmt.Errorf("create agents: %w", err)
	}
	for i, a := range b.agents {
		if a.support {
			b.support = append(b.support, i)
		}
	}
	if b.cfg.Idle > 0 {
		a, err := b.createAgent(ctx, "idle", false)
		if err != nil {
			return fmt.Errorf("create the idle agent: %w", err)
		}
		b.idleToken = a.token
	}
	b.customers = make([]customer, b.cfg.Customers)
	err = parallel(ctx, b.cfg.Customers, b.cfg.Setup, func(ctx context.Context, i int) error {
		c, err := b.createCustomer(ctx, i)
		b.customers[i] = c
		return err
	})
	if err != nil {
		return fmt.Errorf("create customers: %w", err)
	}
	b.fanout = 1 + len(b.support)
	return nil
}

func (b *bench) createAgent(ctx context.Context, name string, support bool) (agent, error) {
	body, _ := json.Marshal(map[string]any{
		"name": "Bench " + name, "email": "bench-" + b.runID + "-" + name + "@bench.invalid",
		"role": "agent", "support": support,
	})
	var out struct{ ID, Token string }
	err := retrying(ctx, 8, func() error {
		return b.api.do(ctx, http.MethodPost, "/v1/users", b.cfg.AdminToken, body, &out)
	})
	if err == nil && out.Token == "" {
		err = errors.New("POST /v1/users answered no token")
	}
	return agent{id: out.ID, token: out.Token, support: support}, err
}

func (b *bench) createCustomer(ctx context.Context, i int) (customer, error) {
	body, _ := json.Marshal(map[string]string{
		"name": fmt.Sprintf("Customer %d", i), "email": fmt.Sprintf("bench-%s-c%d@bench.invalid", b.runID, i),
	})
	var sess struct {
		CustomerID string `json:"customer_id"`
		Token      string `json:"token"`
	}
	err := retrying(ctx, 8, func() error {
		return b.api.do(ctx, http.MethodPost, "/v1/widget/sessions", "", body, &sess)
	})
	if statusOf(err) == http.StatusTooManyRequests {
		return customer{}, fmt.Errorf("%w (start the server with MESSENGER_SESSION_RATE=0 to lift the per-IP limit)", err)
	}
	if err != nil {
		return customer{}, err
	}
	body, _ = json.Marshal(map[string]string{
		"subject": fmt.Sprintf("Bench %s order %d", b.runID, i), "body": "bench-setup: hello, I have a question about my order",
	})
	var conv struct{ ID string }
	err = retrying(ctx, 8, func() error {
		return b.api.do(ctx, http.MethodPost, "/v1/conversations", sess.Token, body, &conv)
	})
	return customer{id: sess.CustomerID, token: sess.Token, conv: conv.ID}, err
}

// parallel calls f for 0..n-1, conc at a time, and returns the first error.
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// openStreams starts every stream (customers', agents', idle ones), a few
// hundred connecting at a time, and waits until each has its first id.
func (b *bench) openStreams(ctx, streamCtx context.Context, wg *sync.WaitGroup) error {
	for i := range b.customers {
		b.subs = append(b.subs, &subscriber{kind: subWidget, customer: i})
	}
	for _, a := range b.agents {
		kind := subAgent
		if a.support {
			kind = subSupport
		}
		b.subs = append(b.subs, &subscriber{kind: kind})
	}
	for range b.cfg.Idle {
		b.subs = append(b.subs, &subscriber{kind: subIdle})
	}
	if len(b.subs) == 0 {
		return nil
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tlsConf := &tls.Config{ServerName: b.target.Hostname()}
	var h2 *http.Client
	if b.cfg.HTTP2 {
		// No timeout: a stream lasts; its silence is timed as it reads.
		h2 = &http.Client{Transport: &http.Transport{
			Protocols: protocols(b.cfg.Server, true), DialContext: dialer.DialContext,
			TLSClientConfig: tlsConf, DisableCompression: true,
		}}
	}
	marker := markerOf(b.runID)
	prefix := strings.TrimRight(b.target.EscapedPath(), "/") // a server behind a path
	sem := make(chan struct{}, 256)
	var ready atomic.Int64
	allReady := make(chan struct{})
	total := int64(len(b.subs))
	for i, s := range b.subs {
		st := &stream{
			target: b.target, path: prefix + "/v1/stream", marker: marker, clock: b.clock,
			dialer: dialer, tls: tlsConf, h2: h2, bufLen: 4096,
		}
		switch s.kind {
		case subWidget:
			st.path, st.token = prefix+"/v1/widget/stream", b.customers[s.customer].token
		case subIdle:
			st.token, st.bufLen = b.idleToken, 1024
		default:
			st.token = b.agents[i-len(b.customers)].token
		}
		st.onMessage = func(d delivery) { b.deliver(i, s, d) }
		st.onError = func(status int, err error) {
			b.requests.Add(1)
			b.fail("stream", &httpError{status: status, body: err.Error()})
		}
		st.onReady = func() {
			b.requests.Add(1)
			<-sem
			if ready.Add(1) == total {
				close(allReady)
			}
		}
		s.st = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-streamCtx.Done():
				return
			}
			st.run(streamCtx)
		}()
	}
	timeout := 60*time.Second + time.Duration(total)*5*time.Millisecond
	select {
	case <-allReady:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		b.errMu.Lock()
		defer b.errMu.Unlock()
		return fmt.Errorf("only %d of %d streams connected in %s; errors %v, first: %s", ready.Load(), total, timeout, b.errs, b.errMsg)
	}
}

// deliver counts a message.created that stream i received.
func (b *bench) deliver(i int, s *subscriber, d delivery) {
	if !d.ours {
		b.foreign.Add(1)
		return
	}
	p := b.posts.get(d.seq)
	if p == nil {
		b.foreign.Add(1)
		return
	}
	sent := p.sent.Load()
	if sent == 0 {
		b.foreign.Add(1) // not sent yet: it cannot be ours
		return
	}
	if s.seen.has(d.seq) {
		b.duplicated.Add(1)
		return
	}
	s.seen.set(d.seq)
	if !s.expects(p) {
		b.unexpected.Add(1)
		return
	}
	p.got.Add(1)
	b.delivered.Add(1)
	if id := p.id.Load(); id != nil && *id != string(d.id) {
		b.mismatched.Add(1)
	}
	if p.measured {
		b.deliveredMeasured.Add(1)
		b.delivery.record(i, d.at-time.Duration(sent))
	}
}

// allDelivered reports whether every acknowledged post reached every
// subscriber expecting it.
func (b *bench) allDelivered() bool {
	n := b.posts.len()
	for seq := range n {
		p := b.posts.get(seq)
		if p.state.Load() == postAcked && int(p.got.Load()) < b.fanout {
			return false
		}
	}
	return true
}

// job is one request due at sched.
type job struct {
	op    int
	sched time.Duration
	seq   uint64
	p     *post
}

// schedule hands out requests at the configured rate from begin to the end
// of the measured window, open-loop: each is due at its own time whatever
// happened to the ones before, and its latency counts from then.
func (b *bench) schedule(ctx context.Context, jobs chan<- job, begin time.Duration) {
	readRate := b.cfg.Rate * b.cfg.Mix / (1 - b.cfg.Mix)
	total := b.cfg.Rate + readRate
	if total == 0 {
		t := time.NewTimer(b.measureTo - b.clock())
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return
	}
	interval := float64(time.Second) / total
	rng := mrand.New(mrand.NewPCG(uint64(b.start.UnixNano()), 1))
	var readAcc float64
	reads, custRR := 0, 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for k := 0; ; k++ {
		at := begin + time.Duration(float64(k)*interval)
		if at >= b.measureTo {
			return
		}
		if d := at - b.clock(); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		j := job{sched: at}
		if readAcc += b.cfg.Mix; readAcc >= 1 {
			readAcc--
			j.op = opInbox + reads%3
			reads++
		} else {
			seq, p := b.posts.add()
			if p == nil {
				return
			}
			p.sched, p.measured, p.author = int64(at), at >= b.measureFrom, -1
			if len(b.support) > 0 && rng.Float64() < b.cfg.ReplyShare {
				p.author = int32(b.support[rng.IntN(len(b.support))])
				p.conv = int32(rng.IntN(len(b.customers)))
			} else {
				p.conv = int32(custRR % len(b.customers))
				custRR++
			}
			j.op, j.seq, j.p = opPost, seq, p
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

// sendSlack is how long after the window's end writers still send what
// was due in it; what is left after that is counted as unsent.
const sendSlack = time.Second

// writer sends the requests it is handed until jobs is closed, or until
// interrupted is.
func (b *bench) writer(ctx context.Context, interrupted <-chan struct{}, w int, jobs <-chan job) {
	rng := mrand.New(mrand.NewPCG(uint64(b.start.UnixNano()), uint64(w)+2))
	for j := range jobs {
		late := b.clock() > b.measureTo+sendSlack
		select {
		case <-interrupted:
			late = true
		default:
		}
		if late {
			if j.p != nil {
				j.p.state.Store(postFailed) // never sent: nothing to expect
			}
			b.unsent.Add(1)
			continue
		}
		b.requests.Add(1)
		if j.op == opPost {
			b.post(ctx, w, j)
		} else {
			b.read(ctx, w, rng, j)
		}
	}
}

type postBody struct {
	Body     string `json:"body"`
	ClientID string `json:"client_id"`
}

func (b *bench) post(ctx context.Context, w int, j job) {
	p := j.p
	c := &b.customers[p.conv]
	token := c.token
	if p.author >= 0 {
		token = b.agents[p.author].token
	}
	body, _ := json.Marshal(postBody{Body: bodyOf(b.runID, j.seq, b.cfg.BodySize), ClientID: b.runID + "-" + strconv.FormatUint(j.seq, 10)})
	var out struct {
		ID string `json:"id"`
	}
	p.sent.Store(int64(max(b.clock(), 1)))
	err := b.api.do(ctx, http.MethodPost, "/v1/conversations/"+c.conv+"/messages", token, body, &out)
	took := b.clock() - j.sched
	if err == nil && out.ID == "" {
		err = errors.New("the answer holds no message id")
	}
	if err != nil {
		p.state.Store(postFailed)
		b.postsFailed.Add(1)
		b.fail("post", err)
		return
	}
	p.id.Store(&out.ID)
	p.state.Store(postAcked)
	b.postsAcked.Add(1)
	if p.measured {
		b.postsAckedMeasured.Add(1)
		b.cmd[opPost].record(w, took)
	}
}

func (b *bench) read(ctx context.Context, w int, rng *mrand.Rand, j job) {
	token, path := b.cfg.AdminToken, ""
	anyAgent := func() {
		if len(b.agents) > 0 {
			token = b.agents[rng.IntN(len(b.agents))].token
		}
	}
	supportAgent := func() {
		if len(b.support) > 0 {
			token = b.agents[b.support[rng.IntN(len(b.support))]].token
		}
	}
	switch j.op {
	case opInbox:
		supportAgent()
		path = "/v1/inbox?section=customers"
	case opUnread:
		anyAgent()
		path = "/v1/unread"
	case opConversation:
		if len(b.customers) == 0 {
			return
		}
		c := &b.customers[rng.IntN(len(b.customers))]
		if rng.IntN(2) == 0 {
			token = c.token
		} else {
			supportAgent()
		}
		path = "/v1/conversations/" + c.conv
	}
	err := b.api.do(ctx, http.MethodGet, path, token, nil, nil)
	took := b.clock() - j.sched
	if err != nil {
		b.fail(opNames[j.op], err)
		return
	}
	b.reads.Add(1)
	if time.Duration(j.sched) >= b.measureFrom {
		b.cmd[j.op].record(w, took)
	}
}

// fill completes r with the counts of the run.
func (b *bench) fill(r *report, window time.Duration) {
	secs := window.Seconds()
	r.MeasuredSeconds = round2(secs)
	r.Posts = b.postsAckedMeasured.Load()
	r.PostsTotal = b.postsAcked.Load()
	r.PostsFailed = b.postsFailed.Load()
	r.Reads = b.reads.Load()
	r.Unsent = b.unsent.Load()
	if secs > 0 {
		r.PostsPerSecond = round2(float64(r.Posts) / secs)
	}
	r.Commands = map[string]latencyReport{}
	for op := range numOps {
		r.Commands[opNames[op]] = latencyOf(b.cmd[op].snapshot())
	}

	d := &r.Deliveries
	var widgetLost int64
	for seq := range b.posts.len() {
		p := b.posts.get(seq)
		switch p.state.Load() {
		case postAcked:
			d.Expected += int64(b.fanout)
			d.Delivered += int64(p.got.Load())
			if !b.subs[p.conv].seen.has(seq) {
				widgetLost++
			}
		default:
			d.Unacknowledged += int64(p.got.Load())
		}
	}
	d.Lost = d.Expected - d.Delivered
	d.LostWidget, d.LostAgent = widgetLost, d.Expected-d.Delivered-widgetLost
	d.Duplicated = b.duplicated.Load()
	d.Unexpected = b.unexpected.Load()
	d.Mismatched = b.mismatched.Load()
	d.Foreign = b.foreign.Load()
	if secs > 0 {
		d.PerSecond = round2(float64(b.deliveredMeasured.Load()) / secs)
	}
	d.Latency = latencyOf(b.delivery.snapshot())

	for _, s := range b.subs {
		r.Streams.Reconnects += s.st.reconnects.Load()
		r.Streams.Resets += s.st.resets.Load()
		switch s.kind {
		case subWidget:
			r.Streams.Widget++
		case subSupport:
			r.Streams.Support++
		case subAgent:
			r.Streams.Agent++
		case subIdle:
			r.Streams.Idle++
		}
	}

	b.errMu.Lock()
	r.Errors.ByStatus = map[string]int64{}
	for k, v := range b.errs {
		r.Errors.ByStatus[k] = v
	}
	r.Errors.First = b.errMsg
	b.errMu.Unlock()
	r.Errors.Total = b.errSum.Load()
	r.Errors.Requests = b.requests.Load()

	if d.Lost > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d deliveries lost", d.Lost))
	}
	if d.Duplicated > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d deliveries duplicated", d.Duplicated))
	}
	if d.Unexpected > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d deliveries to streams that may not see them", d.Unexpected))
	}
	if d.Mismatched > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d deliveries whose message id differs from the post's answer", d.Mismatched))
	}
	if r.Errors.Requests > 0 && float64(r.Errors.Total) > b.cfg.MaxErrorRate*float64(r.Errors.Requests) {
		r.Failures = append(r.Failures, fmt.Sprintf("%d of %d requests failed (over %.2g%%)", r.Errors.Total, r.Errors.Requests, 100*b.cfg.MaxErrorRate))
	}
}

// progress prints a line on stderr every second while the load runs.
type progress struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
}

func (b *bench) startProgress(ctx context.Context, r *report) *progress {
	p := &progress{done: make(chan struct{})}
	tty := false
	if f, ok := b.stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		lastT, lastPosts, lastDeliv := b.clock(), b.postsAcked.Load(), b.delivered.Load()
		var lagSum, lagN int64
		defer func() {
			if lagN > 0 {
				r.Lag.Mean = round2(float64(lagSum) / float64(lagN))
			}
			r.Lag.Samples = lagN
			if tty {
				fmt.Fprintln(b.stderr)
			}
		}()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
			}
			st := b.api.sample(ctx, b.cfg.PID)
			now, posts, deliv := b.clock(), b.postsAcked.Load(), b.delivered.Load()
			dt := (now - lastT).Seconds()
			r.RSS.Peak = max(r.RSS.Peak, st.rss)
			if st.lag >= 0 {
				lagSum += st.lag
				lagN++
				r.Lag.Max = max(r.Lag.Max, st.lag)
			}
			phase := "warm-up"
			if now >= b.measureFrom {
				phase = fmt.Sprintf("%4.0fs", (now - b.measureFrom).Seconds())
			}
			line := fmt.Sprintf("[%s] posts %6.0f/s  deliveries %8.0f/s  p99 post %s delivery %s  lag %s  rss %s  reconnects %d  errors %d",
				phase, float64(posts-lastPosts)/dt, float64(deliv-lastDeliv)/dt,
				fmtMS(b.cmd[opPost].snapshot().quantile(0.99)), fmtMS(b.delivery.snapshot().quantile(0.99)),
				orNA(st.lag, strconv.FormatInt(st.lag, 10)), orNA(st.rss, fmtMiB(st.rss)), b.reconnects(), b.errSum.Load())
			if tty {
				fmt.Fprint(b.stderr, "\r"+line+"\033[K")
			} else {
				fmt.Fprintln(b.stderr, line)
			}
			lastT, lastPosts, lastDeliv = now, posts, deliv
		}
	}()
	return p
}

func (b *bench) reconnects() int64 {
	var n int64
	for _, s := range b.subs {
		n += s.st.reconnects.Load()
	}
	return n
}

func orNA(v int64, s string) string {
	if v < 0 {
		return "n/a"
	}
	return s
}

func fmtMS(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(ms(d), 'f', 2, 64) + "ms"
}

func fmtMiB(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + "MiB" }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func latencyOf(s *snapshot) latencyReport {
	return latencyReport{Count: int64(s.n), P50: ms(s.quantile(0.50)), P99: ms(s.quantile(0.99)), Max: ms(s.maximum())}
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
