package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/helpdesk/messenger/infra/lease"
	"github.com/helpdesk/messenger/projections"
)

// rebuild drops the read models and applies the whole log again, showing
// progress: a bar, events per second and the time left.
func rebuild(ctx context.Context, cfg config, stderr io.Writer) error {
	be, err := openBackend(ctx, cfg)
	if err != nil {
		return err
	}
	defer be.close()
	if cfg.PprofAddr != "" {
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		go servePprof(pctx, cfg.PprofAddr, slog.New(slog.NewTextHandler(stderr, nil)))
	}
	job := func(ctx context.Context) error {
		head, err := be.store.Head(ctx)
		if err != nil {
			return err
		}
		start := time.Now()
		bar := newProgress(stderr, head, start)
		if err := projections.Rebuild(ctx, be.writer, be.dialect, be.store, func(n int, pos uint64) {
			bar.show(uint64(n), pos, time.Now())
		}); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		bar.done(time.Now())
		return nil
	}
	if be.replicated() {
		// Replicas may be running: rebuild while holding the projector's
		// lease, and the schema's lock, which a replica's start takes to
		// migrate the read models.
		fmt.Fprintln(stderr, "waiting for the projector lease…")
		return lease.Exclusive(ctx, be.pool, projectorLease, func(ctx context.Context) error {
			return be.withSchemaLock(ctx, func() error { return job(ctx) })
		})
	}
	return job(ctx)
}

// progress draws one line that rewrites itself.
type progress struct {
	w     io.Writer
	total uint64
	start time.Time
	n     uint64
	last  time.Time
}

func newProgress(w io.Writer, total uint64, start time.Time) *progress {
	return &progress{w: w, total: total, start: start}
}

func (p *progress) show(n, pos uint64, now time.Time) {
	p.n = n
	if now.Sub(p.last) < 100*time.Millisecond && pos < p.total {
		return
	}
	p.last = now
	fmt.Fprint(p.w, "\r"+p.line(pos, now))
}

func (p *progress) line(pos uint64, now time.Time) string {
	frac := 1.0
	if p.total > 0 {
		frac = min(1, float64(pos)/float64(p.total))
	}
	const width = 30
	filled := int(frac * width)
	elapsed := now.Sub(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.n) / elapsed
	}
	eta := "?"
	if rate > 0 && p.total >= pos {
		eta = (time.Duration(float64(p.total-pos) / rate * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s%s] %3.0f%% %d events  %.0f events/s  ETA %s ",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), frac*100, p.n, rate, eta)
}

func (p *progress) done(now time.Time) {
	fmt.Fprintf(p.w, "\r%s\nrebuilt the read models from %d events in %s\n", p.line(p.total, now), p.n, now.Sub(p.start).Round(time.Millisecond))
}
