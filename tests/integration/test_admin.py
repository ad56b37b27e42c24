# test_admin.py -- the admin socket of a real gateway, spoken to over a raw
# unix socket: help, status, models, backends, stats, the json prefix, split
# weights that requests then follow, log-level, errors (unknown command,
# malformed input, a line over 64 KiB), ';' chaining, quit, many clients at
# once, a client that never reads, and who may connect (mode 0600, and
# SO_PEERCRED refusing another uid).
import json
import os
import pwd
import socket
import stat
import threading
import time

from lib import Skip, check, chat_body, eq, model_block, post, get, raw_connect, \
    recv_until_close, wait_for

LONG_LINE = 65536


def start(t, http_text=None):
    """A gateway with two fake upstreams, a 1:1 route "ab" and the admin socket."""
    if http_text is None:
        m1 = t.start_upstream("M1")
        m2 = t.start_upstream("M2")
        http_text = (model_block("m1", [m1]) + model_block("m2", [m2])
                     + "route ab { split m1 1; split m2 1; }\n")
    sock = os.path.join(t.dir, "admin.sock")
    g = t.start_gateway(http_text, main_text="admin_socket %s;" % sock)
    g.admin = sock
    wait_for(lambda: os.path.exists(sock), 5, what="admin socket file")
    return g


