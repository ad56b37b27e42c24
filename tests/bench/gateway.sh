#!/usr/bin/env bash
# tests/bench/gateway.sh -- what llmux costs in front of an OpenAI-shaped
# server, measured against the server alone and against nginx proxy_pass.
#
# One run starts tests/tools/fake-upstream, llmux and nginx on loopback and
# drives each of (a) the upstream directly, (b) llmux in front of it and
# (c) nginx in front of it with wrk, for two workloads: a small non-streaming
# chat completion and an SSE stream of 8 chunks, each at -c$CONNS (throughput,
# loaded latency) and at -c1 (latency without queueing). Then a Python script,
# upstream and client at once, streams chunks 50 ms apart directly and through
# each proxy and measures how much later each chunk arrives through the proxy.
# It prints one table and the targets:
#   llmux req/s >= 90% of nginx's (one core each);
#   added latency (llmux p50/p99 minus direct) < 0.2 ms p50, < 1 ms p99;
#   extra delay per relayed stream chunk < 1 ms (median).
# A missed target prints MISSED; the exit status is still 0 (a benchmark, not
# a test). It is 1 only when the bench cannot run (no wrk, no fake-upstream).
#
# Environment: LLMUX_BUILDDIR (where llmux and tests/tools/fake-upstream are;
# default the repository root), DURATION (wrk seconds per measured run, 10),
# WARMUP (seconds of warm-up per target and workload, 2), CONNS (wrk
# connections, 32), LAT_DURATION (seconds of the one-connection latency runs,
# 3), ROUNDS (streams per target in the chunk-delay probe, 12), CHUNKS (SSE
# chunks per stream, 8), NGINX (/usr/sbin/nginx), PIN (1: pin with taskset
# when there are 2 CPUs or more; 0: do not pin), KEEP (1: keep the temporary
# folder with the confs and logs), OTHER_MAX (12) and RETRIES (4): a wrk run
# during which other programs used more than OTHER_MAX % of a CPU is run again,
# at most RETRIES times in the whole bench.
#
# Pinning (2-core machine): upstream on CPU 1, the proxy (llmux or nginx) on
# CPU 0, wrk and the Python client on CPU 1 with the upstream. nginx runs
# worker_processes 1 with master_process off; llmux is single-threaded: both
# get one core.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
builddir=${LLMUX_BUILDDIR:-$root}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
LAT_DURATION=${LAT_DURATION:-3}
ROUNDS=${ROUNDS:-12}
CHUNKS=${CHUNKS:-8}
NGINX=${NGINX:-/usr/sbin/nginx}
PIN=${PIN:-1}
OTHER_MAX=${OTHER_MAX:-12}
RETRIES=${RETRIES:-4}
KEEP=${KEEP:-0}

llmux_bin=$builddir/llmux
upstream_bin=$builddir/tests/tools/fake-upstream

die() { echo "gateway.sh: $*" >&2; exit 1; }

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v python3 >/dev/null || die "python3 not found"
command -v curl >/dev/null || die "curl not found"
[ -x "$upstream_bin" ] || die "$upstream_bin not found: build it (make tests/tools/fake-upstream) or set LLMUX_BUILDDIR"

have_llmux=1
[ -x "$llmux_bin" ] || { have_llmux=0; echo "gateway.sh: $llmux_bin not found: llmux rows are skipped" >&2; }
have_nginx=1
[ -x "$NGINX" ] || { have_nginx=0; echo "gateway.sh: $NGINX not found: nginx rows are skipped" >&2; }

# ---- processes and clean-up ---------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmux-bench.XXXXXX")
pids=()
names=()

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then
        echo "gateway.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ncpu=$(nproc 2>/dev/null || echo 1)
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null; then
    pin_upstream="taskset -c 1"
    pin_proxy="taskset -c 0"
    pin_client="taskset -c 1"
    pinning="upstream on CPU 1, proxy (llmux or nginx) on CPU 0, wrk and the stream client on CPU 1"
else
    pin_upstream="" pin_proxy="" pin_client=""
    pinning="none (PIN=$PIN, $ncpu CPU(s)): figures are not comparable with pinned runs"
fi

# Free TCP ports from the kernel (closed again at once; a race with another
# program is possible but unlikely on a bench machine).
read -r P_UP P_PROBE P_LLMUX P_NGINX P_NGINX50 < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(5):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

