// Package tensorfile reads and writes safetensors files (golden cases and HF
// checkpoints) without trusting them.
//
// Files come from users and other teams, so every header is validated before
// anything it says is acted on: no hostile file can make this package panic,
// hang, or allocate memory sized by a number that was not first checked
// against the file's real size. Parsing itself is done by
// github.com/nlpodyssey/safetensors once validation has passed.
//
// Every error starts with the file path and names the field or tensor at
// fault with the expected and the actual value, for example:
//
//	golden/x.safetensors: tensor "logits": dtype F32 with shape [2,16,256] needs 32768 bytes, offsets span 32000
package tensorfile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nlpodyssey/safetensors"
)

// MaxHeaderBytes is the largest header length accepted, the same 100 MB limit
// the safetensors reference implementation applies.
const MaxHeaderBytes = 100_000_000

// lengthPrefixBytes is the size of the little-endian uint64 header length
// that starts every safetensors file.
const lengthPrefixBytes = 8

// Info describes one tensor of a file.
type Info struct {
	Name  string
	DType string  // safetensors dtype name: F32, BF16, F16, I64, U8, ...
	Shape []int64 // row-major; [] is a scalar
	// Begin and End are byte offsets within the data section (the bytes
	// after the header), End exclusive.
	Begin, End int64
}

// Elements is the product of the shape (1 for a scalar). Validation has
// bounded it by the file size for every Info this package returns.
func (i Info) Elements() int64 {
	n := int64(1)
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// Header is the validated header of a safetensors file.
type Header struct {
	Path     string
	Metadata map[string]string // the __metadata__ block; empty, never nil
	Tensors  []Info            // in offset order
	// DataStart is where the data section starts in the file:
	// 8 + the header length.
	DataStart int64
	FileSize  int64
}

// DataSize is the length of the data section in bytes.
func (h *Header) DataSize() int64 { return h.FileSize - h.DataStart }

// ShapeString formats a shape as [a,b,c].
func ShapeString(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// DTypeSize is the size in bytes of one element of a safetensors dtype, and
// false for a dtype the safetensors library does not know.
func DTypeSize(dtype string) (int64, bool) {
	dt, err := safetensors.ParseDType(dtype)
	if err != nil {
		return 0, false
	}
	return int64(dt.Size()), true
}

// ByteSize is the number of bytes a tensor of this dtype and shape occupies,
// or an error when the dtype is unknown, a dimension is negative, or the
// product overflows int64.
func ByteSize(dtype string, shape []int64) (int64, error) {
	size, ok := DTypeSize(dtype)
	if !ok {
		return 0, fmt.Errorf("unknown dtype %q (known: %s)", dtype, knownDTypes)
	}
	n := size
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %s: dimension %d is %d, must be non-negative", ShapeString(shape), i, d)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("dtype %s with shape %s: byte size overflows int64", dtype, ShapeString(shape))
		}
		n *= d
	}
	return n, nil
}

const knownDTypes = "BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64"

// ReadHeader reads and validates only the length prefix and the header JSON
// of a safetensors file; the tensor data is never read.
func ReadHeader(path string) (*Header, error) {
	f, size, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var prefix [lengthPrefixBytes]byte
	if size >= lengthPrefixBytes {
		if _, err := f.ReadAt(prefix[:], 0); err != nil {
			return nil, fmt.Errorf("%s: reading the header length: %v", path, err)
		}
	}
	headerLen, err := checkHeaderLength(path, prefix[:], size)
	if err != nil {
		return nil, err
	}
	header := make([]byte, headerLen)
	if _, err := f.ReadAt(header, lengthPrefixBytes); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: header: file shrank while reading (%d header bytes expected)", path, headerLen)
		}
		return nil, fmt.Errorf("%s: reading the header: %v", path, err)
	}
	h, err := parseHeader(path, header, size)
	if err != nil {
		return nil, err
	}
	// The library is the parser of record: it must read the same header.
	var meta safetensors.Metadata
	if err := meta.UnmarshalJSON(header); err != nil {
		return nil, fmt.Errorf("%s: header: rejected by the safetensors parser: %v", path, err)
	}
	if err := crossCheck(h, meta.Tensors()); err != nil {
		return nil, err
	}
	return h, nil
}

// openRegular opens a regular file for reading and returns its size. Other
// kinds are refused before opening: a FIFO would block the open itself, and
// a device could be read forever.
func openRegular(path string) (*os.File, int64, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, 0, fileError(path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: not a regular file (mode %s)", path, info.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fileError(path, err)
	}
	if info, err = f.Stat(); err != nil {
		f.Close()
		return nil, 0, fileError(path, err)
	}
	return f, info.Size(), nil
}

