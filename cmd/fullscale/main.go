// Command fullscale times the full validation of one preset outside Ginkgo:
// instantiate, forward [B,T], and forward plus backward with streamed
// gradient statistics. Each phase reports its wall time, its peak RSS (the
// high-water mark is reset before it, /proc/self/clear_refs) and its rate
// in GOPS. Run it under /usr/bin/time -v for the whole run's peak RSS (make
// bench-2b, bench-7b, bench-13b, bench-70b); -memory-mode chooses resident
// or layer-streamed layers as the suites do. golden/toolkit/baseline.py is the
// PyTorch equivalent.
//
// The phase forward-suite runs the forward passes of the forward suite's
// specs on one model (conformance.NewForwardPlan) together, layer by layer,
// as the suite does (model.ForwardPasses), and reports their time: the
// cost of the forward suite's model specs without Ginkgo.
//
// With -model-dir it validates a checkpoint instead, loaded resident or
// layer-streamed from its files as the plan says (make bench-checkpoint);
// -write-synthetic=online|offline first writes a synthetic checkpoint of
// -config there (checkpoint.WriteSynthetic) and exits, so that the timed run
// reads a checkpoint already on disk.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/conformance/memory"
	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/internal/units"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

func main() {
	preset := flag.String("config", "bitnet-b1.58-2b-4t", "preset name")
	configDir := flag.String("preset-dir", "", "folder of extra preset JSON files")
	batch := flag.Int("batch", 2, "batch size B")
	seqLen := flag.Int("seq", 128, "sequence length T")
	phases := flag.String("phases", "instantiate,forward,gradient", "comma-separated phases to run after instantiate: forward, forward-suite, gradient")
	writeSynthetic := flag.String("write-synthetic", "", "online or offline: write a synthetic checkpoint of -config to -model-dir and exit")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	opts := conformance.BindFlags(flag.CommandLine)
	flag.Parse()
	*opts = opts.WithEnv()
	stopProfile := func() {}
	var err error
	if *cpuProfile != "" {
		if stopProfile, err = startCPUProfile(*cpuProfile); err != nil {
			fmt.Fprintln(os.Stderr, "fullscale:", err)
			os.Exit(1)
		}
	}
	if *writeSynthetic != "" {
		err = writeCheckpoint(*preset, *configDir, opts.ModelDir, *writeSynthetic)
	} else {
		err = run(*preset, *configDir, opts.ModelDir, *batch, *seqLen, *phases, opts.MemoryMode)
	}
	stopProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fullscale:", err)
		os.Exit(1)
	}
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile %s: %v", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func presetConfig(name, configDir string) (model.Config, error) {
	selected, err := presets.Select([]string{name}, configDir)
	if err != nil {
		return model.Config{}, err
	}
	return selected[0].Config, nil
}

// writeCheckpoint writes a synthetic checkpoint of the preset in the given
// layout to dir.
func writeCheckpoint(name, configDir, dir, layout string) error {
	if dir == "" {
		return fmt.Errorf("-write-synthetic: expected -model-dir to name the folder to write")
	}
	if layout != checkpoint.Online && layout != checkpoint.Offline {
		return fmt.Errorf("-write-synthetic: expected online or offline, got %q", layout)
	}
	cfg, err := presetConfig(name, configDir)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := checkpoint.WriteSynthetic(dir, cfg, layout, 1); err != nil {
		return err
	}
	fmt.Printf("wrote a synthetic %s checkpoint of %s to %s in %.1fs\n", layout, name, dir, time.Since(start).Seconds())
	return nil
}

