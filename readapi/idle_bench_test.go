package readapi

// The memory of idle streams: 20,000 wanted (READAPI_IDLE_STREAMS sets
// another count), opened by a child process so that the clients' memory is
// not counted, held idle against Messenger and, in the same run, against
// the bare net/http SSE server of the fan-out benchmarks; over HTTP/1.1 a
// connection each, as many as the file limit lets one process hold, and
// over HTTP/2 without TLS (h2c), as a proxy in front would send them, up
// to 250 on a connection.
//
//	go test -run '^$' -bench 'IdleStreams' -benchtime 1x ./readapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// idleWanted is how many idle streams the target asks for.
const idleWanted = 20000

// idleAgentsEvery makes every so many idle streams an agent's; the others
// are the widget's.
const idleAgentsEvery = 10

func BenchmarkIdleStreams(b *testing.B) {
	limit := int(raiseNoFile(b))
	// Over HTTP/1.1 each stream is a connection, and a file, of the
	// server's: the file limit caps them (the server's sockets, SQLite's
	// files, pipes beside). Over HTTP/2, as from a proxy in front, a
	// connection carries up to 250 streams.
	for _, proto := range []string{"http1", "h2c"} {
		b.Run(proto, func(b *testing.B) {
			n := idleWanted
			if v, err := strconv.Atoi(os.Getenv("READAPI_IDLE_STREAMS")); err == nil && v > 0 {
				n = v
			}
			if proto == "http1" && n > limit-64 {
				b.Logf("RLIMIT_NOFILE is %d: holding %d streams, not %d", limit, limit-64, n)
				n = limit - 64
			}
			base := holdIdle(b, n, "bare", proto)
			res := holdIdle(b, n, "messenger", proto)

			res.report(b, "")
			base.report(b, "base-")
			b.ReportMetric(float64(n), "streams")
			b.ReportMetric(res.perStream()/base.perStream(), "mem/base")
			b.ReportMetric((res.rss-res.rssBefore)/(base.rss-base.rssBefore), "rss/base")
			b.Logf("%d idle streams over %s: messenger %s | bare %s", n, proto, res, base)
			b.Logf("messenger extrapolated to %d streams: RSS %.0f MiB", idleWanted, res.rssAt(idleWanted)/(1<<20))
		})
	}
}

// idleResult is the memory a server process took for n idle streams.
type idleResult struct {
	n              int
	rssBefore, rss float64 // bytes, of the whole server process
	heap, stack    float64 // bytes taken by the streams (in use, after collecting garbage)
	goroutines     float64 // per stream
	heapSys        float64 // bytes the heap holds from the OS
}

// perStream is the heap and stack a stream takes, in bytes.
func (r idleResult) perStream() float64 { return (r.heap + r.stack) / float64(r.n) }

// rssAt extrapolates the resident size to m streams.
func (r idleResult) rssAt(m int) float64 {
	return r.rssBefore + (r.rss-r.rssBefore)/float64(r.n)*float64(m)
}

func (r idleResult) report(b *testing.B, prefix string) {
	b.ReportMetric(r.heap/float64(r.n)/1024, prefix+"heap-KiB/stream")
	b.ReportMetric(r.stack/float64(r.n)/1024, prefix+"stack-KiB/stream")
	b.ReportMetric((r.rss-r.rssBefore)/float64(r.n)/1024, prefix+"rss-KiB/stream")
	b.ReportMetric(r.rss/(1<<20), prefix+"rss-MiB")
	b.ReportMetric(r.rssAt(idleWanted)/(1<<20), prefix+"rss-MiB@20k")
	b.ReportMetric(r.goroutines, prefix+"goroutines/stream")
}

func (r idleResult) String() string {
	return fmt.Sprintf("heap %.1f KiB + stacks %.1f KiB a stream, %.2f goroutines a stream; server RSS %.0f MiB (%.0f before), %.1f KiB a stream; heap from the OS %.0f MiB",
		r.heap/float64(r.n)/1024, r.stack/float64(r.n)/1024, r.goroutines,
		r.rss/(1<<20), r.rssBefore/(1<<20), (r.rss-r.rssBefore)/float64(r.n)/1024, r.heapSys/(1<<20))
}