// fileError puts the path first, as every error of this package does,
// without the repetition an *fs.PathError would add. errors.Is still sees
// the cause, such as fs.ErrNotExist.
func fileError(path string, err error) error {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		err = pathErr.Err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// checkHeaderLength validates the 8-byte length prefix against the file size
// before anything is allocated from it. prefix is ignored when size < 8.
func checkHeaderLength(path string, prefix []byte, size int64) (int64, error) {
	if size < lengthPrefixBytes {
		return 0, fmt.Errorf("%s: header length: file is %d bytes, a safetensors file needs at least %d", path, size, lengthPrefixBytes)
	}
	n := binary.LittleEndian.Uint64(prefix)
	if n > MaxHeaderBytes {
		return 0, fmt.Errorf("%s: header length: %d bytes, more than the %d allowed", path, n, MaxHeaderBytes)
	}
	if n > uint64(size-lengthPrefixBytes) {
		return 0, fmt.Errorf("%s: header length: %d bytes, but only %d bytes follow the length prefix", path, n, size-lengthPrefixBytes)
	}
	if n < 2 {
		return 0, fmt.Errorf("%s: header length: %d bytes, too short for a JSON object", path, n)
	}
	return int64(n), nil
}

// parseHeader validates a header JSON and returns the tensors it describes.
// It walks the JSON token by token with a fixed nesting depth, so that
// duplicate names (which encoding/json and the safetensors library silently
// merge) are caught and deeply nested input cannot exhaust the stack.
func parseHeader(path string, header []byte, fileSize int64) (*Header, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{path}, args...)...)
	}
	if !utf8.Valid(header) {
		return nil, fail("header: not valid UTF-8")
	}
	h := &Header{
		Path:      path,
		Metadata:  map[string]string{},
		DataStart: lengthPrefixBytes + int64(len(header)),
		FileSize:  fileSize,
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, fail("header: expected a JSON object: %v", err)
	}
	seen := map[string]bool{}
	sawMetadata := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail("header: invalid JSON: %v", err)
		}
		name := tok.(string) // object keys are always strings
		if name == "__metadata__" {
			if sawMetadata {
				return nil, fail("__metadata__: appears twice")
			}
			sawMetadata = true
			if err := readMetadata(dec, h.Metadata); err != nil {
				return nil, fail("__metadata__: %v", err)
			}
			continue
		}
		if seen[name] {
			return nil, fail("tensor %q: name appears twice in the header", name)
		}
		seen[name] = true
		info, err := readTensorInfo(dec, name)
		if err != nil {
			return nil, fail("tensor %q: %v", name, err)
		}
		h.Tensors = append(h.Tensors, info)
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, fail("header: invalid JSON: %v", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, fail("header: invalid JSON after the object: %v", err)
		}
		return nil, fail("header: unexpected %v after the JSON object", tok)
	}
	if err := checkLayout(h); err != nil {
		return nil, err
	}
	return h, nil
}

