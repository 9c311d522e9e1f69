# BitNet b1.58 conformance harness. The two commands that matter:
#   make conformance   run the suites on the default configs, write reports/
#   make test          unit tests (race detector), short fuzzing, then the suites
SHELL := /bin/bash
GO ?= go
GINKGO := $(GO) tool ginkgo
REPORTS := reports
# Recommended CI flags (Ginkgo docs). -p is left out on purpose: the model's
# kernels already use every core, and parallel processes would only fight
# over them. Add it with GINKGO_EXTRA=-p; full-scale specs are Serial.
# Long steps print their own progress lines (conformance/progress.go), so
# Ginkgo's periodic progress reports, a stack dump each, stay off. V=1
# prints every spec with its report entries and output (ginkgo -v).
# cmd/summary writes reports/junit.xml from the JSON report. No
# --fail-on-empty: the harness's own verdict fails a suite or config that
# validated nothing, and says why (-allow-unvalidated to filter on purpose).
GINKGO_FLAGS := -r --randomize-all --fail-on-pending --keep-going \
	--json-report=report.json --output-dir=$(REPORTS) $(if $(V),-v)
# Harness options passed to every suite, e.g. make conformance ARGS='-configs=tiny-mha-tied'
ARGS ?=
PACKAGES := ./conformance/... ./model/... ./kernels/... ./golden/... ./gguf/... ./internal/... ./cmd/...

.PHONY: all conformance conformance-7b conformance-huge test unit fuzz-short fuzz ci-soak bench bench-kernels \
	bench-2b bench-7b bench-config bench-checkpoint bench-13b bench-70b bench-pytorch-2b bench-pytorch-7b golden golden-sweep checkpoint-sweep vet clean

all: test

# The suites, then the whole-run summary and reports/junit.xml; the exit
# code is ginkgo's, or the summary's if ginkgo passed.
conformance:
	@mkdir -p $(REPORTS)
	@rc=0; $(GINKGO) $(GINKGO_FLAGS) $(GINKGO_EXTRA) ./suites/... -- $(ARGS) || rc=$$?; \
		summary=0; $(GO) run ./cmd/summary -report $(REPORTS)/report.json -junit $(REPORTS)/junit.xml $(ARGS) || summary=$$?; \
		exit $$((rc ? rc : summary))

conformance-7b:
	$(MAKE) conformance ARGS='-configs=tritter-7b $(ARGS)'

# The presets labelled huge (10B parameters and up), layer-streamed; not
# part of make conformance or make test. One config: HUGE=tritter-13b.
HUGE ?= tritter-10b,tritter-13b,tritter-70b
conformance-huge:
	$(MAKE) conformance ARGS='-configs=$(HUGE) $(ARGS)'

test: vet unit fuzz-short conformance

vet:
	$(GO) vet ./...

# The unit tests. -race where there is concurrency to check (RACE_PACKAGES,
# the packages with goroutines, locks, atomics or pools of their own:
# ParallelFor and the ops, the kernels' worker pool, sgemm, the model's
# passes, init workers and stream buffers, gguf/verify's sync.Once results,
# conformance's progress watcher and subject lock); every other package
# once without it, on the build make vet has just compiled. Their own code
# is sequential, and the concurrent code they reach is raced by those
# packages' tests: by coverage, each statement of a race package that only
# a plain package's tests reach is sequential (the teacher-forcing
# observer, a checkpoint source read by the layer-major coordinator,
# float64 weight widening). The plain run includes the harness self-tests
# (conformance/numerics: thousands of golden checks against 31 injected
# bugs), minutes under -race. -vet=off: make vet has run every analyzer go
# test would, on the same packages and test files. -short skips the two
# tightness self-tests (tightness_test.go), which run next, and the
# out-of-tree test, which builds a second module that requires this one and
# runs it with the module's sources removed.
MODULE := github.com/tritter-ai/conformance
RACE_PACKAGES := conformance model kernels kernels/sgemm internal/ops gguf/verify
unit:
	$(GO) test -race -short -count=1 -vet=off $(addprefix ./,$(RACE_PACKAGES))
	pkgs=$$($(GO) list $(PACKAGES)) && $(GO) test -short -count=1 -vet=off $$(grep -vxF $(addprefix -e $(MODULE)/,$(RACE_PACKAGES)) <<< "$$pkgs")
	$(GO) test -count=1 -vet=off -run '^(TestBoundHeadroom|TestEndToEndBoundsFailJustAbove)$$' ./conformance/numerics/
	$(GO) test -count=1 -vet=off -run '^TestSpecsRunFromAnotherModule$$' ./conformance/

