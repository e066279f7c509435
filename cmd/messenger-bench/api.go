package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// client sends the bench's requests (not its streams) to the server.
type client struct {
	base string
	http *http.Client
}

func newClient(base string, idle, maxConns int, http2 bool) *client {
	tr := &http.Transport{
		Protocols:           protocols(base, http2),
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no overall cap
		MaxIdleConnsPerHost: idle,
		MaxConnsPerHost:     maxConns, // 0: no cap
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &client{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// protocols are what a transport to base speaks: HTTP/1.1, or with http2
// HTTP/2 only, over TLS for https and without (h2c) for http.
func protocols(base string, http2 bool) *http.Protocols {
	p := new(http.Protocols)
	switch {
	case !http2:
		p.SetHTTP1(true)
	case strings.HasPrefix(base, "https:"):
		p.SetHTTP2(true)
	default:
		p.SetUnencryptedHTTP2(true)
	}
	return p
}

// httpError is an answer with a status outside 2xx.
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

// statusOf returns the HTTP status of err, or 0 when the request got no answer.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	return 0
}

// do sends a request with an optional JSON body and decodes a 2xx answer
// into out when out is not nil; the body is read to the end either way, so
// the connection goes back to the pool.
func (c *client) do(ctx context.Context, method, path, token string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		io.Copy(io.Discard, resp.Body)
		return &httpError{status: resp.StatusCode, body: string(bytes.TrimSpace(b))}
	}
	if out != nil {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// retrying calls f until it succeeds, waiting after a 429 or 503 answer or
// a network error, at most tries times.
func retrying(ctx context.Context, tries int, f func() error) error {
	wait := 100 * time.Millisecond
	for i := 1; ; i++ {
		err := f()
		if err == nil || i >= tries || ctx.Err() != nil {
			return err
		}
		if s := statusOf(err); s != 0 && s != http.StatusTooManyRequests && s != http.StatusServiceUnavailable {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// serverStats is one sample of the server's state. A field is -1 when it
// could not be read.
type serverStats struct {
	rss int64   // resident memory, bytes
	cpu float64 // CPU seconds used since the process started
	lag int64   // log events not yet applied to the read models
}

// sample reads the server's RSS and CPU from /proc when pid is known, else
// from /metrics, and its projection lag from /readyz (else /metrics).
func (c *client) sample(ctx context.Context, pid int) serverStats {
	st := serverStats{rss: -1, cpu: -1, lag: -1}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if pid > 0 {
		st.rss, st.cpu = procStats(pid)
		var ready struct {
			Lag *int64 `json:"lag"`
		}
		err := c.do(ctx, http.MethodGet, "/readyz", "", nil, &ready)
		if he := (*httpError)(nil); errors.As(err, &he) && he.status == http.StatusServiceUnavailable {
			err = json.Unmarshal([]byte(he.body), &ready) // catching up: the lag is still there
		}
		if err == nil && ready.Lag != nil {
			st.lag = *ready.Lag
		}
		return st
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return st
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return st
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(string(bytes.TrimSpace(value)), 64)
		if err != nil {
			continue
		}
		switch string(name) {
		case "process_resident_memory_bytes":
			st.rss = int64(v)
		case "process_cpu_seconds_total":
			st.cpu = v
		case "messenger_projection_lag_events":
			st.lag = int64(v)
		}
	}
	return st
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times:
// 100 on every Linux platform Go supports.
const clockTicks = 100

// procStats reads the VmRSS of /proc/<pid>/status and the user plus system
// CPU time of /proc/<pid>/stat; -1 for what it cannot read.
func procStats(pid int) (rss int64, cpu float64) {
	rss, cpu = -1, -1
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(v) // "123456 kB"
				if len(f) >= 1 {
					if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						rss = kb << 10
					}
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		// The command name may hold spaces: fields count from the last ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 12 { // f[0] is field 3 (state); utime is field 14, stime 15
				u, err1 := strconv.ParseFloat(f[11], 64)
				k, err2 := strconv.ParseFloat(f[12], 64)
				if err1 == nil && err2 == nil {
					cpu = (u + k) / clockTicks
				}
			}
		}
	}
	return rss, cpu
}
