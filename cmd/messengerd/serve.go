package main

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/commands"
	"github.com/helpdesk/messenger/commands/httpapi"
	"github.com/helpdesk/messenger/infra/bus"
	"github.com/helpdesk/messenger/infra/httpkit"
	"github.com/helpdesk/messenger/infra/lease"
	"github.com/helpdesk/messenger/projections"
	"github.com/helpdesk/messenger/readapi"
	"github.com/helpdesk/messenger/readapi/web"
)

//go:generate cp ../../openapi.yaml openapi.yaml

//go:embed openapi.yaml
var openapiYAML []byte

// changesTopic is the watermill topic of the live change feed of the
// installation named id (a plain name: JetStream stream names cannot hold
// dots). Installations that share a NATS server each have their own:
// positions of their logs run alike, so one's replicas took another's
// batches for theirs, and delivered its messages. Each version of the read
// models has its own too: during a rolling upgrade the projectors of both
// versions publish the changes of the same log positions, each rendered
// from its own read models.
func changesTopic(id string) string { return changesTopicOf(id, projections.Schema()) }

// changesTopicOf is the topic of the installation id's read models in schema.
func changesTopicOf(id, schema string) string {
	return "messenger_changes_" + id[:min(len(id), 16)] + "_" + schema
}

// app is everything one messengerd process runs.
type app struct {
	be        *backend
	rm        *projections.ReadModels
	projector *projections.Projector
	hub       *readapi.Hub
	streams   *readapi.Streams
	svc       *commands.Service
	auth      *httpkit.AuthCache
	metrics   *metrics
	ready     atomic.Bool
	leader    atomic.Bool
	// movedAt is when the read models were last seen to move on or to be
	// caught up, in Unix nanoseconds; 0 until first seen (watchReady).
	movedAt atomic.Int64
	// fromScratch: the start found the read models empty beside a log
	// (an upgrade that changed them, a first start on an existing log);
	// cleared once they first catch up. unfinished: a rebuild's mark is in
	// the checkpoints (watchReady). Either way the read models are being
	// filled from the log's start, and the API waits for them (gate).
	fromScratch, unfinished atomic.Bool
}

// building reports whether the read models are being built from the
// log's start.
func (a *app) building() bool { return a.fromScratch.Load() || a.unfinished.Load() }

// authTTL is how long a principal found for a token is kept at most.
const authTTL = 2 * time.Second

// deliver takes a batch of changes from the feed to the streams.
func (a *app) deliver(changes []projections.Change) {
	for _, ch := range changes {
		if ch.Kind == projections.TokenIssued {
			a.auth.Forget()
			break
		}
	}
	a.streams.Deliver(changes)
}

// projectorLease names the lease of the one replica that projects into
// the read models of this version; a replica of another version, projecting
// into its own, takes another. (The builds before versioned schemas named
// theirs "projector".)
var projectorLease = leaseOf(projections.Schema())

// leaseOf names the projector's lease of the read models in schema.
func leaseOf(schema string) string { return "projector/" + schema }

