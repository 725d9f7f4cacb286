# dllm — build the CLI, the tests, and run them.
#   make          build ./dllm
#   make test     build and run the Check test suites (CPU, no GPU needed)
#   make clean

CC      ?= gcc
# OpenBLAS, OpenMP build (Debian's libopenblas-openmp-dev): the CPU backend's matmuls
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
CFLAGS  ?= -O2 -march=native
CFLAGS  += -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Wpointer-arith -fopenmp -I. -MMD -MP \
           $(BLAS_CFLAGS)
CXXFLAGS ?= -O2 -march=native
CXXFLAGS += -std=c++17 -Wall -Wextra -I. -MMD -MP
SPM_LIBS := $(shell pkg-config --libs sentencepiece 2>/dev/null || echo -lsentencepiece -lsentencepiece_train)
# PCRE2 (tokenizer.json split regexes) and utf8proc (NFC, Unicode whitespace) for tokenizer/bpe.c
TEXT_LIBS := $(shell pkg-config --libs libpcre2-8 libutf8proc 2>/dev/null || echo -lpcre2-8 -lutf8proc)
HTTP_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
LDLIBS  += $(SPM_LIBS) $(TEXT_LIBS) $(BLAS_LIBS) $(HTTP_LIBS) -lstdc++ -lm -fopenmp -pthread

# CUDA: built whenever nvcc is found (CI has it, with no GPU); `make CUDA=0` leaves it out.
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA      ?= $(if $(wildcard $(NVCC)),1,0)

# MPI (Debian's libopenmpi-dev): data-parallel training across processes, built whenever
# Open MPI's pkg-config file is found; `make MPI=0` leaves it out.
MPI ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MPI),1)
CFLAGS  += -DDLLM_MPI $(shell pkg-config --cflags ompi-c)
MPI_LIBS := $(shell pkg-config --libs ompi-c)
LDLIBS  += $(MPI_LIBS)
endif

# Sanitizers: `make test SAN=address,undefined` builds everything (./dllm included) with them
# into build/san and runs the suites; any report is fatal. CUDA's runtime is left out (the
# kernels run on the CPU emulation, built with the same flags).
SAN ?=
ifneq ($(SAN),)
CUDA := 0
SAN_FLAGS := -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer -g
CFLAGS += $(SAN_FLAGS)
CXXFLAGS += $(SAN_FLAGS)
LDLIBS += $(SAN_FLAGS)
endif
NVCCFLAGS ?= -O3 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80
NVCCFLAGS += -std=c++17 -I. -MMD -MP

CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

