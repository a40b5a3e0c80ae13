// Package web holds the portal's templates and static assets, embedded in the binary.
// Templates live in templates/{layout,partials,pages}; the portal parses them once at start.
package web

import (
	"embed"
	"io/fs"
)

//go:embed templates static
var files embed.FS

// Templates returns the template tree: layout/*.html, partials/*.html and pages/*.html.
func Templates() fs.FS { return sub("templates") }

// Static returns the static assets (CSS, icons), served under /static/.
func Static() fs.FS { return sub("static") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return f
}
