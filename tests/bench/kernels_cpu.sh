#!/bin/sh
# kernels_cpu.sh -- the cpu backend against the memory roofline: builds and
# runs tests/bench/kernels_cpu (see the comment at its top for what each
# figure means and which bandwidth is the decode roofline). Not a test: prints
# figures and MISSED beside a missed target, exits 0 (1 only when it cannot
# run). Never bench a sanitizer build. About 30-60 s; needs ~2.5 GB of memory.
#   LLMUX_BUILDDIR=build sh tests/bench/kernels_cpu.sh
set -e
BUILD=${LLMUX_BUILDDIR:-.}
if ! flock /tmp/llmux-make.lock make -C "$BUILD" -s tests/bench/kernels_cpu >/dev/null; then
    echo "kernels_cpu.sh: cannot build tests/bench/kernels_cpu in $BUILD" >&2
    exit 1
fi
if grep -q 'fsanitize' "$BUILD/Makefile" 2>/dev/null && grep -q '^SAN_CFLAGS = -f' "$BUILD/Makefile"; then
    echo "kernels_cpu.sh: $BUILD is a sanitizer build; figures would mean nothing" >&2
    exit 1
fi
echo "kernels_cpu: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
exec "$BUILD/tests/bench/kernels_cpu"
