// Package hostile builds malformed inputs for the tests of every reader of
// user-supplied files: safetensors headers (internal/tensorfile), golden
// cases (golden) and checkpoint folders (model/checkpoint).
//
// A user who points the harness at a folder trusts it not to crash, hang or
// exhaust memory on a broken or malicious file, and to say which file and
// which field is wrong. Each Case here is one way a file can be broken, with
// the words a good error message must contain.
package hostile

import (
	"encoding/binary"
	"os"
	"strings"
)

// MaxHeaderBytes is the safetensors header limit readers must enforce.
const MaxHeaderBytes = 100_000_000

// Case is one malformed safetensors file.
type Case struct {
	Name string
	Data []byte
	// Mentions are substrings a good error contains besides the file path:
	// the tensor or field at fault, and the expected or actual value.
	Mentions []string
}

// Safetensors returns file bytes: the little-endian length of header, the
// header, then dataLen zero bytes.
func Safetensors(header string, dataLen int) []byte {
	return SafetensorsWithLength(uint64(len(header)), header, dataLen)
}

// SafetensorsWithLength is Safetensors with a length prefix that may lie.
func SafetensorsWithLength(length uint64, header string, dataLen int) []byte {
	out := binary.LittleEndian.AppendUint64(nil, length)
	out = append(out, header...)
	return append(out, make([]byte, dataLen)...)
}

// WriteSparse writes prefix at the start of a file of size bytes whose rest
// is a hole, so that tests can present multi-gigabyte files cheaply. A
// reader that trusts the size and reads it all is caught by its allocation.
func WriteSparse(path string, prefix []byte, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(prefix); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SafetensorsCases lists malformed safetensors files, one per kind of
// damage a reader must detect.
func SafetensorsCases() []Case {
	const f32x2 = `"dtype":"F32","shape":[2]`
	return []Case{
		{"empty file", nil, []string{"header length", "0 bytes"}},
		{"truncated length prefix", []byte{8, 0, 0}, []string{"header length", "3 bytes"}},
		{"header length beyond file size", SafetensorsWithLength(1000, `{}`, 0), []string{"header length", "1000 bytes", "only 2 bytes"}},
		{"header length over 100 MB", SafetensorsWithLength(MaxHeaderBytes+1, `{}`, 0), []string{"header length", "100000001", "100000000"}},
		{"header length near 2^64", SafetensorsWithLength(1<<64-1, `{}`, 0), []string{"header length", "18446744073709551615"}},
		{"invalid JSON", Safetensors(`{"w":{"dtype":`, 0), []string{`tensor "w"`, "dtype: invalid JSON"}},
		{"invalid JSON between tensors", Safetensors(`{"w":{"dtype":"F32","shape":[],"data_offsets":[0,4]} "v"}`, 4), []string{"header: invalid JSON"}},
		{"header not an object", Safetensors(`[1,2,3]`, 0), []string{"header: expected a JSON object"}},
		{"invalid UTF-8", Safetensors("{\"w\xff\":{}}", 0), []string{"header: not valid UTF-8"}},
		{"trailing data after header object", Safetensors(`{} {}`, 0), []string{"header", "after the JSON object"}},
		{"duplicate tensor names", Safetensors(`{"w":{`+f32x2+`,"data_offsets":[0,8]},"w":{`+f32x2+`,"data_offsets":[8,16]}}`, 16), []string{`tensor "w"`, "twice"}},
		{"duplicate field", Safetensors(`{"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8), []string{`tensor "w"`, `field "dtype" appears twice`}},
		{"duplicate metadata key", Safetensors(`{"__metadata__":{"format":"a","format":"b"}}`, 0), []string{"__metadata__", `"format" appears twice`}},
		{"overlapping offsets", Safetensors(`{"a":{`+f32x2+`,"data_offsets":[0,8]},"b":{`+f32x2+`,"data_offsets":[4,12]}}`, 12), []string{`tensor "b"`, "overlap", `tensor "a"`}},
		{"gap between tensors", Safetensors(`{"a":{`+f32x2+`,"data_offsets":[0,8]},"b":{`+f32x2+`,"data_offsets":[12,20]}}`, 20), []string{`tensor "b"`, "gap", "begin at 8"}},
		{"offsets past the end", Safetensors(`{"w":{`+f32x2+`,"data_offsets":[0,8]}}`, 4), []string{`tensor "w"`, "[0,8]", "4-byte data section"}},
		{"offsets end before begin", Safetensors(`{"w":{`+f32x2+`,"data_offsets":[8,0]}}`, 8), []string{`tensor "w"`, "end before"}},
		{"byte count mismatch", Safetensors(`{"logits":{"dtype":"F32","shape":[2,16,256],"data_offsets":[0,32000]}}`, 32000), []string{`tensor "logits": dtype F32 with shape [2,16,256] needs 32768 bytes, offsets span 32000`}},
		{"trailing bytes after tensors", Safetensors(`{"w":{`+f32x2+`,"data_offsets":[0,8]}}`, 9), []string{"data section", "9 bytes", "cover 8"}},
		{"shape product overflow", Safetensors(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, 0), []string{`tensor "w"`, "overflows"}},
		{"huge shape with huge offsets", Safetensors(`{"w":{"dtype":"U8","shape":[1000000000000],"data_offsets":[0,1000000000000]}}`, 0), []string{`tensor "w"`, "run past the end"}},
		{"negative dimension", Safetensors(`{"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,0]}}`, 0), []string{`tensor "w"`, "dimension 1 is -3"}},
		{"fractional dimension", Safetensors(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}}`, 0), []string{`tensor "w"`, "shape", "1.5"}},
		{"dimension beyond int64", Safetensors(`{"w":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,0]}}`, 0), []string{`tensor "w"`, "shape", "int64"}},
		{"unknown dtype", Safetensors(`{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}`, 2), []string{`tensor "w"`, `dtype: unknown dtype "F8_E4M3"`}},
		{"dtype not a string", Safetensors(`{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, 8), []string{`tensor "w"`, "dtype: expected a string"}},
		{"missing field", Safetensors(`{"w":{"dtype":"F32","shape":[2]}}`, 8), []string{`tensor "w"`, `"data_offsets" is missing`}},
		{"unexpected field", Safetensors(`{"w":{`+f32x2+`,"data_offsets":[0,8],"stride":[1]}}`, 8), []string{`tensor "w"`, `unexpected field "stride"`}},
		{"three offsets", Safetensors(`{"w":{`+f32x2+`,"data_offsets":[0,4,8]}}`, 8), []string{`tensor "w"`, "data_offsets", "3 numbers"}},
		{"tensor entry not an object", Safetensors(`{"w":[1,2]}`, 0), []string{`tensor "w"`, "expected an object"}},
		{"non-string metadata", Safetensors(`{"__metadata__":{"format":"bitnet-golden/v1","seed":42}}`, 0), []string{"__metadata__", `key "seed"`, "must be a string", "number 42"}},
		{"metadata not an object", Safetensors(`{"__metadata__":null}`, 0), []string{"__metadata__", "null"}},
		{"metadata appears twice", Safetensors(`{"__metadata__":{},"__metadata__":{}}`, 0), []string{"__metadata__", "twice"}},
		{"deep nesting in shape", Safetensors(`{"w":{"shape":`+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+`}}`, 0), []string{`tensor "w"`, "shape"}},
		{"deep nesting in metadata", Safetensors(`{"__metadata__":{"a":`+strings.Repeat(`{"a":`, 100000)+`}}`, 0), []string{"__metadata__", `key "a"`}},
	}
}
