package golden

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func sum(data string) string {
	h := sha256.Sum256([]byte(data))
	return hex.EncodeToString(h[:])
}

func TestCheckManifest(t *testing.T) {
	files := fstest.MapFS{
		"a.safetensors": {Data: []byte("aaa")},
		"b.safetensors": {Data: []byte("bbb")},
		"c.safetensors": {Data: []byte("ccc")},
		ManifestName:    {Data: []byte("ignored: not a case")},
		"notes.txt":     {Data: []byte("not a case either")},
	}
	good := fmt.Sprintf("%s  a.safetensors\n%s  b.safetensors\n%s  c.safetensors\n", sum("aaa"), sum("bbb"), sum("ccc"))
	if p := CheckManifest(files, []byte(good)); p != nil {
		t.Fatalf("matching manifest: %q", p)
	}

	// b changed, c missing from the manifest, d listed but missing.
	bad := fmt.Sprintf("%s  a.safetensors\n%s  b.safetensors\n%s  d.safetensors\n", sum("aaa"), sum("old b"), sum("ddd"))
	want := []string{
		fmt.Sprintf("golden file changed: b.safetensors (sha256 %s, manifest %s)", sum("bbb"), sum("old b")),
		fmt.Sprintf("golden file changed: c.safetensors (sha256 %s, not in the manifest)", sum("ccc")),
		fmt.Sprintf("golden file changed: d.safetensors (missing, manifest %s)", sum("ddd")),
	}
	if got := CheckManifest(files, []byte(bad)); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nexpected:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckManifestRejectsMalformedLines(t *testing.T) {
	files := fstest.MapFS{"a.safetensors": {Data: []byte("aaa")}}
	manifest := strings.Join([]string{
		sum("aaa") + "  a.safetensors",
		"no separator",
		strings.ToUpper(sum("x")) + "  x.safetensors",
		sum("y") + "  sub/y.safetensors",
		sum("aaa") + "  a.safetensors",
	}, "\n")
	got := CheckManifest(files, []byte(manifest))
	want := []string{
		`golden manifest: line 2: "no separator", expected "<sha256>  <name>"`,
		fmt.Sprintf("golden manifest: line 3: sha256 %q, expected 64 lowercase hex digits", strings.ToUpper(sum("x"))),
		`golden manifest: line 4: name "sub/y.safetensors", expected a *.safetensors file name`,
		"golden manifest: line 5: a.safetensors listed twice",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nexpected:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The committed cases match the committed manifest, on disk and as built
// into the binary (make golden rewrites it).
func TestCommittedManifest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(Dir(), ManifestName))
	if err != nil {
		t.Fatalf("%v (make golden writes it)", err)
	}
	if p := CheckManifest(os.DirFS(Dir()), data); p != nil {
		t.Errorf("golden/cases against %s:\n%s", ManifestName, strings.Join(p, "\n"))
	}
	if string(CommittedManifest()) != string(data) {
		t.Errorf("CommittedManifest differs from %s", filepath.Join(Dir(), ManifestName))
	}
	paths, err := Discover(Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if filepath.Base(p) == ManifestName {
			t.Errorf("Discover lists the manifest %s as a case", p)
		}
	}
	if n := strings.Count(string(data), "\n"); n != len(paths) {
		t.Errorf("%s lists %d files, golden/cases has %d cases", ManifestName, n, len(paths))
	}
}

// A committed case with one byte flipped is reported as changed, by name,
// and nothing else is.
func TestCheckManifestCatchesACorruptedCase(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(Dir(), ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	paths, err := Discover(Dir())
	if err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = &fstest.MapFile{Data: b}
	}
	const name = "bitlinear-ties.safetensors"
	orig := files[name].Data
	corrupt := append([]byte(nil), orig...)
	corrupt[len(corrupt)-1] ^= 1
	files[name] = &fstest.MapFile{Data: corrupt}
	got := CheckManifest(files, data)
	want := []string{fmt.Sprintf("golden file changed: %s (sha256 %s, manifest %s)", name, sum(string(corrupt)), sum(string(orig)))}
	if !slices.Equal(got, want) {
		t.Errorf("problems %q, expected %q", got, want)
	}
}
