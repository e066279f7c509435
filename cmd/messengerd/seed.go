package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/helpdesk/messenger/bench/seed"
	"github.com/helpdesk/messenger/projections"
)

// seedData appends a realistic dataset to the configured store, then
// builds the read models from it, with progress on stderr. The agents'
// tokens go to <data dir>/seed-agents.json (mode 0600) for load tools.
func seedData(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var spec seed.Spec
	fs := flag.NewFlagSet("messengerd seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&spec.Conversations, "conversations", 100_000, "conversations")
	fs.IntVar(&spec.Messages, "messages", 1_000_000, "messages in all")
	fs.IntVar(&spec.Agents, "agents", 200, "agents")
	fs.Float64Var(&spec.SupportShare, "support-share", 0.5, "share of agents marked support")
	fs.IntVar(&spec.Customers, "customers", 50_000, "customers")
	fs.IntVar(&spec.Writers, "writers", 64, "concurrent appenders")
	dataDir := fs.String("data-dir", or(getenv("MESSENGER_DATA_DIR"), "./data"), "folder of the embedded database")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := parseConfig("messengerd seed", []string{"-data-dir", *dataDir}, getenv, stderr)
	if err != nil {
		return err
	}
	be, err := openBackend(ctx, cfg)
	if err != nil {
		return err
	}
	defer be.close()
	if err := be.migrate(ctx); err != nil {
		return err
	}
	start := time.Now()
	total := uint64(spec.Agents + spec.Customers + spec.Conversations*2 + spec.Messages*3/2)
	bar := newProgress(stderr, total, start)
	res, err := seed.Run(ctx, be.store, spec, func(n int64) { bar.show(uint64(n), uint64(n), time.Now()) })
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "\rappended %d events in %s (%.0f events/s)%30s\n", res.Events, res.Elapsed.Round(time.Millisecond),
		float64(res.Events)/res.Elapsed.Seconds(), "")
	head, err := be.store.Head(ctx)
	if err != nil {
		return err
	}
	// A rebuild, not a catch-up: it builds the query indexes once at the
	// end and leaves the planner's statistics and the visibility map
	// ready, as a server would find a rebuilt store (with autovacuum off,
	// a caught-up PostgreSQL has no statistics, and the inbox's lookups
	// of links and customers ran as scans of whole tables).
	proj := newProgress(stderr, head, time.Now())
	if err := projections.Rebuild(ctx, be.writer, be.dialect, be.store, func(n int, pos uint64) {
		proj.show(uint64(n), pos, time.Now())
	}); err != nil {
		return fmt.Errorf("project the seed: %w", err)
	}
	proj.done(time.Now())
	var agents []map[string]any
	for i, id := range res.Agents {
		agents = append(agents, map[string]any{"id": id, "support": res.Support[i], "token": res.Tokens[id]})
	}
	b, _ := json.MarshalIndent(map[string]any{"agents": agents, "customers": len(res.Customer)}, "", "  ")
	path := filepath.Join(cfg.DataDir, "seed-agents.json")
	if cfg.DatabaseURL != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded %d events in %s; agents' tokens in %s\n", res.Events, time.Since(start).Round(time.Second), path)
	return nil
}
