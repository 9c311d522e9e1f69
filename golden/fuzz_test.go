package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Parse: it may reject them, with an
// error that names the file, but must not panic, and what it accepts must
// satisfy the invariants the suites rely on. The seeds are the smallest
// valid cases of each kind and format version (kilobytes, not whole
// models), and each input is parsed from memory, so that the engine runs
// thousands of inputs a second.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	for name, file := range map[string]*testFile{"model": validModelFile(f), "model-v2": validModelFileV2(f), "bitlinear": validBitlinearFile()} {
		data, err := os.ReadFile(file.write(f, filepath.Join(dir, name+".safetensors")))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	const name = "fuzz.safetensors"
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(name, data)
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		checkInvariants(t, c)
	})
}