# Each fuzz target runs a fixed number of inputs, 2 to 8 s on two idle
# cores (rates in docs/bad-input.md), times FUZZSCALE; crashers land in
# testdata/fuzz and become regression cases that the unit tests replay.
# Both limits are counts (Nx), not durations: with a duration, Go before
# 1.27 can fail a target that found nothing with "context deadline
# exceeded" (go.dev/issue/75804), and the default 60 s spent minimizing each
# new interesting input starves the fuzzing itself.
FUZZ_TARGETS := ./internal/tensorfile:FuzzOpen:40000 ./golden:FuzzLoad:200000 \
	./model:FuzzParseConfig:100000 ./model/checkpoint:FuzzCheckpoint:40000 \
	./conformance/knownanswer:FuzzParseKnownAnswer:50000 ./gguf:FuzzGGUF:140000
FUZZSCALE ?= 1
FUZZMINIMIZE ?= 200x

fuzz-short:
	@for t in $(FUZZ_TARGETS); do IFS=: read -r pkg fn n <<< "$$t"; n=$$((n * $(FUZZSCALE))); \
		echo "fuzz $$pkg $$fn for $${n} inputs"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $${n}x -fuzzminimizetime $(FUZZMINIMIZE) $$pkg || exit 1; done

# 1 to 4 minutes per target (30 times make fuzz-short's inputs).
fuzz:
	$(MAKE) fuzz-short FUZZSCALE=30 FUZZMINIMIZE=2000x

# The CI gate N times in a row (default 10), each from a fresh clone with
# empty Go caches. A target-specific N leaves other targets' defaults alone.
ci-soak: N = 10
ci-soak:
	scripts/ci-soak $(N)

bench: bench-kernels

bench-kernels:
	@mkdir -p $(REPORTS)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./kernels/... | tee $(REPORTS)/bench-kernels.txt

# Whole-run benchmarks: wall time per phase and peak RSS (/usr/bin/time -v).
TIME := /usr/bin/time -v
bench-2b:
	@mkdir -p $(REPORTS)
	$(GO) build -o bin/fullscale ./cmd/fullscale
	$(TIME) bin/fullscale -config bitnet-b1.58-2b-4t -phases instantiate,forward 2>&1 | tee $(REPORTS)/bench-2b.txt
	$(TIME) bin/fullscale -config bitnet-b1.58-2b-4t -phases instantiate,forward,gradient 2>&1 | tee $(REPORTS)/bench-2b-grad.txt

bench-7b:
	@mkdir -p $(REPORTS)
	$(GO) build -o bin/fullscale ./cmd/fullscale
	$(TIME) bin/fullscale -config tritter-7b -phases instantiate,forward,gradient 2>&1 | tee $(REPORTS)/bench-7b.txt

# Any preset, in any memory mode (auto, resident, streamed), e.g.
# make bench-config BENCH_CONFIG=tritter-7b MEMORY_MODE=streamed
BENCH_CONFIG ?= tritter-13b
MEMORY_MODE ?= auto
bench-config:
	@mkdir -p $(REPORTS)
	$(GO) build -o bin/fullscale ./cmd/fullscale
	$(TIME) bin/fullscale -config $(BENCH_CONFIG) -memory-mode=$(MEMORY_MODE) -phases instantiate,forward,gradient 2>&1 | tee $(REPORTS)/bench-$(BENCH_CONFIG)-$(MEMORY_MODE).txt

bench-13b:
	$(MAKE) bench-config BENCH_CONFIG=tritter-13b

# A checkpoint instead of a random init: writes a synthetic checkpoint of
# BENCH_CONFIG in LAYOUT (offline or online) to CHECKPOINT_DIR unless it is
# there, then times its validation, loaded resident or layer-streamed from
# its files, e.g. make bench-checkpoint BENCH_CONFIG=tritter-7b MEMORY_MODE=streamed
LAYOUT ?= offline
CHECKPOINT_DIR ?= $(or $(TMPDIR),/tmp)/synthetic-$(BENCH_CONFIG)-$(LAYOUT)
bench-checkpoint:
	@mkdir -p $(REPORTS)
	$(GO) build -o bin/fullscale ./cmd/fullscale
	@[ -f $(CHECKPOINT_DIR)/config.json ] || bin/fullscale -config $(BENCH_CONFIG) -model-dir $(CHECKPOINT_DIR) -write-synthetic $(LAYOUT)
	$(TIME) bin/fullscale -model-dir $(CHECKPOINT_DIR) -memory-mode=$(MEMORY_MODE) -phases instantiate,forward,gradient 2>&1 | tee $(REPORTS)/bench-checkpoint-$(BENCH_CONFIG)-$(LAYOUT)-$(MEMORY_MODE).txt

bench-70b:
	$(MAKE) bench-config BENCH_CONFIG=tritter-70b

