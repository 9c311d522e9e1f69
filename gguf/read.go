package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// Magic is "GGUF" read as a little-endian uint32.
const Magic = 0x46554747

// DefaultAlignment is GGUF_DEFAULT_ALIGNMENT, used without general.alignment.
const DefaultAlignment = 32

// maxDims is GGML_MAX_DIMS.
const maxDims = 4

// ValueType is a GGUF metadata value type.
type ValueType uint32

// The metadata value types (gguf-py constants.py GGUFValueType).
const (
	ValueUint8 ValueType = iota
	ValueInt8
	ValueUint16
	ValueInt16
	ValueUint32
	ValueInt32
	ValueFloat32
	ValueBool
	ValueString
	ValueArray
	ValueUint64
	ValueInt64
	ValueFloat64
)

var valueTypeNames = []string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("value type %d", uint32(t))
}

// fixedSize is the encoded size of a scalar value type, 0 for string and array.
func (t ValueType) fixedSize() int64 {
	switch t {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	}
	return 0
}

// Value is one metadata value. Integers of every width are held in Int or
// Uint by signedness, floats in Float, and an array's items in Array (all
// of type ItemType; arrays of arrays are refused).
type Value struct {
	Type     ValueType
	Uint     uint64
	Int      int64
	Float    float64
	Bool     bool
	String   string
	ItemType ValueType
	Array    []Value
}

// KV is one metadata pair.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo is one tensor of the file.
type TensorInfo struct {
	Name string
	Ne   []uint64 // ggml order: Ne[0] is the contiguous dimension (HF's last)
	Type Type
	// Offset is relative to the data section; Start is absolute in the file.
	Offset uint64
	Start  int64
	Size   int64 // bytes, by ByteSize
}

// Elements is the product of Ne.
func (t TensorInfo) Elements() int64 {
	n, _ := Elements(t.Ne) // checked when the file was read
	return n
}

// File is a parsed GGUF file. Tensor data is read on demand (ReadAt), so a
// multi-GB file is never read whole.
type File struct {
	Path      string
	Version   uint32
	Alignment uint64
	KVs       []KV         // in file order
	Tensors   []TensorInfo // in file order
	DataStart int64        // absolute offset of the data section
	Size      int64        // file size

	r       io.ReaderAt
	closer  io.Closer
	keys    map[string]int
	tensors map[string]int
}

// Open reads the header of a GGUF file and checks every tensor's range.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file (mode %s)", path, info.Mode())
	}
	g, err := Parse(path, f, info.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	g.closer = f
	return g, nil
}

