// Command web prints the softphone's page weight: every embedded static
// file raw and gzip-compressed the way the peer serves it (gzip level 9,
// compressed once at start), and the totals a first visit downloads.
//
//	go run ./bench/web
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/p2psip/p2psip/static"
)

func main() {
	site := static.FS()
	sizes := map[string][2]int{}
	var names []string
	err := fs.WalkDir(site, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(site, p)
		if err != nil {
			return err
		}
		sizes[p] = [2]int{len(b), gzipLen(b)}
		names = append(names, p)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading the embedded site:", err)
		os.Exit(1)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "file\traw bytes\tgzip bytes\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", n, sizes[n][0], sizes[n][1])
	}
	for _, page := range []struct {
		name  string
		files []string
	}{
		{"softphone (/)", []string{"index.html", "app.js", "app.css"}},
		{"widget (host page + iframe)", []string{"widget.js", "embed.html", "app.js", "app.css"}},
	} {
		var raw, gz int
		for _, f := range page.files {
			raw += sizes[f][0]
			gz += sizes[f][1]
		}
		fmt.Fprintf(tw, "= %s\t%d\t%d\t\n", page.name, raw, gz)
	}
	_ = tw.Flush()
}

func gzipLen(b []byte) int {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return min(buf.Len(), len(b))
}