# The PyTorch fp32 equivalent (needs python3-torch; see golden/toolkit/README.md):
# instantiate + forward, then the full validation with backward under a
# 24 GiB address-space cap, so that running out of memory is an allocation
# error instead of a visit from the machine's OOM killer.
PYTORCH_CAP_KB := 25165824
bench-pytorch-2b:
	@mkdir -p $(REPORTS)
	$(TIME) /usr/bin/python3 -B -m golden.toolkit.baseline --no-backward conformance/presets/bitnet-b1.58-2b-4t.json 2>&1 | tee $(REPORTS)/bench-pytorch-2b.txt
	-(ulimit -v $(PYTORCH_CAP_KB); $(TIME) /usr/bin/python3 -B -m golden.toolkit.baseline conformance/presets/bitnet-b1.58-2b-4t.json) 2>&1 | tee $(REPORTS)/bench-pytorch-2b-grad.txt

bench-pytorch-7b:
	@mkdir -p $(REPORTS)
	-(ulimit -v $(PYTORCH_CAP_KB); $(TIME) /usr/bin/python3 -B -m golden.toolkit.baseline conformance/presets/tritter-7b.json) 2>&1 | tee $(REPORTS)/bench-pytorch-7b.txt

# Regenerates golden/cases (bit for bit on this machine), writes its SHA-256
# manifest (golden/cases/MANIFEST.sha256), then validates every file against
# docs/golden-format.md.
golden:
	/usr/bin/python3 -B -m golden.toolkit.generate --out golden/cases
	/usr/bin/python3 -B -m golden.toolkit.manifest golden/cases
	/usr/bin/python3 -B -m golden.toolkit.validate golden/cases/*.safetensors

# False-failure sweep: N random v2 cases (golden/toolkit/sweep.py) in a temporary
# folder, then the golden and gradient suites on them with both compute
# paths. The seed is printed first and last; rerun a failure with
# make golden-sweep N=<N> SEED=<seed>. The suites run through go test, which
# builds each binary in its own temporary folder (ginkgo builds in the
# package folder, where two concurrent runs would remove each other's
# binary), and prints a suite's output only when it fails. The numerics
# report of each path (headroom per bound class included) is
# reports/golden-sweep-{kernels,float}/numerics-filtered.json.
# Target-specific defaults (as ci-soak's N); N=... SEED=... on the command
# line override them. The default seed is read once, when make starts.
GOLDEN_SWEEP_SEED := $(shell date +%s)
golden-sweep: N = 20
golden-sweep: SEED = $(GOLDEN_SWEEP_SEED)
golden-sweep:
	@dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	echo "golden-sweep: N=$(N) SEED=$(SEED) into $$dir"; \
	/usr/bin/python3 -B -m golden.toolkit.sweep --n $(N) --seed $(SEED) --out "$$dir" || exit 1; \
	rc=0; for compute in kernels float; do \
		echo "golden-sweep: golden and gradient suites, -golden-compute=$$compute"; \
		$(GO) test -count=1 -p 1 -timeout 2h ./suites/forward ./suites/gradient -args \
			-ginkgo.label-filter=golden \
			-golden-dir="$$dir" -golden-compute=$$compute -ginkgo.seed=$(SEED) \
			-reports-dir="$(CURDIR)/$(REPORTS)/golden-sweep-$$compute" $(ARGS) || rc=1; \
	done; \
	if [ $$rc = 0 ]; then echo "golden-sweep: N=$(N) SEED=$(SEED) passed"; \
	else echo "golden-sweep: N=$(N) SEED=$(SEED) FAILED (rerun: make golden-sweep N=$(N) SEED=$(SEED))"; fi; \
	exit $$rc

# Checkpoint-level sweep (scripts/checkpoint-sweep): N random small HF
# checkpoints from golden/toolkit/checkpoints.py (bf16 online master, offline
# packed under linear_class autobitlinear and bitlinear, single file or
# sharded) with the golden case of each master, through every suite that
# takes -model-dir (offline ones with -master-dir), which must pass; and five
# broken offline checkpoints (inverted scale, flipped code, wrong packing
# order, wrong linear_class stated or left to HF's default), which must fail
# naming the defect. The seed is
# printed first and last; rerun with make checkpoint-sweep N=<N> SEED=<seed>.
CHECKPOINT_SWEEP_SEED := $(shell date +%s)
checkpoint-sweep: N = 10
checkpoint-sweep: SEED = $(CHECKPOINT_SWEEP_SEED)
checkpoint-sweep:
	@GO='$(GO)' scripts/checkpoint-sweep $(N) $(SEED) $(ARGS)

clean:
	rm -rf $(REPORTS)
