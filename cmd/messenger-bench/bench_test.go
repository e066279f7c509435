package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const testAdminToken = "bench-test-admin-token"

// server is a messengerd run as a child process on a fixed address and
// data folder, so that it can be stopped and started again.
type server struct {
	t        *testing.T
	bin, dir string
	addr     string
	base     string
	cmd      *exec.Cmd
	logs     bytes.Buffer
	logsMu   sync.Mutex
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// messengerd builds the server once per test run and returns its path.
func messengerd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "messenger-bench-test-"); buildErr != nil {
			return
		}
		if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "messengerd"), "../messengerd").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build messengerd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "messengerd")
}

// TestMain removes the server built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// startServer builds messengerd, runs it on a free port with a fresh data
// folder and waits until /readyz answers 200; it is killed at the end of
// the test.
func startServer(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, bin: messengerd(t), dir: filepath.Join(dir, "data")}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.base = "http://" + s.addr
	ln.Close()
	t.Cleanup(func() {
		s.stop(syscall.SIGKILL)
		if t.Failed() {
			s.logsMu.Lock()
			t.Logf("messengerd logs:\n%s", s.logs.String())
			s.logsMu.Unlock()
		}
	})
	s.start()
	return s
}

// Write collects the server's output.
func (s *server) Write(p []byte) (int, error) {
	s.logsMu.Lock()
	defer s.logsMu.Unlock()
	return s.logs.Write(p)
}

func (s *server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin)
	s.cmd.Env = append(os.Environ(), "MESSENGER_ADDR="+s.addr, "MESSENGER_DATA_DIR="+s.dir,
		"MESSENGER_ADMIN_TOKEN="+testAdminToken, "MESSENGER_SESSION_RATE=0")
	s.cmd.Stdout, s.cmd.Stderr = s, s
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("messengerd not ready in 30 s")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stop signals the server and waits for it to exit.
func (s *server) stop(sig os.Signal) {
	if s.cmd != nil && s.cmd.ProcessState == nil {
		s.cmd.Process.Signal(sig)
		s.cmd.Wait()
	}
}

func TestRunAgainstMessengerd(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs messengerd")
	}
	srv := startServer(t)
	base, pid := srv.base, srv.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// With -pid, RSS and CPU come from /proc; without, from /metrics.
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"proc", []string{"-pid", strconv.Itoa(pid), "-idle", "10", "-cpuprofile", filepath.Join(t.TempDir(), "bench.prof")}},
		{"metrics", []string{"-mix", "0.5"}},
		{"http2", []string{"-http2", "-idle", "10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-server", base, "-admin-token", testAdminToken, "-json",
				"-customers", "5", "-agents", "4", "-support-share", "0.5", "-rate", "50",
				"-duration", "2s", "-warmup", "500ms", "-writers", "8"}, tc.args...)
			err := run(ctx, args, &stdout, &stderr)
			if err != nil {
				t.Fatalf("run: %v\nstderr:\n%s\nstdout:\n%s", err, &stderr, &stdout)
			}
			var r report
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
				t.Fatalf("the report is not JSON: %v\n%s", err, &stdout)
			}
			d := r.Deliveries
			// 2 support agents: each post reaches its customer's widget and both.
			if r.Posts <= 0 || r.PostsTotal < r.Posts || r.PostsFailed != 0 {
				t.Errorf("posts: got %d measured, %d total, %d failed; want > 0 and none failed", r.Posts, r.PostsTotal, r.PostsFailed)
			}
			if want := r.PostsTotal * 3; d.Expected != want || d.Delivered != want {
				t.Errorf("deliveries: got %d of %d expected, want %d of %d", d.Delivered, d.Expected, want, want)
			}
			if d.Lost != 0 || d.Duplicated != 0 || d.Unexpected != 0 || d.Mismatched != 0 {
				t.Errorf("got lost %d, duplicated %d, unexpected %d, mismatched %d; want 0", d.Lost, d.Duplicated, d.Unexpected, d.Mismatched)
			}
			if d.Latency.P99 <= 0 || d.Latency.P50 > d.Latency.P99 || d.PerSecond <= 0 {
				t.Errorf("delivery latency p50 %v p99 %v, %v/s: want 0 < p50 ≤ p99 and a rate", d.Latency.P50, d.Latency.P99, d.PerSecond)
			}
			if post := r.Commands["post"]; post.P99 <= 0 || post.Count != r.Posts {
				t.Errorf("post latency: got %+v, want p99 > 0 over %d posts", post, r.Posts)
			}
			for _, op := range []string{"inbox", "unread", "conversation"} {
				if r.Commands[op].Count == 0 {
					t.Errorf("no %s reads measured", op)
				}
			}
			if r.Errors.Total != 0 {
				t.Errorf("errors: got %+v, want none", r.Errors)
			}
			if r.RSS.Start <= 0 || r.RSS.Peak < r.RSS.Start || r.ServerCPU <= 0 {
				t.Errorf("server RSS %+v, CPU %v: want them read", r.RSS, r.ServerCPU)
			}
			if r.HostCores != runtime.NumCPU() || r.HostCPU <= 0 || r.HostCPU > float64(r.HostCores) {
				t.Errorf("this machine's CPU: %v of %d cores busy, want some of %d", r.HostCPU, r.HostCores, runtime.NumCPU())
			}
			for i, a := range tc.args {
				if a != "-cpuprofile" {
					continue
				}
				if fi, err := os.Stat(tc.args[i+1]); err != nil || fi.Size() == 0 {
					t.Errorf("-cpuprofile wrote nothing: %v", err)
				}
			}
			if r.Lag.Samples == 0 {
				t.Errorf("projection lag never sampled")
			}
			if !strings.Contains(stderr.String(), "deliveries") {
				t.Errorf("no progress line on stderr:\n%s", &stderr)
			}
		})
	}

	t.Run("table", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"-server", base, "-admin-token", testAdminToken,
			"-customers", "2", "-agents", "1", "-support-share", "1", "-rate", "20", "-duration", "1s", "-warmup", "0s"}, &stdout, &stderr)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, &stderr)
		}
		for _, want := range []string{"delivery latency p50/p99/max", "lost", "duplicated", "server RSS", "PASS"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("the table lacks %q:\n%s", want, &stdout)
			}
		}
	})

	t.Run("wrong token", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"-server", base, "-admin-token", "nope", "-duration", "1s"}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("run with a wrong admin token: got %v, want a 401 error", err)
		}
	})
}

