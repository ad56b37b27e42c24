#!/bin/sh
# tests/cuda/run.sh -- the GPU checks of the cuda backend, split in two so that
# the device machine builds nothing:
#
#   sh tests/cuda/run.sh stage BUILD_DIR
#       here (nvcc, no GPU), after `make llmux-worker tests/tools/mkmodel
#       tests/kernels/test_cuda_ops tests/unit/test_model_cuda
#       tests/unit/test_encoder_cuda tests/unit/test_sensevoice_cuda` in a
#       build dir configured --with-cuda: copies those binaries and the shared
#       libraries the device image lacks (jansson, utf8proc, libevent,
#       libsndfile, libsoxr and theirs; see ldd) into BUILD_DIR/carry, a few
#       MB, to be carried to the device.
#   sh tests/cuda/run.sh run CARRY_DIR [OUT_DIR]
#       on the GPU machine, from the repository root: test_cuda_ops (every cuda
#       op against its cpu twin), test_model_cuda (the model goldens on cuda),
#       test_encoder_cuda (the encoder goldens on cuda), test_sensevoice_cuda
#       (the SenseVoice goldens on cuda, then with SV_BENCH=1, the default, a
#       timing of a SenseVoiceSmall-sized random model on 10 s clips at
#       batch 1 and 32; SV_BENCH=0 skips it), compute-sanitizer
#       memcheck and racecheck on test_cuda_ops, memcheck on test_encoder_cuda, and one chat
#       greedy request to llmux-worker --device cuda on a tiny Qwen3 (and on cpu,
#       to compare the text); logs in OUT_DIR
#       (default CARRY_DIR/out), a table last. Exit 0 when all passed, 77 with
#       no GPU visible.
set -u

stage() {
    B=$1
    C=$B/carry
    rm -rf "$C" && mkdir -p "$C/lib" "$C/tests/tools" || exit 2
    for f in llmux-worker tests/tools/mkmodel tests/kernels/test_cuda_ops \
             tests/unit/test_model_cuda tests/unit/test_encoder_cuda \
             tests/unit/test_sensevoice_cuda; do
        [ -x "$B/$f" ] || { echo "missing $B/$f: build it first" >&2; exit 2; }
    done
    cp "$B/llmux-worker" "$B/tests/kernels/test_cuda_ops" "$B/tests/unit/test_model_cuda" \
        "$B/tests/unit/test_encoder_cuda" "$B/tests/unit/test_sensevoice_cuda" "$C/"
    cp "$B/tests/tools/mkmodel" "$C/tests/tools/"
    for lib in libjansson.so libutf8proc.so libevent-2.1.so libevent_pthreads-2.1.so \
               libsndfile.so libsoxr.so libFLAC.so libmp3lame.so libmpg123.so libogg.so \
               libopus.so libvorbis.so libvorbisenc.so libgomp.so; do
        ldd "$B/llmux-worker" "$B/tests/unit/test_model_cuda" "$B/tests/unit/test_sensevoice_cuda" |
            awk -v l="$lib" \
            'index($1, l) == 1 { print $3 }' | sort -u | while read -r p; do cp -L "$p" "$C/lib/"; done
    done
    du -sh "$C"
}

