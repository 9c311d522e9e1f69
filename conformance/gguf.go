package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/gguf/verify"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// GGUF are the checks of a bitnet.cpp GGUF file (package gguf/verify), one
// spec per finding class. With -gguf and -model-dir they check the user's
// file against the HF checkpoint it was converted from. Without -gguf they
// check a file the suite writes itself: a random model of GGUFSelfCheck
// saved as an online HF checkpoint, converted with gguf.WriteBitNet and
// verified against that checkpoint, so the suite always validates a real
// conversion.
var GGUF = func() *Specs {
	var s Specs
	s.DescribeRun("GGUF", describeGGUF, SuiteLabel("gguf"))
	return &s
}()

// GGUFSelfCheck is the model the suite converts without -gguf: small, and
// shaped so that bitnet.cpp runs it as HF does (input widths multiples of
// 128, head_dim = hidden/heads, tied), so every spec can pass on it. The
// tiny presets are not: their 64- and 96-wide rows are not self-contained
// I2_S rows, tiny-mqa-tied has head_dim ≠ hidden/heads and tiny-gqa-untied
// an lm_head bitnet.cpp ignores, and the bitnet.cpp specs say so when such
// a file is given with -gguf.
var GGUFSelfCheck = model.Config{HiddenSize: 256, IntermediateSize: 640, NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2,
	VocabSize: 384, MaxPositionEmbeddings: 128, RopeTheta: 500000, RMSNormEps: 1e-5, HiddenAct: "relu2", TieWordEmbeddings: true,
	QuantizationConfig: &model.QuantizationConfig{QuantMethod: "bitnet", LinearClass: "autobitlinear", QuantizationMode: checkpoint.Online}}

// GGUFSelfCheckName names the self-check subject in spec names and labels.
const GGUFSelfCheckName = "gguf-self-check"

// ggufSpecs are the GGUF specs in checklist order: the spec text and the
// finding class it reports.
var ggufSpecs = []struct{ text, check string }{
	{"has general.architecture and every arch key of the HF config", verify.CheckMetadata},
	{"has every tensor of the HF model with its name, shape and type", verify.CheckInventory},
	{"has every ternary code of the HF checkpoint, row by row", verify.CheckCodes},
	{"has every scale of the HF checkpoint (mean|W|, or weight_scale under its linear_class)", verify.CheckScales},
	{"is packed in the x86 ACT_PARALLEL I2_S layout bitnet.cpp reads", verify.CheckLayout},
	{"has no all-zero ternary tensor", verify.CheckZeroTensors},
	{"has the logits of the HF model within the end-to-end bound", verify.CheckLogits},
	{"bitnet.cpp: has no untied output.weight, which it would ignore", verify.CheckUntiedHead},
	{"bitnet.cpp: has head_dim = hidden_size / num_attention_heads", verify.CheckHeadDim},
	{"bitnet.cpp: has attn_sub_norm of hidden_size elements", verify.CheckSubNormSize},
	{"bitnet.cpp: has input widths that are multiples of 128 (self-contained I2_S rows)", verify.CheckRowWidths},
	{"bitnet.cpp: has ternary linears, so activations are quantized as HF does", verify.CheckFloatLinears},
}

// maxFindingLines bounds the findings a failure message lists.
const maxFindingLines = 40

func describeGGUF(h *Harness) {
	cfg := h.config
	if cfg.GGUFPath != "" && cfg.ModelDir == "" {
		It("checks -gguf against -model-dir", Label(LabelCostConfig), func() {
			Fail("-gguf " + cfg.GGUFPath + " needs -model-dir: the HF checkpoint folder it was converted from")
		})
		return
	}
	name, label, subject := GGUFSelfCheckName, GGUFSelfCheckName, GGUFSelfCheck
	if cfg.GGUFPath != "" {
		c, err := model.LoadConfig(filepath.Join(cfg.ModelDir, checkpoint.ConfigFile))
		if err != nil {
			It("reads the -model-dir config", Label(LabelCostConfig, LabelCheckpoint), func() { Fail(err.Error()) })
			return
		}
		name, label, subject = filepath.Base(cfg.GGUFPath), "checkpoint", c
	}
	// One Ordered container per file: the tensor pass and the forward
	// passes run once and every spec reads them.
	decorators := []any{modelLabels(label, subject.ParamCount()), Ordered, ContinueOnFailure}
	if cfg.GGUFPath != "" {
		decorators = append(decorators, Label(LabelCheckpoint))
	}
	if subject.ParamCount() >= presets.FullScaleParams {
		decorators = append(decorators, Serial)
	}
	Describe(name, append(decorators, func() {
		var v *verify.Verifier
		var what string // the file and what it is checked against, for messages
		BeforeAll(func() {
			if cfg.GGUFPath != "" {
				v, what = openUserGGUF(cfg.GGUFPath, cfg.ModelDir)
			} else {
				v, what = writeSelfCheckGGUF(cfg.Seed)
			}
		})
		for _, spec := range ggufSpecs {
			It(spec.text, func() {
				var fs []verify.Finding
				Step(stepText(spec.check), func() {
					var err error
					fs, err = v.Check(spec.check)
					Expect(err).NotTo(HaveOccurred(), "%s", what)
				})
				reportGGUF(v, spec.check)
				if len(fs) == 0 {
					return
				}
				header := fmt.Sprintf("%s is not a faithful conversion: %s", what, plural(len(fs), "finding"))
				if fs[0].Runtime {
					header = fmt.Sprintf("%s: bitnet.cpp will not compute what HF computes: %s", what, plural(len(fs), "finding"))
				}
				Fail(header + ":\n" + findingLines(fs))
			})
		}
	})...)
}