# start <name> <command...>: run it in the background (pinned by the
# command's taskset prefix), output in $tmp/<name>.out, and remember it.
start() {
    local name=$1
    shift
    "$@" >"$tmp/$name.out" 2>&1 &
    pids+=($!)
    names+=("$name")
}

# Wait until 127.0.0.1:<port> accepts connections, up to 5 s.
wait_port() {
    local port=$1 name=$2 i
    for i in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "gateway.sh: $name did not listen on 127.0.0.1:$port" >&2
    return 1
}

# ---- the servers ----------------------------------------------------------------

start upstream $pin_upstream "$upstream_bin" --listen "127.0.0.1:$P_UP" \
    --chunks "$CHUNKS"
pid_upstream=${pids[-1]}
wait_port "$P_UP" fake-upstream || { cat "$tmp/upstream.out" >&2; exit 1; }

if [ $have_llmux = 1 ]; then
    cat >"$tmp/llmux.conf" <<EOF
daemon off;
error_log $tmp/error.log warn;
http {
    listen 127.0.0.1:$P_LLMUX;
    model m { upstream http://127.0.0.1:$P_UP; }
    model m50 { upstream http://127.0.0.1:$P_PROBE; }
}
EOF
    start llmux $pin_proxy "$llmux_bin" -c "$tmp/llmux.conf"
    pid_llmux=${pids[-1]}
    if ! wait_port "$P_LLMUX" llmux; then
        cat "$tmp/llmux.out" "$tmp/error.log" >&2 2>/dev/null
        have_llmux=0
    fi
fi

if [ $have_nginx = 1 ]; then
    mkdir -p "$tmp/cb" "$tmp/pt" "$tmp/ft" "$tmp/ut" "$tmp/st"
    # keepalive_requests raised on both sides so that neither wrk's nor the
    # upstream connections are recycled every 1000 requests (llmux does not
    # recycle them either).
    cat >"$tmp/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $tmp/err.log;
pid $tmp/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/cb;
    proxy_temp_path $tmp/pt;
    fastcgi_temp_path $tmp/ft;
    uwsgi_temp_path $tmp/ut;
    scgi_temp_path $tmp/st;
    keepalive_requests 1000000;
    upstream u { server 127.0.0.1:$P_UP; keepalive 64; keepalive_requests 1000000; }
    upstream u50 { server 127.0.0.1:$P_PROBE; keepalive 64; }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:$P_NGINX50;
        location / {
            proxy_pass http://u50;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
    start nginx $pin_proxy "$NGINX" -p "$tmp" -e "$tmp/err.log" -c "$tmp/nginx.conf"
    pid_nginx=${pids[-1]}
    if ! wait_port "$P_NGINX" nginx; then
        cat "$tmp/nginx.out" "$tmp/err.log" >&2 2>/dev/null
        have_nginx=0
    fi
fi

targets="direct"
[ $have_llmux = 1 ] && targets="$targets llmux"
[ $have_nginx = 1 ] && targets="$targets nginx"

port_of() {
    case $1 in
    direct) echo "$P_UP" ;;
    llmux)  echo "$P_LLMUX" ;;
    nginx)  echo "$P_NGINX" ;;
    esac
}

# ---- wrk scripts ------------------------------------------------------------------

# done() prints one machine-readable line: requests, duration (us), p50 and
# p99 latency (us), socket errors, non-2xx answers.
wrk_done='
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("BENCH %d %d %.0f %.0f %d %d\n", summary.requests,
        summary.duration, latency:percentile(50), latency:percentile(99),
        e.connect + e.read + e.write + e.timeout, e.status))
end
'
body_json='{"model":"m","messages":[{"role":"user","content":"hi"}]}'
body_sse='{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
for w in json sse; do
    if [ $w = json ]; then body=$body_json; else body=$body_sse; fi
    cat >"$tmp/$w.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
$wrk_done
EOF
done

# Check that <target> answers <workload> correctly before timing it: a bench
# of error answers would be meaningless.
check() {
    local target=$1 w=$2 port out body
    port=$(port_of "$target")
    if [ "$w" = json ]; then body=$body_json; else body=$body_sse; fi
    out=$(curl -sS -m 5 -w '\n%{http_code}' -H 'Content-Type: application/json' \
        -d "$body" "http://127.0.0.1:$port/v1/chat/completions" 2>&1)
    case "$w:$out" in
    json:*'"choices"'*200) return 0 ;;
    sse:*'[DONE]'*200) return 0 ;;
    esac
    echo "gateway.sh: $target gave an unexpected answer to the $w workload:" >&2
    printf '%s\n' "$out" | tail -5 >&2
    return 1
}

