#!/usr/bin/env bash
# tests/bench/llm_cuda.sh -- the chat model on the cuda backend beside its
# rooflines and Hugging Face transformers, on the device machine, in one run:
#
#   bash tests/bench/llm_cuda.sh stage BUILD_DIR
#       here (nvcc, no GPU), after `make tests/bench/bench_llm
#       tests/bench/bench_encoder tests/tools/mkmodel` in a build dir
#       configured --with-cuda: copies them, the shared libraries the device
#       image lacks and the XLM-R tokenizer files (for encoders.sh) into
#       BUILD_DIR/carry, to be carried.
#   bash tests/bench/llm_cuda.sh run CARRY_DIR [OUT_DIR]
#       on the GPU machine, from the repository root: measures the device copy
#       bandwidth (4 GiB D2D, bytes read + written) and the bf16 cuBLAS matmul
#       rate (torch, 8192^3), makes a Qwen3-8B-shaped random bf16 model
#       (examples/models/configs/Qwen3-8B/config.json shapes, ~16 GB; SHAPE=0.6b
#       or an 8B maker over MK_LIMIT s falls back to Qwen3-0.6B shapes) and
#       prints batch-1 decode tok/s, batch-$BATCH decode tok/s and prefill
#       tok/s for a $PROMPT-token prompt, beside the rooflines and beside
#       transformers bf16 (generate, batch 1 and $BATCH) on the same folder.
#       Every phase has its own time limit (a slow one is killed, the rest
#       goes on); lines go to OUT_DIR/llm_cuda.txt as they come.
# Targets (issue 6): batch-1 decode >= 80% of the bf16 roofline; prefill
# >= 60% of the matmul roofline. MISSED is printed beside a miss; exit 0
# all the same (a benchmark), 1 only when it cannot run.
set -u

stage() {
    B=$1
    C=$B/carry
    rm -rf "$C" && mkdir -p "$C/lib" "$C/xlmr-tokenizer" || exit 1
    for f in tests/bench/bench_llm tests/bench/bench_encoder tests/tools/mkmodel; do
        [ -x "$B/$f" ] || { echo "missing $B/$f: build it first" >&2; exit 1; }
        cp "$B/$f" "$C/"
    done
    for lib in libjansson.so libutf8proc.so libevent-2.1.so libevent_pthreads-2.1.so libgomp.so; do
        ldd "$C/bench_llm" "$C/bench_encoder" "$C/mkmodel" | awk -v l="$lib" \
            'index($1, l) == 1 { print $3 }' | sort -u | while read -r p; do cp -L "$p" "$C/lib/"; done
    done
    T=${XLMR_TOKENIZER:-$(dirname "$0")/../../../shared/models/xlmr-tokenizer}
    for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do
        [ -f "$T/$f" ] && cp "$T/$f" "$C/xlmr-tokenizer/"
    done
    du -sh "$C"
}

