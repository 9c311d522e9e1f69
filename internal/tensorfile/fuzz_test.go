package tensorfile

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tritter-ai/conformance/internal/hostile"
)

// FuzzOpen feeds arbitrary file bytes to Open and ReadHeader: neither may
// panic, they must agree, and every accepted tensor's bytes must be exactly
// shape × dtype size.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	seeds := [][]Tensor{
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
	for i, tensors := range seeds {
		path := filepath.Join(dir, "seed.safetensors")
		if err := Write(path, map[string]string{"format": "bitnet-golden/v1", "seed": string(rune('0' + i))}, tensors); err != nil {
			f.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(hostile.Safetensors(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, 16))
	f.Add(hostile.SafetensorsWithLength(1<<40, `{}`, 0))

	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.safetensors")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		header, headerErr := ReadHeader(path)
		file, err := Open(path)
		if (err == nil) != (headerErr == nil) {
			t.Fatalf("Open error %v but ReadHeader error %v", err, headerErr)
		}
		if err != nil {
			return
		}
		defer file.Close()
		if !reflect.DeepEqual(header, file.Header) {
			t.Fatalf("ReadHeader and Open disagree:\n%+v\n%+v", header, file.Header)
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
