# lib.py -- helpers for llmux's integration tests: start the fake upstream and
# the gateway as real processes on loopback, speak HTTP to them (http.client
# for well-formed requests, raw sockets for the rest), read SSE streams with
# arrival times, parse Prometheus text. Every process is started through a
# Test context (given to each test by harness.py) that kills it at cleanup,
# whatever the test's outcome. Nothing here knows the gateway's internals:
# only its documented conf, HTTP API and logs.
import hashlib
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("LLMUX_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
BUILDDIR = os.environ.get("LLMUX_BUILDDIR") or SRCDIR
LLMUX = os.path.join(BUILDDIR, "llmux")
FAKE = os.path.join(BUILDDIR, "tests", "tools", "fake-upstream")


class Skip(Exception):
    """Raised by a test (or a helper) to report `ok N - name # SKIP reason`."""


class TestFailure(AssertionError):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, what="value"):
    if got != want:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))


def proc_gone(pid):
    """True when process <pid> has exited (gone, or a zombie not yet reaped);
    safe against the process vanishing between the checks."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sha256(data):
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def wait_for(cond, timeout=5.0, interval=0.02, what="condition"):
    """Polls cond() until it returns a true value; returns that value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise TestFailure("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---- HTTP ------------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Response:
    def __init__(self, status, reason, headers, body, elapsed=0.0):
        self.status = status
        self.reason = reason
        self.header_list = headers          # [(name, value)] as received
        self.headers = {}                   # lower-case name -> last value
        for k, v in headers:
            self.headers[k.lower()] = v
        self.body = body
        self.elapsed = elapsed

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise TestFailure("response body is not JSON (status %d): %r"
                              % (self.status, self.body[:500]))

    def __repr__(self):
        return "<Response %d %s %r>" % (self.status, self.headers, self.body[:300])


def connect(target, timeout=10):
    """<target>: a Gateway, an Upstream, "host:port", "unix:/path" or port."""
    addr = target if isinstance(target, (str, int)) else target.addr
    if isinstance(addr, int):
        return http.client.HTTPConnection("127.0.0.1", addr, timeout=timeout)
    if addr.startswith("unix:"):
        return UnixHTTPConnection(addr[5:], timeout=timeout)
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)


