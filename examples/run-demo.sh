#!/bin/sh
# examples/run-demo.sh -- installs dependencies, builds llmux and runs the
# gateway in the foreground on examples/demo.conf (http://127.0.0.1:8000) in
# front of real llmux-worker processes on the CPU. Ctrl-C stops everything.
#   sh examples/run-demo.sh          (as root on a fresh Debian 12 machine)
# The demo models are tiny random-weight Qwen3 models (real tokenizer and
# chat template, gibberish answers) made by tests/tools/mkmodel from the
# recipe in examples/models/qwen3-tiny.mkmodel: same seed, same bytes.
set -eu
cd "$(dirname "$0")/.."
sh tests/deps.sh
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure >/dev/null
make -j"$(nproc)" llmux llmux-worker tests/tools/mkmodel tests/tools/fake-upstream >/dev/null

recipe=$(cat ../examples/models/qwen3-tiny.mkmodel)
mkdir -p demo-models
for seed in 1 2; do
    dir=demo-models/qwen3-tiny-s$seed
    [ -f "$dir/model.safetensors" ] ||
        # shellcheck disable=SC2086
        ./tests/tools/mkmodel --out "$dir" $recipe --seed $seed \
            --tokenizer ../examples/models/tokenizers/qwen3 >/dev/null
done

pids=""
cleanup() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT INT TERM
# two replicas of the chat model, one B model, one stand-in for embeddings
# (the embedding worker is the next issue)
for port in 18081 18082; do
    ./llmux-worker --model demo-models/qwen3-tiny-s1 --served-name qwen3-tiny \
        --listen 127.0.0.1:$port --device cpu --max-model-len 2048 \
        --kv-cache-memory 256m --reasoning-parser qwen3 --tool-call-parser hermes \
        >/dev/null 2>worker-$port.log &
    pids="$pids $!"
done
./llmux-worker --model demo-models/qwen3-tiny-s2 --served-name qwen3-tiny-b \
    --listen 127.0.0.1:18083 --device cpu --max-model-len 2048 --kv-cache-memory 256m \
    >/dev/null 2>worker-18083.log &
pids="$pids $!"
./tests/tools/fake-upstream --listen 127.0.0.1:18084 --name embed-standin >/dev/null &
pids="$pids $!"
for port in 18081 18082 18083; do      # up once /health answers 200
    i=0
    until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
        i=$((i + 1)); [ $i -lt 300 ] || { echo "worker on $port did not start:"; cat worker-$port.log; exit 1; }
        sleep 0.1
    done
done
echo "llmux demo on http://127.0.0.1:8000 -- try: sh examples/curl.sh"
./llmux -c ../examples/demo.conf
