#!/usr/bin/env bash
# tests/bench/encoders.sh -- the XLM-RoBERTa encoder (issue 7) on a
# bge-m3-shaped random bf16 model (24 layers, hidden 1024, 16 heads,
# intermediate 4096, vocab 250002; mkmodel --arch xlmr-embed, CLS pooling,
# normalized) on the device machine: embeddings/s for 64-, 256- and
# 1024-token inputs at batch 1 and 64 with --device cuda, beside
# sentence-transformers fp16 on the same folder (token ids straight into its
# modules: tokenization is outside both), beside the bf16 matmul roofline
# (gemm_bf16_TFLOPs of OUT_DIR/ceilings.txt, written by llm_cuda.sh in the
# same run, / the encoder's FLOPs per input), and CPU batch-1 latency with 2
# threads. Binaries and the XLM-R tokenizer come from the carry folder that
# `bash tests/bench/llm_cuda.sh stage BUILD_DIR` makes.
#
#   bash tests/bench/encoders.sh cpu CARRY_DIR OUT_DIR   # makes the model if
#        missing, then the CPU figures (pinned to 2 cores; may run beside
#        llm_cuda.sh, which leaves those cores alone)
#   bash tests/bench/encoders.sh run CARRY_DIR OUT_DIR   # the GPU figures and
#        the table (waits for the cpu part's file when it is still running)
# Targets: >= 2x sentence-transformers fp16 at batch 64; >= 60% of the matmul
# roofline for 1024-token batches. MISSED beside a miss; exit 0 all the same.
set -u
C=$(cd "${2:?carry dir}" && pwd)
OUT=${3:?out dir}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$C/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1
EM=${ENC_MODEL:-/tmp/llmux-bench-bge-m3}
LENS=${LENS:-64,256,1024}
BATCHES=${BATCHES:-1,64}
LOG=$OUT/encoders.txt

make_model() {
    [ -f "$EM/model.safetensors" ] && return 0
    timeout 120 "$C/mkmodel" --out "$EM" --arch xlmr-embed --dtype bf16 --hidden 1024 \
        --layers 24 --heads 16 --intermediate 4096 --vocab 250002 --max-pos 8194 \
        --pooling cls --normalize 1 --seed 3 --tokenizer "$C/xlmr-tokenizer" >"$OUT/mkmodel_enc.log" 2>&1
}

cpu() {
    make_model || { echo "mkmodel failed" >"$OUT/enc_cpu.txt"; exit 0; }
    pin=
    n=$(nproc)
    [ "$n" -ge 4 ] && command -v taskset >/dev/null && pin="taskset -c $((n - 2)),$((n - 1))"
    timeout "${CPU_LIMIT:-240}" $pin "$C/bench_encoder" --model "$EM" --device cpu --threads 2 \
        --lens "$LENS" --batches 1 --reps 5 --seconds 8 >"$OUT/enc_cpu.part" 2>"$OUT/enc_cpu.err"
    echo "rc $? pin ${pin:-none}" >>"$OUT/enc_cpu.part"
    mv "$OUT/enc_cpu.part" "$OUT/enc_cpu.txt"
}

