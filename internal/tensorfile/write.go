package tensorfile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"unicode/utf8"
)

// Tensor is one tensor to write: Data holds its little-endian bytes.
type Tensor struct {
	Name  string
	DType string
	Shape []int64
	Data  []byte
}

// Source is a tensor for WriteStream whose bytes are produced only when the
// writer reaches it, so that a file larger than memory can be written one
// tensor at a time.
type Source struct {
	Name  string
	DType string
	Shape []int64
	// Data returns the tensor's little-endian bytes: exactly shape × dtype
	// size of them. It is called once.
	Data func() ([]byte, error)
}

// Write writes a safetensors file: tensors in the order given (header and
// data alike), metadata keys sorted, and the header padded with spaces to a
// multiple of 8 bytes so that the data section is 8-byte aligned. The file is
// written to a temporary file in the same folder and renamed into place, so
// readers never see a partial file.
func Write(path string, metadata map[string]string, tensors []Tensor) error {
	sources := make([]Source, len(tensors))
	for i, t := range tensors {
		need, err := ByteSize(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("%s: tensor %q: %v", path, t.Name, err)
		}
		if int64(len(t.Data)) != need {
			return fmt.Errorf("%s: tensor %q: dtype %s with shape %s needs %d bytes, got %d", path, t.Name, t.DType, ShapeString(t.Shape), need, len(t.Data))
		}
		sources[i] = Source{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: func() ([]byte, error) { return t.Data, nil }}
	}
	return WriteStream(path, metadata, sources)
}

// WriteStream is Write for tensors whose bytes are produced one at a time,
// holding only one tensor's bytes in memory.
func WriteStream(path string, metadata map[string]string, tensors []Source) error {
	header, sizes, err := encodeHeader(path, metadata, tensors)
	if err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fileError(path, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	var prefix [lengthPrefixBytes]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(header)))
	w.Write(prefix[:])
	w.Write(header)
	for i, t := range tensors {
		data, err := t.Data()
		if err != nil {
			return fmt.Errorf("%s: tensor %q: %w", path, t.Name, err)
		}
		if int64(len(data)) != sizes[i] {
			return fmt.Errorf("%s: tensor %q: dtype %s with shape %s needs %d bytes, got %d", path, t.Name, t.DType, ShapeString(t.Shape), sizes[i], len(data))
		}
		// bufio keeps the first write error and returns it from Flush.
		w.Write(data)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%s: writing: %v", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fileError(path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%s: syncing: %v", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: closing: %v", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		committed = true
		return fileError(path, err)
	}
	committed = true
	return nil
}

// encodeHeader validates the tensors and builds the padded header JSON.
// It also returns each tensor's byte size.
func encodeHeader(path string, metadata map[string]string, tensors []Source) ([]byte, []int64, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	comma := func() {
		if !first {
			buf.WriteByte(',')
		}
		first = false
	}
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, fmt.Errorf("%s: __metadata__ %q: key and value must be valid UTF-8", path, k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		comma()
		buf.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(&buf, k)
			buf.WriteByte(':')
			writeJSONString(&buf, metadata[k])
		}
		buf.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	sizes := make([]int64, 0, len(tensors))
	var offset int64
	for _, t := range tensors {
		switch {
		case t.Name == "__metadata__":
			return nil, nil, fmt.Errorf("%s: tensor %q: name is reserved for the metadata block", path, t.Name)
		case !utf8.ValidString(t.Name):
			return nil, nil, fmt.Errorf("%s: tensor %q: name must be valid UTF-8", path, t.Name)
		case seen[t.Name]:
			return nil, nil, fmt.Errorf("%s: tensor %q: name given twice", path, t.Name)
		}
		seen[t.Name] = true
		need, err := ByteSize(t.DType, t.Shape)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: %v", path, t.Name, err)
		}
		if t.Data == nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: no Data function", path, t.Name)
		}
		if need > math.MaxInt64-offset {
			return nil, nil, fmt.Errorf("%s: tensor %q: data section would exceed int64 bytes", path, t.Name)
		}
		sizes = append(sizes, need)
		comma()
		writeJSONString(&buf, t.Name)
		fmt.Fprintf(&buf, `:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, t.DType, ShapeString(t.Shape), offset, offset+need)
		offset += need
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	if buf.Len() > MaxHeaderBytes {
		return nil, nil, fmt.Errorf("%s: header length: %d bytes, more than the %d allowed", path, buf.Len(), MaxHeaderBytes)
	}
	return buf.Bytes(), sizes, nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	encoded, _ := json.Marshal(s) // a valid UTF-8 string always encodes
	buf.Write(encoded)
}
