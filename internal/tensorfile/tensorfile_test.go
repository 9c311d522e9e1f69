package tensorfile

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"
)

// sampleTensors covers every dtype the library knows, a scalar and an empty
// tensor, with deterministic non-zero bytes.
func sampleTensors(t *testing.T) []Tensor {
	t.Helper()
	dtypes := []string{"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"}
	var tensors []Tensor
	for i, dt := range dtypes {
		shape := []int64{int64(i%3 + 1), 3}
		n, err := ByteSize(dt, shape)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(7*i + 13*j + 1)
		}
		tensors = append(tensors, Tensor{Name: "t." + dt, DType: dt, Shape: shape, Data: data})
	}
	tensors = append(tensors,
		Tensor{Name: "scalar", DType: "F32", Shape: []int64{}, Data: Float32Bytes([]float32{6.545922})},
		Tensor{Name: "empty", DType: "F32", Shape: []int64{0, 4}, Data: []byte{}},
	)
	return tensors
}

func TestWriteOpenRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "all.safetensors")
	tensors := sampleTensors(t)
	metadata := map[string]string{"format": "bitnet-golden/v1", "generator": "tensorfile test ✓"}
	if err := Write(path, metadata, tensors); err != nil {
		t.Fatal(err)
	}

	header, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, h := range []*Header{header, f.Header} {
		if !reflect.DeepEqual(h.Metadata, metadata) {
			t.Errorf("metadata %v, want %v", h.Metadata, metadata)
		}
		if h.DataStart%8 != 0 {
			t.Errorf("DataStart %d is not 8-byte aligned", h.DataStart)
		}
		if len(h.Tensors) != len(tensors) {
			t.Fatalf("%d tensors, want %d", len(h.Tensors), len(tensors))
		}
	}
	if !reflect.DeepEqual(header, f.Header) {
		t.Errorf("ReadHeader and Open disagree:\n%+v\n%+v", header, f.Header)
	}
	// Tensors come back in the order written, since offsets follow it.
	for i, want := range tensors {
		got := f.Tensors[i]
		if got.Name != want.Name || got.DType != want.DType || !reflect.DeepEqual(got.Shape, want.Shape) {
			t.Errorf("tensor %d: got %s %s %v, want %s %s %v", i, got.Name, got.DType, got.Shape, want.Name, want.DType, want.Shape)
		}
		raw, err := f.Raw(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, want.Data) {
			t.Errorf("tensor %q: raw bytes differ", want.Name)
		}
	}

	again := filepath.Join(t.TempDir(), "again.safetensors")
	if err := Write(again, metadata, tensors); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(path)
	second, _ := os.ReadFile(again)
	if !bytes.Equal(first, second) {
		t.Error("writing the same tensors twice gave different bytes")
	}
}

func TestTypedReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "typed.safetensors")
	values := []float32{1, -2.5, 0.375, 0, float32(math.Inf(-1))}
	ints := []int64{0, -1, 128000, math.MaxInt64, math.MinInt64}
	int32s := []int64{7, -7, math.MaxInt32}
	var i32Data []byte
	for _, v := range int32s {
		i32Data = append(i32Data, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	// 1, -2.5, 0.375, 0, -Inf in IEEE half precision.
	f16Data := []byte{0x00, 0x3C, 0x00, 0xC1, 0x00, 0x36, 0x00, 0x00, 0x00, 0xFC}
	err := Write(path, nil, []Tensor{
		{Name: "f32", DType: "F32", Shape: []int64{5}, Data: Float32Bytes(values)},
		{Name: "bf16", DType: "BF16", Shape: []int64{5}, Data: BF16Bytes(values)},
		{Name: "f16", DType: "F16", Shape: []int64{5}, Data: f16Data},
		{Name: "i64", DType: "I64", Shape: []int64{5}, Data: Int64Bytes(ints)},
		{Name: "i32", DType: "I32", Shape: []int64{3}, Data: i32Data},
		{Name: "u8", DType: "U8", Shape: []int64{3}, Data: []byte{0, 1, 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"f32", "bf16", "f16"} {
		got, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, values) {
			t.Errorf("%s: got %v, want %v", name, got, values)
		}
	}
	if got, err := f.Int64("i64"); err != nil || !reflect.DeepEqual(got, ints) {
		t.Errorf("i64: got %v, %v; want %v", got, err, ints)
	}
	if got, err := f.Int64("i32"); err != nil || !reflect.DeepEqual(got, int32s) {
		t.Errorf("i32: got %v, %v; want %v", got, err, int32s)
	}
	u8, err := f.Uint8("u8")
	if err != nil || !reflect.DeepEqual(u8, []uint8{0, 1, 2}) {
		t.Errorf("u8: got %v, %v", u8, err)
	}
	if len(f.Metadata) != 0 || f.Metadata == nil {
		t.Errorf("metadata %v, want empty non-nil", f.Metadata)
	}

	for _, tc := range []struct {
		call func() error
		want string
	}{
		{func() error { _, err := f.Float32("i64"); return err }, `tensor "i64": dtype I64`},
		{func() error { _, err := f.Int64("f32"); return err }, `tensor "f32": dtype F32`},
		{func() error { _, err := f.Uint8("missing"); return err }, `tensor "missing": not in the file`},
	} {
		err := tc.call()
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(path)) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("error %v, want one containing %q and %q", err, path, tc.want)
		}
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if u8[2] != 2 {
		t.Error("Uint8 result changed after Close")
	}
	if _, err := f.Raw("u8"); err == nil {
		t.Error("Raw after Close succeeded")
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBF16Rounding(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3F80},
		{-2, 0xC000},
		{math.Float32frombits(0x3F808000), 0x3F80}, // tie, rounds down to even
		{math.Float32frombits(0x3F818000), 0x3F82}, // tie, rounds up to even
		{math.Float32frombits(0x3F808001), 0x3F81}, // just above the tie
		{math.MaxFloat32, 0x7F80},                  // overflows to +Inf
		{float32(math.Inf(-1)), 0xFF80},
		{math.Float32frombits(0x00000001), 0x0000}, // smallest subnormal rounds to zero
	} {
		if got := Float32ToBF16(tc.in); got != tc.want {
			t.Errorf("Float32ToBF16(%v) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	if nan := BF16ToFloat32(Float32ToBF16(float32(math.NaN()))); nan == nan {
		t.Error("NaN did not survive a bf16 round trip")
	}
	for u := 0; u < 1<<16; u++ {
		f := BF16ToFloat32(uint16(u))
		if f == f && Float32ToBF16(f) != uint16(u) {
			t.Fatalf("bf16 %#04x → %v → %#04x", u, f, Float32ToBF16(f))
		}
	}
}

func TestF16ToFloat32(t *testing.T) {
	for _, tc := range []struct {
		in   uint16
		want float32
	}{
		{0x3C00, 1},
		{0xC000, -2},
		{0x0001, 1.0 / (1 << 24)},
		{0x03FF, 1023.0 / (1 << 24)},
		{0x7BFF, 65504},
		{0x7C00, float32(math.Inf(1))},
		{0x8000, float32(math.Copysign(0, -1))},
	} {
		got := F16ToFloat32(tc.in)
		if math.Float32bits(got) != math.Float32bits(tc.want) {
			t.Errorf("F16ToFloat32(%#04x) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if nan := F16ToFloat32(0x7E00); nan == nan {
		t.Error("0x7E00 is not NaN")
	}
}

func TestWriteRejectsInconsistentTensors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	for _, tc := range []struct {
		tensors []Tensor
		want    string
	}{
		{[]Tensor{{Name: "w", DType: "F32", Shape: []int64{2}, Data: make([]byte, 4)}}, `tensor "w": dtype F32 with shape [2] needs 8 bytes, got 4`},
		{[]Tensor{{Name: "w", DType: "F8", Shape: []int64{1}, Data: make([]byte, 1)}}, `tensor "w": unknown dtype "F8"`},
		{[]Tensor{{Name: "w", DType: "U8", Shape: []int64{-1}}}, `tensor "w": shape [-1]`},
		{[]Tensor{{Name: "w", DType: "U8", Shape: []int64{1}, Data: []byte{1}}, {Name: "w", DType: "U8", Shape: []int64{1}, Data: []byte{1}}}, `tensor "w": name given twice`},
		{[]Tensor{{Name: "__metadata__", DType: "U8", Shape: []int64{0}}}, `tensor "__metadata__": name is reserved`},
	} {
		err := Write(path, nil, tc.tensors)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(path+": "+tc.want)) {
			t.Errorf("Write error %v, want one containing %q", err, path+": "+tc.want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("failed writes left %d files behind", len(entries))
	}
}

func TestWriteStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stream.safetensors")
	calls := 0
	sources := []Source{
		{Name: "a", DType: "F32", Shape: []int64{2}, Data: func() ([]byte, error) { calls++; return Float32Bytes([]float32{1, 2}), nil }},
		{Name: "b", DType: "I64", Shape: []int64{1}, Data: func() ([]byte, error) { calls++; return Int64Bytes([]int64{-3}), nil }},
	}
	if err := WriteStream(path, nil, sources); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := f.Int64("b")
	f.Close()
	if calls != 2 || len(got) != 1 || got[0] != -3 {
		t.Errorf("%d Data calls, b = %v", calls, got)
	}

	for _, tc := range []struct {
		data func() ([]byte, error)
		want string
	}{
		{func() ([]byte, error) { return make([]byte, 3), nil }, `tensor "a": dtype F32 with shape [2] needs 8 bytes, got 3`},
		{func() ([]byte, error) { return nil, os.ErrPermission }, `tensor "a": permission denied`},
		{nil, `tensor "a": no Data function`},
	} {
		bad := filepath.Join(dir, "bad.safetensors")
		err := WriteStream(bad, nil, []Source{{Name: "a", DType: "F32", Shape: []int64{2}, Data: tc.data}})
		if err == nil || !strings.Contains(err.Error(), bad+": "+tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the folder, want only the good one", len(entries))
	}
}

// TestReadsLibrarySerializedFiles reads a file written by the safetensors
// library itself, whose tensor order (by dtype alignment, then name) and
// header padding differ from Write's.
func TestReadsLibrarySerializedFiles(t *testing.T) {
	var tensors []Tensor
	for _, tensor := range sampleTensors(t) {
		// The library's NewTensorView counts a scalar as 0 elements.
		if len(tensor.Shape) > 0 {
			tensors = append(tensors, tensor)
		}
	}
	views := map[string]safetensors.TensorView{}
	for _, tensor := range tensors {
		dt, err := safetensors.ParseDType(tensor.DType)
		if err != nil {
			t.Fatal(err)
		}
		shape := make([]uint64, len(tensor.Shape))
		for i, d := range tensor.Shape {
			shape[i] = uint64(d)
		}
		view, err := safetensors.NewTensorView(dt, shape, tensor.Data)
		if err != nil {
			t.Fatal(err)
		}
		views[tensor.Name] = view
	}
	data, err := safetensors.Serialize(views, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "library.safetensors")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, want := range tensors {
		raw, err := f.Raw(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, want.Data) {
			t.Errorf("tensor %q: bytes differ", want.Name)
		}
	}
}