func serve(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	be, err := openBackend(ctx, cfg)
	if err != nil {
		return err
	}
	defer be.close()
	if err := be.migrate(ctx); err != nil {
		return err
	}

	a := &app{be: be, metrics: newMetrics()}
	a.rm = projections.NewReadModels(be.reader, be.dialect)
	// The first requests after a start would wait for each connection's
	// first statements; a failure here is not one of the service.
	if err := a.rm.Warm(ctx, be.readers); err != nil {
		log.Warn("read models not warmed", "err", err)
	}
	if be.replicated() {
		// What a rolling upgrade left, for the operator to drop.
		if schemas, legacy, err := otherVersions(ctx, be.pool); err == nil && (len(schemas) > 0 || legacy != "") {
			if legacy != "" {
				schemas = append(schemas, legacy+" (beside the log)")
			}
			log.Info("the database holds read models of other versions: once no replica of theirs runs, messengerd prune drops them", "versions", strings.Join(schemas, ", "))
		}
	}
	pcfg := projections.Config{
		OnBatch: func(n int, pos uint64) {
			a.metrics.projected.Add(float64(n))
			a.metrics.applied.Set(float64(pos))
		},
		OnError: func(err error) {
			log.Error("projector", "err", err)
			a.metrics.projectorErrors.Inc()
		},
	}
	if be.replicated() {
		// Another replica may be the one projecting: writes wait on the stored checkpoint.
		pcfg.PollCheckpoint = 10 * time.Millisecond
	}
	publisher := bus.NewPublisher(be.pub, be.topic)
	a.projector = projections.NewProjector(be.writer, be.dialect, be.store, publisher, pcfg)
	if err := a.projector.Load(ctx); err != nil {
		return err
	}
	start := a.projector.Applied()
	if head, err := be.store.Head(ctx); err == nil && head > 0 && start == 0 {
		a.fromScratch.Store(true)
	}
	if u, err := a.rm.Unfinished(ctx); err == nil {
		a.unfinished.Store(u)
	}
	publisher.Follow(start)
	a.hub = readapi.NewHub(readapi.HubConfig{})
	a.streams = readapi.NewStreams(a.rm, be.store, a.projector, a.hub, readapi.StreamConfig{Heartbeat: cfg.Heartbeat})
	a.svc = commands.NewService(be.store, a.rm, a.projector, commands.Config{Observe: a.metrics.observeWrite})
	// Principals are kept briefly, and forgotten when any token is reissued.
	a.auth = httpkit.NewAuthCache(a.rm, authTTL, 100_000)
	a.metrics.streams = a.streams.Clients
	a.metrics.stateBytes = a.svc.CachedBytes

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	// Subscribe before the projector publishes: the in-process channel keeps
	// nothing for late subscribers. The feed goes on from the checkpoint
	// loaded before, which the projector's first batch names as its
	// predecessor: a batch that follows it is delivered at once, one that
	// starts later (another replica's, whose predecessors were published
	// before this subscription) is marked as following a gap.
	feed, err := be.sub.Subscribe(bg, be.topic)
	if err != nil {
		return fmt.Errorf("subscribe to the change feed: %w", err)
	}
	go bus.ConsumeFrom(bg, feed, be.topic, start, a.deliver)
	projected := make(chan error, 1)
	go func() { projected <- a.runProjector(bg, log) }()

	token, err := adminToken(cfg, stdout)
	if err != nil {
		return err
	}
	// Appended without waiting for the read models, which may be far
	// behind (rebuilt after an upgrade): they apply it when they get there.
	if _, err := a.svc.EnsureAdmin(commands.WithoutWait(ctx), token); err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	// Ready once the read models hold the log as it is now, the bootstrap
	// included: the admin's token then works.
	go a.watchReady(bg, log)

	if cfg.PprofAddr != "" {
		go servePprof(bg, cfg.PprofAddr, log)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	drain, drained := context.WithCancel(context.WithoutCancel(ctx))
	defer drained()
	srv := newHTTPServer(a.routes(cfg, drain), cfg.H2C)
	// Streams end at once: their clients resume on another replica. Those
	// taken from net/http (most) are not its to end: Streams.End ends them.
	srv.RegisterOnShutdown(func() {
		drained()
		a.streams.End()
	})
	fmt.Fprintf(stdout, "messengerd: serving on http://%s (%s)\n", ln.Addr(), describe(cfg))
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return err
	case err := <-projected:
		return fmt.Errorf("projector stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests and streams")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if werr := a.streams.Wait(shutdownCtx); err == nil {
		err = werr
	}
	stopBG()
	<-projected
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newHTTPServer serves h: HTTP/1.1 and, with h2c, HTTP/2 without TLS on
// the same port (a client that knows it opens with HTTP/2's preface; TLS
// is a proxy's). Over HTTP/2 one connection carries many streams (at most
// maxStreamsPerConn at once): a proxy in front holds thousands of clients'
// event streams on a few connections to messengerd, each of which would
// otherwise take a connection, and a file, of its own. The timeouts are
// each request's (each HTTP/2 stream's); event streams lift the write
// timeout for themselves.
func newHTTPServer(h http.Handler, h2c bool) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second, // streams clear their own deadline
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		Protocols:         new(http.Protocols),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxStreamsPerConn},
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(h2c)
	return srv
}

