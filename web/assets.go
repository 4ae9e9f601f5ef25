package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// asset is one static file, read once at start: its bytes, a gzip copy
// when that is smaller, and a content-hash ETag.
type asset struct {
	body, gz []byte
	ctype    string
	etag     string
}

// assets serves the embedded site from memory. Every response carries a
// strong ETag and "no-cache", so browsers keep the files but revalidate
// them (a 304 costs one round trip) and never run a stale bundle after the
// peer is upgraded; text files go out gzip-compressed (compressed once, at
// start).
type assets struct {
	files   map[string]*asset
	modtime time.Time
}

func loadAssets(site fs.FS) (*assets, error) {
	a := &assets{files: map[string]*asset{}, modtime: time.Now()}
	err := fs.WalkDir(site, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(site, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &asset{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, ctype: contentType(p)}
		if compressible(f.ctype) {
			f.gz = gzipBytes(body)
			if len(f.gz) >= len(body) {
				f.gz = nil
			}
		}
		a.files[p] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: reading the static site: %w", ErrBadConfig, err)
	}
	if a.files["index.html"] == nil {
		return nil, fmt.Errorf("%w: the static site has no index.html", ErrBadConfig)
	}
	return a, nil
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".webmanifest":
		return "application/manifest+json"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func compressible(ctype string) bool {
	return strings.HasPrefix(ctype, "text/") || strings.Contains(ctype, "json") ||
		strings.Contains(ctype, "svg") || strings.Contains(ctype, "javascript")
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// ServeHTTP serves GET and HEAD of the site's files; "/" is index.html.
func (a *assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	a.serveFile(w, r, name)
}

func (a *assets) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f := a.files[name]
	if f == nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Encoding")
	body, etag := f.body, f.etag
	if f.gz != nil && acceptsGzip(r) {
		// Each encoding is its own representation, with its own ETag.
		h.Set("Content-Encoding", "gzip")
		body, etag = f.gz, strings.TrimSuffix(f.etag, `"`)+`-gz"`
	}
	h.Set("ETag", etag)
	// ServeContent handles If-None-Match (304) and HEAD.
	http.ServeContent(w, r, "", a.modtime, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
