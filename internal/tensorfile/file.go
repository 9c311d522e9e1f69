package tensorfile

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/nlpodyssey/safetensors"
)

// File is an open, validated safetensors file whose bytes are memory-mapped
// read-only. Its methods may be called from several goroutines at once, but
// not concurrently with Close.
type File struct {
	*Header
	data    []byte // the whole file
	release func() error
	parsed  safetensors.SafeTensors
	index   map[string]int // tensor name → position in Header.Tensors
}

// Open maps a safetensors file read-only and validates it completely before
// handing it to the safetensors library.
//
// The mapping reflects the file on disk: a file truncated by another process
// while open can still fault on access, as with any memory-mapped reader.
func Open(path string) (*File, error) {
	osFile, size, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	// The mapping outlives the descriptor.
	defer osFile.Close()
	if size < lengthPrefixBytes {
		_, err := checkHeaderLength(path, nil, size)
		return nil, err
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("%s: file is %d bytes, too large to map", path, size)
	}
	data, release, err := mapFile(osFile, int(size))
	if err != nil {
		return nil, fmt.Errorf("%s: mapping the file: %v", path, err)
	}
	f, err := newFile(path, data, release)
	if err != nil {
		release()
		return nil, err
	}
	return f, nil
}

// OpenBytes validates a whole safetensors file held in memory, as Open does
// for a file on disk; name stands in for the path in errors and
// Header.Path. The File keeps data, which must not change while it is in use.
func OpenBytes(name string, data []byte) (*File, error) {
	return newFile(name, data, nil)
}

// newFile validates the bytes of a whole file and indexes its tensors.
func newFile(path string, data []byte, release func() error) (*File, error) {
	size := int64(len(data))
	headerLen, err := checkHeaderLength(path, data[:min(len(data), lengthPrefixBytes)], size)
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(path, data[lengthPrefixBytes:lengthPrefixBytes+headerLen], size)
	if err != nil {
		return nil, err
	}
	parsed, err := safetensors.Deserialize(data)
	if err != nil {
		return nil, fmt.Errorf("%s: rejected by the safetensors parser: %v", path, err)
	}
	if parsed.Len() != len(h.Tensors) {
		return nil, fmt.Errorf("%s: header: %d tensors validated but the safetensors parser found %d", path, len(h.Tensors), parsed.Len())
	}
	f := &File{Header: h, data: data, release: release, parsed: parsed, index: make(map[string]int, len(h.Tensors))}
	for i, t := range h.Tensors {
		f.index[t.Name] = i
		// The library is the parser of record; it must see the same tensor
		// at the same bytes.
		view, ok := parsed.Tensor(t.Name)
		same := ok && view.DType().String() == t.DType && len(view.Shape()) == len(t.Shape) &&
			int64(len(view.Data())) == t.End-t.Begin
		for d := 0; same && d < len(t.Shape); d++ {
			same = view.Shape()[d] == uint64(t.Shape[d])
		}
		if same && t.End > t.Begin {
			same = &view.Data()[0] == &data[h.DataStart+t.Begin]
		}
		if !same {
			return nil, fmt.Errorf("%s: tensor %q: the safetensors parser disagrees with the validated dtype %s, shape %s, offsets [%d,%d]",
				path, t.Name, t.DType, ShapeString(t.Shape), t.Begin, t.End)
		}
	}
	return f, nil
}

// Close releases the mapping, if any. Slices returned by Raw become invalid;
// those returned by Float32, Int64 and Uint8 are copies and stay valid.
func (f *File) Close() error {
	release := f.release
	f.release, f.data, f.parsed = nil, nil, safetensors.SafeTensors{}
	if release == nil {
		return nil
	}
	if err := release(); err != nil {
		return fmt.Errorf("%s: unmapping: %v", f.Path, err)
	}
	return nil
}

// Info returns the description of a tensor.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.index[name]
	if !ok {
		return Info{}, false
	}
	return f.Tensors[i], true
}

// Raw returns the tensor's bytes as a view into the mapping, valid until
// Close. The mapping is read-only: writing to the view faults.
func (f *File) Raw(name string) ([]byte, error) {
	_, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: not in the file (%d tensors)", f.Path, name, len(f.Tensors))
	}
	if f.data == nil {
		return nil, fmt.Errorf("%s: tensor %q: file is closed", f.Path, name)
	}
	// newFile checked that the library's view is exactly these bytes.
	view, _ := f.parsed.Tensor(name)
	data := view.Data()
	return data[:len(data):len(data)], nil
}

// Evict gives back the memory that reading the tensor paged in from a
// mapped file, so that reading every tensor of a large file once costs the
// memory of one tensor at a time, not of the file. The bytes stay valid:
// they are read from the file again if touched. Pages shared with a
// neighbouring tensor are kept.
func (f *File) Evict(name string) {
	if f.release == nil {
		return // not a mapping (OpenBytes)
	}
	if raw, err := f.Raw(name); err == nil {
		dropPages(raw)
	}
}

// rawAs returns the tensor's info and bytes after checking its dtype is one
// of allowed.
func (f *File) rawAs(name string, allowed ...string) (Info, []byte, error) {
	raw, err := f.Raw(name)
	if err != nil {
		return Info{}, nil, err
	}
	info, _ := f.Info(name)
	for _, dt := range allowed {
		if info.DType == dt {
			return info, raw, nil
		}
	}
	return Info{}, nil, fmt.Errorf("%s: tensor %q: dtype %s, expected one of %v", f.Path, name, info.DType, allowed)
}

// Float32 converts an F32, BF16 or F16 tensor to a new []float32.
func (f *File) Float32(name string) ([]float32, error) {
	info, raw, err := f.rawAs(name, "F32", "BF16", "F16")
	if err != nil {
		return nil, err
	}
	out := make([]float32, info.Elements())
	convertFloat32(out, info.DType, raw)
	return out, nil
}

// ReadFloat32 is Float32 into dst, which must have the tensor's element
// count.
func (f *File) ReadFloat32(name string, dst []float32) error {
	info, raw, err := f.rawAs(name, "F32", "BF16", "F16")
	if err != nil {
		return err
	}
	if int64(len(dst)) != info.Elements() {
		return fmt.Errorf("%s: tensor %q: %d elements (shape %s), read into %d values", f.Path, name, info.Elements(), ShapeString(info.Shape), len(dst))
	}
	convertFloat32(dst, info.DType, raw)
	return nil
}

// convertFloat32 converts raw values of dtype F32, BF16 or F16 into out.
func convertFloat32(out []float32, dtype string, raw []byte) {
	switch dtype {
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case "BF16":
		for i := range out {
			out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	default:
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	}
}

// Int64 converts an I64 or I32 tensor to a new []int64.
func (f *File) Int64(name string) ([]int64, error) {
	info, raw, err := f.rawAs(name, "I64", "I32")
	if err != nil {
		return nil, err
	}
	if info.DType == "I32" {
		out := make([]int64, len(raw)/4)
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
		return out, nil
	}
	out := make([]int64, len(raw)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out, nil
}

// Uint8 copies a U8 tensor into a new []uint8.
func (f *File) Uint8(name string) ([]uint8, error) {
	_, raw, err := f.rawAs(name, "U8")
	if err != nil {
		return nil, err
	}
	return append([]uint8(nil), raw...), nil
}