// maxStreamsPerConn is how many requests (event streams included) one
// HTTP/2 connection may have open at once: net/http's default.
const maxStreamsPerConn = 250

// describe says where the data lives, for the start-up line.
func describe(cfg config) string {
	where := "data in " + cfg.DataDir
	if cfg.DatabaseURL != "" {
		where = "data in PostgreSQL"
	}
	if cfg.EventStoreURL != "" {
		where += ", log in KurrentDB"
	}
	if cfg.BusURL != "" {
		where += ", live feed over NATS JetStream"
	}
	return where
}

// runProjector projects until ctx is done: at once on the embedded store;
// with shared read models, only while this replica holds the lease, which
// another takes over within seconds when this one dies.
func (a *app) runProjector(ctx context.Context, log *slog.Logger) error {
	if !a.be.replicated() {
		a.leader.Store(true)
		err := a.buildInBulk(ctx, log)
		if err == nil {
			err = a.projector.Run(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	lease.Run(ctx, a.be.pool, projectorLease, lease.Config{OnChange: func(held bool) {
		a.leader.Store(held)
		log.Info("projector lease", "held", held)
	}}, func(ctx context.Context) error {
		if err := a.projector.Load(ctx); err != nil {
			return err
		}
		if err := a.buildInBulk(ctx, log); err != nil {
			return err
		}
		return a.projector.Run(ctx)
	})
	return nil
}

// bulkFrom is the shortest log whose read models, found empty at a start
// without the mark of MigrateOver, are built through the rebuild's bulk
// path rather than by the live projector.
var bulkFrom uint64 = 20_000

// buildInBulk builds the read models as messengerd rebuild does when they
// are marked unfinished — recreated at a start beside a log that is not
// empty (an upgrade changed projections.Name), or left so by a rebuild that
// stopped midway — or hold nothing of a log of bulkFrom events or more, and
// has the projector go on from where it ended. The rebuild's path takes a
// third of the live projector's time on a long log (30 s against 93 s for
// the seeded 1.45M events), and its mark keeps every replica refusing
// requests until the read models hold the log: the live projector, on a
// short log, left replicas that started meanwhile serving its first part
// (valid tokens unknown). The streams' feed then shows a gap, which cuts
// the streams open meanwhile (the instance was not ready): their clients
// resume from the log. With replicas, it holds the schema's lock, as
// messengerd rebuild does, so that a replica starting meanwhile waits for
// the end rather than recreate the tables it is making; and whichever takes
// the projector's lease after a rebuild died midway redoes it.
func (a *app) buildInBulk(ctx context.Context, log *slog.Logger) error {
	// Asked again under the lock: a rebuild that held it may have ended.
	needed := func() (uint64, bool, error) {
		unfinished, err := a.rm.Unfinished(ctx)
		if err != nil {
			return 0, false, err
		}
		head, err := a.be.store.Head(ctx)
		if err != nil {
			return 0, false, err
		}
		if err := a.projector.Load(ctx); err != nil {
			return 0, false, err
		}
		return head, unfinished || a.projector.Applied() == 0 && head >= bulkFrom, nil
	}
	if _, ok, err := needed(); err != nil || !ok {
		return err
	}
	var head uint64
	var began time.Time
	build := func() error {
		h, ok, err := needed()
		if err != nil || !ok {
			return err
		}
		head, began = h, time.Now()
		log.Info("read models empty or unfinished: building them from the log in bulk", "events", head)
		return projections.Rebuild(ctx, a.be.writer, a.be.dialect, a.be.store, func(_ int, pos uint64) {
			a.movedAt.Store(time.Now().UnixNano()) // not stalled: moving
			a.metrics.applied.Set(float64(pos))
		})
	}
	if err := a.be.withSchemaLock(ctx, build); err != nil {
		return fmt.Errorf("build the read models: %w", err)
	}
	if !began.IsZero() {
		log.Info("read models built", "events", head, "took", time.Since(began).Round(time.Millisecond))
	}
	return a.projector.Load(ctx)
}

// adminToken returns the bootstrap admin's token: MESSENGER_ADMIN_TOKEN, or
// the one generated at the first start into <data dir>/admin-token.
func adminToken(cfg config, stdout io.Writer) (string, error) {
	if cfg.AdminToken != "" {
		return cfg.AdminToken, nil
	}
	path := filepath.Join(cfg.DataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			fmt.Fprintf(stdout, "messengerd: admin token in %s\n", path)
			return t, nil
		}
	}
	token := commands.NewToken()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	fmt.Fprintf(stdout, "messengerd: generated an admin token in %s\n", path)
	return token, nil
}

// watchReady marks the process ready once the read models have caught up
// with the log as it was at start, keeps the lag metric current, and notes
// when the read models last moved on (readyz's "stalled").
func (a *app) watchReady(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	seen := ^uint64(0) // the checkpoint last seen: none yet
	for {
		if a.be.replicated() && !a.leader.Load() {
			_ = a.projector.Load(ctx) // another replica projects: follow its checkpoint
		}
		head, err := a.be.store.Head(ctx)
		if err == nil {
			applied := a.projector.Applied()
			lag := head - min(head, applied)
			if lag == 0 || applied != seen {
				a.movedAt.Store(time.Now().UnixNano())
				seen = applied
			}
			a.metrics.lag.Set(float64(lag))
			if lag == 0 && !a.ready.Load() {
				a.ready.Store(true)
				a.fromScratch.Store(false)
				log.Info("read models caught up", "position", head)
			}
		}
		if u, err := a.rm.Unfinished(ctx); err == nil && u != a.unfinished.Load() {
			a.unfinished.Store(u)
			log.Info("read models", "rebuilding", u)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *app) routes(cfg config, drain context.Context) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = false
	// An API path with a trailing slash answers a JSON 404, not an empty
	// redirect that a PATCH or a DELETE would not follow.
	r.RedirectTrailingSlash = false
	r.Use(recovery(), a.metrics.middleware(), limitBody(), cors(cfg.AllowedOrigins), a.gate(), httpkit.CheckParams())
	r.NoRoute(func(c *gin.Context) {
		httpkit.Fail(c, httpkit.Errorf(http.StatusNotFound, httpkit.CodeNotFound, "no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", a.readyz)
	r.GET("/metrics", gin.WrapH(a.metrics.handler()))
	r.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", openapiYAML) })

	v1 := r.Group("/")
	authed := v1.Group("/", httpkit.Authenticate(a.auth, false))
	streams := v1.Group("/", httpkit.Authenticate(a.auth, true), untilDrained(drain))
	streams.GET("/v1/stream", a.streams.Agent)
	streams.GET("/v1/widget/stream", a.streams.Widget)
	// The write side's only public route creates widget sessions: rate-limited per client IP.
	httpapi.New(a.svc, a.streams.Views()).Register(v1.Group("/", httpkit.RateLimit(cfg.SessionRate, max(cfg.SessionRate/2, 1))), authed)
	readapi.New(a.rm, a.be.store).Register(v1, authed)
	web.Register(r) // the agent app at /app/, the widget at /widget.js and its demo at /widget/
	return r
}

// maxReadyLag is how far behind the log the read models may be while the
// process still answers ready, once it has caught up after its start.
const maxReadyLag = 10000

// stallAfter is how long the read models may stay where they are, with
// events left to apply, before the instance answers not ready: long enough
// for a database's restart or failover, or another replica's taking over
// the projector, after which they move again. It is judged from the
// checkpoint, which every replica follows, so the replicas that do not
// project say it too, not only the one whose batches fail (its errors are
// in its log, and counted by messenger_projector_errors_total).
var stallAfter = 30 * time.Second

func (a *app) readyz(c *gin.Context) {
	head, err := a.be.store.Head(c.Request.Context())
	if err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "error": "event store unreachable"})
		return
	}
	lag := head - min(head, a.projector.Applied())
	if moved := a.movedAt.Load(); moved != 0 && lag > 0 {
		// Nothing applied for that long: the lag may be small, but writes
		// wait for it in vain (most likely one batch failing again and again).
		if still := time.Since(time.Unix(0, moved)); still > stallAfter {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "stalled", "lag": lag, "projecting": a.leader.Load(),
				"stalled_for_seconds": int(still.Seconds())})
			return
		}
	}
	if a.building() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "rebuilding", "lag": lag, "projecting": a.leader.Load()})
		return
	}
	if !a.ready.Load() || lag > maxReadyLag {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "catching_up", "lag": lag, "projecting": a.leader.Load()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "lag": lag, "projecting": a.leader.Load()})
}

