// Command fullscale times the full validation of one preset outside Ginkgo:
// instantiate, forward [B,T], and forward plus backward with streamed
// gradient statistics. Run it under /usr/bin/time -v for peak RSS (make
// bench-2b, make bench-7b); golden/gen/baseline.py is the PyTorch equivalent.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

func main() {
	preset := flag.String("config", "bitnet-b1.58-2b-4t", "preset name")
	configDir := flag.String("preset-dir", "", "folder of extra preset JSON files")
	batch := flag.Int("batch", 2, "batch size B")
	seqLen := flag.Int("seq", 128, "sequence length T")
	phases := flag.String("phases", "instantiate,forward,gradient", "comma-separated phases to run after instantiate")
	flag.Parse()
	if err := run(*preset, *configDir, *batch, *seqLen, *phases); err != nil {
		fmt.Fprintln(os.Stderr, "fullscale:", err)
		os.Exit(1)
	}
}

func run(name, configDir string, B, T int, phases string) error {
	presets, err := conformance.LoadPresets(configDir)
	if err != nil {
		return err
	}
	p, ok := presets[name]
	if !ok {
		return fmt.Errorf("unknown preset %q: known presets are %s", name, strings.Join(conformance.SortedNames(presets), ", "))
	}
	fmt.Printf("%s: %s parameters, kernel path %s, GOMAXPROCS %d\n", name, conformance.Thousands(p.Config.ParamCount()), kernels.ActivePath(), runtime.GOMAXPROCS(0))
	total := time.Now()
	start := time.Now()
	m, err := model.New(p.Config, model.Options{Seed: 1})
	if err != nil {
		return err
	}
	report("instantiate", start)
	b := conformance.RandomBatch(p.Config, B, T, 1)
	for _, phase := range strings.Split(phases, ",") {
		start = time.Now()
		switch strings.TrimSpace(phase) {
		case "instantiate", "":
			continue
		case "forward":
			out, err := m.Forward(b, model.ForwardOptions{})
			if err != nil {
				return err
			}
			report(fmt.Sprintf("forward [%d,%d] -> logits %s", B, T, model.ShapeString(out.Logits.Shape)), start)
		case "gradient":
			loss, stats, err := conformance.GradientFlow(m, b)
			if err != nil {
				return err
			}
			if problems := conformance.GradFlowProblems(p.Config, stats); len(problems) > 0 {
				return fmt.Errorf("gradient flow: %s", strings.Join(problems, "; "))
			}
			report(fmt.Sprintf("forward+backward [%d,%d], loss %.4f, %d parameters with finite non-zero gradients", B, T, loss, len(stats)), start)
		default:
			return fmt.Errorf("unknown phase %q (instantiate, forward, gradient)", phase)
		}
	}
	report("total", total)
	if rss, err := conformance.PeakRSS(); err == nil {
		fmt.Printf("peak RSS %s\n", conformance.HumanBytes(rss))
	}
	return nil
}

func report(what string, start time.Time) {
	fmt.Printf("%-70s %7.2fs\n", what, time.Since(start).Seconds())
}