# CPU time in clock ticks: busy time of the CPUs the bench uses (from
# /proc/stat: user nice system irq softirq steal), and what the servers used.
cpu_lines=cpu
[ -n "$pin_proxy" ] && cpu_lines="cpu0 cpu1"
cpu_ticks() {
    awk -v want=" $cpu_lines " 'index(want, " " $1 " ") {
        busy += $2 + $3 + $4 + $7 + $8 + $9; all += $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; n++ }
        END { print busy, all / n }' /proc/stat
}
server_ticks() {
    local p t=0
    for p in "${@:-${pids[@]}}"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$(( t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }') ))
    done
    echo $t
}

# Run wrk; prints "rps p50_us p99_us errors cpu_us cpu_pct other": errors =
# socket errors + non-2xx answers; cpu_us = CPU time the target (the proxy,
# or the upstream for "direct") spent per request, in microseconds, and
# cpu_pct its CPU use in % of one CPU; other = CPU time used on the bench's CPUs by anything but
# the bench during the run, in % of one CPU. Interrupt work that the kernel
# does not charge to a process counts too (up to ~9 with the upstream alone),
# so only more than OTHER_MAX means another program disturbed the run.
run_wrk() {
    local target=$1 w=$2 conns=$3 secs=$4 port line b0 a0 s0 b1 a1 s1 kids me p0 p1
    port=$(port_of "$target")
    case $target in
    direct) me=$pid_upstream ;;
    llmux)  me=$pid_llmux ;;
    nginx)  me=$pid_nginx ;;
    esac
    read -r b0 a0 < <(cpu_ticks)
    s0=$(server_ticks)
    p0=$(server_ticks "$me")
    line=$($pin_client wrk -t1 -c"$conns" -d"${secs}s" -s "$tmp/$w.lua" \
        "http://127.0.0.1:$port/v1/chat/completions" 2>&1 | grep '^BENCH ')
    read -r b1 a1 < <(cpu_ticks)
    s1=$(server_ticks)
    p1=$(server_ticks "$me")
    # this subshell's children (wrk, grep): "XmY.YYYs XmY.YYYs" on line 2;
    # "times" must run in this process, not in a pipeline's subshell
    local tf=$tmp/times.$BASHPID
    times >"$tf"
    kids=$(sed -n 2p "$tf" | tr 'ms' '  ' |
        awk '{ print ($1 * 60 + $2 + $3 * 60 + $4) * 100 }')
    if [ -z "$line" ]; then
        echo "- - - wrk-failed - - -"
        return
    fi
    set -- $line
    awk -v n="$2" -v d="$3" -v p50="$4" -v p99="$5" -v se="$6" -v st="$7" \
        -v busy=$(( b1 - b0 )) -v all="$(awk -v a="$a1" -v b="$a0" 'BEGIN { print a - b }')" \
        -v ours=$(( s1 - s0 )) -v kids="$kids" -v me=$(( p1 - p0 )) -v hz="$(getconf CLK_TCK)" 'BEGIN {
        other = all > 0 ? (busy - ours - kids) / all * 100 : 0
        if (other < 0) other = 0
        printf "%.0f %d %d %d %.1f %.0f %.0f\n", n / (d / 1e6), p50, p99, se + st,
            (n > 0 ? me / hz * 1e6 / n : 0), (all > 0 ? me / all * 100 : 0), other }'
}

# run_wrk, again while another program used more than OTHER_MAX % of a CPU
# during the run, as long as RETRIES allow (the budget is for the whole bench,
# kept in a file because this runs in a subshell).
echo "$RETRIES" >"$tmp/retries"
run_wrk_quiet() {
    local out left
    for (( ; ; )); do
        out=$(run_wrk "$@")
        left=$(cat "$tmp/retries")
        if awk -v o="${out##* }" -v m="$OTHER_MAX" 'BEGIN { exit !(o == "-" || o + 0 <= m + 0) }' ||
           [ "$left" -le 0 ]; then
            echo "$out"
            return
        fi
        echo "$((left - 1))" >"$tmp/retries"
        echo "gateway.sh: $1 $2 -c$3: other programs used ${out##* }% of a CPU, running it again" >&2
    done
}

# ---- measure ----------------------------------------------------------------------

