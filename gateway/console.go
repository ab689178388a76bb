package gateway

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// The web console (/console): a page, a stylesheet and two JavaScript modules written for it
// (gateway/consoleassets), embedded in the binary; no framework, no build step, nothing from a
// CDN. It calls the public API like any other client, with the key the user signs in with.
//
//go:embed consoleassets/index.html consoleassets/console.css consoleassets/console.js consoleassets/api.js consoleassets/icon.svg
var consoleAssets embed.FS

// consoleCSP allows the console's own scripts, styles and API calls and nothing else: no inline
// script or style, no other origin, no framing, and Trusted Types for every HTML sink (the
// console builds its DOM with createElement and textContent, so a string can never turn into
// markup).
var consoleCSP = strings.Join([]string{
	"default-src 'none'",
	"script-src 'self'",
	"style-src 'self'",
	"connect-src 'self'",
	"img-src 'self' data:",
	"base-uri 'none'",
	"form-action 'none'",
	"frame-ancestors 'none'",
	"require-trusted-types-for 'script'",
	"trusted-types 'none'",
}, "; ")

// consoleRoutes serves /console and its assets.
func (g *Server) consoleRoutes(mux *http.ServeMux) {
	page, err := consoleAssets.ReadFile("consoleassets/index.html")
	if err != nil {
		panic(err)
	}
	mux.Handle("GET /console", g.instrument("/console", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", consoleCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	})))
	mux.Handle("GET /console/{$}", http.RedirectHandler("/console", http.StatusMovedPermanently))
	sub, err := fs.Sub(consoleAssets, "consoleassets")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/console/assets/", http.FileServerFS(sub))
	mux.Handle("GET /console/assets/", g.instrument("/console/assets", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/console/assets/")
		if name == "index.html" {
			notFound(w, r)
			return
		}
		if st, err := fs.Stat(sub, name); err != nil || st.IsDir() {
			notFound(w, r)
			return
		}
		// Revalidated on every load (the files change with the binary; they are small).
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})))
}
