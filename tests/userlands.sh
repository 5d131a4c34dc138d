#!/usr/bin/env bash
# make test-userlands: the core integration tests, run inside throw-away Debian userlands
# (older and newer glibc, Python, Perl, compilers) with the binaries built here.
#
# Each userland is made once with debootstrap and kept in USERLANDS_DIR (default
# /var/cache/ckpt-userlands). The test programs are compiled there by its own gcc; the test
# binaries themselves are linked statically, so that they run on any glibc. Everything runs
# in a private mount namespace: every mount made for a userland goes when its run ends,
# however it ends.
#
#   USERLANDS="bullseye trixie"   which Debian releases
#   USERLANDS_DIR=DIR             where they are kept
#   DEBIAN_MIRROR=URL             where debootstrap fetches them
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dir=${USERLANDS_DIR:-/var/cache/ckpt-userlands}
suites=${USERLANDS:-bullseye trixie}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=gcc,g++,libc6-dev,make,python3,perl,procps,util-linux,binutils
host=$(rustc -vV | sed -n 's/^host: //p')

# What runs in each userland: C (PIE and not), C++, python3, perl, clocks, timers, files,
# rseq and the rest of the kernel state, threads, PIDs, a process tree, a full disk.
tests=(
  programs::c_program_state_continues_pie programs::c_program_state_continues_non_pie
  programs::cxx_iostreams_and_exceptions programs::python3_loop programs::perl_loop
  programs::clocks_keep_advancing_through_the_vdso programs::own_sigalrm_handler_and_itimer
  programs::cpu_time_timers_keep_firing programs::kernel_state_survives_restart
  programs::hello_prints_dots_after_restart
  files::appending_log_and_line_reader_continue_in_place files::redirected_stdout_continues_in_the_same_file
  files::unlinked_temporary_file_is_restored_with_its_contents files::proc_files_open_at_an_offset_read_on_after_restart
  threads::pthreads_go_on_with_their_ids_names_locals_and_locks threads::posix_timers_keep_firing_at_the_right_thread
  threads::python_threads_and_a_queue
  identity::pid_tid_and_proc_self_are_the_same_after_restart
  trees::a_shell_pipeline_continues trees::pages_a_child_shares_with_its_parent_are_stored_once
  bad_input::disk_full_keeps_the_previous_image
)

if [ "$(id -u)" != 0 ]; then
  echo "userlands: needs root (debootstrap, chroot and mounts)" >&2
  exit 1
fi
for tool in debootstrap unshare chroot; do
  command -v "$tool" >/dev/null || { echo "userlands: $tool is not installed (apt-get install debootstrap util-linux)" >&2; exit 1; }
done

make --no-print-directory all
# The test binaries, linked statically for any glibc; the one each test name needs.
echo "userlands: building the test binaries (static)"
declare -A binary
while read -r exe; do
  name=$(basename "$exe"); binary[${name%-*}]=$exe
done < <(RUSTFLAGS="-C target-feature=+crt-static" cargo test --release --locked -p ckpt-tests --no-run \
           --target "$host" --message-format=json 2>/dev/null |
         python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')

mkdir -p "$dir"
echo "userlands: kept in $dir"
failed=()
logs=()
for suite in $suites; do
  root=$dir/$suite
  if [ ! -e "$root/.ckpt-complete" ]; then
    echo "userlands: making $suite with debootstrap (once; a few minutes)"
    rm -rf "$root.new"
    if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root.new" "$mirror" > "$dir/$suite.log" 2>&1 &&
       ! { rm -rf "$root.new"; debootstrap --variant=minbase --include="$packages" "$suite" "$root.new" "$mirror" >> "$dir/$suite.log" 2>&1; }; then
      echo "userlands: debootstrap $suite failed; see $dir/$suite.log" >&2
      failed+=("$suite (debootstrap)")
      continue
    fi
    touch "$root.new/.ckpt-complete"
    rm -rf "$root" && mv "$root.new" "$root"
  fi
  glibc=$(chroot "$root" ldd --version 2>/dev/null | head -1 | grep -o '[0-9.]*$' || true)
  echo "userlands: $suite (glibc $glibc): ${#tests[@]} tests"
  # One command per test binary, with the names of its tests.
  runs=""
  for bin in $(printf '%s\n' "${tests[@]}" | cut -d: -f1 | sort -u); do
    names=$(printf '%s\n' "${tests[@]}" | sed -n "s/^$bin:://p" | tr '\n' ' ')
    runs+="${binary[$bin]:?no test binary $bin} --test-threads 2 --exact $names || st=1; "
  done
  logs+=("$dir/$suite.test.log")
  work=/dev/shm/ckpt-userland-$suite
  rm -rf "$work" && mkdir -p "$work"
  # The output goes through a pipe: the programs under test must not inherit a file of
  # this side (a log, say) that the userland cannot see.
  if ! unshare --mount --propagation private -- bash -c '
      set -e
      root=$1 repo=$2 work=$3 suite=$4 runs=$5
      # The userland root is a mount point of its own, as a real system'"'"'s is (myrestart and
      # unshare change its propagation).
      mount --bind "$root" "$root"
      mount -t proc proc "$root/proc"
      mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
      mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
      mount -t tmpfs tmpfs "$root/tmp"
      mkdir -p "$root$repo"
      mount --bind "$repo" "$root$repo"
      exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        CKPT_TEST_BIN="$repo/target/userlands/$suite/bin" CKPT_TEST_DIR="$work" \
        bash -c "cd $repo/tests && st=0; $runs exit \$st"
    ' userland "$root" "$repo" "$work" "$suite" "$runs" 2>&1 | tee "$dir/$suite.test.log"; then
    failed+=("$suite")
  fi
  rm -rf "$work"
done
# One closing line for all: the libtest summaries of every run added up.
cat "${logs[@]}" 2>/dev/null | sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' |
  awk '{p += $1; f += $2} END {printf "userlands: %d passed, %d failed\n", p, f}'
if [ ${#failed[@]} -gt 0 ]; then
  echo "userlands: FAILED in: ${failed[*]}" >&2
  exit 1
fi
echo "userlands: all passed in: $suites"