def request(target, method, path, body=None, headers=None, timeout=10, conn=None):
    """One request; returns a Response. <body>: bytes, str or a JSON-able
    object (then Content-Type is application/json). Reuses <conn> if given
    (keep-alive), else opens and closes its own connection."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    own = conn is None
    c = conn or connect(target, timeout)
    t0 = time.monotonic()
    try:
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.getheaders(), data, time.monotonic() - t0)
    finally:
        if own:
            c.close()


def get(target, path, **kw):
    return request(target, "GET", path, **kw)


def post(target, path, body, **kw):
    return request(target, "POST", path, body=body, **kw)


def chat_body(model, content="hello", **extra):
    b = {"model": model, "messages": [{"role": "user", "content": content}]}
    b.update(extra)
    return b


def expect_openai_error(r, status, what=""):
    """Asserts <r> is an OpenAI-shaped error with <status>; returns the error."""
    if r.status != status:
        raise TestFailure("%sexpected status %d, got %d: %r"
                          % (what + ": " if what else "", status, r.status, r.body[:400]))
    ct = r.header("content-type", "")
    check("json" in ct, "error content-type should be JSON, got %r" % ct)
    j = r.json()
    check(isinstance(j, dict) and isinstance(j.get("error"), dict),
          "not OpenAI error shape: %r" % j)
    e = j["error"]
    for k in ("message", "type", "param", "code"):
        check(k in e, "error object lacks %r: %r" % (k, j))
    check(isinstance(e["message"], str) and e["message"], "empty error message: %r" % j)
    return e


# ---- raw sockets -------------------------------------------------------------

def raw_connect(target, timeout=10):
    addr = target if isinstance(target, str) else target.addr
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr[5:])
        return s
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_until_close(s, timeout=10):
    """Reads until EOF; returns (data, closed). closed is False on timeout."""
    s.settimeout(0.2)
    end = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < end:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return buf, True
        if not d:
            return buf, True
        buf += d
    return buf, False


def raw_exchange(target, data, timeout=10):
    """Sends <data> on a new connection, reads until the peer closes."""
    s = raw_connect(target, timeout)
    try:
        s.sendall(data)
        return recv_until_close(s, timeout)
    finally:
        s.close()


def parse_response(buf):
    """Parses one HTTP/1.x response from the start of <buf>. Returns
    (Response, rest) or (None, buf) if incomplete. Handles Content-Length,
    chunked, and (when the data ended) read-until-close bodies."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None, buf
    head = buf[:i].decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/(\d\.\d) (\d{3}) ?(.*)", head[0])
    if not m:
        raise TestFailure("bad status line %r" % head[0])
    hdrs = []
    for line in head[1:]:
        k, _, v = line.partition(":")
        hdrs.append((k.strip(), v.strip()))
    r = Response(int(m.group(2)), m.group(3), hdrs, b"")
    r.version = m.group(1)
    rest = buf[i + 4:]
    if r.status in (204, 304) or 100 <= r.status < 200:
        return r, rest
    te = r.header("transfer-encoding", "")
    if "chunked" in te.lower():
        body = b""
        while True:
            j = rest.find(b"\r\n")
            if j < 0:
                return None, buf
            size = int(rest[:j].split(b";")[0], 16)
            if len(rest) < j + 2 + size + 2:
                return None, buf
            body += rest[j + 2:j + 2 + size]
            rest = rest[j + 2 + size + 2:]
            if size == 0:
                r.body = body
                r.chunked_complete = True
                return r, rest
    cl = r.header("content-length")
    if cl is not None:
        n = int(cl)
        if len(rest) < n:
            return None, buf
        r.body = rest[:n]
        return r, rest[n:]
    r.body = rest
    return r, b""


def parse_responses(buf):
    out = []
    while buf:
        r, rest = parse_response(buf)
        if r is None:
            break
        out.append(r)
        buf = rest
    return out


def dechunk(data):
    """Decodes a chunked body; returns (payload, complete)."""
    out = b""
    while True:
        j = data.find(b"\r\n")
        if j < 0:
            return out, False
        try:
            size = int(data[:j].split(b";")[0], 16)
        except ValueError:
            return out, False
        if len(data) < j + 2 + size + 2:
            out += data[j + 2:j + 2 + size]
            return out, False
        out += data[j + 2:j + 2 + size]
        data = data[j + 2 + size + 2:]
        if size == 0:
            return out, True


# ---- SSE -----------------------------------------------------------------------