run() {
    C=$(cd "$1" && pwd)
    OUT=${2:-$C/out}
    SRC=$(pwd)
    mkdir -p "$OUT"
    export LD_LIBRARY_PATH="$C/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    CUDA=${CUDA_HOME:-/usr/local/cuda}
    gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
    echo "== device: ${gpu:-none}"

    "$C/test_cuda_ops" >"$OUT/cuda_ops.tap" 2>&1
    ops_rc=$?
    if grep -q '^1\.\.0 # SKIP' "$OUT/cuda_ops.tap"; then
        echo "no CUDA device visible: nothing checked"; exit 77
    fi
    LLMUX_SRCDIR=$SRC LLMUX_BUILDDIR=$C "$C/test_model_cuda" >"$OUT/model_cuda.tap" 2>&1
    model_rc=$?
    LLMUX_SRCDIR=$SRC LLMUX_BUILDDIR=$C "$C/test_encoder_cuda" >"$OUT/encoder_cuda.tap" 2>&1
    enc_rc=$?
    # the SenseVoice goldens on cuda, and a timing of SenseVoiceSmall's sizes
    # (512 wide, 4 heads, 2048 units, 50+20 blocks, kernel 11, vocab 25055)
    SVM=
    if [ "${SV_BENCH:-1}" = 1 ]; then
        SVM=$(mktemp -d)/svsmall
        t0=$(date +%s)
        "$C/tests/tools/mkmodel" --out "$SVM" --arch sensevoice --hidden 512 --heads 4 \
            --intermediate 2048 --layers 50 --tp-layers 20 --kernel-size 11 --seed 8 \
            >"$OUT/mkmodel_sv.log" 2>&1 || SVM=
        echo "== mkmodel SenseVoiceSmall-sized: $(( $(date +%s) - t0 )) s ${SVM:-FAILED}"
    fi
    LLMUX_SRCDIR=$SRC LLMUX_BUILDDIR=$C LLMUX_SV_BENCH=$SVM "$C/test_sensevoice_cuda" \
        >"$OUT/sensevoice_cuda.tap" 2>&1
    sv_rc=$?
    [ -n "$SVM" ] && rm -rf "$(dirname "$SVM")"

    # one chat request (greedy) through llmux-worker on cuda, and on cpu to compare
    M=$(mktemp -d)
    "$C/tests/tools/mkmodel" --out "$M/tiny" $(cat "$SRC/examples/models/qwen3-tiny.mkmodel") \
        --tokenizer "$SRC/examples/models/tokenizers/qwen3" >/dev/null 2>&1
    for dev in cuda cpu; do
        "$C/llmux-worker" --model "$M/tiny" --device $dev --listen 127.0.0.1:18093 \
            --served-name tiny --kv-cache-memory 64m --max-model-len 1024 >"$OUT/worker_$dev.log" 2>&1 &
        wpid=$!
        i=0
        while [ $i -lt 100 ] && ! grep -q listening "$OUT/worker_$dev.log"; do sleep 0.1; i=$((i + 1)); done
        python3 - >"$OUT/chat_$dev.json" 2>&1 <<'EOF'
import json, urllib.request
req = urllib.request.Request("http://127.0.0.1:18093/v1/chat/completions",
    data=json.dumps({"model": "tiny", "max_tokens": 16, "temperature": 0,
                     "messages": [{"role": "user", "content": "hi"}]}).encode(),
    headers={"content-type": "application/json"})
print(urllib.request.urlopen(req, timeout=30).read().decode())
EOF
        kill "$wpid" 2>/dev/null
        wait "$wpid" 2>/dev/null
    done
    rm -rf "$M"
    ntok=$(grep -Eo '"completion_tokens": *[0-9]+' "$OUT/chat_cuda.json" | grep -Eo '[0-9]+$')
    content() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$1" 2>/dev/null; }
    same=differs
    [ -n "$(content "$OUT/chat_cuda.json")" ] &&
        [ "$(content "$OUT/chat_cuda.json")" = "$(content "$OUT/chat_cpu.json")" ] && same="same as cpu"
    if grep -q '"choices"' "$OUT/chat_cuda.json" && [ "${ntok:-0}" -gt 0 ]; then
        chat="ok ($ntok tokens, text $same)"
    else
        chat="FAIL (see chat_cuda.json, worker_cuda.log)"
    fi

    SAN=$(command -v compute-sanitizer || ls "$CUDA"/compute-sanitizer/compute-sanitizer 2>/dev/null)
    san() {     # tool options binary log -> "N errors (rc)" or "not run"
        if [ -z "$SAN" ]; then echo "not run (no compute-sanitizer)"; return; fi
        LLMUX_SRCDIR=$SRC LLMUX_BUILDDIR=$C timeout "${SAN_TIMEOUT:-200}" "$SAN" --tool "$1" \
            --error-exitcode 9 ${2:-} "$3" >"$OUT/$4.out" 2>&1
        rc=$?
        [ $rc -eq 124 ] && { echo "timed out"; return; }
        s=$(grep -Eo '(ERROR SUMMARY: |\()[0-9]+ errors?' "$OUT/$4.out" | tail -1 |
            sed -E 's/^(ERROR SUMMARY: |\()//')
        echo "${s:-?} (rc $rc)"
    }
    memcheck=$(san memcheck "--leak-check full" "$C/test_cuda_ops" memcheck)
    racecheck=$(SAN_TIMEOUT=${RACE_TIMEOUT:-150} san racecheck "" "$C/test_cuda_ops" racecheck)
    enc_memcheck=$(SAN_TIMEOUT=${ENC_SAN_TIMEOUT:-120} san memcheck "" "$C/test_encoder_cuda" \
        memcheck_encoder)

    count() { echo "$(grep -c '^ok' "$1")/$(sed -n 's/^1\.\.//p' "$1")"; }
    {
        echo "== failures"
        grep -A3 '^not ok' "$OUT/cuda_ops.tap" "$OUT/model_cuda.tap" "$OUT/encoder_cuda.tap" \
            "$OUT/sensevoice_cuda.tap" | head -40
        echo "== model goldens on cuda"
        grep -E 'max err|compared|plan' "$OUT/model_cuda.tap"
        echo "== encoder goldens on cuda"
        grep -E '^# .*worst' "$OUT/encoder_cuda.tap"
        echo "== sensevoice goldens on cuda, bench"
        grep -E '^# .*(worst|bench)' "$OUT/sensevoice_cuda.tap"
        echo "== results ($gpu)"
        printf '%-18s %s\n' test_cuda_ops "$(count "$OUT/cuda_ops.tap") ok (rc $ops_rc)"
        printf '%-18s %s\n' test_model_cuda "$(count "$OUT/model_cuda.tap") ok (rc $model_rc)"
        printf '%-18s %s\n' test_encoder_cuda "$(count "$OUT/encoder_cuda.tap") ok (rc $enc_rc)"
        printf '%-18s %s\n' test_sensevoice_cuda "$(count "$OUT/sensevoice_cuda.tap") ok (rc $sv_rc)"
        printf '%-18s %s\n' "worker chat" "$chat"
        printf '%-18s %s\n' memcheck "$memcheck"
        printf '%-18s %s\n' racecheck "$racecheck"
        printf '%-18s %s\n' "memcheck encoder" "$enc_memcheck"
    } | tee "$OUT/summary.txt"
    [ $ops_rc -eq 0 ] && [ $model_rc -eq 0 ] && [ $enc_rc -eq 0 ] && [ $sv_rc -eq 0 ] && case $chat in ok*) true ;; *) false ;; esac
}

case ${1:-} in
stage) [ $# -eq 2 ] || { echo "usage: $0 stage BUILD_DIR" >&2; exit 2; }; stage "$2" ;;
run) [ $# -ge 2 ] || { echo "usage: $0 run CARRY_DIR [OUT_DIR]" >&2; exit 2; }; run "$2" "${3:-}" ;;
*) sed -n '2,27p' "$0" >&2; exit 2 ;;
esac