run() {
    C=$(cd "$1" && pwd)
    OUT=${2:-$C/out}
    mkdir -p "$OUT"
    export LD_LIBRARY_PATH="$C/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PYTHONUNBUFFERED=1
    LOG=$OUT/llm_cuda.txt
    say() { echo "$*" | tee -a "$LOG"; }
    BATCH=${BATCH:-32}
    PROMPT=${PROMPT:-2048}
    STEPS=${STEPS:-16}
    HF_STEPS=${HF_STEPS:-16}
    MK_LIMIT=${MK_LIMIT:-150}
    BENCH_LIMIT=${BENCH_LIMIT:-150}
    HF_LIMIT=${HF_LIMIT:-150}
    MD=${MODEL_DIR:-/tmp/llmux-bench-qwen3}
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
    say "# llm_cuda.sh $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null), gpu: ${gpu:-none}"
    say "# disk: $(df -h /tmp | awk 'NR == 2 { print $4 " free" }')"

    # the model maker (CPU, disk) runs while the GPU ceilings are measured
    shape=${SHAPE:-8b}
    t0=$(date +%s)
    if [ "$shape" = 8b ]; then
        timeout "$MK_LIMIT" "$C/mkmodel" --out "$MD" --arch qwen3 --dtype bf16 --hidden 4096 \
            --layers 36 --heads 32 --kv-heads 8 --head-dim 128 --intermediate 12288 --tie 0 \
            --vocab 151936 --max-pos 40960 --rope-theta 1000000 --seed 1 >"$OUT/mkmodel.log" 2>&1 &
        mkpid=$!
    fi
    timeout 90 python3 - >"$OUT/ceilings.txt" 2>&1 <<'PY'
import torch
d = torch.device("cuda")
n = 1 << 30                                  # 4 GiB of f32
a = torch.randn(n, device=d); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
torch.cuda.synchronize()
ts = []
for _ in range(10):
    s, e = torch.cuda.Event(True), torch.cuda.Event(True)
    s.record(); b.copy_(a); e.record(); e.synchronize(); ts.append(s.elapsed_time(e) / 1e3)
ts.sort(); t = ts[len(ts) // 2]
print("copy_GBps %.1f" % (2 * 4 * n / t / 1e9))
del a, b
m = 8192
x = torch.randn(m, m, device=d, dtype=torch.bfloat16); w = torch.randn(m, m, device=d, dtype=torch.bfloat16)
for _ in range(5): y = x @ w
torch.cuda.synchronize()
ts = []
for _ in range(20):
    s, e = torch.cuda.Event(True), torch.cuda.Event(True)
    s.record(); y = x @ w; e.record(); e.synchronize(); ts.append(s.elapsed_time(e) / 1e3)
ts.sort(); t = ts[len(ts) // 2]
print("gemm_bf16_TFLOPs %.1f" % (2 * m ** 3 / t / 1e12))
print("torch %s" % torch.__version__)
PY
    cat "$OUT/ceilings.txt" >>"$LOG"
    BW=$(awk '$1 == "copy_GBps" { print $2 }' "$OUT/ceilings.txt")
    GF=$(awk '$1 == "gemm_bf16_TFLOPs" { print $2 }' "$OUT/ceilings.txt")
    if [ "$shape" = 8b ]; then
        wait "$mkpid"; mkrc=$?
        say "# mkmodel Qwen3-8B shapes: rc $mkrc in $(( $(date +%s) - t0 )) s, $(du -sh "$MD" 2>/dev/null | cut -f1)"
        [ $mkrc -eq 0 ] || { shape=0.6b; rm -rf "$MD"; say "# the 8B model was not made in time: Qwen3-0.6B shapes instead"; }
    fi
    if [ "$shape" = 8b ]; then
        H=4096; L=36; NH=32; KVH=8; HD=128; I=12288
    else
        H=1024; L=28; NH=16; KVH=8; HD=128; I=3072
        "$C/mkmodel" --out "$MD" --arch qwen3 --dtype bf16 --hidden 1024 --layers 28 --heads 16 \
            --kv-heads 8 --head-dim 128 --intermediate 3072 --tie 1 --vocab 151936 \
            --max-pos 40960 --seed 1 >"$OUT/mkmodel.log" 2>&1 || { say "mkmodel failed"; return 1; }
    fi
    say "# model: Qwen3-$shape-shaped random bf16 (hidden $H, $L layers, $NH/$KVH heads, head_dim $HD, intermediate $I, vocab 151936)"

    # llmux on cuda
    timeout "$BENCH_LIMIT" "$C/bench_llm" --model "$MD" --device cuda --batch "$BATCH" \
        --prompt "$PROMPT" --chunk "$PROMPT" --steps "$STEPS" --batch-prompt 16 \
        >"$OUT/bench_llm.txt" 2>"$OUT/bench_llm.err"
    say "# bench_llm rc $? (124: killed at ${BENCH_LIMIT} s)"
    sed 's/^/llmux /' "$OUT/bench_llm.txt" >>"$LOG"

    # transformers bf16 on the same folder
    HF_BATCH=$BATCH HF_PROMPT=$PROMPT HF_STEPS=$HF_STEPS timeout "$HF_LIMIT" python3 - "$MD" \
        >"$OUT/hf.txt" 2>"$OUT/hf.err" <<'PY'
import os, sys, time, torch, transformers
from transformers import AutoModelForCausalLM
d = sys.argv[1]; B = int(os.environ["HF_BATCH"]); P = int(os.environ["HF_PROMPT"]); S = int(os.environ["HF_STEPS"])
t0 = time.time()
try:
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda")
except TypeError:
    m = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.bfloat16, device_map="cuda")
m.eval()
print("hf_load_s %.1f" % (time.time() - t0), flush=True)
print("transformers %s" % transformers.__version__, flush=True)
V = m.config.vocab_size
g = torch.Generator().manual_seed(0)
def gen(b, n):
    ids = torch.randint(5, V, (b, 16), generator=g).cuda()
    torch.cuda.synchronize(); t = time.time()
    with torch.inference_mode():
        m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                   do_sample=False, pad_token_id=0)
    torch.cuda.synchronize(); return time.time() - t
gen(1, 2)
print("hf_decode_tok_s_batch1 %.2f" % (S / gen(1, S)), flush=True)
with torch.inference_mode():
    ids = torch.randint(5, V, (1, P), generator=g).cuda()
    m(ids, logits_to_keep=1); torch.cuda.synchronize(); t = time.time()
    m(ids, logits_to_keep=1); torch.cuda.synchronize()
print("hf_prefill_tok_s %.2f" % (P / (time.time() - t)), flush=True)
gen(B, 2)
print("hf_decode_tok_s_batch%d %.2f" % (B, B * S / gen(B, S)), flush=True)
PY
    say "# transformers rc $? (124: killed at ${HF_LIMIT} s)"
    sed 's/^/hf /' "$OUT/hf.txt" >>"$LOG"
    [ "${KEEP_MODEL:-0}" = 1 ] || rm -rf "$MD"

    # the table
    get() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
    WB=$(get "$OUT/bench_llm.txt" weight_bytes_per_step)
    PF=$(get "$OUT/bench_llm.txt" prefill_tok_s)
    D1=$(get "$OUT/bench_llm.txt" decode_tok_s_batch1)
    DB=$(get "$OUT/bench_llm.txt" "decode_tok_s_batch$BATCH")
    HPF=$(get "$OUT/hf.txt" hf_prefill_tok_s)
    HD1=$(get "$OUT/hf.txt" hf_decode_tok_s_batch1)
    HDB=$(get "$OUT/hf.txt" "hf_decode_tok_s_batch$BATCH")
    awk -v bw="${BW:-0}" -v gf="${GF:-0}" -v wb="${WB:-0}" -v pf="${PF:-}" -v d1="${D1:-}" \
        -v db="${DB:-}" -v hpf="${HPF:-}" -v hd1="${HD1:-}" -v hdb="${HDB:-}" -v B="$BATCH" \
        -v P="$PROMPT" -v H=$H -v L=$L -v NH=$NH -v KVH=$KVH -v HD=$HD -v I=$I 'BEGIN {
        # decode rooflines: weight bytes per step (bf16 file; f32 as the cuda backend holds
        # them now) / copy bandwidth; prefill: matmul flops per token / bf16 GEMM rate
        r16 = wb > 0 && bw > 0 ? bw * 1e9 / wb : 0; r32 = r16 / 2
        lin = L * (H * (NH + 2 * KVH) * HD + NH * HD * H + 3 * H * I)
        fpt = 2 * lin + 2 * L * NH * HD * P      # + causal attention, mean context P/2
        rpf = gf > 0 ? gf * 1e12 / fpt : 0
        printf "\n%-26s %10s %12s %14s %8s %s\n", "figure", "llmux", "transformers", "roofline", "% roof", "target"
        row("decode batch 1 tok/s", d1, hd1, r16, 80, "bf16 weights / copy bw")
        printf "%-26s %10s %12s %14.1f %8s %s\n", "  (f32 weights as read now)", "", "", r32, pct(d1, r32), ""
        row("decode batch " B " tok/s", db, hdb, B * r16, 0, "batch x bf16 decode roofline")
        row("prefill " P " tok/s", pf, hpf, rpf, 60, "bf16 GEMM " gf " TFLOP/s")
        printf "(copy bandwidth %s GB/s read+written; weights read per step %.2f GB bf16, %.2f GB f32;\n", bw, wb / 1e9, 2 * wb / 1e9
        printf " prefill %.1f GFLOP/token)\n", fpt / 1e9
    }
    function pct(v, r) { return v != "" && r > 0 ? sprintf("%.1f%%", 100 * v / r) : "-" }
    function row(name, v, h, r, tgt, note,   p, verdict) {
        p = pct(v, r)
        verdict = tgt == 0 ? "(no target)" : v == "" ? "not measured" : r <= 0 ? "no roofline" : \
                  100 * v / r >= tgt ? ">= " tgt "%: met" : ">= " tgt "%: MISSED"
        printf "%-26s %10s %12s %14.1f %8s %s [%s]\n", name, v == "" ? "-" : v, h == "" ? "-" : h, r, p, verdict, note
    }' | tee -a "$LOG"
}

case ${1:-} in
stage) [ $# -eq 2 ] || { echo "usage: $0 stage BUILD_DIR" >&2; exit 1; }; stage "$2" ;;
run) [ $# -ge 2 ] || { echo "usage: $0 run CARRY_DIR [OUT_DIR]" >&2; exit 1; }; run "$2" "${3:-}"; exit 0 ;;
*) sed -n '2,26p' "$0" >&2; exit 1 ;;
esac
