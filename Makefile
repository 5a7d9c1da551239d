# Makefile - the entry points: make run, make test (and the other targets below).
# A thin layer over CMake; `make help` lists the targets.

BUILD      ?= build
ASAN_BUILD ?= build-asan
ARGS       ?=
# pretrained models `make run` serves (NAME=DIR, space-separated; MODELS= for none)
MODELS     ?= demo-gpt2=tests/data/models/demo-gpt2
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=
BENCH_ARGS ?=
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
LOAD_SECONDS ?= 60
LOAD_CONNECTIONS ?= 64

.PHONY: all deps build run test test-release test-asan test-fuzz test-load bench fuzz loadtest clean help
.PHONY: test-container

all: build

help:
	@echo "make run   [ARGS='--port 9000']  install missing packages, build (Release), start on 127.0.0.1:8080"
	@echo "           [MODELS='a=dir b=dir']  with these models (default: the demo GPT-2; MODELS= for none)"
	@echo "make test                        the same set-up, then every test (Release and ASan+UBSan builds)"
	@echo "make test-release / test-asan    one of the two test builds (test-fuzz: 10 s per fuzz target)"
	@echo "make fuzz  [FUZZ_SECONDS=60]     every libFuzzer target (clang, ASan+UBSan) for that long, with figures"
	@echo "make loadtest [LOAD_SECONDS=60 LOAD_CONNECTIONS=64]  wrk: mixed valid/invalid/oversize requests"
	@echo "make bench [BENCH_ARGS='--only \"softmax dense\"']  Release build, then the benchmark table (engine, PyTorch, wrk)"
	@echo "make test-container              build the Docker image and check it running (docker, else podman)"
	@echo "make clean                       remove build folders"

deps:
	@./docker/install-deps.sh test

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/attention-server $(addprefix --model ,$(MODELS)) $(ARGS)

test: test-release test-asan test-fuzz test-load

test-release: build
	ctest --test-dir $(BUILD) --output-on-failure $(CTEST_ARGS)

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DATTN_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure $(CTEST_ARGS)

fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DATTN_FUZZ=ON -DATTN_SANITIZE=ON -DATTN_TESTS=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

test-fuzz:
	$(MAKE) fuzz FUZZ_SECONDS=10

loadtest: build
	tests/load/run.sh $(BUILD)/attention-server $(LOAD_SECONDS) $(LOAD_CONNECTIONS)

test-load: build
	tests/load/run.sh $(BUILD)/attention-server 5 16

bench: $(BUILD)/CMakeCache.txt
	@./docker/install-deps.sh bench
	cmake --build $(BUILD) -j $(JOBS) --target attn_bench
	./$(BUILD)/attn_bench $(BENCH_ARGS)

# docker/test-container.sh: build docker/Dockerfile, run it, check readiness, a computation,
# a model, the health check and the stop on SIGTERM; prints the image size.
test-container:
	sh docker/test-container.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
