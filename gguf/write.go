package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// WriteTensor is one tensor to write; Data is called once, in order, so
// that a writer holds one tensor's bytes at a time.
type WriteTensor struct {
	Name string
	Ne   []uint64
	Type Type
	Data func() ([]byte, error)
}

// Write writes a little-endian GGUF v3 file as gguf-py's GGUFWriter does:
// header, KVs, tensor infos, padding to the alignment (none when already
// aligned), then each tensor's data padded to the alignment. The alignment
// is general.alignment when kvs hold it, else 32.
func Write(path string, kvs []KV, tensors []WriteTensor) error {
	align := uint64(DefaultAlignment)
	for _, kv := range kvs {
		if kv.Key == "general.alignment" {
			align = kv.Value.Uint
		}
	}
	if align == 0 || align&(align-1) != 0 {
		return fmt.Errorf("%s: general.alignment: expected a power of two, got %d", path, align)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	e := &encoder{w: w}
	e.u32(Magic)
	e.u32(3)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		e.value(kv.Value)
	}
	var offset uint64
	sizes := make([]int64, len(tensors))
	for i, t := range tensors {
		size, err := ByteSize(t.Type, t.Ne)
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: tensor %q: %v", path, t.Name, err)
		}
		sizes[i] = size
		e.str(t.Name)
		e.u32(uint32(len(t.Ne)))
		for _, d := range t.Ne {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(offset)
		offset += padded(uint64(size), align)
	}
	e.pad(align)
	for i, t := range tensors {
		data, err := t.Data()
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: tensor %q: %v", path, t.Name, err)
		}
		if int64(len(data)) != sizes[i] {
			f.Close()
			return fmt.Errorf("%s: tensor %q: %d data bytes, expected %d for %s %v", path, t.Name, len(data), sizes[i], t.Type, t.Ne)
		}
		e.bytes(data)
		e.pad(align)
	}
	if e.err == nil {
		e.err = w.Flush()
	}
	if err := f.Close(); e.err == nil {
		e.err = err
	}
	if e.err != nil {
		return fmt.Errorf("%s: %v", path, e.err)
	}
	return nil
}

func padded(n, align uint64) uint64 { return (n + align - 1) / align * align }

type encoder struct {
	w   *bufio.Writer
	n   uint64
	err error
}

func (e *encoder) bytes(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
	e.n += uint64(len(b))
}

func (e *encoder) u32(v uint32) { e.bytes(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *encoder) u64(v uint64) { e.bytes(binary.LittleEndian.AppendUint64(nil, v)) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.bytes([]byte(s)) }

func (e *encoder) pad(align uint64) {
	if r := e.n % align; r != 0 {
		e.bytes(make([]byte, align-r))
	}
}

func (e *encoder) value(v Value) {
	e.u32(uint32(v.Type))
	if v.Type == ValueArray {
		e.u32(uint32(v.ItemType))
		e.u64(uint64(len(v.Array)))
		for _, item := range v.Array {
			e.scalar(item)
		}
		return
	}
	e.scalar(v)
}

func (e *encoder) scalar(v Value) {
	switch v.Type {
	case ValueUint8:
		e.bytes([]byte{byte(v.Uint)})
	case ValueInt8:
		e.bytes([]byte{byte(v.Int)})
	case ValueBool:
		b := byte(0)
		if v.Bool {
			b = 1
		}
		e.bytes([]byte{b})
	case ValueUint16:
		e.bytes(binary.LittleEndian.AppendUint16(nil, uint16(v.Uint)))
	case ValueInt16:
		e.bytes(binary.LittleEndian.AppendUint16(nil, uint16(v.Int)))
	case ValueUint32:
		e.u32(uint32(v.Uint))
	case ValueInt32:
		e.u32(uint32(v.Int))
	case ValueFloat32:
		e.u32(math.Float32bits(float32(v.Float)))
	case ValueUint64:
		e.u64(v.Uint)
	case ValueInt64:
		e.u64(uint64(v.Int))
	case ValueFloat64:
		e.u64(math.Float64bits(v.Float))
	case ValueString:
		e.str(v.String)
	default:
		if e.err == nil {
			e.err = fmt.Errorf("value type %s cannot be written as a scalar", v.Type)
		}
	}
}

// Convenience constructors for metadata values.
func U32(v uint32) Value  { return Value{Type: ValueUint32, Uint: uint64(v)} }
func F32(v float32) Value { return Value{Type: ValueFloat32, Float: float64(v)} }
func Str(s string) Value  { return Value{Type: ValueString, String: s} }
func Bool(b bool) Value   { return Value{Type: ValueBool, Bool: b} }
func Strings(s []string) Value {
	v := Value{Type: ValueArray, ItemType: ValueString, Array: make([]Value, len(s))}
	for i, x := range s {
		v.Array[i] = Str(x)
	}
	return v
}
