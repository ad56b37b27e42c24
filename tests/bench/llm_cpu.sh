#!/usr/bin/env bash
# tests/bench/llm_cpu.sh -- CPU throughput of the chat model code on a
# Qwen3-0.6B-shaped random bf16 model (the shapes of
# examples/models/configs/Qwen3-0.6B/config.json: hidden 1024, 28 layers,
# 16 heads, 8 kv heads, head_dim 128, intermediate 3072, tied, vocab 151936),
# made by tests/tools/mkmodel into $MODEL_DIR. For each thread count in
# $THREADS it prints prefill tokens/s ($PROMPT-token prompt), decode tokens/s
# at batch 1 and $BATCH, and beside them the roofline measured in the same
# run: weight bytes read per decode step / read bandwidth of a 1 GiB pass with
# the same thread count. Target: batch-1 decode >= 60% of that roofline with
# 2 threads; a miss prints MISSED. Exit 0 all the same (a benchmark); 1 only
# when it cannot run.
#
# Environment: LLMUX_BUILDDIR (build folder with tests/tools/mkmodel and
# tests/bench/bench_llm; default build), MODEL_DIR (/tmp/llmux-bench-qwen3-0.6b),
# THREADS ("1 2"), BATCH (8), PROMPT (512), STEPS (16 decode steps).
set -u
B=${LLMUX_BUILDDIR:-build}
MODEL_DIR=${MODEL_DIR:-/tmp/llmux-bench-qwen3-0.6b}
THREADS=${THREADS:-"1 2"}
BATCH=${BATCH:-8}
PROMPT=${PROMPT:-512}
STEPS=${STEPS:-16}
MK=$B/tests/tools/mkmodel
BENCH=$B/tests/bench/bench_llm
for p in "$MK" "$BENCH"; do
    [ -x "$p" ] || { echo "llm_cpu.sh: $p not built (make $p in $B)"; exit 1; }
done
if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
    "$MK" --out "$MODEL_DIR" --arch qwen3 --dtype bf16 --hidden 1024 --layers 28 --heads 16 \
        --kv-heads 8 --head-dim 128 --intermediate 3072 --tie 1 --vocab 151936 \
        --max-pos 40960 --seed 1 || exit 1
fi
echo "# model $MODEL_DIR ($(du -h "$MODEL_DIR/model.safetensors" | cut -f1)), prompt $PROMPT, $STEPS decode steps"
status=0
for t in $THREADS; do
    out=$("$BENCH" --model "$MODEL_DIR" --threads "$t" --batch "$BATCH" --prompt "$PROMPT" \
          --steps "$STEPS") || { echo "llm_cpu.sh: bench_llm failed"; exit 1; }
    echo "$out" | sed "s/^/threads=$t /"
    pct=$(echo "$out" | awk '$1 == "decode_pct_roofline_batch1" { print $2 }')
    if [ "$t" = 2 ]; then
        if awk -v p="$pct" 'BEGIN { exit !(p >= 60) }'; then
            echo "threads=2 batch-1 decode at $pct% of roofline: target >= 60% met"
        else
            echo "threads=2 batch-1 decode at $pct% of roofline: MISSED (target >= 60%)"
        fi
    fi
done
exit $status
