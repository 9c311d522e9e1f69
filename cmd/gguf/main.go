// Command gguf checks a bitnet.cpp GGUF file against the HF checkpoint it
// was converted from (package gguf/verify) and prints the findings: one
// line when the file is a faithful conversion that bitnet.cpp runs as HF
// does, every finding by class otherwise.
//
//	go run ./cmd/gguf -gguf model.gguf -model-dir hf-checkpoint
//
// It exits 0 when there is no conversion error, 1 when there is one (2 when
// the check could not run). bitnet.cpp findings ("faithful conversion, but
// bitnet.cpp will mis-run it") are printed and exit 0, or 1 with
// -fail-on-bitnetcpp.
//
// With -write instead of -gguf it converts the checkpoint into a GGUF as
// convert-hf-to-gguf-bitnet.py plus llama-quantize I2_S would
// (gguf.WriteBitNet), optionally with a -defect, for trying the checks:
//
//	go run ./cmd/gguf -model-dir hf-checkpoint -write model.gguf [-defect arm-layout]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/gguf/verify"
)

func main() {
	path := flag.String("gguf", "", "GGUF file to check")
	dir := flag.String("model-dir", "", "HF checkpoint folder the file was converted from (online master or offline packed)")
	write := flag.String("write", "", "instead of checking, convert -model-dir into this GGUF file with gguf.WriteBitNet")
	defect := flag.String("defect", "faithful", "with -write: the broken kind to write (faithful, inverted-scale, permuted-qk, sequential-layout, arm-layout, row-interleaved-layout, wrong-key-prefix, old-arch, untied, flipped-code, zero-tensor)")
	outType := flag.String("outtype", "i2_s", "with -write: i2_s, f32 or f16")
	verbose := flag.Bool("v", false, "print every metadata key compared and every finding")
	failRuntime := flag.Bool("fail-on-bitnetcpp", false, "exit 1 on bitnet.cpp findings too")
	flag.Parse()
	if *dir == "" || (*path == "") == (*write == "") {
		fmt.Fprintln(os.Stderr, "usage: gguf -model-dir DIR (-gguf FILE | -write FILE [-defect KIND] [-outtype TYPE]) [-v]")
		os.Exit(2)
	}
	if *write != "" {
		if err := convert(*dir, *write, *defect, *outType); err != nil {
			fmt.Fprintln(os.Stderr, "gguf:", err)
			os.Exit(2)
		}
		return
	}
	code, err := check(os.Stdout, *path, *dir, *verbose, *failRuntime)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gguf:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

// convert writes the checkpoint in dir as a GGUF at path.
func convert(dir, path, defectName, outType string) error {
	d, err := gguf.ParseDefect(defectName)
	if err != nil {
		return err
	}
	ref, err := verify.LoadReference(dir)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := gguf.WriteBitNet(path, ref.Config, verify.SourceOf(ref.Model), gguf.BitNetOptions{Name: filepath.Base(dir), OutType: outType, Defect: d}); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s, %s) in %.1fs\n", path, outType, d, time.Since(start).Seconds())
	return nil
}

// check verifies path against dir and prints the result; it returns the
// exit code.
func check(w io.Writer, path, dir string, verbose, failRuntime bool) (int, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return 2, err
	}
	defer f.Close()
	ref, err := verify.LoadReference(dir)
	if err != nil {
		return 2, err
	}
	start := time.Now()
	v := verify.New(f, ref, verify.Options{Progress: progressPrinter(os.Stderr)})
	var all []verify.Finding
	counts := map[string]int{}
	for _, c := range verify.Checks {
		fs, err := v.Check(c)
		if err != nil {
			return 2, fmt.Errorf("%s: %w", c, err)
		}
		counts[c] = len(fs)
		all = append(all, fs...)
	}
	conversion := verify.ConversionErrors(all)
	runtime := len(all) - len(conversion)
	logits := "logits not run"
	if s, ok, err := v.LogitsMeasured(); err == nil && ok {
		logits = fmt.Sprintf("logits relL2 %.3g (bound %.3g, spread %.3g, batch [%d,%d])", s.RelL2, s.Bound, s.Spread, s.Batch[0], s.Batch[1])
	}
	fmt.Fprintf(w, "%s against %s: %d tensors, %s, %.1fs\n", path, dir, len(f.Tensors), logits, time.Since(start).Seconds())
	if verbose {
		for _, l := range v.MetadataLines() {
			mark := "ok  "
			if !l.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %s %s\n", mark, l.Text)
		}
	}
	for _, c := range verify.Checks {
		status := "ok"
		if counts[c] > 0 {
			status = fmt.Sprintf("%d findings", counts[c])
		}
		if verbose || counts[c] > 0 {
			fmt.Fprintf(w, "  %-30s %s\n", c, status)
		}
		listed := 0
		for _, fd := range all {
			if fd.Check != c {
				continue
			}
			if !verbose && listed == 10 {
				fmt.Fprintf(w, "      ... %d more (-v lists them)\n", counts[c]-listed)
				break
			}
			fmt.Fprintf(w, "      %s\n", fd.Message)
			listed++
		}
	}
	switch {
	case len(conversion) > 0:
		fmt.Fprintf(w, "NOT A FAITHFUL CONVERSION: %d conversion errors, %d bitnet.cpp findings\n", len(conversion), runtime)
		return 1, nil
	case runtime > 0:
		fmt.Fprintf(w, "FAITHFUL CONVERSION, but bitnet.cpp will not compute what HF computes: %d findings\n", runtime)
		if failRuntime {
			return 1, nil
		}
		return 0, nil
	}
	fmt.Fprintf(w, "FAITHFUL CONVERSION: all %d checks pass, and bitnet.cpp runs it as HF does\n", len(verify.Checks))
	return 0, nil
}

// progressPrinter prints a long step's progress at most every 10 seconds.
func progressPrinter(w io.Writer) func(done, total int, unit string) {
	var mu sync.Mutex
	start, last := time.Now(), time.Now()
	return func(done, total int, unit string) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 10*time.Second || time.Since(start) < 10*time.Second {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "  %d/%d %s, %.0fs\n", done, total, unit, time.Since(start).Seconds())
	}
}
