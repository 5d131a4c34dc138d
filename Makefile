# ckpt: transparent checkpoint/restart for Linux processes.
#
#   make            build libckpt.so, myrestart and ckpt into this directory
#   make install    PREFIX=/usr/local: ckpt and myrestart in PREFIX/bin, libckpt.so in PREFIX/lib/ckpt
#   make check      the brief's demo: hello is checkpointed, killed, restarted, and must go on
#   make restart    ./myrestart myckpt
#   make test       unit tests and the integration tests (real processes)
#   make test-userlands  the core integration tests inside Debian bullseye and trixie userlands
#                   (made once with debootstrap, kept in USERLANDS_DIR=/var/cache/ckpt-userlands)
#   make bench      checkpoint/restart times against the machine's own limits
#   make imports    each source directory's module import graph; fails on a circle (tools/import-graph)
#   make clean

SHELL := /bin/bash
CARGO ?= cargo
CC ?= gcc
HELLO_CFLAGS ?= -g -O0 -Wall
RELEASE := target/release
# The machine's own target, named so that ckpt's static build gets a directory of its own.
HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')

.PHONY: all check restart test test-userlands bench fuzz imports install clean FORCE

PREFIX ?= /usr/local

all: libckpt.so myrestart ckpt

# Cargo decides what is out of date; the copies land where the brief expects them. Each is
# copied beside its place and renamed over it: a program running with the old libckpt.so
# mapped keeps the old file (overwriting it in place would change the code under it). A file
# that is already the same is left as it is (images name libckpt.so by path and by the hash of
# its bytes: a build whose bytes differ makes every earlier image refuse to restart).
# ckpt is linked statically (glibc's static-pie), so that it runs on any Linux whatever its C
# library; myrestart is static by construction; libckpt.so takes only symbols glibc 2.28 has.
libckpt.so myrestart ckpt &: FORCE
	$(CARGO) build --release --locked -p libckpt -p myrestart
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked -p ckpt --target $(HOST)
	for f in $(RELEASE)/libckpt.so $(RELEASE)/myrestart target/$(HOST)/release/ckpt; do \
	  n=$$(basename $$f); cmp -s $$f $$n || { cp -f $$f .$$n.new && mv -f .$$n.new $$n; }; done

# ckpt finds the other two from its own place: PREFIX/bin/myrestart, PREFIX/lib/ckpt/libckpt.so.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/ckpt
	install -m 755 ckpt myrestart $(DESTDIR)$(PREFIX)/bin/
	install -m 755 libckpt.so $(DESTDIR)$(PREFIX)/lib/ckpt/libckpt.so

hello: hello.c
	$(CC) $(HELLO_CFLAGS) -o hello hello.c

# The brief's check, made to finish by itself: hello runs preloaded; after 3 s it gets
# SIGUSR2 (checkpoint), 2 s later SIGKILL, then `make restart` brings it back (with its old PID,
# in a PID namespace below myrestart, which stays its parent). The restarted hello prints for
# 4 s and is stopped (SIGTERM to myrestart, which passes it on); the check passes only if it
# printed dots after restart. hello is addressed by its PID, never by name: myrestart (or, with
# new IDs, hello itself) runs in the shell of make restart's recipe.
check: libckpt.so myrestart hello.c
	$(CC) $(HELLO_CFLAGS) -o hello hello.c
	@rm -f myckpt .check-restart.out
	@LD_PRELOAD="$(CURDIR)/libckpt.so" ./hello & pid=$$!; \
	sleep 3 && kill -12 $$pid && sleep 2 && kill -9 $$pid; \
	wait $$pid 2>/dev/null; \
	echo; echo "check: hello (pid $$pid) checkpointed at 3 s, killed at 5 s; make restart:"; \
	$(MAKE) --no-print-directory -s restart RESTART_FLAGS=--inherit-stdio RESTART_ENDS=143 > >(tee .check-restart.out) 2> >(grep -v -e '\] Terminated' -e '^Terminated$$' >&2) & mk=$$!; \
	sleep 4; \
	sh=$$(pgrep -d, -P $$mk); \
	mr=$$(pgrep -x -P "$$sh" myrestart || pgrep -x -P "$$sh" hello); \
	init=$$(pgrep -x -P "$$mr" myrestart); \
	restored=$$( [ -n "$$init" ] && pgrep -x -P "$$init" hello || echo "$$mr"); \
	inner=$$(awk '/^NSpid:/ {print $$NF}' /proc/$$restored/status 2>/dev/null); \
	if [ -n "$$mr" ]; then kill $$mr; else kill $$mk; fi; \
	wait $$mk 2>/dev/null; \
	dots=$$(tr -cd . < .check-restart.out | wc -c); rm -f .check-restart.out; \
	echo; \
	if [ "$$dots" -ge 2 ]; then echo "check: OK: the restarted hello (pid $$inner in its namespace, $$restored outside) printed $$dots dots"; \
	else echo "check: FAILED: the restarted hello printed $$dots dots" >&2; exit 1; fi

