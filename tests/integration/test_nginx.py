# test_nginx.py -- llmux behind nginx (proxy_buffering off, HTTP/1.1 upstream
# keep-alive): a stream goes nginx -> llmux -> fake upstream token by token,
# and the openai client works through the chain. Skipped without nginx.
import os
import shutil
import time

from lib import (TestFailure, chat_body, check, eq, free_port, model_block,
                 openai_client, post, raw_connect, stream)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def skip_reason():
    if not os.access(NGINX, os.X_OK):
        return "nginx is not installed"
    return None


def start_nginx(t, g):
    port = free_port()
    d = t.dir
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        os.makedirs(os.path.join(d, "nginx", sub), exist_ok=True)
    n = os.path.join(d, "nginx")
    conf = """daemon off;
master_process off;
pid {n}/nginx.pid;
error_log {n}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {n}/logs/access.log;
    client_body_temp_path {n}/client_body;
    proxy_temp_path {n}/proxy;
    fastcgi_temp_path {n}/fastcgi;
    uwsgi_temp_path {n}/uwsgi;
    scgi_temp_path {n}/scgi;
    upstream llmux {{ server {gw}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://llmux;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_set_header Connection "";
            proxy_read_timeout 30s;
        }}
    }}
}}
""".format(n=n, gw=g.addr, port=port)
    path = t.write("nginx.conf", conf)
    p = t.spawn([NGINX, "-p", n, "-c", path, "-e", os.path.join(n, "logs", "stderr.log")],
                "nginx")
    addr = "127.0.0.1:%d" % port
    end = time.monotonic() + 10
    while True:
        if p.poll() is not None:
            raise TestFailure("nginx exited with %s: %s" % (
                p.returncode, open(os.path.join(d, "nginx.stderr")).read()))
        try:
            raw_connect(addr, 1).close()
            return addr
        except OSError:
            if time.monotonic() > end:
                raise TestFailure("nginx did not start")
            time.sleep(0.05)


def test_stream_through_nginx(t):
    a = t.start_upstream("A", chunks=5, chunk_interval_ms=200)
    g = t.start_gateway(model_block("m1", [a]))
    front = start_nginx(t, g)
    s = stream(front, "/v1/chat/completions", chat_body("m1", stream=True))
    eq(s.status, 200, "status through nginx")
    check(s.error is None, "stream error %r" % s.error)
    times = [tm for tm, d in s.events if "tok" in d]
    eq(len(times), 5, "content events through nginx")
    check(times[-1] - times[0] >= 0.6, "first and last chunk %.3fs apart through nginx; "
          "expected >= 0.6s" % (times[-1] - times[0]))
    eq(s.datas()[-1], "[DONE]", "last event")
    eq(s.headers.get("x-llmux-model"), "m1", "x-llmux-model through nginx")


def test_requests_through_nginx_keepalive(t):
    a = t.start_upstream("A")
    g = t.start_gateway(model_block("m1", [a]))
    front = start_nginx(t, g)
    for i in range(20):
        r = post(front, "/v1/chat/completions", chat_body("m1", "n%d" % i))
        eq(r.status, 200, "request %d through nginx" % i)
        eq(r.json()["choices"][0]["message"]["content"], "A: n%d" % i, "content %d" % i)
    r = post(front, "/v1/chat/completions", chat_body("nope"))
    eq(r.status, 404, "unknown model through nginx")


def test_openai_client_through_nginx(t):
    a = t.start_upstream("A", chunks=4)
    g = t.start_gateway(model_block("m1", [a]))
    front = start_nginx(t, g)
    client = openai_client(front)
    resp = client.chat.completions.create(model="m1",
                                          messages=[{"role": "user", "content": "via nginx"}])
    eq(resp.choices[0].message.content, "A: via nginx", "content")
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "x"}], stream=True) if c.choices)
    eq(text, "tok0 tok1 tok2 tok3 ", "streamed content via nginx")