def admin_connect(g, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(g.admin)
    return s


def session(g, data, timeout=10):
    """Sends <data>, shuts down the sending side, reads until the gateway
    closes. Returns the text."""
    s = admin_connect(g, timeout)
    try:
        if isinstance(data, str):
            data = data.encode()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf, closed = recv_until_close(s, timeout)
        check(closed, "admin connection not closed after end of input: %r" % buf[-300:])
        return buf.decode(errors="replace")
    finally:
        s.close()


def replies(text):
    """Splits a session's output into replies (each ended by an empty line)."""
    check(text == "" or text.endswith("\n\n"), "output does not end with an empty line: %r"
          % text[-200:])
    return [r for r in text.split("\n\n")[:-1]]


def one(g, cmd):
    r = replies(session(g, cmd + "\n"))
    eq(len(r), 1, "replies to %r" % cmd)
    return r[0]


def kv(reply):
    out = {}
    for line in reply.splitlines():
        if line.startswith("#") or ": " not in line:
            continue
        k, _, v = line.partition(": ")
        out[k] = v
    return out


def read_reply(s, timeout=10):
    """Reads one reply (up to its empty line) from an open connection."""
    buf = b""
    end = time.monotonic() + timeout
    while b"\n\n" not in buf:
        if time.monotonic() > end:
            raise AssertionError("no complete reply: %r" % buf[-200:])
        d = s.recv(65536)
        if not d:
            raise AssertionError("closed before a complete reply: %r" % buf[-200:])
        buf += d
    reply, _, rest = buf.partition(b"\n\n")
    check(rest == b"", "unexpected bytes after the reply: %r" % rest[:100])
    return reply.decode()


def test_socket_mode_and_help(t):
    g = start(t)
    st = os.stat(g.admin)
    check(stat.S_ISSOCK(st.st_mode), "admin socket is not a socket")
    eq(stat.S_IMODE(st.st_mode), 0o600, "admin socket mode")
    eq(st.st_uid, os.geteuid(), "admin socket owner")
    h = one(g, "help")
    for c in ("status", "models", "backends", "load", "unload", "reload", "split", "drain",
              "undrain", "restart", "stats", "log-level", "help", "quit"):
        check(any(line.split(" ")[0] == c for line in h.splitlines()), "help lacks %s:\n%s" % (c, h))
    check("split ROUTE MODEL WEIGHT" in h, "help shows arguments:\n%s" % h)
    h1 = one(g, "help split")
    eq(len(h1.splitlines()), 1, "help split lines")


def test_status_models_backends_stats(t):
    g = start(t)
    for i in range(3):
        eq(post(g, "/v1/chat/completions", chat_body("m1")).status, 200, "request")
    st = kv(one(g, "status"))
    eq(st.get("pid"), str(g.proc.pid), "status pid")
    eq(st.get("models"), "2", "status models")
    eq(st.get("routes"), "1", "status routes")
    eq(st.get("requests_total"), "3", "status requests_total")
    check(int(st.get("uptime_s", "-1")) >= 0, "uptime: %r" % st)
    m = one(g, "models")
    lines = m.splitlines()
    check(lines[0].startswith("NAME"), "models header: %r" % m)
    check(any(l.startswith("m1 ") for l in lines) and any(l.startswith("m2 ") for l in lines),
          "models rows:\n%s" % m)
    b = one(g, "backends")
    check("m1#0" in b and "m2#0" in b, "backends:\n%s" % b)
    s = one(g, "stats")
    sk = kv(s)
    eq(sk.get("requests"), "3", "stats requests")
    check("# by_model" in s and "# by_status" in s, "stats sections:\n%s" % s)
    row = [l for l in s.splitlines() if l.startswith("m1 ")]
    check(row and row[0].split()[1] == "3", "by_model row for m1:\n%s" % s)


def test_json_prefix(t):
    g = start(t)
    eq(post(g, "/v1/chat/completions", chat_body("m2")).status, 200, "request")
    docs = {}
    for cmd in ("status", "models", "backends", "stats", "log-level", "help", "help split"):
        r = one(g, "json " + cmd)
        try:
            docs[cmd] = json.loads(r)
        except ValueError:
            raise AssertionError("json %s is not JSON: %r" % (cmd, r[:300]))
    eq(docs["status"]["pid"], g.proc.pid, "json status pid")
    eq(docs["status"]["models"], 2, "json status models")
    check(isinstance(docs["models"], (list, dict)), "json models: %r" % docs["models"])
    names = json.dumps(docs["models"])
    check('"m1"' in names and '"m2"' in names, "json models names: %s" % names[:300])
    eq(docs["stats"]["requests"], 1, "json stats requests")
    eq(docs["stats"]["by_model"]["m2"]["requests"], 1, "json stats by model")
    check(docs["log-level"]["level"] in ("info", "debug", "notice", "warn", "error"),
          "log-level: %r" % docs["log-level"])
    eq(len(docs["help split"]), 1, "json help split")
    e = json.loads(one(g, "json nosuch"))
    check("unknown command" in e.get("error", ""), "json error: %r" % e)
    e = json.loads(one(g, "json split ab m1 x"))
    check("bad weight" in e.get("error", ""), "json error: %r" % e)
    ok = json.loads(one(g, "json split ab m1 2"))
    eq(ok.get("ok"), True, "json ok")


def count_picks(g, n):
    counts = {}
    for i in range(n):
        r = post(g, "/v1/chat/completions", chat_body("ab"))
        eq(r.status, 200, "route request")
        m = r.header("x-llmux-model")
        counts[m] = counts.get(m, 0) + 1
    return counts


def test_split_changes_weights(t):
    g = start(t)
    c = count_picks(g, 8)
    eq(c, {"m1": 4, "m2": 4}, "1:1 split")
    eq(one(g, "split ab m2 0"), "ok: route 'ab': 'm2' weight 0", "split reply")
    eq(count_picks(g, 6), {"m1": 6}, "m2 at weight 0")
    r = replies(session(g, "split ab m1 1; split ab m2 3\n"))
    check(all(x.startswith("ok: ") for x in r) and len(r) == 2, "two ok replies: %r" % r)
    eq(count_picks(g, 8), {"m1": 2, "m2": 6}, "1:3 split")
    check("weight of \"m2\" 3 -> 0" in g.error_log() or "weight of \"m2\" 1 -> 0" in g.error_log(),
          "split logged:\n%s" % g.error_log()[-600:])
    # errors change nothing
    for bad, what in (("split ab m2", "wrong number of arguments"),
                      ("split ab m2 -1", "bad weight"),
                      ("split ab m2 1.5", "bad weight"),
                      ("split ab m2 99999999999", "bad weight"),
                      ("split nope m2 1", "no route 'nope'"),
                      ("split ab nope 1", "no model 'nope'")):
        r = one(g, bad)
        check(r.startswith("error: ") and what in r and len(r.splitlines()) == 1,
              "%r -> %r" % (bad, r))
    eq(count_picks(g, 4), {"m1": 1, "m2": 3}, "weights unchanged by errors")


def test_log_level(t):
    g = start(t)
    eq(one(g, "log-level"), "level: info", "log-level shows the conf's level")
    eq(one(g, "log-level debug"), "level: debug\nprevious: info", "set debug")
    eq(kv(one(g, "status"))["log_level"], "debug", "status log_level")
    get(g, "/health")
    r = one(g, "log-level shout")
    check(r.startswith("error: unknown level 'shout'"), r)
    eq(one(g, "log-level"), "level: debug", "unchanged by a bad level")
    eq(one(g, "log-level warn"), "level: warn\nprevious: debug", "set warn")


def test_unknown_and_malformed(t):
    g = start(t)
    eq(one(g, "frobnicate"), "error: unknown command 'frobnicate' (try help)", "unknown")
    eq(json.loads(one(g, "json")), {"error": "json needs a command (e.g. json models)"},
       "bare json")
    cases = [
        ("status now", "error: status: wrong number of arguments (usage: status)"),
        ("split ab", "error: split: wrong number of arguments"),
        ("drain m1", "error: expected MODEL#REPLICA"),
        ("drain m1#x", "error: bad replica number 'x'"),
        ("restart m1#-1", "error: bad replica number '-1'"),
        ("undrain #0", "error: expected MODEL#REPLICA"),
        ("load x", "error: load: wrong number of arguments"),
        ("load x /p nokey", "error: expected key=value, got 'nokey'"),
        ("split \"ab m1 1", "error: unterminated double quote"),
        ("help 'x", "error: unterminated single quote"),
        ("log-level a b", "error: log-level: wrong number of arguments"),
        ("x" * 300, "error: unknown command '" + "x" * 100 + "' (try help)"),
    ]
    for cmd, want in cases:
        r = one(g, cmd)
        check(r.startswith(want) and len(r.splitlines()) == 1, "%r -> %r (want %r)"
              % (cmd[:40], r, want))
    # binary junk and a NUL byte are errors, not crashes; CRLF is fine
    r = replies(session(g, b"\x00\x01\x02\r\nstatus\r\n\xff\xfe\n"))
    eq(len(r), 3, "replies to junk lines: %r" % r)
    check(r[0].startswith("error: ") and r[1].startswith("version: ") and r[2].startswith("error: "),
          "junk replies: %r" % r)
    # empty lines and empty commands get no reply
    r = replies(session(g, "\n\n ;; ; \nlog-level\n"))
    eq(r, ["level: info"], "empty commands")
    check(g.proc.poll() is None, "gateway still running")


def test_very_long_line(t):
    g = start(t)
    s = admin_connect(g)
    try:
        s.sendall(b"status\n")
        check(read_reply(s).startswith("version: "), "status before the long line")
        try:
            s.sendall(b"help " + b"a" * (LONG_LINE * 2) + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf, closed = recv_until_close(s, 10)
        check(closed, "connection not closed after a long line")
        check(buf.startswith(b"error: line too long"), "long line reply: %r" % buf[:200])
    finally:
        s.close()
    # a line of exactly the limit is still a line
    r = one(g, "help " + "b" * (LONG_LINE - 5))
    check(r.startswith("error: help: ") or r.startswith("error: unknown command"), r[:100])
    eq(one(g, "log-level"), "level: info", "socket still serves")
    check("over %d bytes" % LONG_LINE in g.error_log(), "long line logged")


def test_chained_commands_and_quit(t):
    g = start(t)
    r = replies(session(g, "status; log-level ;help log-level;nosuch\nlog-level\n"))
    eq(len(r), 5, "replies: %r" % r)
    check(r[0].startswith("version: "), r[0])
    eq(r[1], "level: info", "second")
    check(r[2].startswith("log-level [LEVEL]"), r[2])
    check(r[3].startswith("error: unknown command 'nosuch'"), r[3])
    eq(r[4], "level: info", "next line")
    # a ';' inside quotes is a character of the word
    eq(one(g, "help \"status;models\""), "error: unknown command 'status;models' (try help)",
       "quoted ;")
    # quit closes the connection: nothing after it runs
    s = admin_connect(g)
    try:
        s.sendall(b"log-level; quit; log-level\nlog-level\n")
        buf, closed = recv_until_close(s, 5)
        check(closed, "quit did not close")
        eq(buf, b"level: info\n\n", "replies before quit")
    finally:
        s.close()
    # quit as the first command: closed with nothing to flush
    s = admin_connect(g)
    try:
        s.sendall(b"quit\nlog-level\n")
        buf, closed = recv_until_close(s, 5)
        check(closed and buf == b"", "quit first: %r" % buf)
    finally:
        s.close()
    # a connection stays open for more commands until the client ends it
    s = admin_connect(g)
    try:
        for i in range(3):
            s.sendall(b"log-level\n")
            eq(read_reply(s), "level: info", "reply %d on one connection" % i)
    finally:
        s.close()


def test_many_clients(t):
    g = start(t)
    n = 40
    results = [None] * n
    socks = [admin_connect(g) for _ in range(n)]

    def client(i):
        s = socks[i]
        try:
            s.sendall(b"status; json log-level\n")
            a = read_reply_some(s, 2)
            results[i] = a
        except Exception as e:  # noqa: BLE001
            results[i] = e
    th = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for x in th:
        x.start()
    for x in th:
        x.join(20)
    for s in socks:
        s.close()
    bad = [r for r in results if not isinstance(r, list) or len(r) != 2
           or not r[0].startswith("version: ") or json.loads(r[1]).get("level") != "info"]
    check(not bad, "%d of %d clients got bad replies: %r" % (len(bad), n, bad[:3]))
    eq(kv(one(g, "status")).get("pid"), str(g.proc.pid), "still serving")


def read_reply_some(s, k, timeout=10):
    buf = b""
    end = time.monotonic() + timeout
    while buf.count(b"\n\n") < k:
        check(time.monotonic() < end, "timed out: %r" % buf[-200:])
        d = s.recv(65536)
        check(d, "closed early: %r" % buf[-200:])
        buf += d
    return [x.decode() for x in buf.split(b"\n\n")[:k]]


def test_client_that_never_reads(t):
    g = start(t)
    s = admin_connect(g)
    s.setblocking(False)
    # ~2000 help replies (~2.5 MB) that the client never reads
    line = b"help;" * 200 + b"\n"
    sent = 0
    end = time.monotonic() + 5
    while sent < 10 * len(line) and time.monotonic() < end:
        try:
            sent += s.send(line)
        except BlockingIOError:
            time.sleep(0.01)
    # the gateway goes on serving HTTP and other admin clients meanwhile
    t0 = time.monotonic()
    eq(get(g, "/health").status, 200, "HTTP while an admin client does not read")
    eq(one(g, "log-level"), "level: info", "another admin client")
    check(time.monotonic() - t0 < 2, "gateway slowed down by a non-reading client")
    # it is dropped after the send timeout (10 s without progress)
    s.setblocking(True)
    wait_for(lambda: "does not read its replies" in g.error_log(), 20, interval=0.2,
             what="the non-reading client to be dropped")
    s.close()
    eq(one(g, "log-level"), "level: info", "socket still serves")


def _nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no user nobody")


def _as_user(uid, gid, fn):
    """Runs fn() in a forked child as uid/gid; returns what it wrote (str)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            out = fn()
        except Exception as e:  # noqa: BLE001
            out = "EXC %s: %s" % (type(e).__name__, e)
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        d = os.read(r, 65536)
        if not d:
            break
        data += d
    os.close(r)
    os.waitpid(pid, 0)
    return data.decode()


def test_other_user_refused(t):
    if os.geteuid() != 0:
        raise Skip("needs root to run a client as another user")
    nb = _nobody()
    g = start(t)
    os.chmod(t.dir, 0o755)
    path = g.admin

    def attempt():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
        except OSError as e:
            return "CONNECT %s" % e.errno
        try:
            s.sendall(b"status\n")
        except OSError:
            pass
        buf = b""
        while True:
            try:
                d = s.recv(4096)
            except OSError:
                break
            if not d:
                break
            buf += d
        return "REPLY " + buf.decode(errors="replace")

    # mode 0600: another user cannot even connect
    out = _as_user(nb.pw_uid, nb.pw_gid, attempt)
    eq(out, "CONNECT 13", "connect as nobody to a 0600 socket (EACCES)")
    # with the file opened up, SO_PEERCRED still refuses it
    os.chmod(path, 0o666)
    out = _as_user(nb.pw_uid, nb.pw_gid, attempt)
    check(out.startswith("REPLY error: permission denied: uid %d" % nb.pw_uid) and
          out.endswith("\n\n") and "version:" not in out, "refusal: %r" % out)
    check("refused uid %d" % nb.pw_uid in g.error_log(), "refusal logged")
    # root still gets in
    eq(one(g, "log-level"), "level: info", "root after a refusal")


def test_stale_socket_replaced_and_removed_at_exit(t):
    sock = os.path.join(t.dir, "admin.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)          # a stale file: bound, nobody listens
    s.close()
    g = start(t)
    eq(one(g, "log-level"), "level: info", "served on the replaced socket")
    g.signal(15)
    g.wait_exit()
    check(not os.path.exists(sock), "admin socket removed at exit")


def test_socket_in_use_is_an_error(t):
    # another process listens on the path: the gateway must not take it over
    sock = os.path.join(t.dir, "admin.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    s.listen(1)
    try:
        g = t.start_gateway("", main_text="admin_socket %s;" % sock, wait=False)
        wait_for(lambda: "in use by another process" in g.error_log() or g.proc.poll() is not None,
                 10, what="the admin socket error")
        check("in use by another process" in g.error_log(), "error log:\n%s" % g.error_log())
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(sock)          # still the other process's socket
        conn, _ = s.accept()
        conn.close()
        c.close()
    finally:
        s.close()


def test_reload_moves_the_socket(t):
    # `reload` over the socket, with a conf naming another admin socket: the
    # reply still arrives on the old connection, then the socket moves
    g = start(t)
    new = os.path.join(t.dir, "admin2.sock")
    with open(g.conf) as f:
        text = f.read()
    with open(g.conf, "w") as f:
        f.write(text.replace("admin_socket %s;" % g.admin, "admin_socket %s;" % new))
    s = admin_connect(g)
    try:
        s.sendall(b"reload; log-level\n")
        buf, closed = recv_until_close(s, 10)
        check(closed, "old connection closed after the move")
        eq(buf, b"ok: configuration reloaded\n\n", "reload reply on the old socket")
    finally:
        s.close()
    wait_for(lambda: os.path.exists(new), 5, what="the new admin socket")
    check(not os.path.exists(g.admin), "old admin socket removed")
    g.admin = new
    eq(one(g, "log-level"), "level: info", "served on the new socket")
    check(g.proc.poll() is None, "gateway running")


def test_connection_limit(t):
    # 128 admin connections at most; the next one is told so and closed
    g = start(t)
    socks = []
    try:
        for i in range(128):
            s = admin_connect(g)
            s.sendall(b"json json log-level\n")
            eq(json.loads(read_reply(s)), {"level": "info"}, "connection %d" % i)
            socks.append(s)
        s = admin_connect(g)
        buf, closed = recv_until_close(s, 5)
        s.close()
        check(closed and buf.startswith(b"error: too many admin connections"), "129th: %r" % buf)
        socks.pop().close()
        wait_for(lambda: one(g, "log-level") == "level: info", 5, what="a free slot")
    finally:
        for s in socks:
            s.close()


def test_unusable_socket_path_is_fatal_at_start(t):
    # as a listen that cannot bind: the gateway exits 1 and says why
    sock = os.path.join(t.dir, "no-such-dir", "admin.sock")
    g = t.start_gateway("", main_text="admin_socket %s;" % sock, wait=False)
    eq(g.wait_exit(10), 1, "exit status")
    check("admin socket" in g.error_log(), "error log:\n%s" % g.error_log())
