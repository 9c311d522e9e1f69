package gguf

import (
	"bytes"
	"testing"
)

// FuzzGGUF parses arbitrary bytes from memory: never a panic, and a file
// that parses has every tensor inside it.
func FuzzGGUF(f *testing.F) {
	f.Add(sampleFile(f, nil))
	f.Add(sampleFile(f, everyValueType()[:4]))
	f.Add(newBuilder(3, 1, 1).kv("general.alignment", U32(64)).tensor("t", []uint64{128, 2}, TypeI2S, 0).bytes(96))
	f.Add(newBuilder(2, 1, 0).tensor("t", []uint64{2560, 1}, TypeTL2, 0).bytes(512))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse("fuzz.gguf", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, ti := range g.Tensors {
			if ti.Start < g.DataStart || ti.Start+ti.Size > int64(len(data)) {
				t.Fatalf("tensor %q: [%d, %d) outside the %d bytes", ti.Name, ti.Start, ti.Start+ti.Size, len(data))
			}
			if _, err := g.Raw(ti.Name); err != nil {
				t.Fatal(err)
			}
		}
	})
}
