package web_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/readapi/web"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.RedirectTrailingSlash = false // as messengerd's router
	web.Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return res, b.String()
}

func TestRoutes(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		path, ctype, cache, contains string
	}{
		{"/app/", "text/html; charset=utf-8", "no-cache", `<script type="module" src="app.js">`},
		{"/app/app.js", "text/javascript; charset=utf-8", "no-cache", "new Live("},
		{"/app/api.js", "text/javascript; charset=utf-8", "no-cache", "export class Client"},
		{"/app/live.js", "text/javascript; charset=utf-8", "no-cache", "export class Live"},
		{"/app/app.css", "text/css; charset=utf-8", "no-cache", ":focus-visible"},
		{"/app/favicon.svg", "image/svg+xml", "no-cache", "<svg"},
		{"/widget/", "text/html; charset=utf-8", "no-cache", `<script src="/widget.js"`},
		{"/widget/demo.css", "text/css; charset=utf-8", "no-cache", "body"},
		{"/widget.js", "text/javascript; charset=utf-8", "public, max-age=300", "attachShadow"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res, body := get(t, srv.URL+tt.path, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type = %q, want %q", got, tt.ctype)
			}
			if got := res.Header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.cache)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if !strings.Contains(body, tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			etag := res.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			res, _ = get(t, srv.URL+tt.path, http.Header{"If-None-Match": {etag}})
			if res.StatusCode != http.StatusNotModified {
				t.Errorf("with If-None-Match: status = %d, want 304", res.StatusCode)
			}
		})
	}
}

func TestPagesHaveAPolicy(t *testing.T) {
	srv := newServer(t)
	for _, p := range []string{"/app/", "/widget/"} {
		res, _ := get(t, srv.URL+p, nil)
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: Content-Security-Policy = %q, want default-src 'self'", p, csp)
		}
	}
}

func TestPagesRedirectToSlash(t *testing.T) {
	srv := newServer(t)
	for _, p := range []string{"/app", "/widget"} {
		res, _ := get(t, srv.URL+p, nil)
		if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != p+"/" {
			t.Errorf("GET %s: %d to %q, want 301 to %s/", p, res.StatusCode, res.Header.Get("Location"), p)
		}
	}
}

func TestUnknownFilesAreNotFound(t *testing.T) {
	srv := newServer(t)
	for _, p := range []string{"/app/nope.js", "/app/../web.go", "/app/%2e%2e/web.go", "/widget/index.htm", "/app/static/app/app.js"} {
		res, body := get(t, srv.URL+p, nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status = %d, want 404", p, res.StatusCode)
		}
		if !strings.Contains(body, `"not_found"`) {
			t.Errorf("GET %s: body = %s, want the API's error shape", p, body)
		}
	}
}

func TestHead(t *testing.T) {
	srv := newServer(t)
	res, err := http.Head(srv.URL + "/widget.js")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("HEAD /widget.js: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
}
