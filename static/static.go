// Package static holds the web assets every peer serves, embedded into
// the binary so a peer needs no files beside it.
package static

import (
	"embed"
	"io/fs"
)

//go:embed site
var site embed.FS

// FS returns the site root (index.html at "/").
func FS() fs.FS {
	sub, err := fs.Sub(site, "site")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
