package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// config is messengerd's configuration: flags override the environment.
type config struct {
	Addr           string
	DataDir        string
	AdminToken     string
	DatabaseURL    string // PostgreSQL for the log and the read models; "" for the embedded SQLite file
	BusURL         string // NATS JetStream for the live feed across replicas; "" for in-process
	EventStoreURL  string // KurrentDB for the log (esdb:// or kurrentdb://); "" for the database's own log
	PprofAddr      string // where to serve net/http/pprof (loopback only, for profiling); "" for nowhere
	AllowedOrigins []string
	SessionRate    int  // widget sessions per minute per client IP; 0: unlimited
	H2C            bool // serve HTTP/2 without TLS (prior knowledge) beside HTTP/1.1
	ShutdownGrace  time.Duration
	Heartbeat      time.Duration
	// Ready, if set, is called with the listening address once the server serves.
	Ready func(addr string)
}

func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	cfg := config{
		Addr:          or(getenv("MESSENGER_ADDR"), "127.0.0.1:8080"),
		DataDir:       or(getenv("MESSENGER_DATA_DIR"), "./data"),
		AdminToken:    getenv("MESSENGER_ADMIN_TOKEN"),
		DatabaseURL:   getenv("MESSENGER_DATABASE_URL"),
		BusURL:        getenv("MESSENGER_BUS_URL"),
		EventStoreURL: getenv("MESSENGER_EVENTSTORE_URL"),
		PprofAddr:     getenv("MESSENGER_PPROF_ADDR"),
		ShutdownGrace: 10 * time.Second,
		SessionRate:   60,
		Heartbeat:     15 * time.Second,
		H2C:           true,
	}
	for _, o := range strings.Split(getenv("MESSENGER_ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.AllowedOrigins = append(cfg.AllowedOrigins, strings.TrimRight(o, "/"))
		}
	}
	if v := getenv("MESSENGER_SESSION_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return cfg, fmt.Errorf("MESSENGER_SESSION_RATE must be a whole number ≥ 0, not %q", v)
		}
		cfg.SessionRate = n
	}
	switch v := getenv("MESSENGER_H2C"); v {
	case "", "on":
	case "off":
		cfg.H2C = false
	default:
		return cfg, fmt.Errorf("MESSENGER_H2C must be on or off, not %q", v)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "address to listen on (env MESSENGER_ADDR)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder of the embedded database and the admin token (env MESSENGER_DATA_DIR)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "how long SIGTERM waits for requests to finish")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return cfg, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