run() {
    echo "# encoders.sh $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null), gpu: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" | tee -a "$LOG"
    make_model || { echo "mkmodel failed" | tee -a "$LOG"; return; }
    timeout "${GPU_LIMIT:-100}" "$C/bench_encoder" --model "$EM" --device cuda --lens "$LENS" \
        --batches "$BATCHES" --reps 20 --seconds 3 >"$OUT/enc_cuda.txt" 2>"$OUT/enc_cuda.err"
    echo "# bench_encoder cuda rc $?" | tee -a "$LOG"
    LENS=$LENS BATCHES=$BATCHES timeout "${ST_LIMIT:-120}" python3 - "$EM" >"$OUT/enc_st.txt" \
        2>"$OUT/enc_st.err" <<'PY'
import os, sys, time, torch, sentence_transformers
from sentence_transformers import SentenceTransformer
d = sys.argv[1]
try:
    m = SentenceTransformer(d, device="cuda", model_kwargs={"torch_dtype": torch.float16})
except Exception:
    m = SentenceTransformer(d, device="cuda", model_kwargs={"dtype": torch.float16})
m.eval()
print("st_version %s dtype %s" % (sentence_transformers.__version__, next(m.parameters()).dtype), flush=True)
V = 250002
g = torch.Generator().manual_seed(0)
for L in map(int, os.environ["LENS"].split(",")):
    for B in map(int, os.environ["BATCHES"].split(",")):
        ids = torch.randint(5, V, (B, L), generator=g); ids[:, 0] = 0; ids[:, -1] = 2
        f = {"input_ids": ids.cuda(), "attention_mask": torch.ones(B, L, dtype=torch.long).cuda()}
        with torch.inference_mode():
            m(dict(f))["sentence_embedding"].float().cpu()
            n, t0 = 0, time.time()
            while n < 20 and time.time() - t0 < 3:
                m(dict(f))["sentence_embedding"].float().cpu(); n += 1
        ms = (time.time() - t0) * 1e3 / n
        print("st len %d batch %d ms %.3f emb_s %.2f reps %d" % (L, B, ms, B * 1e3 / ms, n), flush=True)
PY
    echo "# sentence-transformers rc $?" | tee -a "$LOG"
    i=0
    while [ ! -f "$OUT/enc_cpu.txt" ] && [ $i -lt "${CPU_WAIT:-60}" ]; do sleep 1; i=$((i + 1)); done
    cat "$OUT/enc_cuda.txt" "$OUT/enc_st.txt" "$OUT/enc_cpu.txt" "$OUT/enc_cpu.part" 2>/dev/null >>"$LOG"
    GF=$(awk '$1 == "gemm_bf16_TFLOPs" { print $2 }' "$OUT/ceilings.txt" 2>/dev/null)
    cat "$OUT/enc_cuda.txt" "$OUT/enc_st.txt" "$OUT/enc_cpu.txt" "$OUT/enc_cpu.part" 2>/dev/null |
    awk -v gf="${GF:-0}" -v lens="$LENS" -v batches="$BATCHES" '
    $1 == "enc" && $3 == "cuda" { cu[$5, $7] = $11 }
    $1 == "enc" && $3 == "cpu" { cpu[$5] = $9 }
    $1 == "st" { st[$3, $5] = $9 }
    END {
        H = 1024; NL = 24; I = 4096
        nl = split(lens, Ls, ","); nb = split(batches, Bs, ",")
        printf "\n%5s %5s %12s %12s %7s %12s %7s %12s  %s\n", "len", "batch", "llmux emb/s", "st fp16 emb/s", "x st", "roof emb/s", "% roof", "cpu b1 ms", "verdict"
        for (i = 1; i <= nl; i++) for (j = 1; j <= nb; j++) {
            L = Ls[i]; B = Bs[j]
            f = NL * (2 * L * (4 * H * H + 2 * H * I) + 4 * L * L * H)   # FLOPs per input
            roof = gf > 0 ? gf * 1e12 / f : 0
            v = cu[L, B]; s = st[L, B]
            x = v != "" && s > 0 ? sprintf("%.2f", v / s) : "-"
            p = v != "" && roof > 0 ? sprintf("%.1f%%", 100 * v / roof) : "-"
            verdict = ""
            if (B >= 64) verdict = x == "-" ? ">= 2x st: not measured" : (v / s >= 2 ? ">= 2x st: met" : ">= 2x st: MISSED")
            if (L >= 1024 && B >= 64) verdict = verdict "; " (p == "-" ? ">= 60% roof: not measured" : (100 * v / roof >= 60 ? ">= 60% roof: met" : ">= 60% roof: MISSED"))
            printf "%5d %5d %12s %12s %7s %12.1f %7s %12s  %s\n", L, B, v == "" ? "-" : v, s == "" ? "-" : s, x, roof, p, B == 1 && cpu[L] != "" ? cpu[L] : "", verdict
        }
        printf "(roofline: bf16 GEMM %s TFLOP/s / FLOPs per input; cpu: batch-1 latency, 2 threads)\n", gf
    }' | tee -a "$LOG"
}

case ${1:-} in
cpu) cpu ;;
run) run ;;
*) sed -n '2,22p' "$0" >&2; exit 1 ;;
esac
exit 0