func stepText(check string) string {
	switch check {
	case verify.CheckCodes, verify.CheckScales, verify.CheckLayout, verify.CheckZeroTensors:
		return "comparing every ternary tensor with the HF checkpoint"
	case verify.CheckLogits, verify.CheckUntiedHead:
		return "running the model decoded from the file, the HF model and its spread runs"
	}
	return "checking " + check
}

// reportGGUF adds the figures behind a spec to its report.
func reportGGUF(v *verify.Verifier, check string) {
	switch check {
	case verify.CheckMetadata:
		var lines []string
		for _, l := range v.MetadataLines() {
			lines = append(lines, l.Text)
		}
		AddReportEntry("metadata", strings.Join(lines, "\n"), ReportEntryVisibilityFailureOrVerbose)
	case verify.CheckLogits:
		if s, ok, err := v.LogitsMeasured(); err == nil && ok {
			AddReportEntry("logits", fmt.Sprintf("relL2 %.3g, bound %.3g (spread %.3g) on a [%d,%d] batch", s.RelL2, s.Bound, s.Spread, s.Batch[0], s.Batch[1]), ReportEntryVisibilityFailureOrVerbose)
		}
	}
}

func findingLines(fs []verify.Finding) string {
	var b strings.Builder
	for i, f := range fs {
		if i == maxFindingLines {
			fmt.Fprintf(&b, "... and %d more\n", len(fs)-i)
			break
		}
		b.WriteString(f.Message)
		b.WriteByte('\n')
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// openUserGGUF opens the -gguf file and its -model-dir checkpoint
// (layer-streamed) for the specs, closing the file after them.
func openUserGGUF(path, dir string) (*verify.Verifier, string) {
	GinkgoHelper()
	var v *verify.Verifier
	Step("opening "+path+" and loading "+dir, func() {
		f, err := gguf.Open(path)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(f.Close)
		ref, err := verify.LoadReference(dir)
		Expect(err).NotTo(HaveOccurred())
		v = verify.New(f, ref, verify.Options{Progress: Advance})
	})
	return v, fmt.Sprintf("%s (against %s)", path, dir)
}

// writeSelfCheckGGUF makes the file the suite checks without -gguf: a
// random GGUFSelfCheck model saved with checkpoint.Save as an online HF
// checkpoint, loaded back, and converted with gguf.WriteBitNet.
func writeSelfCheckGGUF(seed uint64) (*verify.Verifier, string) {
	GinkgoHelper()
	var v *verify.Verifier
	var path string
	Step("writing a random "+GGUFSelfCheckName+" checkpoint and its GGUF", func() {
		tmp, err := os.MkdirTemp("", "conformance-gguf-")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.RemoveAll, tmp)
		m, err := model.New(GGUFSelfCheck, model.Options{Seed: seed})
		Expect(err).NotTo(HaveOccurred())
		dir := filepath.Join(tmp, GGUFSelfCheckName)
		Expect(checkpoint.Save(m, dir, checkpoint.Online, 1)).To(Succeed())
		ref, err := verify.LoadReference(dir)
		Expect(err).NotTo(HaveOccurred())
		path = filepath.Join(tmp, GGUFSelfCheckName+".gguf")
		Expect(gguf.WriteBitNet(path, ref.Config, verify.SourceOf(ref.Model), gguf.BitNetOptions{Name: GGUFSelfCheckName})).To(Succeed())
		f, err := gguf.Open(path)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(f.Close)
		v = verify.New(f, ref, verify.Options{Progress: Advance})
	})
	return v, fmt.Sprintf("%s (written by gguf.WriteBitNet from a random %s checkpoint)", filepath.Base(path), GGUFSelfCheckName)
}
