package gguf

import (
	"path/filepath"
	"testing"

	"github.com/tritter-ai/conformance/model"
)

// testSource is a deterministic model: ternary values from the element
// index, scale 1/64, floats from the name's length.
type testSource struct{ cfg model.Config }

func (s testSource) Ternary(name string) ([]int8, float32, error) {
	for _, spec := range s.cfg.Inventory() {
		if spec.Name == name {
			w := make([]int8, spec.Elements())
			for i := range w {
				w[i] = int8((i*5+len(name))%3) - 1
			}
			return w, 1.0 / 64, nil
		}
	}
	return nil, 0, nil
}

func (s testSource) Floats(name string) ([]float32, error) {
	for _, spec := range s.cfg.Inventory() {
		if spec.Name == name {
			v := make([]float32, spec.Elements())
			for i := range v {
				v[i] = float32(i%7) / 8
			}
			return v, nil
		}
	}
	return nil, nil
}

func tinyConfig() model.Config {
	return model.Config{HiddenSize: 128, IntermediateSize: 256, NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2,
		VocabSize: 64, MaxPositionEmbeddings: 32, RopeTheta: 500000, RMSNormEps: 1e-5, HiddenAct: "relu2", TieWordEmbeddings: true}
}

func TestWriteBitNet(t *testing.T) {
	cfg := tinyConfig()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := WriteBitNet(path, cfg, testSource{cfg}, BitNetOptions{}); err != nil {
		t.Fatal(err)
	}
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if v, _ := g.Value("general.architecture"); v.String != ArchB158 {
		t.Errorf("arch %q", v.String)
	}
	if v, _ := g.Value("bitnet-b1.58.block_count"); v.Uint != 2 {
		t.Errorf("block_count %d", v.Uint)
	}
	if v, _ := g.Value("general.file_type"); v.Uint != FileTypeI2S {
		t.Errorf("file_type %d", v.Uint)
	}
	if len(g.Tensors) != 2*11+2 {
		t.Fatalf("%d tensors, want 24 (no output.weight when tied)", len(g.Tensors))
	}
	emb, _ := g.Tensor("token_embd.weight")
	if emb.Type != TypeF16 || emb.Ne[0] != 128 || emb.Ne[1] != 64 {
		t.Errorf("token_embd %s %v", emb.Type, emb.Ne)
	}
	q, _ := g.Tensor("blk.1.attn_q.weight")
	raw, err := g.Raw(q.Name)
	if err != nil {
		t.Fatal(err)
	}
	codes := make([]byte, q.Elements())
	if err := UnpackI2S(LayoutX86, raw, int(q.Ne[1]), int(q.Ne[0]), codes); err != nil {
		t.Fatal(err)
	}
	want, _, _ := testSource{cfg}.Ternary("model.layers.1.self_attn.q_proj.weight")
	for i := range want {
		if int8(codes[i])-1 != want[i] {
			t.Fatalf("attn_q element %d: code %d, want value %d", i, codes[i], want[i])
		}
	}
	if s := I2SScale(raw, int(q.Elements())); s != 1.0/64 {
		t.Errorf("scale %v", s)
	}
	for _, d := range Defects {
		p := filepath.Join(t.TempDir(), d.String()+".gguf")
		if err := WriteBitNet(p, cfg, testSource{cfg}, BitNetOptions{Defect: d}); err != nil {
			t.Errorf("%s: %v", d, err)
			continue
		}
		b, err := Open(p)
		if err != nil {
			t.Errorf("%s: %v", d, err)
			continue
		}
		b.Close()
	}
}