# The check passes RESTART_FLAGS=--inherit-stdio: hello's stdout may have been a file (make check
# > log) that the restored hello would otherwise write to again, where the check does not look.
# It also passes RESTART_ENDS=143: it ends the restored hello with SIGTERM (exit status 128 + 15),
# the way this restart is meant to end there, not a failure of it.
restart:
	./myrestart $(RESTART_FLAGS) myckpt$(if $(RESTART_ENDS), || [ $$? -eq $(RESTART_ENDS) ])

# The Slurm test (tests/tests/slurm.rs, about three and a half minutes, mostly waiting for Slurm) runs in
# the background beside the others; its output follows theirs.
test: all imports
	$(CARGO) test --release --locked --workspace --no-run
	@rm -f target/ckpt-tests/skipped
	@bin=$$($(CARGO) test --release --locked -p ckpt-tests --test slurm --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))$$/\1/p'); \
	  [ -x "$$bin" ] || { echo "make test: cannot find the Slurm test's binary"; exit 1; }; \
	  "$$bin" --ignored > target/slurm-test.log 2>&1 & slurm=$$!; \
	  $(CARGO) test --release --locked --workspace; others=$$?; \
	  wait $$slurm; s=$$?; echo "--- the Slurm test (tests/tests/slurm.rs):"; cat target/slurm-test.log; \
	  if [ -s target/ckpt-tests/skipped ]; then \
	    echo "--- $$(wc -l < target/ckpt-tests/skipped) test(s) skipped (counted as passed above): what this machine lacks"; \
	    sed 's/^/  /' target/ckpt-tests/skipped; \
	  else echo "--- no test was skipped"; fi; \
	  [ $$others -eq 0 ] && [ $$s -eq 0 ]

# Older and newer C libraries, compilers, Python and Perl: see tests/userlands.sh.
test-userlands: all
	bash tests/userlands.sh

# Long mutation and crafted-image campaigns against myrestart and ckpt inspect (make test runs
# short ones).
fuzz: all
	CKPT_FUZZ_CASES=$${CKPT_FUZZ_CASES:-5000} $(CARGO) test --release --locked -p ckpt-tests --test fuzz -- --nocapture

# No module of a source directory may depend, through others, on itself (tools/import-graph
# says how it reads the sources; -v shows the edges of a circle, or the layers when there is none).
imports:
	python3 tools/import-graph

clean:
	$(CARGO) clean
	rm -f libckpt.so myrestart ckpt hello myckpt .check-restart.out

# Checkpoint and restart times for 64 MiB, 512 MiB and 2 GiB heaps (random, zero, half),
# against this machine's memcpy/write/read limits. BENCH_ARGS="--dir DIR" picks the filesystem.
bench: all
	$(CARGO) run --release --locked -p ckpt-bench -- $(BENCH_ARGS)