func run(name, configDir, modelDir string, B, T int, phases, memoryMode string) error {
	var cfg model.Config
	var err error
	if modelDir != "" {
		name = modelDir
		cfg, err = model.LoadConfig(filepath.Join(modelDir, checkpoint.ConfigFile))
	} else {
		cfg, err = presetConfig(name, configDir)
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s parameters, kernel path %s, GOMAXPROCS %d\n", name, units.Thousands(cfg.ParamCount()), kernels.ActivePath(), runtime.GOMAXPROCS(0))
	avail, err := memory.AvailableMemory()
	if err != nil {
		return err
	}
	plan, err := memory.PlanFor(name, cfg, B, T, memoryMode, avail)
	if err != nil {
		return err
	}
	fmt.Printf("memory: %s\n", plan.Reason)
	total := time.Now()
	start := time.Now()
	resetPeakRSS()
	var m *model.Model
	switch {
	case modelDir != "" && plan.Streamed:
		m, err = checkpoint.Load(modelDir, checkpoint.Streamed())
	case modelDir != "":
		m, err = checkpoint.Load(modelDir)
	default:
		m, err = model.New(cfg, model.Options{Seed: 1, Streamed: plan.Streamed})
	}
	if err != nil {
		return err
	}
	report("instantiate", start, 0)
	b := conformance.RandomBatch(cfg, B, T, 1)
	fwdOps := forwardOps(cfg, B, T)
	for _, phase := range strings.Split(phases, ",") {
		start = time.Now()
		resetPeakRSS()
		switch strings.TrimSpace(phase) {
		case "instantiate", "":
			continue
		case "forward":
			out, err := m.Forward(b, model.ForwardOptions{})
			if err != nil {
				return err
			}
			report(fmt.Sprintf("forward [%d,%d] -> logits %s", B, T, model.ShapeString(out.Logits.Shape)), start, fwdOps)
		case "forward-suite":
			plan := conformance.NewForwardPlan(cfg, B, T, 1, cfg.ParamCount() >= presets.FullScaleParams)
			var ops float64
			for _, p := range plan.Passes {
				ops += forwardOps(cfg, p.Batch.B, p.Batch.T)
			}
			last := time.Now()
			if _, err := m.ForwardPasses(plan.Passes, func(done, layers int) {
				if time.Since(last) > 30*time.Second || done == layers {
					fmt.Printf("  %d/%d layers, %.0fs\n", done, layers, time.Since(start).Seconds())
					last = time.Now()
				}
			}); err != nil {
				return err
			}
			report(fmt.Sprintf("forward suite: %d passes layer by layer", len(plan.Passes)), start, ops)
		case "gradient":
			loss, stats, err := conformance.GradientFlow(m, b, 0)
			if err != nil {
				return err
			}
			if problems := conformance.GradFlowProblems(cfg, stats); len(problems) > 0 {
				return fmt.Errorf("gradient flow: %s", strings.Join(problems, "; "))
			}
			// the backward pass is two products per forward product; a
			// streamed model also recomputes each layer's forward
			ops := 3 * fwdOps
			if plan.Streamed {
				ops += fwdOps
			}
			report(fmt.Sprintf("forward+backward [%d,%d], loss %.4f, %d parameters with finite non-zero gradients", B, T, loss, len(stats)), start, ops)
		default:
			return fmt.Errorf("unknown phase %q (instantiate, forward, forward-suite, gradient)", phase)
		}
	}
	fmt.Printf("%-70s %7.2fs\n", "total", time.Since(total).Seconds())
	return nil
}

// report prints a phase's wall time, the peak RSS since resetPeakRSS and,
// for ops > 0, the rate in GOPS.
func report(what string, start time.Time, ops float64) {
	wall := time.Since(start).Seconds()
	line := fmt.Sprintf("%-70s %7.2fs", what, wall)
	if rss, err := memory.PeakRSS(); err == nil {
		line += "  peak RSS " + units.Bytes(rss)
	}
	if ops > 0 {
		line += fmt.Sprintf("  %.1f GOPS", ops/wall/1e9)
	}
	fmt.Println(line)
}

// resetPeakRSS resets the process's RSS high-water mark (VmHWM) to its
// current RSS, so that the next PeakRSS is the peak of one phase. Where the
// kernel does not allow it, the mark stays the run's peak so far.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// forwardOps counts the multiply-adds (as 2 ops) of one forward pass: the
// BitLinear products, attention scores and values (causal: half of T²),
// and the lm_head.
func forwardOps(cfg model.Config, B, T int) float64 {
	N := float64(B * T)
	attn := 2 * 2 * float64(B) * float64(cfg.NumAttentionHeads) * float64(T) * float64(T) / 2 * float64(cfg.HeadDim())
	return 2*N*float64(cfg.TernaryParamCount()) + float64(cfg.NumHiddenLayers)*attn + 2*N*float64(cfg.VocabSize)*float64(cfg.HiddenSize)
}
