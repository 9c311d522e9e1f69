package golden

import (
	"embed"
	"io/fs"
	"path"
	"sort"
)

// committed holds the project's own golden cases, built into every binary
// that imports this package, so that the golden specs run the same from any
// working directory, under -trimpath, and from a module that imports this
// one.
//
//go:embed cases/*.safetensors
var committed embed.FS

// CommittedPrefix is the path the committed cases are named under, as if
// read from the repository root: "golden/cases/bitlinear-edge.safetensors".
const CommittedPrefix = "golden/cases/"

// Committed returns the committed golden cases as an fs.FS whose root holds
// the *.safetensors files.
func Committed() fs.FS {
	sub, err := fs.Sub(committed, "cases")
	if err != nil {
		panic(err) // the embed pattern above guarantees the folder
	}
	return sub
}

// LoadCommitted loads every committed case in name order. Each case's Path
// is CommittedPrefix plus its file name; a file that does not load is
// reported with its error in the same order, so that one bad file never
// hides the others.
func LoadCommitted() []Loaded {
	names, _ := fs.Glob(Committed(), "*.safetensors")
	sort.Strings(names)
	out := make([]Loaded, len(names))
	for i, name := range names {
		p := path.Join(CommittedPrefix, name)
		data, err := fs.ReadFile(Committed(), name)
		if err != nil {
			out[i] = Loaded{Path: p, Err: err}
			continue
		}
		c, err := Parse(p, data)
		out[i] = Loaded{Path: p, Case: c, Err: err}
	}
	return out
}

// Loaded is one case file and the result of loading it.
type Loaded struct {
	Path string
	Case *Case
	Err  error
}

// LoadAll loads every *.safetensors file of the folders, in Discover's
// order, each with its error.
func LoadAll(dirs ...string) ([]Loaded, error) {
	paths, err := Discover(dirs...)
	if err != nil {
		return nil, err
	}
	out := make([]Loaded, len(paths))
	for i, p := range paths {
		c, err := Load(p)
		out[i] = Loaded{Path: p, Case: c, Err: err}
	}
	return out, nil
}
