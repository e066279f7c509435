// Package web serves Messenger's reference clients from files embedded in
// the binary: the agent app at /app/, the customer widget's script at
// /widget.js and a demo page embedding it at /widget/. They are plain
// JavaScript modules with no build step, and talk to the /v1 API only;
// nothing is fetched from anywhere else at run time.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/helpdesk/messenger/infra/httpkit"
)

//go:embed static
var static embed.FS

// file is one embedded file, ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

// contentTypes maps the extensions of the embedded files to their types;
// a file of any other extension is not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
}

// files holds every embedded file by its path under static/, e.g.
// "app/index.html". Built once at start; never changed after.
var files = mustLoad(static)

func mustLoad(fsys fs.FS) map[string]file {
	out := map[string]file{}
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		out[strings.TrimPrefix(p, "static/")] = file{body: body, ctype: ctype,
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic("web: embedded files: " + err.Error())
	}
	return out
}

// Cache policies. The files have no fingerprint in their names, so the
// app's revalidate on every use (a 304 thanks to the ETag); the widget's
// script, loaded on every page of the customers' sites, is kept a few
// minutes.
const (
	cacheRevalidate = "no-cache"
	cacheWidget     = "public, max-age=300"
)

// The Content-Security-Policy of the pages: their own scripts, styles and
// API only.
const (
	appCSP  = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
	demoCSP = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; object-src 'none'"
)

// Register mounts the clients on r: GET and HEAD of /app/ and its assets,
// /widget/ (the demo page) and /widget.js. A path naming no embedded file
// answers 404 in the API's error shape.
func Register(r gin.IRouter) {
	app := serveDir("app", cacheRevalidate, appCSP)
	demo := serveDir("widget", cacheRevalidate, demoCSP)
	widget := serveFile("widget.js", cacheWidget, "")
	// The server does not redirect paths to their trailing slash (an API
	// path with one answers 404): the pages' own do, by hand.
	toApp := func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/app/") }
	toDemo := func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/widget/") }
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		r.Handle(m, "/app", toApp)
		r.Handle(m, "/widget", toDemo)
		r.Handle(m, "/app/*path", app)
		r.Handle(m, "/widget/*path", demo)
		r.Handle(m, "/widget.js", widget)
	}
}

// serveDir serves the files under dir, and dir/index.html for dir itself.
// Only the index page gets csp.
func serveDir(dir, cache, csp string) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := c.Param("path")
		if p == "/" || p == "" {
			serve(c, dir+"/index.html", cache, csp)
			return
		}
		serve(c, dir+path.Clean(p), cache, "")
	}
}

func serveFile(name, cache, csp string) gin.HandlerFunc {
	return func(c *gin.Context) { serve(c, name, cache, csp) }
}

func serve(c *gin.Context, name, cache, csp string) {
	f, ok := files[name]
	if !ok {
		httpkit.Fail(c, httpkit.Errorf(http.StatusNotFound, httpkit.CodeNotFound, "no file %s", c.Request.URL.Path))
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", cache)
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if csp != "" {
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
	}
	// ServeContent answers If-None-Match with 304, ranges and HEAD.
	http.ServeContent(c.Writer, c.Request, name, time.Time{}, bytes.NewReader(f.body))
}