started=$(date +%s)
declare -A RPS P50 P99 ERR LP50 LP99 LERR OTHER LOTHER CPU CPUP
for w in json sse; do
    for t in $targets; do
        if ! check "$t" "$w"; then
            RPS[$t,$w]=- P50[$t,$w]=- P99[$t,$w]=- ERR[$t,$w]=bad-answer OTHER[$t,$w]=-
            CPU[$t,$w]=- CPUP[$t,$w]=-
            LP50[$t,$w]=- LP99[$t,$w]=- LERR[$t,$w]=bad-answer LOTHER[$t,$w]=-
            continue
        fi
        echo "gateway.sh: $w via $t: warm-up ${WARMUP}s, ${DURATION}s at -c$CONNS, ${LAT_DURATION}s at -c1" >&2
        [ "$WARMUP" -gt 0 ] && run_wrk "$t" "$w" "$CONNS" "$WARMUP" >/dev/null
        read -r RPS[$t,$w] P50[$t,$w] P99[$t,$w] ERR[$t,$w] CPU[$t,$w] CPUP[$t,$w] OTHER[$t,$w] \
            < <(run_wrk_quiet "$t" "$w" "$CONNS" "$DURATION")
        read -r _ LP50[$t,$w] LP99[$t,$w] LERR[$t,$w] _ _ LOTHER[$t,$w] \
            < <(run_wrk_quiet "$t" "$w" 1 "$LAT_DURATION")
    done
done

# Chunk delay probe. The Python script is its own upstream (on P_PROBE, the
# backend of llmux's model "m50" and of nginx's second server): it writes
# CHUNKS SSE chunks 50 ms apart and notes when it wrote each; its client notes
# when each arrived, on the same clock. It streams directly and through each
# proxy, alternating, ROUNDS streams each. A chunk's delay is arrival minus
# write; a proxy's extra delay is its delay minus the median direct delay
# (what Python and loopback cost on their own).
echo "gateway.sh: chunk-delay probe: $ROUNDS streams per target, $CHUNKS chunks 50 ms apart" >&2
probe_args="direct:$P_PROBE"
[ $have_llmux = 1 ] && probe_args="$probe_args llmux:$P_LLMUX"
[ $have_nginx = 1 ] && probe_args="$probe_args nginx:$P_NGINX50"
probe=$($pin_client python3 - "$P_PROBE" "$ROUNDS" "$CHUNKS" $probe_args <<'EOF' 2>"$tmp/probe.err"
import socket, statistics, sys, threading, time

port, rounds, chunks = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
targets = [(a.split(":")[0], int(a.split(":")[1])) for a in sys.argv[4:]]
written = {}                     # stream id -> perf_counter() of each chunk written

def serve_conn(c):
    """One upstream connection: HTTP/1.1 keep-alive, Content-Length bodies."""
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                c.close()
                return
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(buf) < length:
            buf += c.recv(65536)
        body, buf = buf[:length], buf[length:]
        sid = body.split(b'"user":"', 1)[1].split(b'"', 1)[0].decode()
        times = written.setdefault(sid, [])
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(chunks):
            if i:
                time.sleep(0.05)
            ev = (b'data: {"id":"chatcmpl-probe","object":"chat.completion.chunk",'
                  b'"model":"m50","choices":[{"index":0,"delta":{"content":"tok%d"}}]}\n\n' % i)
            times.append(time.perf_counter())
            c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
        ev = b"data: [DONE]\n\n"
        c.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(ev), ev))

def serve(ls):
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve_conn, args=(c,), daemon=True).start()

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(64)
threading.Thread(target=serve, args=(ls,), daemon=True).start()

def stream(port, sid):
    """perf_counter() at which each chunk's data line was complete."""
    body = ('{"model":"m50","stream":true,"user":"%s",'
            '"messages":[{"role":"user","content":"hi"}]}' % sid).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Content-Type: application/json\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(req)
    buf, times, pos = b"", [], 0
    while len(times) < chunks:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        t = time.perf_counter()
        if not d:
            break
        buf += d
        while True:            # complete "data: {" lines not yet counted
            i = buf.find(b"data: {", pos)
            j = buf.find(b"\n", i) if i >= 0 else -1
            if j < 0:
                break
            times.append(t)
            pos = j
    s.close()
    return times

delays = {name: [] for name, _ in targets}
firsts = {name: [] for name, _ in targets}
bad = {}
for k in range(rounds):
    for name, p in targets:
        sid = "%s-%d" % (name, k)
        got = stream(p, sid)
        sent = written.get(sid, [])
        if len(got) != chunks or len(sent) != chunks:
            bad[name] = "got %d of %d chunks" % (len(got), chunks)
            continue
        d = [r - w for r, w in zip(got, sent)]
        delays[name] += d
        firsts[name].append(d[0])

