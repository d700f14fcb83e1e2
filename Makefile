# otfuse — hand-written Makefile. Targets:
#   make               library, otfuse CLI
#   make check         install missing Debian packages, build, run every test
#   make asan          the check suites again under AddressSanitizer + UBSan
#   make bench         benchmarks (speed), not tests
#   make install-deps  install the Debian packages the project needs
#   make demo          install, build, and solve a sample OT problem
# Build outputs go to $(BUILD) (build/ by default, build/asan for `make asan`).

CC      ?= cc
OPT     ?= -O2
BUILD   ?= build
PKGS     = openblas jansson
WARN     = -Wall -Wextra -Werror -Wstrict-prototypes -Wshadow -Wpointer-arith \
           -Wformat=2 -Wno-format-nonliteral
CPPFLAGS += -I. -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS  += -std=c11 -ffp-contract=fast $(OPT) -g -fno-strict-aliasing -fno-trapping-math -fno-math-errno -fopenmp-simd $(WARN) -MMD -MP
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
TEST_LDLIBS = $(shell pkg-config --libs check 2>/dev/null)

LIB_SRC   := $(wildcard common/*.c fusion/*.c storage/*.c api/*.c)
CLI_SRC   := $(wildcard cli/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
TSUP_SRC  := $(wildcard tests/support/*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TSUP_OBJ  := $(TSUP_SRC:%.c=$(BUILD)/%.o)
TESTS     := $(TEST_SRC:%.c=$(BUILD)/%)
BENCHES   := $(BENCH_SRC:%.c=$(BUILD)/%)
LIB       := $(BUILD)/libotf.a
OTFUSE    := $(BUILD)/otfuse

.SECONDARY:
.PHONY: FORCE all check test-run asan bench demo install-deps clean check-style
.DEFAULT_GOAL := all

all: $(OTFUSE)

# Objects depend on the flags they were built with, so changing OPT or
# CFLAGS rebuilds instead of mixing stale objects into a build.
FLAGS_STAMP := $(BUILD)/.flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(CPPFLAGS) $(CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CPPFLAGS) $(CFLAGS)' > $@
FORCE:

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(OTFUSE): $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TSUP_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(TEST_LDLIBS) $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

install-deps:
	@sh tools/install-deps.sh

# `make check` on a fresh Debian 12 machine, as root, sets up and runs
# everything: packages first, then a sub-make that can see them.
check: install-deps
	@$(MAKE) --no-print-directory test-run

test-run: $(TESTS) $(OTFUSE)
	@sh tests/run.sh $(BUILD) $(TESTS)

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan CC=gcc \
	  OPT="-O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" test-run

bench: $(BENCHES) $(OTFUSE)
	@for b in $(BENCHES); do $$b || exit 1; done

# The main job available today: `otfuse ot` on committed sample problems.
demo: install-deps
	@$(MAKE) --no-print-directory all
	$(OTFUSE) ot --cost tests/data/ot/exact_euclid_gauss64_200x200.safetensors --solver exact
	$(OTFUSE) ot --cost tests/data/ot/exact_euclid_gauss64_200x200.safetensors --solver sinkhorn --reg 0.08
	$(OTFUSE) ot --cost tests/data/ot/exact_nonuniform_80x80.safetensors --a a --b b

check-style:
	@! grep -nE '\b(exit|abort|sprintf|strcpy|strcat|gets)\(' common/*.c fusion/*.c storage/*.c api/*.c 2>/dev/null || \
	  (echo "banned call in library code" && false)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TSUP_OBJ:.o=.d) $(TESTS:=.d) $(BENCHES:=.d)
