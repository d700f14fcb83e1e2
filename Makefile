# otfuse — hand-written Makefile. Targets:
#   make               library, otfuse CLI
#   make check         install missing Debian packages, build, run every test
#   make asan          the check suites again under AddressSanitizer + UBSan
#   make bench         benchmarks (speed), not tests
#   make install-deps  install the Debian packages the project needs
#   make demo          install, build, run otfused and fuse the fixtures through it
# Build outputs go to $(BUILD) (build/ by default, build/asan for `make asan`).

CC      ?= cc
OPT     ?= -O2
BUILD   ?= build
PKGS     = openblas jansson libcurl libuv libmicrohttpd sqlite3 libcrypto
WARN     = -Wall -Wextra -Werror -Wstrict-prototypes -Wshadow -Wpointer-arith \
           -Wformat=2 -Wno-format-nonliteral
CPPFLAGS += -I. -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS  += -std=c11 -ffp-contract=fast $(OPT) -g -fno-strict-aliasing -fno-trapping-math -fno-math-errno -fopenmp-simd $(WARN) -MMD -MP
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
TEST_LDLIBS = $(shell pkg-config --libs check 2>/dev/null)

LIB_SRC   := $(wildcard common/*.c fusion/*.c storage/*.c api/*.c)
CLI_SRC   := $(wildcard cli/*.c)
SRV_SRC   := $(wildcard server/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
TSUP_SRC  := $(wildcard tests/support/*.c)
BENCH_SRC := $(wildcard bench/*.c)
TOOL_SRC  := $(wildcard tools/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
# The dashboard's static assets (api/dashboard/) are compiled into libotf as
# generated C (tools/embed_assets.sh), so otfused serves them with no files.
DASH_ASSETS := $(wildcard api/dashboard/*.html api/dashboard/*.css api/dashboard/*.js)
LIB_OBJ   += $(BUILD)/gen/dashboard_assets.o
# The OpenAPI document (api/openapi.json) goes in the same way (api/openapi.c).
LIB_OBJ   += $(BUILD)/gen/openapi_json.o
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
SRV_OBJ   := $(SRV_SRC:%.c=$(BUILD)/%.o)
TSUP_OBJ  := $(TSUP_SRC:%.c=$(BUILD)/%.o)
TESTS     := $(TEST_SRC:%.c=$(BUILD)/%)
BENCHES   := $(BENCH_SRC:%.c=$(BUILD)/%)
TOOLS     := $(TOOL_SRC:%.c=$(BUILD)/%)
LIB       := $(BUILD)/libotf.a
OTFUSE    := $(BUILD)/otfuse
OTFUSED   := $(BUILD)/otfused

.SECONDARY:
.PHONY: FORCE tools all check test-run asan bench demo install-deps clean check-style
.DEFAULT_GOAL := all

all: $(OTFUSE) $(OTFUSED)

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

$(BUILD)/gen/dashboard_assets.c: tools/embed_assets.sh $(DASH_ASSETS)
	@mkdir -p $(@D)
	sh tools/embed_assets.sh $@ $(DASH_ASSETS)

$(BUILD)/gen/openapi_json.c: tools/embed_assets.sh api/openapi.json
	@mkdir -p $(@D)
	EMBED_TABLE=otf__openapi_files sh tools/embed_assets.sh $@ api/openapi.json

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c $(FLAGS_STAMP)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(OTFUSE): $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(OTFUSED): $(SRV_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TSUP_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(TEST_LDLIBS) $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tools/%: $(BUILD)/tools/%.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

tools: $(TOOLS)

install-deps:
	@sh tools/install-deps.sh

# `make check` on a fresh Debian 12 machine, as root, sets up and runs
# everything: packages first, then a sub-make that can see them.
check: install-deps
	@$(MAKE) --no-print-directory test-run

test-run: $(TESTS) $(OTFUSE) $(OTFUSED) $(TOOLS)
	@sh tests/run.sh $(BUILD) $(TESTS)

ASAN_BUILD ?= build/asan
asan:
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CC=gcc \
	  OPT="-O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" test-run

bench: $(BENCHES) $(TOOLS) $(OTFUSE)
	@for b in $(BENCHES); do $$b || exit 1; done

# The main job: otfused on the embedded default (local data dir, SQLite,
# file storage) on loopback; the bundled fixtures fused through its API (OT
# and the plain-average baseline, ViT and BERT), progress followed, results
# downloaded and evaluated beside their parents; then the server stops.
DEMO_OUT ?= build/demo
demo: install-deps
	@$(MAKE) --no-print-directory all
	@sh tools/demo.sh $(BUILD) $(DEMO_OUT)

# make install [PREFIX=/usr/local] [DESTDIR=/staging]: the two binaries
# (the dashboard is inside otfused) and the documentation, including the
# systemd unit and Kubernetes notes as examples. Builds first if needed;
# docker/install.sh runs this into a staging prefix and smoke-tests it
# (tests/integration/install.sh).
PREFIX  ?= /usr/local
DESTDIR ?=
DOCDIR   = $(PREFIX)/share/doc/otfuse
.PHONY: install uninstall
install: $(OTFUSE) $(OTFUSED)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(DOCDIR)/examples
	install -m 0755 $(OTFUSE) $(OTFUSED) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 deploy/README.md $(DESTDIR)$(DOCDIR)/deploy.md
	install -m 0644 deploy/otfused.service $(DESTDIR)$(DOCDIR)/examples/otfused.service

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/otfuse $(DESTDIR)$(PREFIX)/bin/otfused
	rm -rf $(DESTDIR)$(DOCDIR)

check-style:
	@! grep -nE '\b(exit|abort|sprintf|strcpy|strcat|gets)\(' common/*.c fusion/*.c storage/*.c api/*.c 2>/dev/null || \
	  (echo "banned call in library code" && false)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(SRV_OBJ:.o=.d) $(TSUP_OBJ:.o=.d) $(TESTS:=.d) $(BENCHES:=.d) $(TOOLS:=.d)

# ---------------------------------------------------------------------------
# make fuzz: the libFuzzer targets in tests/fuzz/, built with clang (ASan +
# UBSan) straight from the library sources each one needs into build/fuzz/,
# then run one after the other for FUZZ_SECONDS each on a scratch copy of
# the committed seed corpus in tests/fuzz/corpus/<target>/, which is never
# modified. A crash, leak, timeout or sanitizer report fails the target and
# leaves the reproducer in build/fuzz/<target>-crashes/.
.PHONY: fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := build/fuzz
FUZZ_CFLAGS   = -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer -I. -D_GNU_SOURCE \
                $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_LIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
FUZZ_HDRS    := $(wildcard common/*.h fusion/*.h)
FUZZ_TARGETS := safetensors config jobspec

$(FUZZ_DIR)/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c $(wildcard common/*.c) \
                              fusion/safetensors.c $(FUZZ_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(filter %.c,$^) $(FUZZ_LIBS) -o $@

$(FUZZ_DIR)/fuzz_config: tests/fuzz/fuzz_config.c $(wildcard common/*.c) fusion/hfconfig.c \
                         $(FUZZ_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(filter %.c,$^) $(FUZZ_LIBS) -o $@

# The job spec parser needs the fusion option defaults and names (fuse.c,
# fuse_names.c, cost.c), so it links the whole fusion core.
$(FUZZ_DIR)/fuzz_jobspec: tests/fuzz/fuzz_jobspec.c $(wildcard common/*.c) api/jobspec.c \
                          $(wildcard fusion/*.c) api/jobspec.h $(FUZZ_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(filter %.c,$^) $(FUZZ_LIBS) -o $@

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
	  work=$(FUZZ_DIR)/$$t-corpus; crashes=$(FUZZ_DIR)/$$t-crashes; log=$(FUZZ_DIR)/$$t.log; \
	  rm -rf $$work && mkdir -p $$work $$crashes && cp tests/fuzz/corpus/$$t/* $$work/ || exit 1; \
	  echo "== fuzz_$$t: $(FUZZ_SECONDS) s, log in $$log"; \
	  if ! $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	       -print_final_stats=1 -artifact_prefix=$$crashes/ $$work >$$log 2>&1; then \
	    tail -n 60 $$log; echo "FAILED: fuzz_$$t (reproducer in $$crashes/)"; exit 1; \
	  fi; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' $$log; \
	  echo "corpus: $$(ls $$work | wc -l) inputs"; \
	done
