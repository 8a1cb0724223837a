// Package pack is the default rule pack: the rules rcwatch runs, backtests
// and lints when no rule file is given. The YAML files are embedded; see
// docs/DETECTION.md for what each rule detects and how well.
package pack

import (
	"embed"
	"io/fs"
	"sort"
)

//go:embed *.yaml
var files embed.FS

// Default is the pack as a read-only file system of *.yaml rule files.
func Default() fs.FS { return files }

// File is one rule file of the pack.
type File struct {
	Name string // e.g. "vandalism.yaml"
	Data []byte
}

// Files returns the pack's rule files sorted by name.
func Files() []File {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic("pack: reading the embedded rule files: " + err.Error()) // cannot happen: embedded at build time
	}
	out := make([]File, 0, len(entries))
	for _, e := range entries {
		b, err := fs.ReadFile(files, e.Name())
		if err != nil {
			panic("pack: reading " + e.Name() + ": " + err.Error())
		}
		out = append(out, File{Name: e.Name(), Data: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
