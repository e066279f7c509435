package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// report is what a run measured; -json prints it as it is.
type report struct {
	Server string       `json:"server"`
	Run    string       `json:"run"` // the id in every body this run posted
	Config reportConfig `json:"config"`

	SetupSeconds    float64 `json:"setup_seconds"`    // creating users and customers, and connecting the streams
	MeasuredSeconds float64 `json:"measured_seconds"` // the window after the warm-up
	GraceSeconds    float64 `json:"grace_seconds"`    // waited after the load for the last deliveries

	Posts          int64                    `json:"posts"`        // acknowledged posts due in the measured window
	PostsPerSecond float64                  `json:"posts_per_s"`  // posts / measured_seconds
	PostsTotal     int64                    `json:"posts_total"`  // acknowledged posts, warm-up included
	PostsFailed    int64                    `json:"posts_failed"` // posts answered with an error or not at all
	Reads          int64                    `json:"reads"`        // successful reads, warm-up included
	Unsent         int64                    `json:"unsent"`       // requests due that no writer could send before the end
	Commands       map[string]latencyReport `json:"commands"`     // post, inbox, unread, conversation: from due time to answer

	Deliveries deliveryReport `json:"deliveries"`
	Streams    streamReport   `json:"streams"`
	Errors     errorReport    `json:"errors"`
	Lag        lagReport      `json:"projection_lag"`
	RSS        rssReport      `json:"server_rss"`
	ServerCPU  float64        `json:"server_cpu_cores"` // CPU seconds per second used by the server under load; -1 when unknown
	ClientCPU  float64        `json:"bench_cpu_cores"`  // the same for this process
	// HostCPU is how many of this machine's HostCores were busy under
	// load (-1 when unknown): beside the server's and this process's, what
	// else the machine ran, as a database on the same machine.
	HostCPU   float64 `json:"host_cpu_cores"`
	HostCores int     `json:"host_cores"`

	Failures []string `json:"failures"` // why the run failed; empty when it passed
}

type reportConfig struct {
	Customers    int     `json:"customers"`
	Agents       int     `json:"agents"`
	SupportShare float64 `json:"support_share"`
	ReplyShare   float64 `json:"reply_share"`
	Rate         float64 `json:"rate"`
	Mix          float64 `json:"mix"`
	Writers      int     `json:"writers"`
	Idle         int     `json:"idle"`
	Duration     string  `json:"duration"`
	Warmup       string  `json:"warmup"`
	BodySize     int     `json:"body_size"`
	HTTP2        bool    `json:"http2"`
}

func (r *report) setConfig(c config) {
	r.Config = reportConfig{
		Customers: c.Customers, Agents: c.Agents, SupportShare: c.SupportShare, ReplyShare: c.ReplyShare,
		Rate: c.Rate, Mix: c.Mix, Writers: c.Writers, Idle: c.Idle, HTTP2: c.HTTP2,
		Duration: c.Duration.String(), Warmup: c.Warmup.String(), BodySize: c.BodySize,
	}
}

// latencyReport summarizes a histogram, in milliseconds.
type latencyReport struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// deliveryReport counts message.created events at the streams. A delivery
// is one (stream, post) pair: the post's customer's widget stream and every
// support agent's stream expect each acknowledged post.
type deliveryReport struct {
	Expected       int64         `json:"expected"`       // acknowledged posts × streams expecting each
	Delivered      int64         `json:"delivered"`      // expected pairs received, each counted once
	Lost           int64         `json:"lost"`           // expected - delivered, at the end of the grace period
	LostWidget     int64         `json:"lost_widget"`    // of which at customers' widget streams
	LostAgent      int64         `json:"lost_agent"`     // of which at support agents' streams
	Duplicated     int64         `json:"duplicated"`     // a stream received a post it had already received (reconnects included)
	Unexpected     int64         `json:"unexpected"`     // a stream received a post it may not see
	Mismatched     int64         `json:"mismatched"`     // the event's message id differs from the one the POST answered
	Unacknowledged int64         `json:"unacknowledged"` // received posts whose POST failed on the client's side
	Foreign        int64         `json:"foreign"`        // message.created not posted by this run's load
	PerSecond      float64       `json:"per_s"`          // deliveries of posts due in the window / measured_seconds
	Latency        latencyReport `json:"latency"`        // from just before the POST to the event's arrival, posts due in the window
}

type streamReport struct {
	Widget         int     `json:"widget"`
	Support        int     `json:"support"`
	Agent          int     `json:"agent"` // agents without support
	Idle           int     `json:"idle"`
	ConnectSeconds float64 `json:"connect_seconds"` // until every stream had its first id
	Reconnects     int64   `json:"reconnects"`      // connections after the first, with Last-Event-ID
	Resets         int64   `json:"resets"`          // event: reset received (a resume token too old)
}

