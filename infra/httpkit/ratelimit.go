package httpkit

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// RateLimit returns middleware allowing each client IP perMinute requests,
// in bursts of up to burst, answering 429 rate_limited with Retry-After
// beyond that. perMinute ≤ 0 allows everything.
func RateLimit(perMinute, burst int) gin.HandlerFunc {
	if perMinute <= 0 {
		return func(c *gin.Context) { c.Next() }
	}
	l := &limiter{rate: float64(perMinute) / 60, burst: float64(max(burst, 1)), buckets: map[string]*bucket{}}
	return func(c *gin.Context) {
		if wait := l.take(c.ClientIP(), time.Now()); wait > 0 {
			c.Header("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			Fail(c, Errorf(http.StatusTooManyRequests, CodeRateLimited, "too many requests, retry in %s", wait.Round(time.Second)))
			return
		}
		c.Next()
	}
}

type bucket struct {
	tokens float64
	at     time.Time
}

// limiter is a token bucket per key. Buckets full again are swept, so the
// map stays as small as the set of recently active clients.
type limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	buckets map[string]*bucket
	swept   time.Time
}

// take spends a token of key, or says how long until one is there.
func (l *limiter) take(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return 0
}
