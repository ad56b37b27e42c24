#!/bin/sh
# examples/run-demo.sh -- installs dependencies, builds llmux and runs the
# gateway in the foreground on examples/demo.conf (http://127.0.0.1:8000),
# with three stand-in backends. Ctrl-C stops everything.
#   sh examples/run-demo.sh          (as root on a fresh Debian 12 machine)
set -eu
cd "$(dirname "$0")/.."
sh tests/deps.sh
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure >/dev/null
make -j"$(nproc)" llmux tests/tools/fake-upstream >/dev/null
pids=""
cleanup() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT INT TERM
for port in 18081 18082 18083; do
    ./tests/tools/fake-upstream --listen 127.0.0.1:$port --name "backend-$port" \
        --chunks 12 --chunk-interval-ms 40 >/dev/null &
    pids="$pids $!"
done
echo "llmux demo on http://127.0.0.1:8000 -- try: sh examples/curl.sh"
./llmux -c ../examples/demo.conf