// retryBuilding is the Retry-After, in seconds, of the API's answers while
// the read models are being built.
const retryBuilding = "5"

// gate answers the API's requests with 503 unavailable, and Retry-After,
// while the read models are being built from the log's start (building):
// they hold part of it, and the tokens of part of the users, so a page
// would miss conversations as if they were not there, and a valid token
// get 401, which signs the agent app out and ends a widget's session. A
// write would wait in vain for them and fail after appending. Health,
// metrics, the contract and the web pages are not the API's. The message
// is for people too: the widget shows it to a customer whose message
// was not sent.
func (a *app) gate() gin.HandlerFunc {
	return func(c *gin.Context) {
		if a.building() && strings.HasPrefix(c.Request.URL.Path, "/v1/") {
			c.Header("Retry-After", retryBuilding)
			httpkit.Fail(c, httpkit.Errorf(http.StatusServiceUnavailable, httpkit.CodeUnavailable,
				"the service is starting up: try again in a few seconds"))
			return
		}
		c.Next()
	}
}

// recovery answers a panic as a 500 in the API's error shape.
func recovery() gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, err any) {
		httpkit.Fail(c, fmt.Errorf("panic: %v", err))
	})
}

// limitBody caps every request body, whatever the handler reads.
func limitBody() gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > httpkit.MaxBody {
			httpkit.Fail(c, httpkit.Errorf(http.StatusRequestEntityTooLarge, httpkit.CodeTooLarge, "request body is over %d bytes", httpkit.MaxBody))
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, httpkit.MaxBody+1)
		c.Next()
	}
}

