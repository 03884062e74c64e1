# warren - one non-recursive Makefile.
#
#   make            library, binaries and plugins into build/
#   make test       install what is missing, start private services, run every test
#   make asan       the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       build the libFuzzer targets with clang and run each for FUZZ_SECONDS
#   make demo       the end-to-end demo (see README.md)
#   make install PREFIX=/usr/local
#
# MODULES may be narrowed (make MODULES="common schemas") to build part of the tree.

BUILD    ?= build
PREFIX   ?= /usr/local
CC       ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
PKG_CONFIG ?= pkg-config

VERSION  := 0.1.0
SONAME   := libwarren.so.0

# msgpack-c is "msgpack" before 6.0 and "msgpack-c" from 6.0 on.
MSGPACK_PC := $(shell $(PKG_CONFIG) --exists msgpack-c 2>/dev/null && echo msgpack-c || echo msgpack)
PKGS     := librabbitmq $(MSGPACK_PC) yaml-0.1 hiredis jansson
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
# Only the worker serves HTTP (/metrics, /healthz), and only when asked to:
# worker/metrics.c dlopen()s libmicrohttpd (and with it gnutls) then, so
# nothing links it; its header is all the build needs.
MHD_CFLAGS := $(shell $(PKG_CONFIG) --cflags libmicrohttpd 2>/dev/null)

OPT      ?= -O2
WARN     := -Wall -Wextra -Werror
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=c11 $(WARN) -fPIC -fvisibility=hidden $(EXTRA_CFLAGS)
CPPFLAGS += -D_POSIX_C_SOURCE=200809L -DWARREN_VERSION=\"$(VERSION)\" -Iinclude -I. $(PKG_CFLAGS) -MMD -MP
LDFLAGS  += $(EXTRA_LDFLAGS)
LDLIBS   += $(PKG_LIBS) -lpthread -ldl -lm

MODULES  ?= common schemas config broker-adapter backends producer

