#!/bin/sh
# tests/run.sh -- the one command that builds llmux and runs every test:
#   sh tests/run.sh            (as root on a fresh Debian 12 machine)
# 1. installs dependencies (tests/deps.sh; LLMUX_SKIP_DEPS=1 skips it),
# 2. builds in build/ with -Werror and runs `make check` (unit, kernel and
#    integration tests through automake's TAP driver),
# 3. builds again in build-asan/ with AddressSanitizer + UBSan and runs the
#    same tests (LLMUX_SKIP_ASAN=1 skips it),
# then prints each suite's failures and one last line "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
SRC=$(pwd)
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if [ "${LLMUX_SKIP_DEPS:-0}" != 1 ]; then
    sh tests/deps.sh || { echo "deps failed"; echo "0 passed, 1 failed"; exit 1; }
fi
PY=python3
[ -x "$SRC/.venv/bin/python" ] && PY="$SRC/.venv/bin/python"

status=0
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    autoreconf -fi >/dev/null 2>&1 || { autoreconf -fi; echo "0 passed, 1 failed"; exit 1; }
fi

# build_and_check DIR CONFIGURE-ARGS...
build_and_check() {
    dir=$1; shift
    mkdir -p "$dir"
    ( cd "$dir" &&
      { [ -f Makefile ] || "$SRC/configure" "$@" >configure.out 2>&1 || { cat configure.out; exit 1; }; } &&
      make -j"$JOBS" >make.out 2>&1 || { tail -50 make.out; exit 1; }
      make -j"$JOBS" -k check PYTHON="$PY" >check.out 2>&1
      exit 0 ) || { echo "BUILD FAILED in $dir"; status=1; return 1; }
}

echo "== build and test (build/)"
build_and_check build --enable-werror
if [ "${LLMUX_SKIP_ASAN:-0}" != 1 ]; then
    echo "== build and test with AddressSanitizer + UBSan (build-asan/)"
    # Reports of every instrumented process (llmux, fake-upstream, unit
    # tests) land in files, so one from a child a test did not watch still
    # fails the run.
    mkdir -p build-asan
    rm -f build-asan/sanitizer.*
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:log_path=$SRC/build-asan/sanitizer} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:log_path=$SRC/build-asan/sanitizer} \
        build_and_check build-asan --enable-werror --enable-sanitizers --without-cuda
fi

# Summary over every TAP result the runs left.
pass=0; fail=0; skip=0
for dir in build build-asan; do
    [ -d "$dir" ] || continue
    for trs in $(find "$dir/tests" -name '*.trs' 2>/dev/null | sort); do
        p=$(grep -c '^:test-result: PASS' "$trs"); x=$(grep -c '^:test-result: XFAIL' "$trs")
        f=$(grep -c -E '^:test-result: (FAIL|ERROR|XPASS)' "$trs")
        s=$(grep -c '^:test-result: SKIP' "$trs")
        pass=$((pass + p + x)); fail=$((fail + f)); skip=$((skip + s))
        log=${trs%.trs}.log
        if [ "$f" -gt 0 ]; then
            echo "---- FAILED: $log"
            grep -E '^(not ok|#)' "$log" | head -40
        fi
        printf '%-60s %4d pass %3d fail %3d skip\n' "${trs%.trs}" $((p + x)) "$f" "$s"
    done
done
for rep in build-asan/sanitizer.*; do
    [ -f "$rep" ] || continue
    echo "---- SANITIZER REPORT: $rep"
    head -60 "$rep"
    fail=$((fail + 1))
done
[ $fail -gt 0 ] && status=1
[ $pass -eq 0 ] && [ $fail -eq 0 ] && { echo "no test ran"; status=1; fail=1; }
echo "$pass passed, $fail failed, $skip skipped"
exit $status