class Stream:
    """A streaming POST over a raw socket, read event by event with its own
    HTTP/1.1 framing (so a chunked body cut short is seen as such): .status,
    .headers (lower-case), .events as [(arrival_time, data_str)], .done (the
    body ended properly: terminating chunk, full Content-Length, or EOF of a
    close-delimited body), .error (why it did not), .t0 (request sent)."""

    def __init__(self, target, path, body, headers=None, timeout=15):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.sock = raw_connect(target, timeout)
        self.sock.settimeout(timeout)
        hdrs = {"Host": "llmux", "Content-Type": "application/json",
                "Content-Length": str(len(body))}
        hdrs.update(headers or {})
        req = "POST %s HTTP/1.1\r\n" % path
        req += "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        self.t0 = time.monotonic()
        self.sock.sendall(req.encode() + body)
        self.raw = b""
        self.eof = False
        while b"\r\n\r\n" not in self.raw:
            if not self._recv():
                raise TestFailure("connection closed before response headers: %r" % self.raw)
        head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        self.t_headers = time.monotonic()
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        cl = self.headers.get("content-length")
        self.left = int(cl) if cl is not None and not self.chunked else None
        self.chunk_left = 0          # bytes of the current chunk still to come
        self.ended = False           # body framing finished
        self.payload = b""           # decoded body not yet split into events
        self.body = b""              # whole decoded body
        self.events = []
        self.done = False
        self.error = None

    def _recv(self):
        d = self.sock.recv(65536)
        if not d:
            self.eof = True
            return False
        self.raw += d
        return True

    def _decode(self):
        """Moves what framing allows from .raw to .payload."""
        while self.raw and not self.ended:
            if not self.chunked:
                take = self.raw if self.left is None else self.raw[:self.left]
                self.raw = self.raw[len(take):]
                self._add(take)
                if self.left is not None:
                    self.left -= len(take)
                    if self.left == 0:
                        self.ended = True
                return
            if self.chunk_left > 0:
                take = self.raw[:self.chunk_left]
                self.raw = self.raw[len(take):]
                self.chunk_left -= len(take)
                self._add(take)
                if self.chunk_left > 0:
                    return
                self.chunk_left = -2         # CRLF after the data
                continue
            if self.chunk_left == -2:
                if len(self.raw) < 2:
                    return
                if self.raw[:2] != b"\r\n":
                    raise TestFailure("bad chunk end %r" % self.raw[:20])
                self.raw = self.raw[2:]
                self.chunk_left = 0
                continue
            if self.chunk_left == -3:        # trailers after the last chunk
                i = self.raw.find(b"\r\n")
                if i < 0:
                    return
                line, self.raw = self.raw[:i], self.raw[i + 2:]
                if line == b"":
                    self.ended = True
                continue
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            try:
                size = int(self.raw[:i].split(b";")[0], 16)
            except ValueError:
                raise TestFailure("bad chunk size line %r" % self.raw[:40])
            self.raw = self.raw[i + 2:]
            self.chunk_left = size if size > 0 else -3

    def _add(self, data):
        self.payload += data
        self.body += data

    def next_event(self):
        """Returns the next event's data string, or None at the end of the body."""
        while True:
            self._decode()
            self.payload = self.payload.replace(b"\r\n", b"\n")
            i = self.payload.find(b"\n\n")
            if i >= 0:
                block, self.payload = self.payload[:i], self.payload[i + 2:]
                data = [l[5:].lstrip(b" ") for l in block.split(b"\n") if l.startswith(b"data:")]
                if not data:
                    continue
                ev = b"\n".join(data).decode()
                self.events.append((time.monotonic(), ev))
                return ev
            if self.ended:
                self.done = True
                return None
            if self.eof:
                if self.chunked or self.left:
                    self.error = "connection closed before the body's end (%s)" % (
                        "no terminating chunk" if self.chunked else "%d bytes short" % self.left)
                else:
                    self.done = True
                return None
            try:
                self._recv()
            except ConnectionResetError as e:
                self.eof = True
                self.error = "connection reset: %r" % e
                return None

    def read_all(self):
        """Reads every event; an abrupt end is recorded in .error."""
        try:
            while self.next_event() is not None:
                pass
        except socket.timeout:
            self.error = "timed out reading the stream"
        return self

    def datas(self):
        return [d for _, d in self.events]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def stream(target, path, body, **kw):
    return Stream(target, path, body, **kw).read_all()


def sse_content(events):
    """Concatenated delta content / text of chat or completion chunks."""
    out = ""
    for d in events:
        if d == "[DONE]":
            continue
        j = json.loads(d)
        for ch in j.get("choices", []):
            out += (ch.get("delta") or {}).get("content") or ch.get("text") or ""
    return out


# ---- Prometheus text ---------------------------------------------------------------

_METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if not m:
            raise TestFailure("bad metrics line %r" % line)
        labels = dict(_LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric_sum(samples, name, **labels):
    """Sum of the samples of <name> whose labels include <labels>."""
    tot = 0.0
    for n, l, v in samples:
        if n == name and all(l.get(k) == str(w) for k, w in labels.items()):
            tot += v
    return tot


def metric_find(samples, name, **labels):
    return [(l, v) for n, l, v in samples
            if n == name and all(l.get(k) == str(w) for k, w in labels.items())]


# ---- processes -------------------------------------------------------------------------

class Upstream:
    """A running fake-upstream. .addr is "127.0.0.1:PORT" or "unix:PATH";
    .url is what a `upstream` directive takes."""

    def __init__(self, t, name, listen=None, **flags):
        self.t = t
        self.name = name
        self.flags = flags
        self.listen = listen or "127.0.0.1:0"
        self.proc = None
        self.start()

    def start(self):
        args = [FAKE, "--listen", self.listen, "--name", self.name]
        for k, v in self.flags.items():
            opt = "--" + k.replace("_", "-")
            if v is True:
                args.append(opt)
            elif v is not False and v is not None:
                args += [opt, str(v)]
        self.proc = self.t.spawn(args, "upstream-" + self.name, capture_stdout=True)
        line = self.t.read_line(self.proc, 5.0)
        m = re.match(r"listening on (\S+)", line or "")
        if not m:
            raise TestFailure("fake-upstream %s did not start: %r" % (self.name, line))
        self.addr = m.group(1)
        if not self.addr.startswith("unix:"):
            self.port = int(self.addr.rsplit(":", 1)[1])
            self.addr = "127.0.0.1:%d" % self.port
            self.listen = self.addr      # restart() reuses the same port
            self.url = "http://" + self.addr
        else:
            self.port = None
            self.url = self.addr
        return self

    def stats(self):
        return get(self, "/stats", timeout=5).json()

    def kill(self):
        self.t.kill(self.proc)

    def stop(self):
        self.t.terminate(self.proc)

    def restart(self):
        if self.proc.poll() is None:
            self.kill()
        return self.start()


class Gateway:
    def __init__(self, t, conf_path, addr, proc):
        self.t = t
        self.conf = conf_path
        self.addr = addr
        self.proc = proc
        if addr.startswith("unix:"):
            self.port = None
            self.url = None
        else:
            self.port = int(addr.rsplit(":", 1)[1])
            self.url = "http://" + addr
        self.error_log_path = os.path.join(t.dir, "error.log")
        self.access_log_path = os.path.join(t.dir, "access.log")
        self.pid_path = os.path.join(t.dir, "llmux.pid")

    def error_log(self):
        return _read(self.error_log_path)

    def access_log(self):
        return _read(self.access_log_path)

    def access_lines(self):
        return [l for l in self.access_log().splitlines() if l.strip()]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def metrics(self):
        r = get(self, "/metrics")
        eq(r.status, 200, "GET /metrics status")
        return parse_metrics(r.body.decode())

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure("llmux did not exit within %ss" % timeout)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def model_block(name, upstreams, extra=""):
    """`model NAME { upstream U; ... EXTRA }` from Upstream objects or URLs."""
    ups = " ".join("upstream %s;" % (u if isinstance(u, str) else u.url)
                   for u in upstreams)
    return "model %s { %s %s }\n" % (name, ups, extra)


class Test:
    """Per-test context: a fresh tmp dir and every process the test started."""

    def __init__(self, name, tmpdir):
        self.name = name
        self.dir = tmpdir
        self.procs = []          # [(Popen, label, logfile)]
        self.gateways = []
        self._bufs = {}

    # -- processes --
    def spawn(self, args, label, capture_stdout=False, **kw):
        logpath = os.path.join(self.dir, label + ".stderr")
        err = open(logpath, "ab")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE if capture_stdout else err,
                             stderr=err, cwd=self.dir, **kw)
        err.close()
        self.procs.append((p, label, logpath))
        return p

    def read_line(self, p, timeout):
        """One line of <p>'s stdout, or None on timeout/EOF."""
        fd = p.stdout.fileno()
        buf = self._bufs.get(p, b"")
        end = time.monotonic() + timeout
        while b"\n" not in buf:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            d = os.read(fd, 4096)
            if not d:
                break
            buf += d
        if b"\n" not in buf:
            self._bufs[p] = buf
            return None
        line, _, rest = buf.partition(b"\n")
        self._bufs[p] = rest
        return line.decode()

    def kill(self, p, sig=signal.SIGKILL):
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def terminate(self, p):
        self.kill(p, signal.SIGTERM)

    def cleanup(self):
        # SIGTERM first: a clean exit lets AddressSanitizer's leak check run
        # in the sanitizer build (tests/run.sh collects its reports); then
        # SIGKILL whatever is still there.
        for p, label, _ in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 3
        for p, label, _ in self.procs:
            try:
                p.wait(max(0.05, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
        for p, label, _ in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            if p.stdout:
                p.stdout.close()
        # daemonized gateways are not our children: kill them by pid file
        for g in self.gateways:
            pid = _read(g.pid_path).strip()
            if pid.isdigit() and int(pid) != (g.proc.pid if g.proc else -1):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for pid in getattr(self, "extra_pids", []):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def diagnostics(self):
        """Tails of logs to print when a test failed."""
        out = []
        for p, label, logpath in self.procs:
            txt = _read(logpath)
            if txt.strip():
                out.append("--- %s stderr (exit %s):" % (label, p.poll()))
                out += txt.splitlines()[-15:]
        for g in self.gateways:
            txt = g.error_log()
            if txt.strip():
                out.append("--- llmux error.log:")
                out += txt.splitlines()[-25:]
        return out

    # -- servers --
    def start_upstream(self, name, **flags):
        """fake-upstream --name NAME; flags: status, delay_ms, chunks,
        chunk_interval_ms, die_after_chunks, hang, health_status, listen."""
        listen = flags.pop("listen", None)
        return Upstream(self, name, listen, **flags)

    def gateway_conf(self, http_text, port=None, main_text="", listen=None):
        port = port or free_port()
        listen = listen or "127.0.0.1:%d" % port
        conf = ("daemon off;\nerror_log %s/error.log info;\npid %s/llmux.pid;\n%s\n"
                "http {\n    access_log %s/access.log;\n    listen %s;\n%s\n}\n"
                % (self.dir, self.dir, main_text, self.dir, listen, http_text))
        return conf, listen

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_gateway(self, http_text="", raw_conf=None, listen=None, main_text="",
                      wait=True, name="llmux.conf", extra_args=()):
        """Writes the conf (http_text goes inside http {}; or <raw_conf> as the
        whole file, with listen=ADDR to say where it listens) and starts
        `llmux -c CONF`; waits until it accepts connections."""
        if raw_conf is None:
            conf, addr = self.gateway_conf(http_text, listen=listen, main_text=main_text)
        else:
            conf, addr = raw_conf, listen
        path = self.write(name, conf)
        check(os.path.exists(LLMUX), "gateway binary %s does not exist" % LLMUX)
        p = self.spawn([LLMUX, "-c", path] + list(extra_args), "llmux")
        g = Gateway(self, path, addr, p)
        self.gateways.append(g)
        if wait:
            self.wait_gateway(g)
        return g

    def wait_gateway(self, g, timeout=10):
        end = time.monotonic() + timeout
        while True:
            if g.proc.poll() is not None:
                raise TestFailure("llmux exited with %s before accepting connections\n%s"
                                  % (g.proc.returncode, "\n".join(self.diagnostics())))
            try:
                s = raw_connect(g.addr, 1)
                s.close()
                return g
            except OSError:
                pass
            if time.monotonic() > end:
                raise TestFailure("llmux did not accept connections on %s within %ss"
                                  % (g.addr, timeout))
            time.sleep(0.02)

    def run_llmux(self, args, timeout=10):
        """Runs llmux to completion (e.g. -t); returns (rc, stdout+stderr)."""
        check(os.path.exists(LLMUX), "gateway binary %s does not exist" % LLMUX)
        p = subprocess.run([LLMUX] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=self.dir, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")


def openai_module():
    try:
        import openai  # noqa: F401
    except ImportError:
        raise Skip("python module openai is not installed")
    return openai


def openai_client(target, **kw):
    openai = openai_module()
    base = "http://%s/v1" % (target if isinstance(target, str) else target.addr)
    kw.setdefault("timeout", 15)
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=base, api_key="sk-test", **kw)