// cors answers preflights to /v1 and adds Access-Control-Allow-Origin for
// the listed origins. No cookies are used, so no credentials mode. It runs
// before routing, since no route answers OPTIONS.
func cors(origins []string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !strings.HasPrefix(c.Request.URL.Path, "/v1/") {
			c.Next()
			return
		}
		origin := c.GetHeader("Origin")
		allowed := false
		for _, o := range origins {
			if subtle.ConstantTimeCompare([]byte(o), []byte(origin)) == 1 || o == "*" {
				allowed = true
			}
		}
		if origin != "" && allowed {
			h := c.Writer.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Expose-Headers", "Content-Type, Retry-After")
			if c.Request.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, Accept")
				h.Set("Access-Control-Max-Age", "600")
				c.AbortWithStatus(http.StatusNoContent)
				return
			}
		} else if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
			httpkit.Fail(c, httpkit.Forbidden("origin not allowed"))
			return
		}
		c.Next()
	}
}

// untilDrained ends a stream's request context when drain is done (the
// server starts shutting down), so that long-lived streams let Shutdown
// finish. It hangs the cancel on drain (context.AfterFunc) rather than
// start a goroutine of each stream's to wait for it: that goroutine's stack
// was the largest part of an idle stream's memory (3 goroutines a stream
// in all).
func untilDrained(drain context.Context) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithCancel(c.Request.Context())
		defer cancel()
		defer context.AfterFunc(drain, cancel)()
		c.Request = c.Request.WithContext(ctx)
		c.Next()
	}
}