// holdIdle starts a server process (mode "bare" or "messenger") and a
// client process that opens n streams to it, and measures the server once
// they are all open and idle.
func holdIdle(b *testing.B, n int, mode, proto string) idleResult {
	b.Helper()
	srv := startChild(b, "^TestIdleServerChild$", "READAPI_IDLE_SERVER="+mode, "READAPI_IDLE_PROTO="+proto, "READAPI_IDLE_N="+strconv.Itoa(n))
	defer srv.stop()
	addr := srv.expect("listening ")
	before := srv.measure(b)
	rssBefore := procRSS(b, srv.cmd.Process.Pid)

	cli := startChild(b, "^TestIdleClientsChild$", "READAPI_IDLE_ADDR="+addr, "READAPI_IDLE_N="+strconv.Itoa(n), "READAPI_IDLE_MODE="+mode, "READAPI_IDLE_PROTO="+proto)
	defer cli.stop()
	cli.expect("ready ")
	deadline := time.Now().Add(30 * time.Second)
	for srv.measure(b).Open != n {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d streams open, want %d", mode, srv.measure(b).Open, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the streams settle into waiting
	after := srv.measure(b)
	return idleResult{n: n, rssBefore: rssBefore, rss: procRSS(b, srv.cmd.Process.Pid),
		heap:       float64(after.HeapInuse) - float64(before.HeapInuse),
		stack:      float64(after.StackInuse) - float64(before.StackInuse),
		goroutines: float64(after.Goroutines-before.Goroutines) / float64(n),
		heapSys:    float64(after.HeapSys - after.HeapReleased)}
}

// child is this test binary run as another process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
	lines  *bufio.Scanner
	once   sync.Once
}

func startChild(b *testing.B, run string, env ...string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return &child{cmd: cmd, stdin: stdin, stdout: stdout, lines: bufio.NewScanner(stdout)}
}

// expect reads lines until one starts with prefix, and returns the rest.
func (c *child) expect(prefix string) string {
	for c.lines.Scan() {
		line := c.lines.Text()
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return rest
		}
		if strings.HasPrefix(line, "failed ") {
			c.stop()
			panic("child " + line)
		}
	}
	c.stop()
	panic(fmt.Sprintf("child ended before %q", prefix))
}

// childMemory is what the server process reports.
type childMemory struct {
	HeapInuse, StackInuse, HeapSys, HeapReleased uint64
	Goroutines, Open                             int
}

// measure asks the server process to collect garbage and report.
func (c *child) measure(b *testing.B) childMemory {
	if _, err := io.WriteString(c.stdin, "measure\n"); err != nil {
		b.Fatal(err)
	}
	var m childMemory
	if err := json.Unmarshal([]byte(c.expect("memory ")), &m); err != nil {
		b.Fatal(err)
	}
	return m
}

// stop closes the child's stdin, which ends it, and waits for it.
func (c *child) stop() {
	c.once.Do(func() {
		c.stdin.Close()
		io.Copy(io.Discard, c.stdout)
		c.cmd.Wait()
	})
}

