package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleFile writes a small valid file with every value type and every
// supported float type plus an I2_S tensor, and returns its bytes.
func sampleFile(t testing.TB, kvs []KV) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sample.gguf")
	codes := make([]int8, 2*128)
	for i := range codes {
		codes[i] = int8(i%3) - 1
	}
	i2s, err := PackI2S(LayoutX86, codes, 2, 128, 0.25)
	if err != nil {
		t.Fatal(err)
	}
	tensors := []WriteTensor{
		{"a", []uint64{3}, TypeF32, func() ([]byte, error) { return EncodeFloats(TypeF32, []float32{1, 2, 3}), nil }},
		{"b", []uint64{2, 2}, TypeF16, func() ([]byte, error) { return EncodeFloats(TypeF16, []float32{1, -2, 0.5, 65504}), nil }},
		{"c", []uint64{1}, TypeBF16, func() ([]byte, error) { return EncodeFloats(TypeBF16, []float32{-0.75}), nil }},
		{"w", []uint64{128, 2}, TypeI2S, func() ([]byte, error) { return i2s, nil }},
	}
	if err := Write(path, kvs, tensors); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func everyValueType() []KV {
	return []KV{
		{"general.architecture", Str("bitnet-b1.58")},
		{"u8", Value{Type: ValueUint8, Uint: 200}},
		{"i8", Value{Type: ValueInt8, Int: -100}},
		{"u16", Value{Type: ValueUint16, Uint: 60000}},
		{"i16", Value{Type: ValueInt16, Int: -30000}},
		{"u32", U32(4000000000)},
		{"i32", Value{Type: ValueInt32, Int: -2000000000}},
		{"f32", F32(1e-5)},
		{"bool", Bool(true)},
		{"u64", Value{Type: ValueUint64, Uint: 1 << 63}},
		{"i64", Value{Type: ValueInt64, Int: -1 << 62}},
		{"f64", Value{Type: ValueFloat64, Float: 0.1}},
		{"strings", Strings([]string{"a", "", "ccc"})},
		{"u32s", Value{Type: ValueArray, ItemType: ValueUint32, Array: []Value{U32(1), U32(2)}}},
	}
}