def ms(x):
    return "%.3f" % (x * 1e3)

base = statistics.median(delays["direct"]) if delays["direct"] else None
base1 = statistics.median(firsts["direct"]) if firsts["direct"] else None
for name, _ in targets:
    v = sorted(delays[name])
    if name in bad or not v or base is None:
        print("PROBE %s - - - - %s" % (name, bad.get(name, "no-data").replace(" ", "_")))
        continue
    med = statistics.median(v)
    p90 = v[int(0.9 * (len(v) - 1))]
    print("PROBE %s %s %s %s %s %d" % (name, ms(med - base), ms(p90 - base),
          ms(statistics.median(firsts[name]) - base1), ms(med), len(v)))
EOF
)
elapsed=$(( $(date +%s) - started ))
died=""
for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null || died="$died ${names[$i]}"
done

# ---- report -----------------------------------------------------------------------

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
us2ms() { awk -v u="$1" 'BEGIN { if (u == "-") print "-"; else printf "%.3f", u / 1000 }'; }

# verdict <value> <op> <limit>: "ok" or "MISSED" ("-" when no value)
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "-" || v == "") { print "-"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 < l + 0)
        print ok ? "ok" : "MISSED" }'
}
# diff_ms <a_us> <b_us>: (a - b) in ms, or "-"
diff_ms() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "-" || b == "-" || a == "" || b == "") print "-"; else printf "%.3f", (a - b) / 1000 }'
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "-" || b == "-" || a == "" || b == "" || b == 0) print "-"; else printf "%.3f", a / b }'
}

echo
echo "llmux gateway benchmark -- $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
echo "machine: $ncpu CPU(s), ${cpu:-unknown CPU}; wrk $(wrk -v 2>&1 | sed -n '1s/^wrk \([^ ]*\).*/\1/p'), $([ $have_nginx = 1 ] && "$NGINX" -v 2>&1 | sed 's/.*version: //' || echo "no nginx")"
if [ $have_llmux = 1 ]; then
    echo "llmux: $llmux_bin ($("$llmux_bin" -v 2>&1 | head -1)); upstream: $upstream_bin"
else
    echo "llmux: not run; upstream: $upstream_bin"
fi
echo "pinning: $pinning"
echo "load: wrk -t1 -c$CONNS -d${DURATION}s after a ${WARMUP}s warm-up; unloaded latency: wrk -t1 -c1 -d${LAT_DURATION}s"
echo "workloads: json = POST /v1/chat/completions, tiny body, JSON answer; sse = same with \"stream\":true, $CHUNKS chunks, no pause"
echo
printf '%-5s %-7s %8s %7s %7s %9s %9s %7s %5s %6s %7s\n' workload target 'req/s' 'p50 ms' 'p99 ms' 'c1 p50ms' 'c1 p99ms' 'us/req' 'cpu%' errors 'other%' 
for w in json sse; do
    for t in direct llmux nginx; do
        case " $targets " in *" $t "*) ;; *)
            printf '%-5s %-7s %10s\n' "$w" "$t" skipped; continue ;;
        esac
        printf '%-5s %-7s %8s %7s %7s %9s %9s %7s %5s %6s %7s\n' "$w" "$t" "${RPS[$t,$w]}" \
            "$(us2ms "${P50[$t,$w]}")" "$(us2ms "${P99[$t,$w]}")" \
            "$(us2ms "${LP50[$t,$w]}")" "$(us2ms "${LP99[$t,$w]}")" \
            "${CPU[$t,$w]}" "${CPUP[$t,$w]}" \
            "${ERR[$t,$w]}/${LERR[$t,$w]}" "${OTHER[$t,$w]}/${LOTHER[$t,$w]}"
    done
done
echo "(us/req, cpu%: CPU time of the proxy (direct: of the upstream) per request and in % of one CPU,"
echo " loaded run; errors: socket errors + non-2xx answers, loaded/c1 run; other%: CPU time on the bench's"
echo " CPUs used by other programs during the loaded/c1 run, in % of one CPU; runs above $OTHER_MAX were"
echo " run again, $(( RETRIES - $(cat "$tmp/retries") )) time(s) of $RETRIES allowed: a figure with other% above $OTHER_MAX is disturbed)"