// procRSS returns the resident set size of process pid in bytes.
func procRSS(tb testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// TestIdleServerChild is the server side of BenchmarkIdleStreams, run in a
// child process: it serves, says where, and on each "measure" line of its
// stdin collects garbage and reports its memory, until its stdin closes.
func TestIdleServerChild(t *testing.T) {
	mode := os.Getenv("READAPI_IDLE_SERVER")
	if mode == "" {
		t.Skip("run by BenchmarkIdleStreams")
	}
	raiseNoFile(t)
	gin.SetMode(gin.ReleaseMode)
	if os.Getenv("READAPI_IDLE_PROTO") == "h2c" {
		benchProtocols = h2cAndHTTP1()
	}
	var addr string
	var open func() int
	switch mode {
	case "bare":
		s := newBareServer(t)
		defer s.close()
		addr, open = s.srv.Listener.Addr().String(), s.open
	default:
		n, _ := strconv.Atoi(os.Getenv("READAPI_IDLE_N"))
		n = max(n, idleWanted)
		s := newBenchServerWith(t, n/idleAgentsEvery+1, n, 16, StreamConfig{})
		defer s.close()
		addr, open = s.srv.Listener.Addr().String(), s.streams.Clients
	}
	fmt.Printf("listening %s\n", addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		// Stacks shrink by half at each collection: a server idle for a
		// while has had several.
		for range 4 {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		data, _ := json.Marshal(childMemory{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, HeapSys: ms.HeapSys,
			HeapReleased: ms.HeapReleased, Goroutines: runtime.NumGoroutine(), Open: open()})
		fmt.Printf("memory %s\n", data)
		if path := os.Getenv("READAPI_IDLE_HEAPPROFILE"); path != "" {
			if f, err := os.Create(path + "." + mode); err == nil {
				pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	}
}

// TestIdleClientsChild is the client side of BenchmarkIdleStreams, run in
// a child process: it opens READAPI_IDLE_N streams, says "ready", and holds
// them, reading nothing more, until its stdin closes.
func TestIdleClientsChild(t *testing.T) {
	addr := os.Getenv("READAPI_IDLE_ADDR")
	if addr == "" {
		t.Skip("run by BenchmarkIdleStreams")
	}
	raiseNoFile(t)
	n, _ := strconv.Atoi(os.Getenv("READAPI_IDLE_N"))
	mode := os.Getenv("READAPI_IDLE_MODE")
	pathOf := func(i int) (string, string) {
		if mode == "bare" {
			return "/", ""
		}
		if i%idleAgentsEvery == 0 {
			return "/v1/stream", agentToken(i / idleAgentsEvery)
		}
		return "/v1/widget/stream", customerToken(i)
	}
	open := func(i int) (io.Closer, error) {
		path, token := pathOf(i)
		c, err := openIdle(addr, path, token)
		if err != nil {
			return nil, fmt.Errorf("stream %d: %w", i, err)
		}
		return lingerless{c.(*net.TCPConn)}, nil
	}
	if os.Getenv("READAPI_IDLE_PROTO") == "h2c" {
		open = openIdleH2C(addr, pathOf)
	}
	held, failed := openAll(n, open)
	if failed != nil {
		fmt.Printf("failed %v\n", failed)
		return
	}
	fmt.Printf("ready %d\n", n)
	io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		c.Close()
	}
}

// lingerless closes its connection at once, without TIME_WAIT: runs reuse
// the ports.
type lingerless struct{ *net.TCPConn }

func (c lingerless) Close() error {
	c.SetLinger(0)
	return c.TCPConn.Close()
}

// openIdle opens a stream and reads its headers and first frame, with
// small buffers, which the connection keeps while it idles.
func openIdle(addr, path, token string) (net.Conn, error) {
	conn, _, err := openStream(addr, path, token, 30*time.Second, time.Minute, 512, 512)
	return conn, err
}

// benchProtocols, if set, are the protocols the benchmarks' servers speak.
var benchProtocols *http.Protocols

// openIdleH2C returns a function that opens stream i over HTTP/2 without
// TLS, on connections the streams share (as many on each as the server
// lets one hold), and reads its headers and first frame.
func openIdleH2C(addr string, pathOf func(i int) (string, string)) func(i int) (io.Closer, error) {
	client := h2cClient(nil)
	return func(i int) (io.Closer, error) {
		path, token := pathOf(i)
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Accept", "text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("stream %d: %w", i, err)
		}
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			resp.Body.Close()
			return nil, fmt.Errorf("stream %d: %s over %s", i, resp.Status, resp.Proto)
		}
		lr := bufio.NewReaderSize(resp.Body, 512)
		for {
			line, err := lr.ReadSlice('\n')
			if err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("stream %d: first frame: %w", i, err)
			}
			if len(line) == 1 {
				return resp.Body, nil
			}
		}
	}
}
