package main

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the Prometheus series one process exports.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.HistogramVec
	appends   prometheus.Histogram // a write's append, its group commit included
	applies   prometheus.Histogram // a write's wait for the read models, after its append
	projected prometheus.Counter
	applied   prometheus.Gauge
	lag       prometheus.Gauge
	// projectorErrors counts the projector's failed batches and reads.
	projectorErrors prometheus.Counter
	streams         func() int
	stateBytes      func() int
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), streams: func() int { return 0 }, stateBytes: func() int { return 0 }}
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "messenger_http_request_duration_seconds", Help: "HTTP requests by route, method and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method", "status"})
	// A post is the two: which one grows tells whether the log or the
	// read models hold the writes back.
	stages := []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5}
	m.appends = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "messenger_write_append_duration_seconds",
		Help: "How long a write's append to the log took, its group commit included.", Buckets: stages})
	m.applies = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "messenger_write_apply_wait_seconds",
		Help: "How long a write waited, after its append, for the read models to apply it (read-your-writes).", Buckets: stages})
	m.projected = prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_projected_events_total", Help: "Events applied to the read models."})
	m.applied = prometheus.NewGauge(prometheus.GaugeOpts{Name: "messenger_projection_position", Help: "Log position the read models have applied."})
	m.lag = prometheus.NewGauge(prometheus.GaugeOpts{Name: "messenger_projection_lag_events", Help: "Events in the log not yet applied to the read models."})
	m.projectorErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_projector_errors_total",
		Help: "Failures of the projector's batches and reads of the log, each retried after a pause."})
	m.reg.MustRegister(m.requests, m.appends, m.applies, m.projected, m.applied, m.lag, m.projectorErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "messenger_sse_clients", Help: "Open SSE streams."},
			func() float64 { return float64(m.streams()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "messenger_command_state_bytes",
			Help: "What the streams' states kept between commands hold, approximately (bounded by 128 MiB)."},
			func() float64 { return float64(m.stateBytes()) }))
	return m
}

// observeWrite records a write's two stages (see commands.Config.Observe).
func (m *metrics) observeWrite(appended, applied time.Duration) {
	m.appends.Observe(appended.Seconds())
	m.applies.Observe(applied.Seconds())
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

func (m *metrics) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Observe(time.Since(start).Seconds())
	}
}
