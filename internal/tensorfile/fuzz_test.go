package tensorfile

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tritter-ai/conformance/internal/hostile"
)

// fuzzSeeds are small valid files (under 200 bytes each) and two hostile
// ones: a duplicate tensor name and a length prefix of 2^40.
func fuzzSeeds(t testing.TB) [][]byte {
	t.Helper()
	dir := t.TempDir()
	files := [][]Tensor{
		nil,
		{{Name: "w", DType: "F32", Shape: []int64{2, 2}, Data: Float32Bytes([]float32{1, 2, 3, 4})}},
		{
			{Name: "input_ids", DType: "I64", Shape: []int64{1, 3}, Data: Int64Bytes([]int64{1, 2, 3})},
			{Name: "b", DType: "BF16", Shape: []int64{3}, Data: BF16Bytes([]float32{1, -1, 0.5})},
			{Name: "u", DType: "U8", Shape: []int64{2, 1}, Data: []byte{1, 2}},
			{Name: "loss", DType: "F32", Shape: []int64{}, Data: Float32Bytes([]float32{6.5})},
			{Name: "empty", DType: "F16", Shape: []int64{0}, Data: nil},
		},
	}
	var seeds [][]byte
	for i, tensors := range files {
		path := filepath.Join(dir, "seed.safetensors")
		if err := Write(path, map[string]string{"format": "bitnet-golden/v1", "seed": string(rune('0' + i))}, tensors); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	return append(seeds,
		hostile.Safetensors(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, 16),
		hostile.SafetensorsWithLength(1<<40, `{}`, 0))
}

// TestOpenBytesAgreesWithOpen checks that validating bytes in memory, as
// FuzzOpen does, is the same as validating them mapped from a file.
func TestOpenBytesAgreesWithOpen(t *testing.T) {
	inputs := fuzzSeeds(t)
	for _, tc := range hostile.SafetensorsCases() {
		inputs = append(inputs, tc.Data)
	}
	path := filepath.Join(t.TempDir(), "input.safetensors")
	for i, data := range inputs {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mapped, mappedErr := Open(path)
		inMemory, memErr := OpenBytes(path, data)
		if (mappedErr == nil) != (memErr == nil) || mappedErr != nil && mappedErr.Error() != memErr.Error() {
			t.Errorf("input %d: Open error %v, OpenBytes error %v", i, mappedErr, memErr)
		}
		if mappedErr == nil && memErr == nil && !reflect.DeepEqual(mapped.Header, inMemory.Header) {
			t.Errorf("input %d: Open and OpenBytes disagree:\n%+v\n%+v", i, mapped.Header, inMemory.Header)
		}
		for _, f := range []*File{mapped, inMemory} {
			if f != nil {
				f.Close()
			}
		}
	}
}

// FuzzOpen feeds arbitrary file bytes to OpenBytes and ReadHeader: neither
// may panic, they must agree, and every accepted tensor's bytes must be
// exactly shape × dtype size. OpenBytes validates from memory; ReadHeader
// needs a file, so each input overwrites, in place, one file that the
// worker reuses (see overwrite).
func FuzzOpen(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	path := filepath.Join(f.TempDir(), "fuzz.safetensors")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := overwrite(path, data); err != nil {
			t.Fatal(err)
		}
		header, headerErr := ReadHeader(path)
		file, err := OpenBytes(path, data)
		if (err == nil) != (headerErr == nil) {
			t.Fatalf("OpenBytes error %v but ReadHeader error %v", err, headerErr)
		}
		if err != nil {
			return
		}
		defer file.Close()
		if !reflect.DeepEqual(header, file.Header) {
			t.Fatalf("ReadHeader and OpenBytes disagree:\n%+v\n%+v", header, file.Header)
		}
		for _, info := range file.Tensors {
			raw, err := file.Raw(info.Name)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ByteSize(info.DType, info.Shape)
			if err != nil {
				t.Fatalf("accepted tensor %q: %v", info.Name, err)
			}
			if int64(len(raw)) != want {
				t.Fatalf("tensor %q: %d bytes, shape × dtype needs %d", info.Name, len(raw), want)
			}
			switch info.DType {
			case "F32", "BF16", "F16":
				_, err = file.Float32(info.Name)
			case "I64", "I32":
				_, err = file.Int64(info.Name)
			case "U8":
				_, err = file.Uint8(info.Name)
			}
			if err != nil {
				t.Fatalf("tensor %q: %v", info.Name, err)
			}
		}
	})
}

// overwrite replaces a file's contents without truncating it to zero first:
// on ext4, closing a file that was truncated to zero and rewritten flushes
// it to disk (auto_da_alloc), which costs about a millisecond per input
// where an in-place write costs tens of microseconds.
func overwrite(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return err
}
