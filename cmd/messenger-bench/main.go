// Command messenger-bench drives a running messengerd the way its clients
// do and measures it: customers with widget streams posting into their
// conversations, agents with agent streams (the support ones replying to
// customers), reads of the inbox, the unread counts and conversations, all
// at a paced rate; it reports command latency, the latency from a post to
// its message.created at every stream that should receive it, lost and
// duplicated deliveries, projection lag, the server's memory and CPU, and
// how busy this machine was (with -pid and a server on the same machine,
// the rest is what else runs there, as its database).
//
//	messenger-bench -server http://127.0.0.1:8080 -admin-token $TOKEN \
//	    -customers 50 -agents 1000 -support-share 1 -rate 100 -duration 20s
//
// The load is open-loop: a scheduler makes each request due at its own
// time (rate posts per second, plus reads at rate*mix/(1-mix)), and a
// request's latency counts from that due time, so a stalled server shows
// in the figures instead of slowing the load down. Each post's body starts
// with "bench:<run>:<n> " and carries client_id "<run>-<n>"; every stream
// reads the marker from each message.created and counts, per (stream,
// post), the first arrival as a delivery and any later one as duplicated.
// A post's customer's widget stream and every support agent's stream must
// receive it; what has not arrived within -grace after the load is lost.
//
// It exits with status 1 when a delivery was lost, duplicated or sent to a
// stream that should not see it, or when errors exceed -max-error-rate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "messenger-bench:", err)
		}
		os.Exit(1)
	}
}

// config is the bench's flags.
type config struct {
	Server       string
	AdminToken   string
	Customers    int
	Agents       int
	SupportShare float64
	ReplyShare   float64
	Rate         float64
	Writers      int
	Mix          float64
	Duration     time.Duration
	Warmup       time.Duration
	Grace        time.Duration
	JSON         bool
	Idle         int
	PID          int
	MaxConns     int
	BodySize     int
	MaxErrorRate float64
	Setup        int
	CPUProfile   string
	HTTP2        bool
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("messenger-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Server, "server", "http://127.0.0.1:8080", "base URL of the running messengerd")
	fs.StringVar(&cfg.AdminToken, "admin-token", os.Getenv("MESSENGER_ADMIN_TOKEN"), "the server's admin token, to create agents (env MESSENGER_ADMIN_TOKEN)")
	fs.IntVar(&cfg.Customers, "customers", 20, "customers: each opens a widget session, one conversation and a widget stream")
	fs.IntVar(&cfg.Agents, "agents", 10, "agents: each holds an agent stream")
	fs.Float64Var(&cfg.SupportShare, "support-share", 0.5, "share of the agents with support: true (they see and answer every customer conversation)")
	fs.Float64Var(&cfg.ReplyShare, "reply-share", 0.5, "share of the posts that are support agents' replies; the rest are customers' messages")
	fs.Float64Var(&cfg.Rate, "rate", 50, "posts per second, in total, paced open-loop (0: no load, only streams)")
	fs.IntVar(&cfg.Writers, "writers", 64, "requests in flight at most")
	fs.Float64Var(&cfg.Mix, "mix", 0.2, "share of the requests that are reads (inbox, unread, conversation): reads go at rate*mix/(1-mix) on top of the posts")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to measure")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "load before measuring, not counted in latencies (deliveries are still checked)")
	fs.DurationVar(&cfg.Grace, "grace", 10*time.Second, "how long after the last post to wait for deliveries before counting the missing ones as lost")
	fs.BoolVar(&cfg.JSON, "json", false, "print the report as JSON")
	fs.IntVar(&cfg.Idle, "idle", 0, "extra idle agent streams to open and hold (of one agent without support)")
	fs.IntVar(&cfg.PID, "pid", 0, "the server's pid, to read its RSS and CPU from /proc (default: from /metrics)")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "connections at most for requests, streams aside (0: no limit)")
	fs.IntVar(&cfg.BodySize, "body-size", 80, "bytes of each message body")
	fs.Float64Var(&cfg.MaxErrorRate, "max-error-rate", 0.01, "share of failed requests (streams' included) above which the run fails")
	fs.IntVar(&cfg.Setup, "setup-concurrency", 16, "requests in flight while creating users and customers")
	fs.BoolVar(&cfg.HTTP2, "http2", false, "speak HTTP/2 to the server, as a proxy in front of it would (without TLS for http://, h2c; over TLS for https://): streams and requests share connections, up to 250 on each")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the load tool's own CPU profile to this file (it shares the machine with the server)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	u, err := url.Parse(cfg.Server)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return cfg, fmt.Errorf("-server must be an http(s) URL, not %q", cfg.Server)
	case cfg.AdminToken == "":
		return cfg, errors.New("no admin token: pass -admin-token or set MESSENGER_ADMIN_TOKEN")
	case cfg.Customers < 0 || cfg.Agents < 0 || cfg.Idle < 0:
		return cfg, errors.New("-customers, -agents and -idle must be ≥ 0")
	case cfg.SupportShare < 0 || cfg.SupportShare > 1 || cfg.ReplyShare < 0 || cfg.ReplyShare > 1:
		return cfg, errors.New("-support-share and -reply-share must lie in [0, 1]")
	case cfg.Mix < 0 || cfg.Mix >= 1:
		return cfg, errors.New("-mix must lie in [0, 1)")
	case cfg.Rate < 0:
		return cfg, errors.New("-rate must be ≥ 0")
	case cfg.Rate > 0 && cfg.Customers == 0:
		return cfg, errors.New("posts go to customer conversations: -customers must be ≥ 1 when -rate > 0")
	case cfg.Writers < 1 || cfg.Setup < 1:
		return cfg, errors.New("-writers and -setup-concurrency must be ≥ 1")
	case cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.Grace < 0:
		return cfg, errors.New("-duration must be > 0, -warmup and -grace ≥ 0")
	case cfg.BodySize < 32 || cfg.BodySize > 10000:
		return cfg, errors.New("-body-size must lie in [32, 10000]")
	}
	return cfg, nil
}

// run is the whole program, callable from tests: it prints the progress on
// stderr and the report on stdout, and returns an error when the run could
// not be made or failed its checks (after printing the report).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	streams := cfg.Customers + cfg.Agents + cfg.Idle
	if cfg.HTTP2 {
		streams = streams/100 + 1 // up to 250 on a connection
	}
	want := uint64(streams+cfg.Writers+cfg.Setup) + 1024
	if got := raiseFDLimit(want); got < want {
		fmt.Fprintf(stderr, "messenger-bench: warning: %d open files allowed, %d wanted; raise the hard limit (ulimit -Hn)\n", got, want)
	}
	b, err := newBench(cfg, stdout, stderr)
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return b.run(ctx)
}
