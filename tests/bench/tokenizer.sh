#!/bin/sh
# tests/bench/tokenizer.sh -- tokenizer speed on one core: worker/tokenizer
# (tests/bench/bench_tokenizer) beside the Python `tokenizers` library on the
# same mixed corpus and the same 4 KiB chunks, plus a check that both give
# the same ids. Not a timed test; prints the numbers.
#   tests/bench/tokenizer.sh [BUILD_DIR] [CORPUS_MB]
# BUILD_DIR defaults to ./build (configured tree); PYTHON to /work/gvenv/bin/python
# or python3. Without an importable `tokenizers` the peer is skipped with a note.
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$SRC/build}
MB=${2:-4}
TOKDIR=$SRC/examples/models/tokenizers/qwen3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ -z "${PYTHON:-}" ]; then
    if [ -x /work/gvenv/bin/python ]; then PYTHON=/work/gvenv/bin/python; else PYTHON=python3; fi
fi
# the shared make lock of this tree, when there is one
if command -v flock >/dev/null 2>&1; then LOCK="flock /tmp/llmux-make.lock"; else LOCK=; fi
(cd "$BUILD" && $LOCK make -s tests/bench/bench_tokenizer >/dev/null)
BENCH=$BUILD/tests/bench/bench_tokenizer
"$BENCH" --write-corpus "$TMP/corpus.txt" "$MB"
echo "== llmux tokenizer (C, one thread)"
taskset -c 0 "$BENCH" "$TOKDIR" "$TMP/corpus.txt" 4096 "$TMP/ids_c.txt" 2>/dev/null ||
    "$BENCH" "$TOKDIR" "$TMP/corpus.txt" 4096 "$TMP/ids_c.txt"

echo "== Python tokenizers (same corpus, same chunks, one thread)"
if ! "$PYTHON" -c 'import tokenizers' 2>/dev/null; then
    echo "peer skipped: no importable tokenizers for $PYTHON"
    exit 0
fi
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$PYTHON" - "$TOKDIR/tokenizer.json" \
    "$TMP/corpus.txt" "$TMP/ids_c.txt" <<'PY'
import sys, time
import tokenizers
from tokenizers import Tokenizer
t0 = time.perf_counter()
tok = Tokenizer.from_file(sys.argv[1])
print("load_ms %.1f" % ((time.perf_counter() - t0) * 1e3))
text = open(sys.argv[2], encoding="utf-8", newline="").read()
data = text.encode("utf-8")
# the same chunks as bench_tokenizer: 4096 bytes, extended to a line end
chunks, pos = [], 0
while pos < len(data):
    end = min(pos + 4096, len(data))
    while end < len(data) and data[end - 1] != 0x0a:
        end += 1
    chunks.append(data[pos:end].decode("utf-8"))
    pos = end
def run():
    t = time.perf_counter()
    ids = []
    for c in chunks:
        ids.extend(tok.encode(c, add_special_tokens=False).ids)
    return time.perf_counter() - t, ids
cold, ids = run()
best = min(run()[0] for _ in range(3))
print("version %s" % tokenizers.__version__)
print("tokens %d" % len(ids))
print("encode_cold_MBps %.2f" % (len(data) / cold / 1e6))
print("encode_MBps %.2f" % (len(data) / best / 1e6))
t = time.perf_counter()
out = tok.decode(ids, skip_special_tokens=False)
print("decode_MBps %.2f" % (len(out.encode("utf-8")) / (time.perf_counter() - t) / 1e6))
c_ids = [int(x) for x in open(sys.argv[3])]
print("ids_identical %s" % ("yes" if c_ids == ids else "NO (%d vs %d)" % (len(c_ids), len(ids))))
PY
