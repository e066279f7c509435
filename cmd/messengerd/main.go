// Command messengerd serves Messenger: the helpdesk's live chat, event
// sourced. With no configuration it keeps everything in one SQLite file
// under ./data and needs nothing installed.
//
//	messengerd [-addr 127.0.0.1:8080] [-data-dir ./data]   serve
//	messengerd rebuild [-data-dir ./data]                  rebuild the read models from the log
//	messengerd seed [-conversations 100000 …]              fill the store with a realistic dataset
//	messengerd prune                                       drop the read models of older versions (PostgreSQL)
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "messengerd:", err)
		os.Exit(1)
	}
}

// run is the whole program, callable from tests: it serves until ctx is
// done, then drains requests and streams and returns.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "seed" {
		return seedData(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "rebuild" {
		cfg, err := parseConfig("messengerd rebuild", args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		return rebuild(ctx, cfg, stderr)
	}
	if len(args) > 0 && args[0] == "prune" {
		cfg, err := parseConfig("messengerd prune", args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		return prune(ctx, cfg, stdout)
	}
	cfg, err := parseConfig("messengerd", args, getenv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stdout, stderr)
}