type errorReport struct {
	Total    int64            `json:"total"`
	Requests int64            `json:"requests"`  // requests sent and streams connected, setup aside
	ByStatus map[string]int64 `json:"by_status"` // "<kind> <status>" or "<kind> network"
	First    string           `json:"first,omitempty"`
}

type lagReport struct {
	Max     int64   `json:"max"`  // events, highest sample
	Mean    float64 `json:"mean"` // events
	Samples int64   `json:"samples"`
}

// rssReport is the server's resident memory in bytes, -1 when unknown.
type rssReport struct {
	Start int64 `json:"start"` // before the bench did anything
	Ready int64 `json:"ready"` // every stream connected, before the load
	Peak  int64 `json:"peak"`  // highest sample
	End   int64 `json:"end"`   // after the grace period, streams still open
}

func (r *report) print(w io.Writer, asJSON bool) error {
	if r.Failures == nil {
		r.Failures = []string{}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(metric, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", metric, fmt.Sprintf(format, args...))
	}
	lat := func(l latencyReport) string {
		if l.Count == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f / %.2f / %.2f ms  (n=%d)", l.P50, l.P99, l.Max, l.Count)
	}
	d := &r.Deliveries
	row("metric", "value")
	row("server", "%s  (run %s)", r.Server, r.Run)
	proto := "HTTP/1.1, a connection each"
	if r.Config.HTTP2 {
		proto = "HTTP/2, sharing connections"
	}
	row("streams", "%d widget, %d support, %d other agents, %d idle  (connected in %.1f s; %s)",
		r.Streams.Widget, r.Streams.Support, r.Streams.Agent, r.Streams.Idle, r.Streams.ConnectSeconds, proto)
	row("load", "%.0f posts/s, reads %.0f%%, %d writers, %s after %s warm-up", r.Config.Rate, 100*r.Config.Mix, r.Config.Writers, r.Config.Duration, r.Config.Warmup)
	row("posts", "%d  (%.1f/s; %d with warm-up, %d failed, %d unsent)", r.Posts, r.PostsPerSecond, r.PostsTotal, r.PostsFailed, r.Unsent)
	for _, op := range opNames {
		row(op+" latency p50/p99/max", "%s", lat(r.Commands[op]))
	}
	row("deliveries", "%d of %d expected  (%.0f/s)", d.Delivered, d.Expected, d.PerSecond)
	row("delivery latency p50/p99/max", "%s", lat(d.Latency))
	row("lost", "%d  (widget %d, agent %d)", d.Lost, d.LostWidget, d.LostAgent)
	row("duplicated", "%d", d.Duplicated)
	row("unexpected", "%d", d.Unexpected)
	if d.Mismatched+d.Unacknowledged+d.Foreign > 0 {
		row("mismatched / unacknowledged / foreign", "%d / %d / %d", d.Mismatched, d.Unacknowledged, d.Foreign)
	}
	row("reconnects", "%d  (resets %d)", r.Streams.Reconnects, r.Streams.Resets)
	errs := "0"
	if r.Errors.Total > 0 {
		var parts []string
		for _, k := range sortedKeys(r.Errors.ByStatus) {
			parts = append(parts, k+": "+strconv.FormatInt(r.Errors.ByStatus[k], 10))
		}
		errs = fmt.Sprintf("%d of %d  (%s; first: %s)", r.Errors.Total, r.Errors.Requests, strings.Join(parts, ", "), r.Errors.First)
	}
	row("errors", "%s", errs)
	if r.Lag.Samples > 0 {
		row("projection lag max/mean", "%d / %.1f events  (%d samples)", r.Lag.Max, r.Lag.Mean, r.Lag.Samples)
	} else {
		row("projection lag max/mean", "n/a")
	}
	mib := func(b int64) string {
		if b < 0 {
			return "n/a"
		}
		return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64)
	}
	row("server RSS start/ready/peak/end", "%s / %s / %s / %s MiB", mib(r.RSS.Start), mib(r.RSS.Ready), mib(r.RSS.Peak), mib(r.RSS.End))
	if r.ServerCPU >= 0 {
		row("server CPU", "%.2f cores", r.ServerCPU)
	} else {
		row("server CPU", "n/a")
	}
	row("bench CPU", "%.2f cores", r.ClientCPU)
	if r.HostCPU >= 0 {
		row("this machine's CPU", "%.2f of %d cores busy", r.HostCPU, r.HostCores)
	} else {
		row("this machine's CPU", "n/a")
	}
	result := "PASS"
	if len(r.Failures) > 0 {
		result = "FAIL: " + strings.Join(r.Failures, "; ")
	}
	row("result", "%s", result)
	return tw.Flush()
}