// Parse reads a GGUF file of size bytes from r; name is used in errors.
func Parse(name string, r io.ReaderAt, size int64) (*File, error) {
	c := &cursor{r: r, size: size}
	g := &File{Path: name, Size: size, r: r, keys: map[string]int{}, tensors: map[string]int{}}
	if err := g.parse(c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return g, nil
}

// Close releases the file.
func (g *File) Close() error {
	if g.closer == nil {
		return nil
	}
	err := g.closer.Close()
	g.closer = nil
	return err
}

// Value returns the metadata value of key.
func (g *File) Value(key string) (Value, bool) {
	i, ok := g.keys[key]
	if !ok {
		return Value{}, false
	}
	return g.KVs[i].Value, true
}

// Tensor returns the info of the tensor called name.
func (g *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := g.tensors[name]
	if !ok {
		return TensorInfo{}, false
	}
	return g.Tensors[i], true
}

func (g *File) parse(c *cursor) error {
	magic, err := c.u32("magic")
	if err != nil {
		return err
	}
	if magic != Magic {
		return fmt.Errorf("magic: expected %q (0x%08x), got 0x%08x", "GGUF", uint32(Magic), magic)
	}
	if g.Version, err = c.u32("version"); err != nil {
		return err
	}
	switch {
	case g.Version == 0x03000000 || g.Version == 0x02000000:
		return fmt.Errorf("version: bytes read as %d big-endian: a big-endian GGUF, expected a little-endian file (bitnet.cpp reads without byte swapping)", bswap(g.Version))
	case g.Version != 2 && g.Version != 3:
		return fmt.Errorf("version: expected 2 or 3, got %d", g.Version)
	}
	nTensors, err := c.u64("n_tensors")
	if err != nil {
		return err
	}
	nKV, err := c.u64("n_kv")
	if err != nil {
		return err
	}
	// Every KV takes at least 12 bytes (key length, type), every tensor
	// info at least 24 (name length, n_dims, type, offset).
	if nKV > uint64(c.remaining())/12 {
		return fmt.Errorf("n_kv: %d pairs cannot fit in the %d bytes left in the file", nKV, c.remaining())
	}
	if nTensors > uint64(c.remaining())/24 {
		return fmt.Errorf("n_tensors: %d tensor infos cannot fit in the %d bytes left in the file", nTensors, c.remaining())
	}
	g.KVs = make([]KV, 0, nKV)
	for i := uint64(0); i < nKV; i++ {
		key, err := c.str(fmt.Sprintf("kv[%d].key", i))
		if err != nil {
			return err
		}
		if _, dup := g.keys[key]; dup {
			return fmt.Errorf("kv[%d]: duplicate key %q", i, key)
		}
		v, err := c.value("metadata " + quote(key))
		if err != nil {
			return err
		}
		g.keys[key] = len(g.KVs)
		g.KVs = append(g.KVs, KV{key, v})
	}
	g.Alignment = DefaultAlignment
	if v, ok := g.Value("general.alignment"); ok {
		if v.Type != ValueUint32 {
			return fmt.Errorf("metadata \"general.alignment\": expected type u32, got %s", v.Type)
		}
		if v.Uint == 0 || v.Uint&(v.Uint-1) != 0 {
			return fmt.Errorf("metadata \"general.alignment\": expected a power of two, got %d", v.Uint)
		}
		g.Alignment = v.Uint
	}
	g.Tensors = make([]TensorInfo, 0, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t, err := c.tensorInfo(i)
		if err != nil {
			return err
		}
		if _, dup := g.tensors[t.Name]; dup {
			return fmt.Errorf("tensor info %d: duplicate tensor name %q", i, t.Name)
		}
		g.tensors[t.Name] = len(g.Tensors)
		g.Tensors = append(g.Tensors, t)
	}
	// The data section starts at the next multiple of the alignment, with
	// no padding when the header already ends aligned.
	start := uint64(c.off)
	if pad := start % g.Alignment; pad != 0 {
		start += g.Alignment - pad
	}
	if start > uint64(g.Size) {
		return fmt.Errorf("data section: starts at %d (header end %d padded to %d), past the end of the %d-byte file", start, c.off, g.Alignment, g.Size)
	}
	g.DataStart = int64(start)
	return g.checkRanges()
}

// checkRanges checks that every tensor is aligned, inside the file, and
// disjoint from the others.
func (g *File) checkRanges() error {
	order := make([]int, len(g.Tensors))
	for i := range g.Tensors {
		t := &g.Tensors[i]
		order[i] = i
		if t.Offset%g.Alignment != 0 {
			return fmt.Errorf("tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, g.Alignment)
		}
		dataSize := uint64(g.Size - g.DataStart)
		if t.Offset > dataSize || uint64(t.Size) > dataSize-t.Offset {
			return fmt.Errorf("tensor %q: data [%d, %d) relative to the data section at %d: expected it inside the file's %d data bytes (file size %d)",
				t.Name, t.Offset, t.Offset+uint64(t.Size), g.DataStart, dataSize, g.Size)
		}
		t.Start = g.DataStart + int64(t.Offset)
	}
	sort.Slice(order, func(a, b int) bool { return g.Tensors[order[a]].Offset < g.Tensors[order[b]].Offset })
	for k := 1; k < len(order); k++ {
		prev, cur := g.Tensors[order[k-1]], g.Tensors[order[k]]
		if prev.Offset+uint64(prev.Size) > cur.Offset {
			return fmt.Errorf("tensor %q: data [%d, %d) overlaps tensor %q at [%d, %d)",
				cur.Name, cur.Offset, cur.Offset+uint64(cur.Size), prev.Name, prev.Offset, prev.Offset+uint64(prev.Size))
		}
	}
	return nil
}

func bswap(v uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return binary.BigEndian.Uint32(b[:])
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// cursor reads the header through ReadAt, a buffered window at a time.
type cursor struct {
	r     io.ReaderAt
	size  int64
	off   int64
	buf   []byte
	bufAt int64
}

func (c *cursor) remaining() int64 { return c.size - c.off }

// take returns the next n bytes (valid until the next call).
func (c *cursor) take(n int64, field string) ([]byte, error) {
	if n > c.remaining() {
		return nil, fmt.Errorf("%s: truncated: needs %d bytes at offset %d, the file has %d", field, n, c.off, c.size)
	}
	if c.off < c.bufAt || c.off+n > c.bufAt+int64(len(c.buf)) {
		want := max(n, 64<<10)
		want = min(want, c.size-c.off)
		if int64(cap(c.buf)) < want {
			c.buf = make([]byte, want)
		}
		c.buf = c.buf[:want]
		if _, err := c.r.ReadAt(c.buf, c.off); err != nil && !(errors.Is(err, io.EOF) && c.off+want == c.size) {
			return nil, fmt.Errorf("%s: reading %d bytes at offset %d: %v", field, want, c.off, err)
		}
		c.bufAt = c.off
	}
	b := c.buf[c.off-c.bufAt : c.off-c.bufAt+n]
	c.off += n
	return b, nil
}

func (c *cursor) u32(field string) (uint32, error) {
	b, err := c.take(4, field)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (c *cursor) u64(field string) (uint64, error) {
	b, err := c.take(8, field)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (c *cursor) str(field string) (string, error) {
	n, err := c.u64(field + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(c.remaining()) {
		return "", fmt.Errorf("%s: string length %d at offset %d is longer than the %d bytes left in the file", field, n, c.off-8, c.remaining())
	}
	b, err := c.take(int64(n), field)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// value reads a value type and its value.
func (c *cursor) value(field string) (Value, error) {
	t, err := c.u32(field + " type")
	if err != nil {
		return Value{}, err
	}
	vt := ValueType(t)
	if vt == ValueArray {
		return c.array(field)
	}
	return c.scalar(vt, field)
}

func (c *cursor) scalar(vt ValueType, field string) (Value, error) {
	v := Value{Type: vt}
	if vt == ValueString {
		s, err := c.str(field)
		v.String = s
		return v, err
	}
	size := vt.fixedSize()
	if size == 0 {
		return Value{}, fmt.Errorf("%s: unknown value type %d, expected 0..12", field, uint32(vt))
	}
	b, err := c.take(size, field)
	if err != nil {
		return Value{}, err
	}
	switch vt {
	case ValueUint8:
		v.Uint = uint64(b[0])
	case ValueInt8:
		v.Int = int64(int8(b[0]))
	case ValueBool:
		if b[0] > 1 {
			return Value{}, fmt.Errorf("%s: bool byte %d, expected 0 or 1", field, b[0])
		}
		v.Bool = b[0] == 1
	case ValueUint16:
		v.Uint = uint64(binary.LittleEndian.Uint16(b))
	case ValueInt16:
		v.Int = int64(int16(binary.LittleEndian.Uint16(b)))
	case ValueUint32:
		v.Uint = uint64(binary.LittleEndian.Uint32(b))
	case ValueInt32:
		v.Int = int64(int32(binary.LittleEndian.Uint32(b)))
	case ValueFloat32:
		v.Float = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case ValueUint64:
		v.Uint = binary.LittleEndian.Uint64(b)
	case ValueInt64:
		v.Int = int64(binary.LittleEndian.Uint64(b))
	case ValueFloat64:
		v.Float = math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
	return v, nil
}

func (c *cursor) array(field string) (Value, error) {
	it, err := c.u32(field + " array item type")
	if err != nil {
		return Value{}, err
	}
	item := ValueType(it)
	if item == ValueArray {
		return Value{}, fmt.Errorf("%s: nested array (an array of arrays), which no GGUF writer of bitnet.cpp produces", field)
	}
	if item != ValueString && item.fixedSize() == 0 {
		return Value{}, fmt.Errorf("%s: unknown array item type %d, expected 0..12 except 9", field, it)
	}
	n, err := c.u64(field + " array length")
	if err != nil {
		return Value{}, err
	}
	minSize := item.fixedSize()
	if item == ValueString {
		minSize = 8
	}
	if n > uint64(c.remaining()/minSize) {
		return Value{}, fmt.Errorf("%s: array of %d %s items cannot fit in the %d bytes left in the file", field, n, item, c.remaining())
	}
	v := Value{Type: ValueArray, ItemType: item, Array: make([]Value, n)}
	for i := range v.Array {
		if v.Array[i], err = c.scalar(item, fmt.Sprintf("%s[%d]", field, i)); err != nil {
			return Value{}, err
		}
	}
	return v, nil
}

func (c *cursor) tensorInfo(i uint64) (TensorInfo, error) {
	field := fmt.Sprintf("tensor info %d", i)
	name, err := c.str(field + " name")
	if err != nil {
		return TensorInfo{}, err
	}
	field = fmt.Sprintf("tensor info %d (%s)", i, quote(name))
	nDims, err := c.u32(field + " n_dims")
	if err != nil {
		return TensorInfo{}, err
	}
	if nDims == 0 || nDims > maxDims {
		return TensorInfo{}, fmt.Errorf("%s n_dims: expected 1..%d, got %d", field, maxDims, nDims)
	}
	t := TensorInfo{Name: name, Ne: make([]uint64, nDims)}
	for d := range t.Ne {
		if t.Ne[d], err = c.u64(fmt.Sprintf("%s ne[%d]", field, d)); err != nil {
			return TensorInfo{}, err
		}
	}
	typ, err := c.u32(field + " type")
	if err != nil {
		return TensorInfo{}, err
	}
	t.Type = Type(typ)
	if t.Offset, err = c.u64(field + " offset"); err != nil {
		return TensorInfo{}, err
	}
	if t.Size, err = ByteSize(t.Type, t.Ne); err != nil {
		return TensorInfo{}, fmt.Errorf("%s: %v", field, err)
	}
	return t, nil
}