func TestRoundTrip(t *testing.T) {
	kvs := everyValueType()
	data := sampleFile(t, kvs)
	g, err := Parse("sample.gguf", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if g.Version != 3 || g.Alignment != 32 || len(g.KVs) != len(kvs) || len(g.Tensors) != 4 {
		t.Fatalf("version %d alignment %d, %d KVs, %d tensors", g.Version, g.Alignment, len(g.KVs), len(g.Tensors))
	}
	for i, kv := range kvs {
		got := g.KVs[i]
		if got.Key != kv.Key || got.Value.Type != kv.Value.Type || got.Value.Uint != kv.Value.Uint || got.Value.Int != kv.Value.Int ||
			got.Value.String != kv.Value.String || got.Value.Bool != kv.Value.Bool || len(got.Value.Array) != len(kv.Value.Array) {
			t.Errorf("kv %d: got %+v, want %+v", i, got, kv)
		}
	}
	if v, _ := g.Value("f32"); float32(v.Float) != 1e-5 {
		t.Errorf("f32: got %v", v.Float)
	}
	if v, _ := g.Value("strings"); v.Array[2].String != "ccc" {
		t.Errorf("strings: got %+v", v)
	}
	for _, tc := range []struct {
		name string
		want []float32
	}{{"a", []float32{1, 2, 3}}, {"b", []float32{1, -2, 0.5, 65504}}, {"c", []float32{-0.75}}} {
		got, err := g.Float32(tc.name)
		if err != nil || len(got) != len(tc.want) {
			t.Fatalf("%s: %v %v", tc.name, got, err)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s[%d] = %v, want %v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
	w, _ := g.Tensor("w")
	if w.Size != 256/4+32 || w.Start%32 != 0 || w.Start < g.DataStart {
		t.Errorf("w: size %d start %d (data start %d)", w.Size, w.Start, g.DataStart)
	}
	raw, err := g.Raw("w")
	if err != nil {
		t.Fatal(err)
	}
	if s := I2SScale(raw, 256); s != 0.25 {
		t.Errorf("w scale %v, want 0.25", s)
	}
	if len(data)%32 != 0 {
		t.Errorf("file size %d is not padded to 32", len(data))
	}
}

// TestNoPaddingWhenAligned: a header ending on the alignment gets no pad.
func TestNoPaddingWhenAligned(t *testing.T) {
	// Header: 24 bytes; one KV "k" (8+1) u32 (4+4) = 17; one tensor info
	// name "t" (8+1), n_dims 4, ne 8, type 4, offset 8 = 33: 74 bytes.
	// A 7-byte key instead of "k" makes it 80; pad the key to reach 96.
	key := strings.Repeat("k", 23)
	path := filepath.Join(t.TempDir(), "aligned.gguf")
	err := Write(path, []KV{{key, U32(1)}}, []WriteTensor{{"t", []uint64{8}, TypeF32, func() ([]byte, error) { return make([]byte, 32), nil }}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.DataStart != 96 || g.Size != 128 {
		t.Errorf("data start %d size %d, want 96 and 128 (header ends at 96, no padding)", g.DataStart, g.Size)
	}
}

// builder assembles raw headers for hostile cases.
type builder struct {
	buf bytes.Buffer
	e   *encoder
}

func newBuilder(version uint32, nTensors, nKV uint64) *builder {
	b := &builder{}
	b.e = &encoder{w: bufio.NewWriterSize(&b.buf, 16)}
	b.e.u32(Magic)
	b.e.u32(version)
	b.e.u64(nTensors)
	b.e.u64(nKV)
	return b
}

func (b *builder) kv(key string, v Value) *builder { b.e.str(key); b.e.value(v); return b }

func (b *builder) tensor(name string, ne []uint64, typ Type, offset uint64) *builder {
	b.e.str(name)
	b.e.u32(uint32(len(ne)))
	for _, d := range ne {
		b.e.u64(d)
	}
	b.e.u32(uint32(typ))
	b.e.u64(offset)
	return b
}

func (b *builder) raw(p []byte) *builder { b.e.bytes(p); return b }

// data pads to 32 and appends n zero bytes.
func (b *builder) bytes(n int) []byte {
	b.e.pad(32)
	b.e.bytes(make([]byte, n))
	b.e.w.Flush()
	return b.buf.Bytes()
}

type hostileCase struct {
	name, want string
	data       []byte
}

func hostileCases(t testing.TB) []hostileCase {
	valid := sampleFile(t, everyValueType())
	be := append([]byte(nil), valid...)
	binary.BigEndian.PutUint32(be[4:], 3)
	u32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	return []hostileCase{
		{"empty", "magic: truncated", nil},
		{"bad magic", "magic: expected", []byte("GGML\x03\x00\x00\x00")},
		{"big-endian", "big-endian GGUF", be},
		{"version 1", "version: expected 2 or 3, got 1", newBuilder(1, 0, 0).bytes(0)},
		{"truncated in a tensor info", "tensor info 0 (\"t\") ne[1]: truncated", newBuilder(3, 1, 0).tensor("t", []uint64{8, 8}, TypeF32, 0).bytes(0)[:24+8+1+4+8+4]},
		{"truncated data", "inside the file", valid[:len(valid)-64]},
		{"n_kv 2^60", "n_kv: 1152921504606846976 pairs cannot fit", newBuilder(3, 0, 1<<60).bytes(0)},
		{"n_tensors 2^60", "n_tensors: 1152921504606846976 tensor infos cannot fit", newBuilder(3, 1<<60, 0).bytes(0)},
		{"array of 2^60", "array of 1152921504606846976 u32 items cannot fit", newBuilder(3, 0, 1).raw(u64(1)).raw([]byte("k")).raw(u32(9)).raw(u32(4)).raw(u64(1 << 60)).bytes(0)},
		{"string longer than the file", "string length 4294967296", newBuilder(3, 0, 1).raw(u64(1)).raw([]byte("k")).raw(u32(8)).raw(u64(1 << 32)).bytes(0)},
		{"key longer than the file", `kv[0].key: string length`, newBuilder(3, 0, 1).raw(u64(1 << 40)).raw(make([]byte, 16)).bytes(0)},
		{"nested array", "nested array", newBuilder(3, 0, 1).raw(u64(1)).raw([]byte("k")).raw(u32(9)).raw(u32(9)).raw(u64(1)).bytes(0)},
		{"unknown value type", "unknown value type 13", newBuilder(3, 0, 1).raw(u64(1)).raw([]byte("k")).raw(u32(13)).bytes(0)},
		{"bad bool", "bool byte 2", newBuilder(3, 0, 1).raw(u64(1)).raw([]byte("k")).raw(u32(7)).raw([]byte{2}).bytes(0)},
		{"duplicate key", `duplicate key "k"`, newBuilder(3, 0, 2).kv("k", U32(1)).kv("k", U32(2)).bytes(0)},
		{"alignment 0", `"general.alignment": expected a power of two, got 0`, newBuilder(3, 0, 1).kv("general.alignment", U32(0)).bytes(0)},
		{"alignment 48", `"general.alignment": expected a power of two, got 48`, newBuilder(3, 0, 1).kv("general.alignment", U32(48)).bytes(0)},
		{"alignment as u64", `"general.alignment": expected type u32, got u64`, newBuilder(3, 0, 1).kv("general.alignment", Value{Type: ValueUint64, Uint: 32}).bytes(0)},
		{"duplicate tensor", `duplicate tensor name "t"`, newBuilder(3, 2, 0).tensor("t", []uint64{8}, TypeF32, 0).tensor("t", []uint64{8}, TypeF32, 32).bytes(64)},
		{"offset out of range", `tensor "t": data [64, 96)`, newBuilder(3, 1, 0).tensor("t", []uint64{8}, TypeF32, 64).bytes(32)},
		{"offset 2^63", `tensor "t": data [9223372036854775808`, newBuilder(3, 1, 0).tensor("t", []uint64{8}, TypeF32, 1<<63).bytes(32)},
		{"unaligned offset", `offset 4 is not a multiple of the alignment 32`, newBuilder(3, 1, 0).tensor("t", []uint64{1}, TypeF32, 4).bytes(64)},
		{"overlap", `tensor "u": data [0, 64) overlaps tensor "t"`, newBuilder(3, 2, 0).tensor("t", []uint64{16}, TypeF32, 0).tensor("u", []uint64{16}, TypeF32, 0).bytes(128)},
		{"element count 2^64", "exceed 2^60", newBuilder(3, 1, 0).tensor("t", []uint64{1 << 32, 1 << 32}, TypeF32, 0).bytes(32)},
		{"n_dims 0", "n_dims: expected 1..4, got 0", newBuilder(3, 1, 0).tensor("t", nil, TypeF32, 0).bytes(32)},
		{"n_dims 5", "n_dims: expected 1..4, got 5", newBuilder(3, 1, 0).tensor("t", []uint64{1, 1, 1, 1, 1}, TypeF32, 0).bytes(32)},
		{"Q4_0 refused by name", "tensor type Q4_0 (2) is not supported", newBuilder(3, 1, 0).tensor("t", []uint64{32}, 2, 0).bytes(32)},
		{"IQ4_NL_4_4 numbering refused", "tensor type I8_S (37) is not supported", newBuilder(3, 1, 0).tensor("t", []uint64{32}, 37, 0).bytes(32)},
		{"unknown type", "tensor type type 99 (99) is not supported", newBuilder(3, 1, 0).tensor("t", []uint64{32}, 99, 0).bytes(32)},
	}
}

func TestHostileFiles(t *testing.T) {
	for _, tc := range hostileCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("hostile.gguf", bytes.NewReader(tc.data), int64(len(tc.data)))
			if err == nil {
				t.Fatalf("parsed without error, want one containing %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "hostile.gguf: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want the file name first and %q", err, tc.want)
			}
		})
	}
}

// TestOpenAgreesWithParse: Open on a file says what Parse says on its bytes.
func TestOpenAgreesWithParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.gguf")
	for _, tc := range hostileCases(t) {
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, openErr := Open(path)
		_, parseErr := Parse(path, bytes.NewReader(tc.data), int64(len(tc.data)))
		if openErr == nil || parseErr == nil || openErr.Error() != parseErr.Error() {
			t.Errorf("%s: Open %v, Parse %v", tc.name, openErr, parseErr)
		}
	}
}

func TestByteSizes(t *testing.T) {
	cases := []struct {
		typ  Type
		ne   []uint64
		want int64
	}{
		{TypeF32, []uint64{2560}, 10240},
		{TypeF16, []uint64{2560, 128256}, 2 * 2560 * 128256},
		{TypeBF16, []uint64{3}, 6},
		{TypeI2S, []uint64{2560, 6912}, 2560*6912/4 + 32},
		{TypeTL1, []uint64{2560, 640}, 2560*640/4 + 32},
		// TL2, K = 2560 = 256 + 3·768, M = 640: (2304·640/3·5/8) + 256·640/2·4/8 = 307200 + 40960
		{TypeTL2, []uint64{2560, 640}, 348160 + 32},
	}
	for _, c := range cases {
		got, err := ByteSize(c.typ, c.ne)
		if err != nil || got != c.want {
			t.Errorf("%s %v: %d %v, want %d", c.typ, c.ne, got, err, c.want)
		}
	}
}

func TestF16(t *testing.T) {
	cases := []struct {
		f float32
		h uint16
	}{{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65520, 0x7c00}, {6.103515625e-05, 0x0400}, {5.960464477539063e-08, 0x0001}, {1.0009765625, 0x3c01}, {1.00048828125, 0x3c00}, {1.00146484375, 0x3c02}}
	for _, c := range cases {
		if got := Float32ToF16(c.f); got != c.h {
			t.Errorf("Float32ToF16(%v) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
	for h := 0; h < 1<<16; h++ {
		f := F16ToFloat32(uint16(h))
		if f != f { // NaN
			continue
		}
		if back := Float32ToF16(f); back != uint16(h) {
			t.Fatalf("f16 %#04x → %v → %#04x", h, f, back)
		}
	}
}

func TestI2SLayouts(t *testing.T) {
	rows, cols := 8, 256
	w := make([]int8, rows*cols)
	for i := range w {
		w[i] = int8((i*7+i/5)%3) - 1
	}
	for _, l := range Layouts {
		data, err := PackI2S(l, w, rows, cols, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		codes := make([]byte, len(w))
		if err := UnpackI2S(l, data, rows, cols, codes); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if int8(codes[i])-1 != w[i] {
				t.Fatalf("%s: element %d: got code %d for %d", l, i, codes[i], w[i])
			}
		}
		for _, other := range Layouts {
			if other == l {
				continue
			}
			if err := UnpackI2S(other, data, rows, cols, codes); err != nil {
				t.Fatal(err)
			}
			same := 0
			for i := range w {
				if int8(codes[i])-1 == w[i] {
					same++
				}
			}
			if same == len(w) {
				t.Errorf("%s data decodes identically under %s: the layouts cannot be told apart", l, other)
			}
		}
	}
	// The x86 layout, by hand: element 128b+32g+j at byte 32b+j, bits 7-2g.
	one := make([]int8, 128)
	for i := range one {
		one[i] = 0
	}
	one[33] = 1 // group 1, j = 1: byte 1 bits 5:4 = 2
	data, _ := PackI2S(LayoutX86, one, 1, 128, 1)
	if data[0] != 0x55 || data[1] != 0x65 {
		t.Errorf("x86 bytes 0, 1 = %#02x %#02x, want 0x55 0x65", data[0], data[1])
	}
}

func TestLlamaPermute(t *testing.T) {
	// one head of hd = 4: rows [0 1 2 3] → [0 2 1 3]
	w := []int8{0, 1, -1, 0}
	got := LlamaPermute(w, 4, 1, 1)
	want := []int8{0, -1, 1, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("permute: got %v, want %v", got, want)
		}
	}
}