BUILD := $(if $(SAN),build/san,build)
LIB_SRC := $(wildcard common/*.c kernels/*.c kernels/cpu/*.c dist/*.c model/*.c store/*.c dataset/*.c train/*.c eval/*.c tokenizer/*.c \
                     sampler/*.c report/*.c sweep/*.c tasks/*.c serve/*.c)
CLI_SRC := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)

LIB_CXX := $(wildcard tokenizer/*.cc)
ifeq ($(CUDA),1)
LIB_CU  := $(wildcard kernels/cuda/*.cu)
CFLAGS  += -DDLLM_CUDA
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart
endif
# NCCL (CUDA's folder, or NCCL_HOME: the nvidia-nccl wheel's nvidia/nccl): the CUDA backend's
# gradient exchange between ranks, built with CUDA and MPI whenever nccl.h is found
NCCL_HOME ?= $(CUDA_HOME)
NCCL ?= $(if $(and $(filter 1,$(CUDA)),$(filter 1,$(MPI)),$(wildcard $(NCCL_HOME)/include/nccl.h)),1,0)
ifeq ($(NCCL),1)
NCCL_LIB := $(firstword $(wildcard $(NCCL_HOME)/lib64/libnccl.so* $(NCCL_HOME)/lib/libnccl.so*))
CFLAGS  += -DDLLM_NCCL
$(BUILD)/dist/comm_nccl.o $(BUILD)/tests/test_gpu.o: CFLAGS += -I$(CUDA_HOME)/include -I$(NCCL_HOME)/include
LDLIBS  += -L$(dir $(NCCL_LIB)) -Wl,-rpath,$(dir $(NCCL_LIB)) -lnccl
endif

# the few-rows and panel matmuls' `acc += w * x` on vectors must become one multiply-add (ISO C mode
# keeps products and sums apart)
$(BUILD)/kernels/cpu/matmul_rows.o $(BUILD)/kernels/cpu/matmul_panels.o: CFLAGS += -ffp-contract=fast
# stb (libstb-dev) headers only for the file that draws PNGs
$(BUILD)/report/plot.o $(BUILD)/tests/test_report.o: CFLAGS += -isystem /usr/include/stb

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(LIB_CXX:%.cc=$(BUILD)/%.o) $(LIB_CU:%.cu=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# the CUDA kernels on the CPU emulation (tests/cuda_emu; rules below, run by make test)
EMU := $(BUILD)/emu
EMU_CU := $(wildcard kernels/cuda/*.cu)
EMU_OBJ := $(EMU_CU:kernels/cuda/%.cu=$(EMU)/cuda_%.o) $(EMU)/emu.o $(EMU)/cublaslt_cpu.o \
           $(EMU)/backend.o
EMU_LIB_OBJ := $(filter-out $(BUILD)/kernels/cuda/% $(BUILD)/kernels/backend.o \
                $(BUILD)/dist/comm_nccl.o,$(LIB_OBJ)) $(EMU)/comm_nccl.o
EMU_CXXFLAGS := -std=c++17 -O2 -I. -Itests/cuda_emu -w $(BLAS_CFLAGS) $(SAN_FLAGS)
# the same kernels with hardware-like rounding: multiply-adds fused (as nvcc does by default)
# and cuBLASLt's stand-in accumulating each dot product in reverse order; the ops must still
# pass their tolerances (tests/cuda_emu/run.sh)
EMU_FMA := $(EMU)/fma
EMU_FMA_FLAGS := -ffp-contract=fast $(shell $(CXX) -mfma -E -x c++ /dev/null >/dev/null 2>&1 && \
                 echo -mfma) -DEMU_GEMM_REVERSED
EMU_FMA_OBJ := $(EMU_CU:kernels/cuda/%.cu=$(EMU_FMA)/cuda_%.o) $(EMU_FMA)/emu.o \
               $(EMU_FMA)/cublaslt_cpu.o $(EMU)/backend.o

.PHONY: all test test-gpu test-cuda-emu bench bench-matmul bench-tokenizer fuzz clean check-deps FORCE
all: dllm

# ./dllm is relinked whenever the build flavour (SAN) changes: the tests run it by that name
DLLM_FLAVOR := build/.dllm-flavor
$(DLLM_FLAVOR): FORCE
	@mkdir -p build; echo '$(SAN)' | cmp -s - $@ || echo '$(SAN)' > $@

dllm: $(CLI_OBJ) $(BUILD)/libdllm.a $(DLLM_FLAVOR)
	$(CC) $(CFLAGS) -o $@ $(filter-out $(DLLM_FLAVOR),$^) $(LDLIBS)

FORCE:

$(BUILD)/libdllm.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(BUILD)/tests/testutil.o $(BUILD)/libdllm.a
	$(CC) $(CFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

# the server's suite and its load bench speak HTTP through tests/http_client.c
$(BUILD)/tests/test_serve: $(BUILD)/tests/http_client.o

check-deps:
	@pkg-config --exists check sentencepiece libpcre2-8 libutf8proc openblas || { echo "error: Check, SentencePiece, PCRE2, utf8proc or OpenBLAS is missing; run scripts/setup.sh"; exit 1; }

# Each suite prints Check's summary line: "100%: Checks: N, Failures: 0, Errors: 0".
# builds the benchmark too, so CI compiles everything
test: check-deps dllm $(TEST_BIN) $(BUILD)/bench/bench $(BUILD)/bench/tokenizer_bench \
      $(BUILD)/bench/matmul_bench $(BUILD)/bench/serve_load \
      $(BUILD)/bench/llmc_files $(EMU)/test_gpu $(EMU)/selftest $(if $(SAN),,$(EMU_FMA)/test_gpu)
	@status=0; for t in $(TEST_BIN); do echo "== $$t"; ./$$t || status=1; done; \
	echo "== $(BUILD)/tests/test_kernels, cpu ops on OpenBLAS's Haswell kernels (matmul_blas.c)"; \
	OPENBLAS_CORETYPE=Haswell CK_RUN_CASE="cpu ops" ./$(BUILD)/tests/test_kernels || status=1; \
	bash tests/cuda_emu/run.sh $(EMU) $(if $(SAN),san) || status=1; \
	exit $$status

# On a machine with a GPU: the CUDA backend against the CPU reference (fails if no device).
test-gpu: check-deps $(BUILD)/tests/test_gpu
	DLLM_REQUIRE_GPU=1 ./$(BUILD)/tests/test_gpu

# The CUDA kernels' logic without a GPU: kernels/cuda/*.cu built as C++ against the CPU
# emulation in tests/cuda_emu (each block's threads are fibers; wmma, shuffles and barriers are
# emulated; cuBLASLt by a CPU stand-in of the calls matmul.cu makes), then test_gpu on them. Minutes, no
# measure of speed; it catches indexing, race and barrier bugs before a GPU is at hand.

$(EMU)/cuda_%.cpp: kernels/cuda/%.cu tests/cuda_emu/rewrite.pl
	@mkdir -p $(dir $@)
	perl -0p tests/cuda_emu/rewrite.pl $< > $@

# (the headers by name: the generated .cpp has no dependency file of its own)
$(EMU)/cuda_%.o: $(EMU)/cuda_%.cpp tests/cuda_emu/cuda_runtime.h tests/cuda_emu/cublasLt.h $(wildcard kernels/cuda/*.h \
                 kernels/cuda/*.cuh kernels/*.h)
	$(CXX) $(EMU_CXXFLAGS) -c -o $@ $<

$(EMU)/%.o: tests/cuda_emu/%.cpp tests/cuda_emu/cuda_runtime.h tests/cuda_emu/cublasLt.h
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c -o $@ $<

$(EMU_FMA)/cuda_%.o: $(EMU)/cuda_%.cpp tests/cuda_emu/cuda_runtime.h tests/cuda_emu/cublasLt.h \
                     $(wildcard kernels/cuda/*.h kernels/cuda/*.cuh kernels/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(EMU_FMA_FLAGS) -c -o $@ $<

$(EMU_FMA)/%.o: tests/cuda_emu/%.cpp tests/cuda_emu/cuda_runtime.h tests/cuda_emu/cublasLt.h
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(EMU_FMA_FLAGS) -c -o $@ $<

$(EMU_FMA)/test_gpu: $(EMU)/test_gpu.o $(BUILD)/tests/testutil.o $(EMU_FMA_OBJ) $(EMU_LIB_OBJ)
	$(CXX) -fopenmp -o $@ $(filter %.o,$^) $(CHECK_LIBS) $(SPM_LIBS) $(TEXT_LIBS) $(BLAS_LIBS) $(HTTP_LIBS) $(MPI_LIBS) -pthread -lm $(SAN_FLAGS)

$(EMU)/backend.o: kernels/backend.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DDLLM_CUDA -c -o $@ $<

# the emulation has no NCCL: several ranks on its CUDA tables are refused
$(EMU)/comm_nccl.o: dist/comm_nccl.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -UDLLM_NCCL -c -o $@ $<

$(EMU)/test_gpu.o: tests/test_gpu.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DDLLM_CUDA -DDLLM_CUDA_EMULATION $(CHECK_CFLAGS) -c -o $@ $<

$(EMU)/test_gpu: $(EMU)/test_gpu.o $(BUILD)/tests/testutil.o $(EMU_OBJ) $(EMU_LIB_OBJ)
	$(CXX) -fopenmp -o $@ $(filter %.o,$^) $(CHECK_LIBS) $(SPM_LIBS) $(TEXT_LIBS) $(BLAS_LIBS) $(HTTP_LIBS) $(MPI_LIBS) -pthread -lm $(SAN_FLAGS)

# the emulation's own checks: kernels that break the hardware's rules must be caught
$(EMU)/selftest: $(EMU)/selftest.o $(EMU)/emu.o
	$(CXX) -o $@ $^ $(SAN_FLAGS)

test-cuda-emu: check-deps $(EMU)/test_gpu $(EMU)/selftest $(EMU_FMA)/test_gpu
	bash tests/cuda_emu/run.sh $(EMU)

# the whole CLI on the emulated CUDA backend: `build/emu/dllm train --device cuda ...`
$(EMU)/dllm: $(CLI_OBJ) $(EMU_OBJ) $(EMU_LIB_OBJ)
	$(CXX) -fopenmp -o $@ $(filter %.o,$^) $(SPM_LIBS) $(TEXT_LIBS) $(BLAS_LIBS) $(HTTP_LIBS) $(MPI_LIBS) -pthread -lm $(SAN_FLAGS)

$(BUILD)/bench/bench: bench/bench.c $(BUILD)/cli/flags.o $(BUILD)/libdllm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS)

# llm.c's model and data files for bench/vs_llmc.sh
$(BUILD)/bench/llmc_files: bench/llmc_files.c $(BUILD)/cli/flags.o $(BUILD)/libdllm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS)

$(BUILD)/bench/tokenizer_bench: bench/tokenizer_bench.c $(BUILD)/cli/flags.o $(BUILD)/libdllm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS)

$(BUILD)/bench/matmul_bench: bench/matmul_bench.c $(BUILD)/cli/flags.o $(BUILD)/libdllm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS)

$(BUILD)/bench/serve_load: bench/serve_load.c $(BUILD)/tests/http_client.o $(BUILD)/cli/flags.o \
                          $(BUILD)/libdllm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS)

# OpenBLAS against the few-rows kernel, microseconds per call on one thread (not a test).
bench-matmul: $(BUILD)/bench/matmul_bench
	./$(BUILD)/bench/matmul_bench

# Tokenizer encoding speed, MB/s on one thread (not a test).
bench-tokenizer: $(BUILD)/bench/tokenizer_bench
	./$(BUILD)/bench/tokenizer_bench

# Throughput figures (not tests): GPT-2 small and 350M sizes on a GPU, the tiny size on a CPU.
bench: $(BUILD)/bench/bench
	./$(BUILD)/bench/bench

# libFuzzer targets (tests/fuzz/fuzz_*.c) for every parser of untrusted input, built with
# clang and AddressSanitizer + UBSan; `make fuzz FUZZ_SECONDS=N` runs each for N seconds from
# its committed seeds (tests/fuzz/corpus/NAME), new inputs going to build/fuzz/corpus/NAME.
FUZZ := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_CXX ?= clang++
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=all -I. -MMD -MP -Wno-unknown-pragmas
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ)/%)
FUZZ_LIB_OBJ := $(filter-out $(FUZZ)/kernels/cuda/%,$(LIB_SRC:%.c=$(FUZZ)/%.o)) \
                $(FUZZ)/tokenizer/spm_shim.o

$(FUZZ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_DEFAULT_SOURCE -isystem /usr/include/stb $(BLAS_CFLAGS) $(FUZZ_FLAGS) \
	    -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ)/tokenizer/spm_shim.o: tokenizer/spm_shim.cc
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -std=c++17 $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ)/fuzz_%: $(FUZZ)/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $^ $(SPM_LIBS) $(TEXT_LIBS) $(BLAS_LIBS) $(HTTP_LIBS) -pthread \
	    -lgomp -lm

fuzz: $(FUZZ_BIN)
	@status=0; for f in $(FUZZ_BIN); do name=$$(basename $$f); \
	    mkdir -p $(FUZZ)/corpus/$$name tests/fuzz/corpus/$$name; \
	    echo "== $$name ($(FUZZ_SECONDS) s)"; \
	    ./$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 \
	        -artifact_prefix=$(FUZZ)/$$name- $(FUZZ)/corpus/$$name \
	        tests/fuzz/corpus/$$name 2>$(FUZZ)/$$name.log || status=1; \
	    grep -E "^(stat::number_of_executed_units|#[0-9]+.DONE)" \
	        $(FUZZ)/$$name.log; \
	    grep -E "ERROR|SUMMARY|^artifact|deadly" $(FUZZ)/$$name.log | head -5; done; \
	exit $$status

clean:
	rm -rf $(BUILD) dllm

# the dependency files of this build's own objects (not of other builds under build/)
-include $(patsubst %.o,%.d,$(LIB_OBJ) $(CLI_OBJ) $(TEST_BIN:=.o) $(BUILD)/tests/testutil.o \
                            $(EMU)/backend.o $(EMU)/test_gpu.o) $(BUILD)/bench/bench.d \
          $(BUILD)/bench/tokenizer_bench.d $(BUILD)/bench/llmc_files.d
-include $(wildcard $(FUZZ)/*/*.d $(FUZZ)/*/*/*.d)
.SECONDARY: $(FUZZ_LIB_OBJ) $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ)/tests/fuzz/%.o)