echo
printf '%-5s %-42s %10s  %-12s %s\n' workload measure value target verdict
# disturbed <other%>...: " (disturbed)" when one is above OTHER_MAX
disturbed() {
    local o
    for o in "$@"; do
        if awk -v o="$o" -v m="$OTHER_MAX" 'BEGIN { exit !(o != "-" && o != "" && o + 0 > m + 0) }'; then
            echo " (disturbed)"
            return
        fi
    done
}
row() {
    printf '%-5s %-42s %10s  %-12s %s\n' "$@"
}
for w in json sse; do
    r=$(ratio "${RPS[llmux,$w]:--}" "${RPS[nginx,$w]:--}")
    row "$w" "llmux/nginx req/s" "$r" ">= 0.90" \
        "$(verdict "$r" '>=' 0.90)$(disturbed "${OTHER[llmux,$w]:-}" "${OTHER[nginx,$w]:-}")"
    # With the client and upstream sharing one core, that core may limit
    # both proxies alike; requests per CPU-second of the proxy show what
    # each would do with its core to itself.
    r=$(ratio "${CPU[nginx,$w]:--}" "${CPU[llmux,$w]:--}")
    row "$w" "llmux/nginx req per proxy CPU-second" "$r" ">= 0.90" \
        "$(verdict "$r" '>=' 0.90)$(disturbed "${OTHER[llmux,$w]:-}" "${OTHER[nginx,$w]:-}")"
    for kind in loaded c1; do
        if [ $kind = loaded ]; then
            a50=${P50[llmux,$w]:--} d50=${P50[direct,$w]:--} a99=${P99[llmux,$w]:--} d99=${P99[direct,$w]:--}
            dist=$(disturbed "${OTHER[llmux,$w]:-}" "${OTHER[direct,$w]:-}")
            label="at -c$CONNS"
        else
            a50=${LP50[llmux,$w]:--} d50=${LP50[direct,$w]:--} a99=${LP99[llmux,$w]:--} d99=${LP99[direct,$w]:--}
            dist=$(disturbed "${LOTHER[llmux,$w]:-}" "${LOTHER[direct,$w]:-}")
            label="at -c1"
        fi
        v=$(diff_ms "$a50" "$d50")
        row "$w" "added p50 ms, llmux - direct, $label" "$v" "< 0.2" "$(verdict "$v" '<' 0.2)$dist"
        v=$(diff_ms "$a99" "$d99")
        row "$w" "added p99 ms, llmux - direct, $label" "$v" "< 1" "$(verdict "$v" '<' 1)$dist"
    done
    # nginx's own overhead, for scale (no target)
    row "$w" "(nginx) added p50 ms at -c1" "$(diff_ms "${LP50[nginx,$w]:--}" "${LP50[direct,$w]:--}")"
    row "$w" "(nginx) added p99 ms at -c1" "$(diff_ms "${LP99[nginx,$w]:--}" "${LP99[direct,$w]:--}")"
done

echo
echo "stream chunk delay: $ROUNDS streams per target, $CHUNKS chunks written 50 ms apart by the probe's own upstream;"
echo "extra = (arrival - write) through the proxy minus the same directly"
printf '%-7s %16s %14s %18s %16s %8s  %-7s %s\n' via 'median extra ms' 'p90 extra ms' 'first chunk ms' 'median raw ms' samples target verdict
for t in direct llmux nginx; do
    line=$(printf '%s\n' "$probe" | awk -v t="$t" '$1 == "PROBE" && $2 == t')
    if [ -z "$line" ]; then
        printf '%-7s %16s\n' "$t" skipped
        continue
    fi
    set -- $line
    if [ "$t" = llmux ]; then
        printf '%-7s %16s %14s %18s %16s %8s  %-7s %s\n' "$t" "$3" "$4" "$5" "$6" "$7" '< 1' "$(verdict "$3" '<' 1)"
    else
        printf '%-7s %16s %14s %18s %16s %8s\n' "$t" "$3" "$4" "$5" "$6" "$7"
    fi
done
if [ -s "$tmp/probe.err" ]; then
    echo "probe errors:"
    sed 's/^/  /' "$tmp/probe.err"
fi
if [ -n "$died" ]; then
    echo "WARNING: exited during the run:$died (figures after that are not valid)"
    for n in $died; do
        tail -5 "$tmp/$n.out" | sed "s/^/  $n: /"
    done
    [ -s "$tmp/error.log" ] && tail -5 "$tmp/error.log" | sed 's/^/  llmux error.log: /'
fi
echo
echo "total ${elapsed}s"
exit 0
