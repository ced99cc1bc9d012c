# The entry points a user needs (README): `make run` and `make test`. Each installs what is missing
# (scripts/install-deps.sh: Debian packages and the PyTorch wheel that is cdl's LibTorch),
# configures and builds as needed.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps configure build python run test bench suite fuzz-smoke fuzz format clean

all: build

deps:
	@./scripts/install-deps.sh

configure: deps
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The Python package alone (python/, README: PyTorch DDP hook): $(BUILD)/python/cdl, importable
# with PYTHONPATH=$(BUILD)/python and installed by `pip install ./python`.
python: configure
	cmake --build $(BUILD) --target cdl_python -j $(JOBS)

# The main job: configs/fmnist_cnn.yaml (a CNN on Fashion-MNIST, gradients as 4-bit qsgd + rANS
# with error feedback) on 2 local ranks. Each run gets its own folder under runs/, with its charts
# in plot.png (cdl-plot).
NP ?= 2
CONFIG ?= configs/fmnist_cnn.yaml
# Expanded once (not with ?=, which would read the clock again for the plot's path).
ifeq ($(origin RUN_NAME),undefined)
RUN_NAME := $(basename $(notdir $(CONFIG)))-$(shell date +%Y%m%d-%H%M%S)
endif
MPIRUN_FLAGS ?= --oversubscribe --allow-run-as-root
RUNS_DIR ?= runs
run: build
	$(BUILD)/bin/cdl-launch -np $(NP) $(CONFIG) -- --set name=$(RUN_NAME)
	$(BUILD)/bin/cdl-plot $(RUNS_DIR)/$(RUN_NAME) -o $(RUNS_DIR)/$(RUN_NAME)/plot.png --title $(RUN_NAME)

bench: build
	mkdir -p $(BUILD)/bench-out
	$(BUILD)/bin/cdl-bench codec --csv $(BUILD)/bench-out/codec.csv --plot $(BUILD)/bench-out/codec.png
	mpirun $(MPIRUN_FLAGS) -np $(NP) $(BUILD)/bin/cdl-bench allreduce --max-bytes 64M --json \
	  --csv $(BUILD)/bench-out/allreduce.csv --plot $(BUILD)/bench-out/allreduce.png \
	  >$(BUILD)/bench-out/allreduce.json
	$(BUILD)/bin/cdl-bench model $(BUILD)/bench-out/allreduce.json
	$(BUILD)/bin/cdl-launch -np $(NP) --bench -- train $(CONFIG) \
	  --csv $(BUILD)/bench-out/train.csv --plot $(BUILD)/bench-out/train.png

# The README's headline table: bench/run_suite.sh on 4 emulated nodes at 100 Mbit/s, 1 Gbit/s and
# 10 Gbit/s (root), into $(BUILD)/bench-out/suite/ (summary.md and its plots). SUITE_FLAGS adds
# run_suite.sh's flags, e.g. SUITE_FLAGS="--links 1gbit --no-tta".
SUITE_FLAGS ?=
suite: build
	CDL_BUILD=$(BUILD) bench/run_suite.sh --out $(BUILD)/bench-out/suite $(SUITE_FLAGS)

# Sanitized fuzzing of every reader of outside bytes for a short while, then every CTest test.
test: build
	./scripts/fuzz.sh smoke
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

fuzz-smoke: deps
	./scripts/fuzz.sh smoke

# Ten million inputs per fuzz target (CDL_FUZZ_RUNS), with a table of what ran.
fuzz: deps
	./scripts/fuzz.sh full

format:
	git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf $(BUILD) build-fuzz
