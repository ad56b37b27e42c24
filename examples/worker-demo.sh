#!/bin/sh
# worker-demo.sh -- make a tiny random Qwen3 model (tests/tools/mkmodel, the
# real Qwen3 tokenizer), start llmux-worker on it and ask it a few things
# with curl. Run from a build directory: sh ../examples/worker-demo.sh
set -e
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${LLMUX_BUILDDIR:-.}
DIR=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT INT TERM
"$B/tests/tools/mkmodel" --out "$DIR/model" --arch qwen3 --hidden 64 --layers 2 --heads 4 \
    --kv-heads 2 --head-dim 16 --intermediate 128 --dtype bf16 \
    --tokenizer "$SRC/examples/models/tokenizers/qwen3"
"$B/llmux-worker" --model "$DIR/model" --listen unix:"$DIR/w.sock" --served-name tiny \
    --kv-cache-memory 64m --max-model-len 1024 --reasoning-parser qwen3 >"$DIR/out" &
PID=$!
while ! grep -q listening "$DIR/out" 2>/dev/null; do sleep 0.1; done
U="curl -s --unix-socket $DIR/w.sock"
echo "== /v1/models";  $U localhost/v1/models; echo
echo "== chat";        $U localhost/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'; echo
echo "== stream";      $U -N localhost/v1/completions -H 'content-type: application/json' \
    -d '{"model":"tiny","prompt":"Once upon","max_tokens":8,"stream":true}'; echo
echo "== /tokenize";   $U localhost/tokenize -H 'content-type: application/json' \
    -d '{"messages":[{"role":"user","content":"hi"}]}'; echo
echo "== /load";       $U localhost/load; echo