// TestStreamsResumeAcrossARestart stops messengerd in the middle of a run
// and starts it again on the same data: every stream reconnects with its
// Last-Event-ID, and each acknowledged post still reaches every stream
// expecting it exactly once. Posts sent while it is down fail, which the
// error threshold allows here.
func TestStreamsResumeAcrossARestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs messengerd")
	}
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-server", srv.base, "-admin-token", testAdminToken, "-json",
			"-customers", "4", "-agents", "3", "-support-share", "0.67", "-rate", "40", "-mix", "0",
			"-duration", "3s", "-warmup", "0s", "-writers", "8", "-max-error-rate", "1"}, &stdout, &stderr)
	}()
	time.Sleep(1500 * time.Millisecond)
	srv.stop(syscall.SIGTERM)
	srv.start()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, &stderr, &stdout)
	}
	var r report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("the report is not JSON: %v\n%s", err, &stdout)
	}
	d := r.Deliveries
	if want := r.PostsTotal * 3; r.PostsTotal == 0 || d.Expected != want || d.Delivered != want || d.Lost != 0 || d.Duplicated != 0 || d.Unexpected != 0 {
		t.Errorf("deliveries: got %+v for %d acknowledged posts, want all %d, none lost or twice", d, r.PostsTotal, want)
	}
	if r.Streams.Reconnects < 7 {
		t.Errorf("reconnects: got %d, want every one of the 7 streams to reconnect", r.Streams.Reconnects)
	}
}

// TestParseProcStat reads the busy share of the machine from two readings
// of /proc/stat: idle and iowait are not busy, guest time is in user time.
func TestParseProcStat(t *testing.T) {
	a := parseProcStat("cpu  100 0 100 700 100 0 0 0 50 0\ncpu0 50 0 50 350 50 0 0 0 25 0\ncpu1 50 0 50 350 50 0 0 0 25 0\nintr 1 2\n")
	b := parseProcStat("cpu  400 10 190 1100 300 0 0 0 90 0\ncpu0 200 5 95 550 150 0 0 0 45 0\ncpu1 200 5 95 550 150 0 0 0 45 0\nintr 1 2\n")
	if a.cpus != 2 || a.busy != 200 || a.total != 1000 {
		t.Errorf("first reading: %+v, want 2 cpus, 200 busy of 1000", a)
	}
	// 400 busy ticks of 1000: 0.8 of 2 CPUs.
	if got := b.busySince(a); got != 0.8 {
		t.Errorf("busySince = %v, want 0.8", got)
	}
	if got := a.busySince(b); got != -1 {
		t.Errorf("busySince of a later reading = %v, want -1", got)
	}
	if got := b.busySince(hostCPU{}); got != -1 {
		t.Errorf("busySince of no reading = %v, want -1", got)
	}
}
