package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/tritter-ai/conformance/conformance/report"
)

// brokenClaim is tiny-mha-tied claiming to be the official architecture:
// exactly one architecture spec, the compatibility claim, fails.
const brokenClaim = `{
  "architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
  "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 256,
  "max_position_embeddings": 128, "rope_theta": 500000.0, "rms_norm_eps": 1e-05,
  "hidden_act": "relu2", "tie_word_embeddings": true,
  "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"},
  "conformance": {"compatible_with": "bitnet-b1.58-2b-4t"}
}`

// junitFile is what a CI system reads from junit.xml.
type junitFile struct {
	Suites []struct {
		Name     string `xml:"name,attr"`
		Failures int    `xml:"failures,attr"`
		Cases    []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			SystemErr string `xml:"system-err"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestJUnitCarriesTheFailureMessage runs the architecture suite binary with
// one failing spec and reads the JUnit file as a CI system would.
func TestJUnitCarriesTheFailureMessage(t *testing.T) {
	dir := t.TempDir()
	presets := filepath.Join(dir, "presets")
	if err := os.Mkdir(presets, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(presets, "broken-claim.json"), []byte(brokenClaim), 0o644); err != nil {
		t.Fatal(err)
	}
	reportPath := filepath.Join(dir, "report.json")
	run := exec.Command("go", "test", "-count=1", "./suites/architecture", "-args",
		"-ginkgo.json-report="+reportPath, "-configs=broken-claim", "-config-dir="+presets)
	run.Dir = filepath.Join("..", "..")
	// A checkpoint or golden folder from the caller's environment would add specs.
	run.Env = append(os.Environ(), "CONFORMANCE_MODEL_DIR=", "CONFORMANCE_GOLDEN_DIR=")
	out, err := run.CombinedOutput()
	if _, failed := err.(*exec.ExitError); !failed {
		t.Fatalf("the suite with a failing spec: error %v, expected exit status 1; output:\n%s", err, out)
	}
	data, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatalf("%v; suite output:\n%s", err, out)
	}
	var reports []types.Report
	if err := json.Unmarshal(data, &reports); err != nil {
		t.Fatal(err)
	}
	junitPath := filepath.Join(dir, "junit.xml")
	if err := report.WriteJUnit(reports, junitPath); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(junitPath)
	if err != nil {
		t.Fatal(err)
	}
	var junit junitFile
	if err := xml.Unmarshal(data, &junit); err != nil {
		t.Fatalf("%s: %v", junitPath, err)
	}

	if len(junit.Suites) != 1 || junit.Suites[0].Name != "Architecture Suite" || junit.Suites[0].Failures != 1 {
		t.Fatalf("%s: expected one testsuite \"Architecture Suite\" with 1 failure, got %+v", junitPath, junit.Suites)
	}
	var failed []string
	for _, c := range junit.Suites[0].Cases {
		if c.Classname != "Architecture Suite" {
			t.Errorf("testcase %q: classname %q, expected the suite", c.Name, c.Classname)
		}
		if strings.Contains(c.Name, "[It]") || strings.Contains(c.Name, "[suite:") {
			t.Errorf("testcase %q: name carries the node type or labels", c.Name)
		}
		if c.Failure == nil {
			if c.SystemErr != "" {
				t.Errorf("testcase %q passed but carries a %d-byte timeline", c.Name, len(c.SystemErr))
			}
			continue
		}
		failed = append(failed, c.Name)
		const wantName = "Architecture broken-claim matches bitnet-b1.58-2b-4t"
		if !strings.HasPrefix(c.Name, wantName) {
			t.Errorf("failing testcase %q, expected a name starting %q", c.Name, wantName)
		}
		for _, want := range []string{"MISMATCH with bitnet-b1.58-2b-4t", "hidden_size"} {
			if !strings.Contains(c.Failure.Message, want) {
				t.Errorf("failure element of %q: message %q lacks %q", c.Name, c.Failure.Message, want)
			}
		}
		if c.SystemErr == "" {
			t.Errorf("failing testcase %q has no timeline in system-err", c.Name)
		}
	}
	if len(failed) != 1 {
		t.Errorf("failing testcases %q, expected exactly one", failed)
	}
}
