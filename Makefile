# dllm — build the CLI, the tests, and run them.
#   make          build ./dllm
#   make test     build and run the Check test suites (CPU, no GPU needed)
#   make clean

CC      ?= gcc
CFLAGS  ?= -O2 -march=native
CFLAGS  += -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -fopenmp -I. -MMD -MP
CXXFLAGS ?= -O2 -march=native
CXXFLAGS += -std=c++17 -Wall -Wextra -I. -MMD -MP
SPM_LIBS := $(shell pkg-config --libs sentencepiece 2>/dev/null || echo -lsentencepiece -lsentencepiece_train)
LDLIBS  += $(SPM_LIBS) -lstdc++ -lm -fopenmp

CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

BUILD := build
LIB_SRC := $(wildcard common/*.c kernels/*.c kernels/cpu/*.c model/*.c train/*.c tokenizer/*.c \
                     sampler/*.c)
CLI_SRC := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)

LIB_CXX := $(wildcard tokenizer/*.cc)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(LIB_CXX:%.cc=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test clean check-deps
all: dllm

dllm: $(CLI_OBJ) $(BUILD)/libdllm.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libdllm.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(BUILD)/tests/testutil.o $(BUILD)/libdllm.a
	$(CC) $(CFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

check-deps:
	@pkg-config --exists check sentencepiece || { echo "error: Check or SentencePiece is missing; run scripts/setup.sh"; exit 1; }

# Each suite prints Check's summary line: "100%: Checks: N, Failures: 0, Errors: 0".
test: check-deps dllm $(TEST_BIN)
	@status=0; for t in $(TEST_BIN); do echo "== $$t"; ./$$t || status=1; done; \
	exit $$status

clean:
	rm -rf $(BUILD) dllm

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
