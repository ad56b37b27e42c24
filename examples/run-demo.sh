#!/bin/sh
# examples/run-demo.sh -- installs dependencies, builds llmux and runs the
# gateway in the foreground on examples/demo.conf (http://127.0.0.1:8000) in
# front of real llmux-worker processes on the CPU. Ctrl-C stops everything.
#   sh examples/run-demo.sh          (as root on a fresh Debian 12 machine)
# The demo models are tiny random-weight Qwen3 models (real tokenizer and
# chat template, gibberish answers) made by tests/tools/mkmodel from the
# recipe in examples/models/qwen3-tiny.mkmodel, and two tiny random XLM-R
# encoders with the real XLM-R tokenizer: a bge-m3-shaped embedder (dense,
# sparse and ColBERT heads, CLS pooling, normalized, 8192 positions) and a
# bge-reranker-shaped cross-encoder: same seed, same bytes; random vectors
# and scores; and a tiny random SenseVoiceSmall speech model (the real
# frontend files and SentencePiece pieces; random transcripts).
set -eu
cd "$(dirname "$0")/.."
sh tests/deps.sh
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure >/dev/null
make -j"$(nproc)" llmux llmux-worker tests/tools/mkmodel >/dev/null

recipe=$(cat ../examples/models/qwen3-tiny.mkmodel)
mkdir -p demo-models
for seed in 1 2; do
    dir=demo-models/qwen3-tiny-s$seed
    [ -f "$dir/model.safetensors" ] ||
        # shellcheck disable=SC2086
        ./tests/tools/mkmodel --out "$dir" $recipe --seed $seed \
            --tokenizer ../examples/models/tokenizers/qwen3 >/dev/null
done

xlmr="--hidden 64 --layers 2 --heads 4 --intermediate 128 --dtype bf16 --max-pos 8194 --seed 3"
[ -f demo-models/bge-m3-tiny/model.safetensors ] ||
    # shellcheck disable=SC2086
    ./tests/tools/mkmodel --out demo-models/bge-m3-tiny --arch xlmr-embed $xlmr \
        --sparse 1 --colbert 64 --tokenizer ../examples/models/tokenizers/xlmr >/dev/null
[ -f demo-models/bge-reranker-tiny/model.safetensors ] ||
    # shellcheck disable=SC2086
    ./tests/tools/mkmodel --out demo-models/bge-reranker-tiny --arch xlmr-rerank $xlmr \
        --tokenizer ../examples/models/tokenizers/xlmr >/dev/null
[ -f demo-models/sensevoice-tiny/model.pt ] ||
    ./tests/tools/mkmodel --out demo-models/sensevoice-tiny --arch sensevoice --hidden 64 \
        --layers 2 --tp-layers 1 --heads 4 --intermediate 128 --seed 4 \
        --frontend ../examples/models/sensevoice >/dev/null

pids=""
cleanup() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT INT TERM
# two replicas of the chat model, one B model, an embedder, a reranker and
# a speech model
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
./llmux-worker --model demo-models/bge-m3-tiny --served-name bge-m3-tiny \
    --listen 127.0.0.1:18084 --device cpu >/dev/null 2>worker-18084.log &
pids="$pids $!"
./llmux-worker --model demo-models/bge-reranker-tiny --served-name bge-reranker-tiny \
    --listen 127.0.0.1:18085 --device cpu >/dev/null 2>worker-18085.log &
pids="$pids $!"
./llmux-worker --model demo-models/sensevoice-tiny --served-name sensevoice-tiny \
    --listen 127.0.0.1:18086 --device cpu >/dev/null 2>worker-18086.log &
pids="$pids $!"
for port in 18081 18082 18083 18084 18085 18086; do      # up once /health answers 200
    i=0
    until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
        i=$((i + 1)); [ $i -lt 300 ] || { echo "worker on $port did not start:"; cat worker-$port.log; exit 1; }
        sleep 0.1
    done
done
echo "llmux demo on http://127.0.0.1:8000 -- try: sh examples/curl.sh"
./llmux -c ../examples/demo.conf