# Files named *_main.c hold a binary's main() and the CLI's producer/cli_*.c
# stay out of the library.
LIB_SRCS := $(filter-out %_main.c producer/cli_%.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB_A    := $(BUILD)/lib/libwarren.a

# The worker's own code is an internal archive linked into warren-worker and
# the tests, not part of the public library.
WORKER_SRCS := $(filter-out %_main.c,$(wildcard worker/*.c))
WORKER_OBJS := $(WORKER_SRCS:%.c=$(BUILD)/obj/%.o)
WORKER_A := $(BUILD)/lib/libwarren-worker.a
LIB_SO   := $(BUILD)/lib/libwarren.so

# Binaries: bin/<name>/*.c sources are listed per binary below as they appear.
BINS     := $(BUILD)/bin/warren-demo \
	$(if $(wildcard producer/cli_main.c),$(BUILD)/bin/warren) \
	$(if $(wildcard worker/worker_main.c),$(BUILD)/bin/warren-worker)

# Plugins: each plugins/<name>.c becomes build/plugins/<name>.so.
PLUGIN_SRCS := $(wildcard plugins/*.c)
PLUGINS  := $(PLUGIN_SRCS:plugins/%.c=$(BUILD)/plugins/%.so)

# Tests: every test file is linked into one Criterion binary, so `make test`
# ends with one summary line covering everything.
TEST_SRCS := $(wildcard tests/unit/*.c tests/integration/*.c tests/interop/*.c tests/support/*.c)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_BIN  := $(BUILD)/tests/warren-tests
TEST_CPPFLAGS := -DWARREN_SOURCE_DIR=\"$(CURDIR)\" -Itests/support

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SECONDS ?= 60

.PHONY: all lib bins plugins test test-build unit asan fuzz demo bench install clean deps
all: lib bins plugins

lib: $(LIB_A) $(LIB_SO)
bins: $(BINS)
plugins: $(PLUGINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB_A): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/worker/metrics.o: CPPFLAGS += $(MHD_CFLAGS)

$(WORKER_A): $(WORKER_OBJS)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(LIB_SO): $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,$(SONAME) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/warren-demo: $(BUILD)/obj/producer/demo_main.o $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The warren CLI: producer/cli_main.c plus producer/cli_*.c subcommands.
CLI_SRCS := $(wildcard producer/cli_*.c)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
$(BUILD)/bin/warren: $(CLI_OBJS) $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(LIB_A) $(LDLIBS)

# -z now binds every symbol once, in the parent at start-up: lazily bound, each
# prefork child would run ld.so's resolver on its first calls and fault in its
# own copies of the GOT and symbol-table pages (about 0.4 MB a child).
$(BUILD)/bin/warren-worker: $(BUILD)/obj/worker/worker_main.o $(WORKER_A) $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -Wl,-z,now -o $@ $^ $(LDLIBS)

$(BUILD)/plugins/%.so: plugins/%.c
	@mkdir -p $(@D) $(BUILD)/obj/plugins
	$(CC) $(CPPFLAGS) $(CFLAGS) -shared -MF $(BUILD)/obj/plugins/$*.d -o $@ $< $(LDFLAGS) $(PKG_LIBS)

$(TEST_OBJS): CPPFLAGS += $(TEST_CPPFLAGS)

$(TEST_BIN): $(TEST_OBJS) $(WORKER_A) $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJS) $(WORKER_A) $(LIB_A) -lcriterion $(LDLIBS)

test-build: all $(TEST_BIN)

# Tests load the example plugins from $(BUILD)/plugins.
$(TEST_OBJS): CPPFLAGS += -DWARREN_BUILD_DIR=\"$(CURDIR)/$(BUILD)\"

# `make test`: everything a fresh machine needs, then every test. The services
# are private (under .run/) and stopped again whatever the tests did.
test: deps
	@$(MAKE) --no-print-directory test-build
	@scripts/with-services $(MAKE) --no-print-directory run-tests

# Runs the test binary against services already started (WARREN_TEST_BROKER etc.).
run-tests: $(TEST_BIN)
	@$(TEST_BIN) $(CRITERION_FLAGS)

# Unit tests only, no services needed: criterion filters to the pure modules.
unit: $(TEST_BIN)
	@$(TEST_BIN) --filter='!(integration*|interop*)/*' $(CRITERION_FLAGS)

# ASan + UBSan build in its own tree. Criterion 2.4 counts a test that leaks as
# passed, so the log is scanned for any sanitizer report as well.
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
		EXTRA_CFLAGS="$(ASAN_FLAGS)" EXTRA_LDFLAGS="$(ASAN_FLAGS)" test-build
	@scripts/with-services scripts/run-asan build-asan/tests/warren-tests

fuzz: deps
	@scripts/run-fuzz $(FUZZ_SECONDS)

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo

# Throughput and memory beside raw rabbitmq-c and Celery, in one run each
# (bench/README.md). Not a test: these machines are shared and noisy.
bench: deps
	@$(MAKE) --no-print-directory all
	@bench/publish.sh && bench/worker.sh && bench/canvas.sh

deps:
	@scripts/install-deps

install: all
	install -d $(DESTDIR)$(PREFIX)/include/warren $(DESTDIR)$(PREFIX)/lib/pkgconfig \
		$(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/warren/plugins
	install -m 644 include/warren/*.h $(DESTDIR)$(PREFIX)/include/warren/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libwarren.so.$(VERSION)
	ln -sf libwarren.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libwarren.so
	$(if $(strip $(BINS)),install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/)
	$(if $(strip $(PLUGINS)),install -m 755 $(PLUGINS) $(DESTDIR)$(PREFIX)/lib/warren/plugins/)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e 's|@REQUIRES@|$(PKGS)|g' warren.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/warren.pc
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/man/man1
	for u in warren-worker.service warren-worker@.service; do \
		sed 's|/usr/local/|$(PREFIX)/|g' deploy/$$u > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$u; done
	install -m 644 deploy/man/warren.1 deploy/man/warren-worker.1 $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
