package golden

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// ManifestName is the SHA-256 manifest of golden/cases, written by `make
// golden` (golden/toolkit/manifest.py): one line per *.safetensors file of
// the folder, sorted by name, in sha256sum's format, "<64 hex digits>
// <two spaces><name>". It is not a case: Discover looks for *.safetensors.
const ManifestName = "MANIFEST.sha256"

//go:embed cases/MANIFEST.sha256
var committedManifest []byte

// CommittedManifest returns the manifest of the committed cases as built
// into the binary, to check Committed() against:
//
//	problems := golden.CheckManifest(golden.Committed(), golden.CommittedManifest())
func CommittedManifest() []byte { return append([]byte(nil), committedManifest...) }

// CheckManifest compares the *.safetensors files at the root of fsys with
// manifest (the text of a ManifestName file) and returns one problem per
// file that differs, sorted by name, or nil when all match:
//
//	golden file changed: NAME (sha256 X, manifest Y)
//	golden file changed: NAME (missing, manifest Y)
//	golden file changed: NAME (sha256 X, not in the manifest)
//
// A manifest line that does not parse is reported as "golden manifest:
// line N: ..." and a file that cannot be read as "golden file changed:
// NAME (unreadable: ERROR, manifest Y)".
func CheckManifest(fsys fs.FS, manifest []byte) []string {
	var problems []string
	want := map[string]string{}
	for i, line := range strings.Split(string(manifest), "\n") {
		if line == "" {
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		switch {
		case !ok || name == "":
			problems = append(problems, fmt.Sprintf("golden manifest: line %d: %.80q, expected \"<sha256>  <name>\"", i+1, line))
			continue
		case len(sum) != 2*sha256.Size || !isLowerHex(sum):
			problems = append(problems, fmt.Sprintf("golden manifest: line %d: sha256 %.80q, expected 64 lowercase hex digits", i+1, sum))
			continue
		case path.Base(name) != name || !strings.HasSuffix(name, Extension):
			problems = append(problems, fmt.Sprintf("golden manifest: line %d: name %.80q, expected a *%s file name", i+1, name, Extension))
			continue
		}
		if _, dup := want[name]; dup {
			problems = append(problems, fmt.Sprintf("golden manifest: line %d: %s listed twice", i+1, name))
			continue
		}
		want[name] = sum
	}
	files, err := fs.Glob(fsys, "*"+Extension)
	if err != nil {
		return append(problems, fmt.Sprintf("golden files: %v", err))
	}
	have := map[string]bool{}
	var changed []string
	for _, name := range files {
		have[name] = true
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			changed = append(changed, fmt.Sprintf("golden file changed: %s (unreadable: %v, manifest %s)", name, err, orNone(want[name])))
			continue
		}
		h := sha256.Sum256(data)
		got := hex.EncodeToString(h[:])
		switch sum, listed := want[name]; {
		case !listed:
			changed = append(changed, fmt.Sprintf("golden file changed: %s (sha256 %s, not in the manifest)", name, got))
		case got != sum:
			changed = append(changed, fmt.Sprintf("golden file changed: %s (sha256 %s, manifest %s)", name, got, sum))
		}
	}
	for name, sum := range want {
		if !have[name] {
			changed = append(changed, fmt.Sprintf("golden file changed: %s (missing, manifest %s)", name, sum))
		}
	}
	sort.Strings(changed)
	return append(problems, changed...)
}

func orNone(sum string) string {
	if sum == "" {
		return "none"
	}
	return sum
}

func isLowerHex(s string) bool {
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}