// checkLayout checks sizes and offsets: every tensor's offsets span exactly
// its shape×dtype bytes, and together the tensors tile the data section with
// no gap, overlap or trailing bytes. It sorts h.Tensors into offset order.
func checkLayout(h *Header) error {
	dataSize := h.DataSize()
	for _, t := range h.Tensors {
		need, err := ByteSize(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("%s: tensor %q: %v", h.Path, t.Name, err)
		}
		if t.End < t.Begin {
			return fmt.Errorf("%s: tensor %q: data_offsets [%d,%d] end before they begin", h.Path, t.Name, t.Begin, t.End)
		}
		if t.End > dataSize {
			return fmt.Errorf("%s: tensor %q: data_offsets [%d,%d] run past the end of the %d-byte data section", h.Path, t.Name, t.Begin, t.End, dataSize)
		}
		if span := t.End - t.Begin; span != need {
			return fmt.Errorf("%s: tensor %q: dtype %s with shape %s needs %d bytes, offsets span %d", h.Path, t.Name, t.DType, ShapeString(t.Shape), need, span)
		}
	}
	sort.SliceStable(h.Tensors, func(i, j int) bool {
		a, b := h.Tensors[i], h.Tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var covered int64
	previous := "the start of the data section"
	for _, t := range h.Tensors {
		switch {
		case t.Begin < covered:
			return fmt.Errorf("%s: tensor %q: data_offsets [%d,%d] overlap %s, which ends at %d", h.Path, t.Name, t.Begin, t.End, previous, covered)
		case t.Begin > covered:
			return fmt.Errorf("%s: tensor %q: data_offsets [%d,%d] leave a gap: expected to begin at %d, after %s", h.Path, t.Name, t.Begin, t.End, covered, previous)
		}
		covered = t.End
		previous = fmt.Sprintf("tensor %q", t.Name)
	}
	if covered != dataSize {
		return fmt.Errorf("%s: data section: %d bytes, but the tensors cover %d (ending with %s)", h.Path, dataSize, covered, previous)
	}
	return nil
}

// crossCheck confirms that the safetensors library parsed the same tensors
// as parseHeader; a disagreement would mean the two readers could be fooled
// differently, so it is an error rather than a silent pick.
func crossCheck(h *Header, parsed map[string]*safetensors.TensorInfo) error {
	if len(parsed) != len(h.Tensors) {
		return fmt.Errorf("%s: header: %d tensors validated but the safetensors parser found %d", h.Path, len(h.Tensors), len(parsed))
	}
	for _, t := range h.Tensors {
		p, ok := parsed[t.Name]
		if !ok {
			return fmt.Errorf("%s: tensor %q: missing from the safetensors parser's result", h.Path, t.Name)
		}
		same := p.DType.String() == t.DType && len(p.Shape) == len(t.Shape) &&
			p.DataOffsets[0] == uint64(t.Begin) && p.DataOffsets[1] == uint64(t.End)
		for i := 0; same && i < len(t.Shape); i++ {
			same = p.Shape[i] == uint64(t.Shape[i])
		}
		if !same {
			return fmt.Errorf("%s: tensor %q: safetensors parser read %s %v offsets %v, validated %s %s offsets [%d,%d]",
				h.Path, t.Name, p.DType, p.Shape, p.DataOffsets, t.DType, ShapeString(t.Shape), t.Begin, t.End)
		}
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, got %s", want, describeToken(tok))
	}
	return nil
}

// describeToken names a JSON token for an error message without echoing
// arbitrarily long strings.
func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		return fmt.Sprintf("%q", rune(v))
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + truncate(v.String())
	case bool:
		return fmt.Sprintf("%v", v)
	}
	return fmt.Sprintf("%T", tok)
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// readMetadata reads the __metadata__ object, whose values must be strings.
func readMetadata(dec *json.Decoder, into map[string]string) error {
	if err := expectDelim(dec, '{'); err != nil {
		return fmt.Errorf("expected an object of strings: %v", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %v", err)
		}
		key := tok.(string)
		if _, dup := into[key]; dup {
			return fmt.Errorf("key %q appears twice", key)
		}
		tok, err = dec.Token()
		if err != nil {
			return fmt.Errorf("key %q: invalid JSON: %v", key, err)
		}
		value, ok := tok.(string)
		if !ok {
			return fmt.Errorf("key %q: value must be a string, got %s", key, describeToken(tok))
		}
		into[key] = value
	}
	return expectDelim(dec, '}')
}

// readTensorInfo reads one tensor entry: exactly dtype, shape and
// data_offsets.
func readTensorInfo(dec *json.Decoder, name string) (Info, error) {
	info := Info{Name: name}
	if err := expectDelim(dec, '{'); err != nil {
		return info, fmt.Errorf("expected an object with dtype, shape and data_offsets: %v", err)
	}
	have := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return info, fmt.Errorf("invalid JSON: %v", err)
		}
		field := tok.(string)
		if have[field] {
			return info, fmt.Errorf("field %q appears twice", field)
		}
		have[field] = true
		switch field {
		case "dtype":
			tok, err := dec.Token()
			if err != nil {
				return info, fmt.Errorf("dtype: invalid JSON: %v", err)
			}
			s, ok := tok.(string)
			if !ok {
				return info, fmt.Errorf("dtype: expected a string, got %s", describeToken(tok))
			}
			if _, known := DTypeSize(s); !known {
				return info, fmt.Errorf("dtype: unknown dtype %q (known: %s)", truncate(s), knownDTypes)
			}
			info.DType = s
		case "shape":
			shape, err := readIntArray(dec)
			if err != nil {
				return info, fmt.Errorf("shape: %v", err)
			}
			for i, d := range shape {
				if d < 0 {
					return info, fmt.Errorf("shape %s: dimension %d is %d, must be non-negative", ShapeString(shape), i, d)
				}
			}
			info.Shape = shape
		case "data_offsets":
			offsets, err := readIntArray(dec)
			if err != nil {
				return info, fmt.Errorf("data_offsets: %v", err)
			}
			if len(offsets) != 2 {
				return info, fmt.Errorf("data_offsets: expected [begin,end], got %d numbers", len(offsets))
			}
			if offsets[0] < 0 || offsets[1] < 0 {
				return info, fmt.Errorf("data_offsets %s: must be non-negative", ShapeString(offsets))
			}
			info.Begin, info.End = offsets[0], offsets[1]
		default:
			return info, fmt.Errorf("unexpected field %q (expected dtype, shape, data_offsets)", truncate(field))
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return info, err
	}
	for _, field := range []string{"dtype", "shape", "data_offsets"} {
		if !have[field] {
			return info, fmt.Errorf("field %q is missing", field)
		}
	}
	if info.Shape == nil {
		info.Shape = []int64{}
	}
	return info, nil
}

// readIntArray reads a flat JSON array of integers that fit in int64.
// Its length is bounded by the (already bounded) header size.
func readIntArray(dec *json.Decoder) ([]int64, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, fmt.Errorf("expected an array of integers: %v", err)
	}
	var values []int64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("element %d: expected an integer, got %s", len(values), describeToken(tok))
		}
		v, err := strconv.ParseInt(num.String(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("element %d: expected an integer within int64, got %s", len(values), truncate(num.String()))
		}
		values = append(values, v)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return nil, err
	}
	return values, nil
}
