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
	projected prometheus.Counter
	applied   prometheus.Gauge
	lag       prometheus.Gauge
	streams   func() int
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), streams: func() int { return 0 }}
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "messenger_http_request_duration_seconds", Help: "HTTP requests by route, method and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method", "status"})
	m.projected = prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_projected_events_total", Help: "Events applied to the read models."})
	m.applied = prometheus.NewGauge(prometheus.GaugeOpts{Name: "messenger_projection_position", Help: "Log position the read models have applied."})
	m.lag = prometheus.NewGauge(prometheus.GaugeOpts{Name: "messenger_projection_lag_events", Help: "Events in the log not yet applied to the read models."})
	m.reg.MustRegister(m.requests, m.projected, m.applied, m.lag,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "messenger_sse_clients", Help: "Open SSE streams."},
			func() float64 { return float64(m.streams()) }))
	return m
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
