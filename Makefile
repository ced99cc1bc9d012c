# The entry points a user needs (README): `make run` and `make test`. Each installs missing Debian
# packages (scripts/install-deps.sh), configures and builds as needed.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps configure build run test bench fuzz-smoke format clean

all: build

deps:
	@./scripts/install-deps.sh

configure: deps
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The main job: until the trainer lands, the codec benchmark.
run: build
	$(BUILD)/bin/cdl-bench codec

bench: build
	mkdir -p $(BUILD)/bench-out
	$(BUILD)/bin/cdl-bench codec --csv $(BUILD)/bench-out/codec.csv --plot $(BUILD)/bench-out/codec.png

# Sanitized fuzzing of payload decoding for a short while, then every CTest test.
test: build
	./scripts/fuzz-smoke.sh
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

fuzz-smoke: deps
	./scripts/fuzz-smoke.sh

format:
	git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf $(BUILD) build-fuzz
