package tensorfile

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/internal/hostile"
)

func TestHostileFiles(t *testing.T) {
	for _, tc := range hostile.SafetensorsCases() {
		t.Run(tc.Name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hostile.safetensors")
			if err := os.WriteFile(path, tc.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, headerErr := ReadHeader(path)
			f, openErr := Open(path)
			if openErr == nil {
				f.Close()
			}
			for reader, err := range map[string]error{"ReadHeader": headerErr, "Open": openErr} {
				if err == nil {
					t.Errorf("%s accepted the file", reader)
					continue
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, path+": ") {
					t.Errorf("%s error does not start with the path: %s", reader, msg)
				}
				for _, want := range tc.Mentions {
					if !strings.Contains(msg, want) {
						t.Errorf("%s error %q does not contain %q", reader, msg, want)
					}
				}
			}
		})
	}
}

// TestHugeHeaderLengthIsCheckedBeforeReading uses a sparse file larger than
// the 100 MB limit, so that only the limit (not the file size) rejects it.
func TestHugeHeaderLengthIsCheckedBeforeReading(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse.safetensors")
	if err := hostile.WriteSparse(path, binary.LittleEndian.AppendUint64(nil, 150_000_000), 200_000_000); err != nil {
		t.Skipf("cannot make a sparse file: %v", err)
	}
	for _, read := range []func(string) error{
		func(p string) error { _, err := ReadHeader(p); return err },
		func(p string) error {
			f, err := Open(p)
			if err == nil {
				f.Close()
			}
			return err
		},
	} {
		err := read(path)
		if err == nil || !strings.Contains(err.Error(), path+": header length: 150000000 bytes, more than the 100000000 allowed") {
			t.Errorf("error %v, want the header length limit", err)
		}
	}
}

func TestNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadHeader(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadHeader(dir) error %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(dir) error %v", err)
	}
}
