/*
 * test_conf.c -- the configuration parser (gateway/gw_conf.c): one table of
 * {conf text, expected error or NULL} over every directive, value and error
 * message with its file:line; then sizes and durations, defaults and their
 * inheritance, quoting and comments, includes (globs, missing files, loops,
 * depth) in a mkdtemp directory, every prefix of a valid file, and the shipped
 * conf/llmux.conf (found through $LLMUX_SRCDIR, else ./ or ../).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_conf.h"
#include "log.h"
#include "tap.h"

#define M  "model m { upstream http://127.0.0.1:8001; }\n"
#define H(body) "http {\n" body "\n}\n"             /* body starts on line 2 */
#define HM(body) "http {\n" M body "\n}\n"          /* body starts on line 3 */
#define MB(body) H("model m {\nupstream http://127.0.0.1:8001;\n" body "\n}")  /* line 4 */
#define PB(body) H("model m {\npath /models/m;\n" body "\n}")  /* line 4 */
#define RB(body) HM("model n { upstream unix:/tmp/n.sock; }\nroute r {\n" body "\n}")  /* line 5 */

struct conf_case {
    const char *text;
    const char *err;            /* substring of the error, or NULL: must load */
};

static const struct conf_case cases[] = {
    /* ---- main context */
    { "daemon on;\n" H(""), NULL },
    { "daemon off;\n" H(""), NULL },
    { "daemon yes;\n" H(""), "t.conf:1: invalid value \"yes\" in \"daemon\" directive, it must be \"on\" or \"off\"" },
    { "daemon;\n" H(""), "t.conf:1: invalid number of arguments in \"daemon\" directive" },
    { "daemon on;\ndaemon off;\n" H(""), "t.conf:2: \"daemon\" directive is duplicate" },
    { "pid /run/llmux.pid;\n" H(""), NULL },
    { "pid a b;\n" H(""), "t.conf:1: invalid number of arguments in \"pid\" directive" },
    { "pid \"\";\n" H(""), "t.conf:1: invalid value \"\" in \"pid\" directive" },
    { "error_log stderr;\n" H(""), NULL },
    { "error_log /var/log/llmux.log debug;\n" H(""), NULL },
    { "error_log stderr crit;\n" H(""), NULL },
    { "error_log stderr loud;\n" H(""), "t.conf:1: invalid value \"loud\" in \"error_log\" directive" },
    { "error_log;\n" H(""), "t.conf:1: invalid number of arguments in \"error_log\" directive" },
    { "error_log a info x;\n" H(""), "invalid number of arguments in \"error_log\" directive" },
    { "worker_connections 10;\n" H(""), NULL },
    { "worker_connections 0;\n" H(""), "t.conf:1: invalid value \"0\" in \"worker_connections\" directive, it must be at least 1" },
    { "worker_connections -5;\n" H(""), "invalid value \"-5\" in \"worker_connections\"" },
    { "worker_connections 99999999999;\n" H(""), "invalid value \"99999999999\"" },
    { "worker_connections 12ab;\n" H(""), "invalid value \"12ab\"" },
    { "", "t.conf:1: no \"http\" block" },
    { "daemon on;\n\n", "t.conf:3: no \"http\" block" },
    { H("") H(""), "t.conf:4: \"http\" directive is duplicate" },
    { "http;\n", "t.conf:1: directive \"http\" has no opening \"{\"" },
    { "http x {\n}\n", "t.conf:1: invalid number of arguments in \"http\" directive" },
    { "listen 8000;\n" H(""), "t.conf:1: \"listen\" directive is not allowed here" },
    { "model m { upstream http://a; }\n" H(""), "t.conf:1: \"model\" directive is not allowed here" },

    /* ---- http context */
    { H("listen 127.0.0.1:8000;"), NULL },
    { H("listen [::1]:8000;"), NULL },
    { H("listen *:8000;"), NULL },
    { H("listen 8000;"), NULL },
    { H("listen localhost:8080;"), NULL },
    { H("listen unix:/run/llmux.sock;"), NULL },
    { H("listen 8000;\nlisten 8001;\nlisten unix:/tmp/a.sock;"), NULL },
    { H("listen 0;"), "t.conf:2: invalid value \"0\" in \"listen\" directive" },
    { H("listen 65536;"), "invalid value \"65536\" in \"listen\" directive, the port must be" },
    { H("listen 127.0.0.1:;"), "invalid value \"127.0.0.1:\" in \"listen\"" },
    { H("listen 127.0.0.1;"), "invalid value \"127.0.0.1\" in \"listen\"" },
    { H("listen 300.1.1.1:80;"), "the host must be an IPv4 address" },
    { H("listen example.com:80;"), "the host must be" },
    { H("listen [::1;"), "invalid value \"[::1\" in \"listen\"" },
    { H("listen [zz]:80;"), "invalid IPv6 address" },
    { H("listen :80;"), "invalid value \":80\"" },
    { H("listen unix:;"), "the socket path is empty" },
    { H("listen unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;"), "too long" },
    { H("listen 8000;\nlisten 8000;"), "t.conf:3: duplicate \"listen\" address \"8000\" (first defined at t.conf:2)" },
    { H("lissten 8000;"), "t.conf:2: unknown directive \"lissten\"; did you mean \"listen\"?" },
    { H("frobnicate 1;"), "t.conf:2: unknown directive \"frobnicate\"" },
    { H("timeuot 5s;"), "did you mean \"timeout\"?" },
    { H("access_log /var/log/llmux/access.log;"), NULL },
    { H("access_log off;"), NULL },
    { H("access_log off;\naccess_log /x;"), "t.conf:3: \"access_log\" directive is duplicate" },
    { H("client_max_body_size 0;"), NULL },
    { H("client_max_body_size 8m;"), NULL },
    { H("client_max_body_size 5q;"), "t.conf:2: invalid value \"5q\" in \"client_max_body_size\" directive" },
    { H("client_max_body_size 99999999999g;"), "invalid value \"99999999999g\"" },
    { H("client_header_timeout 10s;"), NULL },
    { H("client_header_timeout 0;"), "it must be at least 1ms" },
    { H("client_body_timeout 1m30s;"), NULL },
    { H("client_body_timeout x;"), "invalid value \"x\" in \"client_body_timeout\"" },
    { H("send_timeout 250ms;"), NULL },
    { H("send_timeout 5;"), NULL },
    { H("keepalive_timeout 0;"), NULL },
    { H("keepalive_timeout 75s;"), NULL },
    { H("timeout 5q;"), "t.conf:2: invalid value \"5q\" in \"timeout\" directive" },
    { H("timeout 1h;"), NULL },
    { H("timeout 0s;"), "invalid value \"0s\" in \"timeout\" directive, it must be at least 1ms" },
    { H("connect_timeout 2s;"), NULL },
    { H("connect_timeout 2s 3s;"), "invalid number of arguments in \"connect_timeout\"" },
    { H("upstream_keepalive 0;"), NULL },
    { H("upstream_keepalive 64;"), NULL },
    { H("upstream_keepalive many;"), "invalid value \"many\" in \"upstream_keepalive\"" },
    { H("max_attempts 1;"), NULL },
    { H("max_attempts 16;"), NULL },
    { H("max_attempts 0;"), "invalid value \"0\" in \"max_attempts\" directive, it must be from 1 to 16" },
    { H("max_attempts 17;"), "it must be from 1 to 16" },
    { H("max_fails 1;"), NULL },
    { H("max_fails 0;"), "invalid value \"0\" in \"max_fails\" directive, it must be at least 1" },
    { H("fail_timeout 0;"), "invalid value \"0\" in \"fail_timeout\" directive, it must be at least 1ms" },
    { H("shutdown_timeout 0;"), NULL },
    { H("fail_timeout 30s;"), NULL },
    { H("fail_timeout 30x;"), "invalid value \"30x\" in \"fail_timeout\"" },
    { H("shutdown_timeout 1m;"), NULL },
    { H("shutdown_timeout;"), "invalid number of arguments in \"shutdown_timeout\"" },
    { H("daemon on;"), "t.conf:2: \"daemon\" directive is not allowed here" },
    { H("upstream http://a;"), "t.conf:2: \"upstream\" directive is not allowed here" },
    { H("split a 1;"), "\"split\" directive is not allowed here" },
    { H("http {\n}"), "t.conf:2: \"http\" directive is not allowed here" },

    /* ---- model context */
    { H("model m {\nupstream http://127.0.0.1:8001;\n}"), NULL },
    { MB("upstream http://10.0.0.5;"), NULL },
    { MB("upstream http://host.example-1.com:9000/v1;"), NULL },
    { MB("upstream http://[::1]:8001/prefix/;"), NULL },
    { MB("upstream unix:/run/worker.sock;"), NULL },
    { MB("upstream https://api.example.com;"), "t.conf:4: invalid value \"https://api.example.com\" in \"upstream\" directive, TLS upstreams (https://) are not supported yet" },
    { MB("upstream ftp://x;"), "invalid value \"ftp://x\" in \"upstream\" directive, it must be http://" },
    { MB("upstream 127.0.0.1:8001;"), "invalid value \"127.0.0.1:8001\" in \"upstream\"" },
    { MB("upstream http://;"), "the host is missing" },
    { MB("upstream http://h:0;"), "the port must be" },
    { MB("upstream http://h:99999;"), "the port must be" },
    { MB("upstream http://h:80x;"), "invalid value \"http://h:80x\"" },
    { MB("upstream http://h/a?b=1;"), "must not hold a query" },
    { MB("upstream http://[::1;"), "invalid value \"http://[::1\"" },
    { MB("upstream unix:;"), "the socket path is empty" },
    { MB("upstream unix:run/w.sock;"), "the socket path must be absolute" },
    { H("listen unix:run/llmux.sock;"), NULL },
    { H("model m {\n}"), "t.conf:2: model \"m\" has neither \"upstream\" nor \"path\"" },
    { H("model m {\nalias x;\n}"), "t.conf:2: model \"m\" has neither \"upstream\" nor \"path\"" },
    { H("model m;"), "t.conf:2: directive \"model\" has no opening \"{\"" },
    { H("model {\nupstream http://a;\n}"), "t.conf:2: invalid number of arguments in \"model\" directive" },
    { H("model a b {\nupstream http://a;\n}"), "invalid number of arguments in \"model\"" },
    { H("model \"bad name\" {\nupstream http://a;\n}"), "t.conf:2: invalid value \"bad name\" in \"model\" directive, a name is 1 to 128" },
    { H("model Qwen/Qwen3-30B-A3B@int4:latest+x_y.z {\nupstream http://a;\n}"), NULL },
    { H("model aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa {\nupstream http://a;\n}"), "a name is 1 to 128" },
    { MB("alias chat;\nalias gpt-4o;"), NULL },
    { MB("alias;"), "t.conf:4: invalid number of arguments in \"alias\" directive" },
    { MB("alias a b;"), "invalid number of arguments in \"alias\" directive" },
    { MB("alias a$b;"), "invalid value \"a$b\" in \"alias\"" },
    { MB("task chat;"), NULL },
    { MB("task embed;"), NULL },
    { MB("task rerank;"), NULL },
    { MB("task transcribe;"), NULL },
    { MB("task dance;"), "invalid value \"dance\" in \"task\" directive, it must be one of chat, embed, rerank, transcribe" },
    { MB("task chat;\ntask embed;"), "t.conf:5: \"task\" directive is duplicate" },
    { MB("max_connections 0;\nkeepalive 0;"), NULL },
    { MB("max_connections 8;"), NULL },
    { MB("max_connections -1;"), "invalid value \"-1\" in \"max_connections\"" },
    { MB("timeout 30s;\nconnect_timeout 1s;"), NULL },
    { MB("timeout 0;"), "it must be at least 1ms" },
    { MB("keepalive 4;"), NULL },
    { MB("keepalive x;"), "invalid value \"x\" in \"keepalive\"" },
    { MB("listen 8000;"), "t.conf:4: \"listen\" directive is not allowed here" },
    { MB("model x {\nupstream http://a;\n}"), "\"model\" directive is not allowed here" },
    { MB("upstrem http://a;"), "t.conf:4: unknown directive \"upstrem\"; did you mean \"upstream\"?" },
    { MB("upstream_keepalive 3;"), "\"upstream_keepalive\" directive is not allowed here" },

    /* ---- spawned workers */
    { PB("replicas 2;\ngpus 0,1 | 2,3;\ndevice cuda;\ndtype bfloat16;\nmax_model_len 8192;\n"
         "max_num_seqs 16;\nmax_num_batched_tokens 1024;\ngpu_memory_utilization 0.6;\n"
         "served_name a;\nserved_name b;\nreasoning_parser qwen3;\ntool_call_parser hermes;\n"
         "env A=1;\nenv B=x=y;\nuser nobody;\ngroup nogroup;\nlog /tmp/m.log;\nqueue_timeout 5s;\n"
         "drain_timeout 10s;\nrestart_backoff 1s 30s;\nmax_restarts 5 60s;\n"
         "health_check interval=1s timeout=500ms fails=2 passes=1;\nkv_cache_memory 64m;\nthreads 2;"),
      NULL },
    { PB("gpus cpu;"), NULL },
    { PB("gpus 0|1;\nreplicas 2;"), NULL },
    { PB("gpus 0 | 1;"), "t.conf:2: model \"m\": \"gpus\" lists 2 replica(s) but \"replicas\" is 1" },
    { PB("gpus 0,,1;"), "invalid value \"0,,1\" in \"gpus\" directive" },
    { PB("gpus 0 |;"), "in \"gpus\" directive, an empty replica list" },
    { PB("gpus x;"), "invalid value \"x\" in \"gpus\" directive, it must be \"cpu\" or GPU numbers" },
    { PB("replicas 0;"), "invalid value \"0\" in \"replicas\" directive, it must be from 1 to 64" },
    { PB("device tpu;"), "invalid value \"tpu\" in \"device\" directive, it must be one of cpu, cuda, auto" },
    { PB("gpu_memory_utilization 1.5;"), "it must be a number in (0, 1]" },
    { PB("env NOEQ;"), "invalid value \"NOEQ\" in \"env\" directive, it must be NAME=VALUE" },
    { PB("restart_backoff 5s 1s;"), "the maximum must not be below the minimum" },
    { PB("restart_backoff 5s;"), "invalid number of arguments in \"restart_backoff\"" },
    { PB("max_restarts x;"), "invalid value \"x\" in \"max_restarts\"" },
    { PB("health_check interval=0;"), "invalid value \"interval=0\" in \"health_check\"" },
    { PB("health_check every=1s;"), "expected interval=, timeout=, fails= or passes=" },
    { PB("kv_cache_memory lots;"), "invalid value \"lots\" in \"kv_cache_memory\"" },
    { PB("upstream http://a;"), "t.conf:2: model \"m\" has both \"upstream\" and \"path\"" },
    { H("worker_binary /usr/bin/llmux-worker;\nruntime_dir /run/llmux;\nhealth_check interval=2s;"), NULL },
    { "admin_socket /run/llmux/admin.sock;\n" H(""), NULL },
    { "admin_socket a b;\n" H(""), "invalid number of arguments in \"admin_socket\"" },

    /* ---- names share one namespace */
    { H("model qwen3 {\nupstream http://a;\n}\nmodel qwen3 {\nupstream http://b;\n}"),
      "t.conf:5: duplicate model \"qwen3\" (first defined at t.conf:2)" },
    { HM("model n {\nupstream http://a;\nalias m;\n}"),
      "t.conf:5: duplicate alias \"m\" (first defined as model at t.conf:2)" },
    { MB("alias x;\nalias x;"), "t.conf:5: duplicate alias \"x\" (first defined at t.conf:4)" },
    { MB("alias m;"), "duplicate alias \"m\" (first defined as model at t.conf:2)" },
    { HM("route m {\nsplit m 1;\n}"), "t.conf:3: duplicate route \"m\" (first defined as model at t.conf:2)" },
    { HM("route r {\nsplit m 1;\n}\nroute r {\nsplit m 1;\n}"), "t.conf:6: duplicate route \"r\" (first defined at t.conf:3)" },
    { HM("route r {\nsplit m 1;\n}\nmodel r {\nupstream http://a;\n}"),
      "t.conf:6: duplicate model \"r\" (first defined as route at t.conf:3)" },

    /* ---- route context */
    { RB("split m 90;\nsplit n 10;\nsticky header:X-User;\nfallback m;"), NULL },
    { RB("split m 1;\nsticky field:user;"), NULL },
    { RB("split m 1000000;\nsplit n 0;"), NULL },
    { RB("split m 1000001;"), "t.conf:5: invalid value \"1000001\" in \"split\" directive, the weight must be" },
    { RB("split m -1;"), "invalid value \"-1\" in \"split\"" },
    { RB("split m x;"), "invalid value \"x\" in \"split\"" },
    { RB("split m;"), "t.conf:5: invalid number of arguments in \"split\" directive" },
    { RB("split m 1 2;"), "invalid number of arguments in \"split\"" },
    { RB("split m 1;\nsplit m 2;"), "t.conf:6: duplicate \"split\" of model \"m\" in route \"r\" (first defined at t.conf:5)" },
    { RB(""), "t.conf:4: route \"r\" has no \"split\"" },
    { RB("split m 0;\nsplit n 0;"), "t.conf:4: route \"r\" has no \"split\" with a weight above 0" },
    { RB("split foo 1;"), "t.conf:5: \"split\" names unknown model \"foo\"" },
    { RB("split m 1;\nfallback foo;"), "t.conf:6: \"fallback\" names unknown model \"foo\"" },
    { H("model m {\nupstream http://a;\nalias chat;\n}\nroute r {\nsplit chat 1;\n}"),
      "t.conf:7: \"split\" names alias \"chat\", not a model (defined at t.conf:4)" },
    { H("route r {\nsplit m 1;\n}\nroute q {\nsplit r 1;\n}\n" M),
      "t.conf:6: \"split\" names route \"r\", not a model" },
    { H("route r {\nsplit m 1;\nfallback m;\n}\n" M), NULL },      /* order does not matter */
    { RB("split m 1;\nsticky cookie:x;"), "invalid value \"cookie:x\" in \"sticky\" directive, it must be header:NAME or field:NAME" },
    { RB("split m 1;\nsticky header:;"), "the name after \":\" is empty" },
    { RB("split m 1;\nsticky field:;"), "the name after \":\" is empty" },
    { RB("split m 1;\nsticky header:X(User);"), "invalid character" },
    { RB("split m 1;\nsticky field:user;\nsticky field:id;"), "t.conf:7: \"sticky\" directive is duplicate" },
    { RB("split m 1;\nfallback m;\nfallback n;"), "t.conf:7: \"fallback\" directive is duplicate" },
    { RB("split m 1;\nfallback;"), "invalid number of arguments in \"fallback\"" },
    { RB("upstream http://a;"), "t.conf:5: \"upstream\" directive is not allowed here" },
    { RB("splt m 1;"), "did you mean \"split\"?" },
    { H("route \"a b\" {\nsplit m 1;\n}"), "invalid value \"a b\" in \"route\" directive" },

    /* ---- syntax */
    { "daemon on\n" H(""), "t.conf:1: directive \"daemon\" is not terminated by \";\"" },
    { "daemon on\npid /x;\n" H(""), "t.conf:1: invalid number of arguments in \"daemon\" directive" },
    { "http {\nlisten 8000;\n", "t.conf:2: unexpected end of file, expecting \"}\"" },
    { "http {\nlisten 8000\n}\n", "t.conf:3: unexpected \"}\"" },
    { H("") "}\n", "t.conf:4: unexpected \"}\"" },
    { "}\n", "t.conf:1: unexpected \"}\"" },
    { H("") "daemon on", "t.conf:4: unexpected end of file, expecting \";\" or \"}\"" },
    { H("") "daemon\n\n", "t.conf:4: unexpected end of file, expecting \";\" or \"}\"" },
    { H(";"), "t.conf:2: unexpected \";\"" },
    { H("{"), "t.conf:2: unexpected \"{\"" },
    { H("listen 8000 {\n}"), "t.conf:2: directive \"listen\" is not terminated by \";\"" },
    { "http {\nmodel m {\nupstream http://a;\n}\n", "unexpected end of file, expecting \"}\"" },
    { "http {\nmodel m {\nupstream http://a;\n", "t.conf:3: unexpected end of file, expecting \"}\"" },
    { "pid \"/run/unterminated;\n" H(""), "t.conf:1: unterminated quoted string" },
    { "pid \"a\"b;\n" H(""), "t.conf:1: unexpected \"b\" after a quoted string" },
    { "# a comment\ndaemon on; # trailing comment\n# http { broken\n" H(""), NULL },
    { "daemon\ton;\r\n" H("listen\n8000\n;"), NULL },
    { "pid \"/run/with;semi{brace}#hash\";\n" H(""), NULL },
    { "pid '/run/single quoted';\n" H(""), NULL },
    { "\"daemon\" \"on\";\n" H(""), NULL },
    { "daemon on;;\n" H(""), "t.conf:1: unexpected \";\"" },
    { "http{listen 8000;model m{upstream http://a;}route r{split m 1;}}", NULL },
    { "pid a\nb;\n" H(""), "t.conf:1: invalid number of arguments in \"pid\" directive" },
    { "pid \"multi\nline\";\n\ndaemon x;\n" H(""), "t.conf:4: invalid value \"x\" in \"daemon\"" },
};

static void test_table(void)
{
    char err[GW_CONF_ERRLEN];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct conf_case *c = &cases[i];
        struct gw_conf *conf = gw_conf_load_string(c->text, "t.conf", err);
        if (c->err == NULL) {
            ok(conf != NULL, "case %zu loads%s%s", i, conf ? "" : ": ", conf ? "" : err);
        } else {
            ok(conf == NULL && strstr(err, c->err) != NULL, "case %zu fails with '%s' (got '%s')",
               i, c->err, conf ? "success" : err);
        }
        gw_conf_free(conf);
    }
}

static void test_values(void)
{
    static const struct { const char *s; int64_t v; } sizes[] = {
        { "0", 0 }, { "512", 512 }, { "512k", 524288 }, { "512K", 524288 },
        { "8m", 8388608 }, { "8M", 8388608 }, { "8g", 8589934592LL }, { "8G", 8589934592LL },
        { "8589934591g", 8589934591LL << 30 }, { "8589934592g", -1 }, { "", -1 }, { "k", -1 },
        { "-1", -1 }, { "5q", -1 }, { "8mb", -1 }, { "1.5m", -1 }, { " 8", -1 },
        { "99999999999999999999", -1 },
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        ok(gw_conf_parse_size(sizes[i].s) == sizes[i].v, "size \"%s\" -> %lld", sizes[i].s,
           (long long)sizes[i].v);
    static const struct { const char *s; int64_t v; } times[] = {
        { "0", 0 }, { "30", 30000 }, { "250ms", 250 }, { "5s", 5000 }, { "1m", 60000 },
        { "1h", 3600000 }, { "1d", 86400000 }, { "1m30s", 90000 }, { "1h1m1s1ms", 3661001 },
        { "2d12h", 216000000 }, { "90s", 90000 }, { "0ms", 0 },
        { "30s1m", -1 }, { "1s1s", -1 }, { "1m30", -1 }, { "", -1 }, { "s", -1 }, { "5x", -1 },
        { "-5s", -1 }, { "5 s", -1 }, { "1.5s", -1 }, { "5S", -1 }, { "ms", -1 },
        { "9999999999999999999d", -1 }, { "106751991167d", 106751991167LL * 86400000 }, { "106751991168d", -1 },
    };
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++)
        ok(gw_conf_parse_msec(times[i].s) == times[i].v, "duration \"%s\" -> %lld", times[i].s,
           (long long)times[i].v);
    ok(strcmp(gw_task_name(GW_TASK_CHAT), "chat") == 0 &&
       strcmp(gw_task_name(GW_TASK_EMBED), "embed") == 0 &&
       strcmp(gw_task_name(GW_TASK_RERANK), "rerank") == 0 &&
       strcmp(gw_task_name(GW_TASK_TRANSCRIBE), "transcribe") == 0, "gw_task_name");
    ok(strcmp(gw_task_name(99), "unknown") == 0 && strcmp(gw_task_name(-1), "unknown") == 0,
       "gw_task_name out of range");
}

static void test_defaults(void)
{
    char err[GW_CONF_ERRLEN];
    struct gw_conf *c = gw_conf_load_string("http {\n" M "}\n", "d.conf", err);
    ok(c != NULL, "minimal conf loads: %s", c ? "" : err);
    if (c == NULL)
        return;
    ok(c->daemon == 0 && c->pid_file == NULL && c->error_log == NULL &&
       c->error_log_level == LOG_NOTICE && c->worker_connections == 1024,
       "main defaults: daemon off, no pid, error_log stderr notice, worker_connections 1024");
    ok(c->n_listens == 1 && strcmp(c->listens[0].addr, "127.0.0.1:8000") == 0 &&
       strcmp(c->listens[0].pos.file, "d.conf") == 0, "default listen 127.0.0.1:8000");
    ok(c->access_log == NULL && c->client_max_body_size == 16 << 20, "access_log off, body 16m");
    ok(c->client_header_timeout_ms == 60000 && c->client_body_timeout_ms == 60000 &&
       c->send_timeout_ms == 60000 && c->keepalive_timeout_ms == 75000, "client timeouts");
    ok(c->timeout_ms == 600000 && c->connect_timeout_ms == 5000 && c->upstream_keepalive == 32,
       "upstream defaults");
    ok(c->max_attempts == 3 && c->max_fails == 1 && c->fail_timeout_ms == 10000 &&
       c->shutdown_timeout_ms == 30000, "failover and shutdown defaults");
    ok(c->n_models == 1 && strcmp(c->models[0].name, "m") == 0 && c->models[0].task == GW_TASK_CHAT &&
       c->models[0].max_connections == 0 && c->models[0].timeout_ms == 600000 &&
       c->models[0].connect_timeout_ms == 5000 && c->models[0].keepalive == 32 &&
       c->models[0].n_aliases == 0 && c->models[0].pos.line == 2,
       "model defaults come from http defaults");
    ok(c->n_routes == 0 && c->n_files == 1 && strcmp(c->files[0], "d.conf") == 0 &&
       strcmp(c->file, "d.conf") == 0, "files");
    gw_conf_free(c);
}

static void test_values_loaded(void)
{
    char err[GW_CONF_ERRLEN];
    const char *text =
        "daemon on;\n"
        "pid /run/llmux.pid;\n"
        "error_log /var/log/llmux.log debug;\n"
        "worker_connections 77;\n"
        "http {\n"
        "    listen 127.0.0.1:9000;\n"
        "    listen unix:/run/llmux.sock;\n"
        "    access_log /var/log/access.log;\n"
        "    client_max_body_size 32m;\n"
        "    client_header_timeout 5s;\n"
        "    client_body_timeout 6s;\n"
        "    send_timeout 7s;\n"
        "    keepalive_timeout 0;\n"
        "    timeout 2m;\n"
        "    connect_timeout 1500ms;\n"
        "    upstream_keepalive 8;\n"
        "    max_attempts 5;\n"
        "    max_fails 2;\n"
        "    fail_timeout 20s;\n"
        "    shutdown_timeout 1m;\n"
        "    model a {\n"
        "        upstream http://10.0.0.1:8001/v1;\n"
        "        upstream unix:/run/a.sock;\n"
        "        alias a1; alias a2;\n"
        "        task embed;\n"
        "        max_connections 4;\n"
        "        timeout 30s;\n"
        "        connect_timeout 1s;\n"
        "        keepalive 2;\n"
        "    }\n"
        "    model b { upstream http://h; task rerank; }\n"
        "    route r {\n"
        "        split a 70;\n"
        "        split b 30;\n"
        "        sticky header:X-User;\n"
        "        fallback b;\n"
        "    }\n"
        "    route s { split b 1; sticky field:user; }\n"
        "}\n";
    struct gw_conf *c = gw_conf_load_string(text, "v.conf", err);
    ok(c != NULL, "full conf loads: %s", c ? "" : err);
    if (c == NULL)
        return;
    ok(c->daemon == 1 && strcmp(c->pid_file, "/run/llmux.pid") == 0 &&
       strcmp(c->error_log, "/var/log/llmux.log") == 0 && c->error_log_level == LOG_DEBUG &&
       c->worker_connections == 77, "main values");
    ok(c->n_listens == 2 && strcmp(c->listens[0].addr, "127.0.0.1:9000") == 0 &&
       c->listens[0].pos.line == 6 && strcmp(c->listens[1].addr, "unix:/run/llmux.sock") == 0 &&
       strcmp(c->listens[1].pos.file, "v.conf") == 0, "listens with positions");
    ok(strcmp(c->access_log, "/var/log/access.log") == 0 && c->client_max_body_size == 32 << 20,
       "access_log, body size");
    ok(c->client_header_timeout_ms == 5000 && c->client_body_timeout_ms == 6000 &&
       c->send_timeout_ms == 7000 && c->keepalive_timeout_ms == 0, "client timeouts set");
    ok(c->timeout_ms == 120000 && c->connect_timeout_ms == 1500 && c->upstream_keepalive == 8 &&
       c->max_attempts == 5 && c->max_fails == 2 && c->fail_timeout_ms == 20000 &&
       c->shutdown_timeout_ms == 60000, "upstream and failover values");
    struct gw_model_conf *a = &c->models[0], *b = &c->models[1];
    ok(c->n_models == 2 && strcmp(a->name, "a") == 0 && a->n_upstreams == 2 &&
       strcmp(a->upstreams[0], "http://10.0.0.1:8001/v1") == 0 &&
       strcmp(a->upstreams[1], "unix:/run/a.sock") == 0 && a->pos.line == 21, "model a upstreams");
    ok(a->n_aliases == 2 && strcmp(a->aliases[0], "a1") == 0 && strcmp(a->aliases[1], "a2") == 0,
       "model a aliases");
    ok(a->task == GW_TASK_EMBED && a->max_connections == 4 && a->timeout_ms == 30000 &&
       a->connect_timeout_ms == 1000 && a->keepalive == 2, "model a own values");
    ok(b->task == GW_TASK_RERANK && b->timeout_ms == 120000 && b->connect_timeout_ms == 1500 &&
       b->keepalive == 8 && b->max_connections == 0, "model b inherits http timeout, connect_timeout, keepalive");
    struct gw_route_conf *r = &c->routes[0], *s = &c->routes[1];
    ok(c->n_routes == 2 && strcmp(r->name, "r") == 0 && r->n_splits == 2 &&
       strcmp(r->splits[0].model, "a") == 0 && r->splits[0].weight == 70 &&
       r->splits[0].pos.line == 33 && strcmp(r->splits[1].model, "b") == 0 &&
       r->splits[1].weight == 30, "route splits");
    ok(r->sticky == GW_STICKY_HEADER && strcmp(r->sticky_key, "X-User") == 0 &&
       strcmp(r->fallback, "b") == 0 && r->pos.line == 32, "route sticky header, fallback");
    ok(s->sticky == GW_STICKY_FIELD && strcmp(s->sticky_key, "user") == 0 && s->fallback == NULL,
       "route sticky field, no fallback");
    gw_conf_free(c);

    /* quoting and escapes */
    c = gw_conf_load_string("pid \"/a b/\\\"q\\\"\\\\\\t\\n;{}#\";\n"
                            "error_log '/x\\'y' warn;\n"
                            "http { access_log a\\;b; }\n", "q.conf", err);
    ok(c != NULL && strcmp(c->pid_file, "/a b/\"q\"\\\t\n;{}#") == 0,
       "double-quoted string with escapes, ; { } # inside quotes");
    ok(c != NULL && strcmp(c->error_log, "/x'y") == 0 && c->error_log_level == LOG_WARN,
       "single-quoted string with escape");
    ok(c != NULL && strcmp(c->access_log, "a;b") == 0, "escaped ; in an unquoted word");
    gw_conf_free(c);
    c = gw_conf_load_string("pid \"\\d\";\nerror_log stderr info;\nhttp{}", "q.conf", err);
    ok(c != NULL && strcmp(c->pid_file, "\\d") == 0 && c->error_log == NULL &&
       c->error_log_level == LOG_INFO, "unknown escape kept; error_log stderr is NULL");
    gw_conf_free(c);
    c = gw_conf_load_string("pid a#b;\nhttp{}", "q.conf", err);
    ok(c != NULL && strcmp(c->pid_file, "a#b") == 0, "# inside a word is not a comment");
    gw_conf_free(c);
    c = gw_conf_load_string("pid a\\ b\\{c\\}\\x;\nhttp{}", "q.conf", err);
    ok(c != NULL && strcmp(c->pid_file, "a b{c}\\x") == 0, "escaped space and braces in a word");
    gw_conf_free(c);
}

/* ---- files -------------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void test_includes(void)
{
    char tmpl[] = "/tmp/test_conf.XXXXXX", err[GW_CONF_ERRLEN], path[512], want[1024];
    char *dir = mkdtemp(tmpl);
    if (dir == NULL) {
        ok(0, "mkdtemp");
        return;
    }
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/conf.d", dir);
    if (mkdir(sub, 0700) != 0) {
        ok(0, "mkdir");
        return;
    }
    snprintf(sub, sizeof(sub), "%s/empty.d", dir);
    if (mkdir(sub, 0700) != 0) {
        ok(0, "mkdir");
        return;
    }

    write_file(dir, "conf.d/b.conf", "model b {\n    upstream http://127.0.0.1:8002;\n}\n");
    write_file(dir, "conf.d/a.conf", "model a {\n    include upstreams.inc;\n}\n");
    write_file(dir, "upstreams.inc", "upstream http://127.0.0.1:8001;\nupstream unix:/x.sock;\n");
    write_file(dir, "main.conf",
               "include main.inc;\n"
               "http {\n"
               "    include conf.d/*.conf;\n"
               "    include empty.d/*.conf;\n"
               "    route r { split a 1; split b 1; }\n"
               "}\n");
    write_file(dir, "main.inc", "daemon on;\n");
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    struct gw_conf *c = gw_conf_load(path, err);
    ok(c != NULL, "includes with a glob load: %s", c ? "" : err);
    if (c != NULL) {
        ok(c->daemon == 1, "main-context include applies");
        ok(c->n_models == 2 && strcmp(c->models[0].name, "a") == 0 &&
           strcmp(c->models[1].name, "b") == 0, "glob results are read in sorted order");
        ok(c->models[0].n_upstreams == 2, "include inside a model block");
        ok(c->n_files == 5 && strcmp(c->files[0], path) == 0, "every file is recorded (%zu)",
           c->n_files);
        snprintf(want, sizeof(want), "%s/conf.d/b.conf", dir);
        ok(strcmp(c->models[1].pos.file, want) == 0 && c->models[1].pos.line == 1,
           "positions name the included file");
        ok(strcmp(c->file, path) == 0, "conf->file is the main path");
        gw_conf_free(c);
    }

    /* relative includes resolve against the main file's directory, not the cwd */
    char cwd[512];
    if (getcwd(cwd, sizeof(cwd)) != NULL && chdir("/") == 0) {
        c = gw_conf_load(path, err);
        ok(c != NULL, "relative include independent of cwd: %s", c ? "" : err);
        gw_conf_free(c);
        if (chdir(cwd) != 0)
            perror("chdir");
    }

    /* missing file, no wildcard */
    write_file(dir, "missing.conf", "daemon on;\ninclude nothere.conf;\nhttp {}\n");
    snprintf(path, sizeof(path), "%s/missing.conf", dir);
    c = gw_conf_load(path, err);
    snprintf(want, sizeof(want), "%s:2: cannot open included file \"%s/nothere.conf\": No such file",
             path, dir);
    ok(c == NULL && strstr(err, want) != NULL, "missing include: %s", err);

    /* loop */
    write_file(dir, "loop.conf", "include loop2.conf;\nhttp {}\n");
    write_file(dir, "loop2.conf", "\ninclude loop.conf;\n");
    snprintf(path, sizeof(path), "%s/loop.conf", dir);
    c = gw_conf_load(path, err);
    snprintf(want, sizeof(want), "%s/loop2.conf:2: include loop: \"%s/loop.conf\" is already being read",
             dir, dir);
    ok(c == NULL && strstr(err, want) != NULL, "include loop: %s", err);
    write_file(dir, "self.inc", "include self.inc;\n");
    write_file(dir, "self.conf", "http { include self.inc; }\n");
    snprintf(path, sizeof(path), "%s/self.conf", dir);
    c = gw_conf_load(path, err);
    ok(c == NULL && strstr(err, "self.inc:1: include loop") != NULL, "self include: %s", err);

    /* depth: 17 nested distinct files */
    for (int i = 0; i < 18; i++) {
        char name[64], text[128];
        snprintf(name, sizeof(name), "d%d.inc", i);
        snprintf(text, sizeof(text), "include d%d.inc;\n", i + 1);
        write_file(dir, name, text);
    }
    write_file(dir, "deep.conf", "include d0.inc;\nhttp {}\n");
    snprintf(path, sizeof(path), "%s/deep.conf", dir);
    c = gw_conf_load(path, err);
    ok(c == NULL && strstr(err, "too many nested includes") != NULL, "include depth bound: %s", err);

    /* an error inside an included file names that file and line */
    write_file(dir, "conf.d/c.conf", "model c {\n    upstream http://x;\n    lissten 1;\n}\n");
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    c = gw_conf_load(path, err);
    snprintf(want, sizeof(want), "%s/conf.d/c.conf:3: unknown directive \"lissten\"", dir);
    ok(c == NULL && strstr(err, want) != NULL, "error position in an included file: %s", err);

    /* duplicate across files names both */
    write_file(dir, "conf.d/c.conf", "\nmodel a { upstream http://x; }\n");
    c = gw_conf_load(path, err);
    snprintf(want, sizeof(want), "%s/conf.d/c.conf:2: duplicate model \"a\" (first defined at %s/conf.d/a.conf:1)",
             dir, dir);
    ok(c == NULL && strstr(err, want) != NULL, "duplicate across files: %s", err);

    /* an included file must be balanced on its own */
    write_file(dir, "conf.d/c.conf", "}\n");
    c = gw_conf_load(path, err);
    ok(c == NULL && strstr(err, "c.conf:1: unexpected \"}\"") != NULL, "unbalanced include: %s", err);
    write_file(dir, "conf.d/c.conf", "model c {\n upstream http://x;\n");
    c = gw_conf_load(path, err);
    ok(c == NULL && strstr(err, "c.conf:2: unexpected end of file, expecting \"}\"") != NULL,
       "unterminated block in include: %s", err);

    /* a directory named without wildcard */
    write_file(dir, "dir.conf", "http { include conf.d; }\n");
    snprintf(path, sizeof(path), "%s/dir.conf", dir);
    c = gw_conf_load(path, err);
    ok(c == NULL && strstr(err, "dir.conf:1: cannot open included file") != NULL &&
       strstr(err, "Is a directory") != NULL, "include of a directory: %s", err);

    /* load_string: includes resolve against the name's directory */
    snprintf(path, sizeof(path), "%s/virtual.conf", dir);
    c = gw_conf_load_string("http { include conf.d/b.conf; }", path, err);
    ok(c != NULL && c->n_models == 1 && c->n_files == 2, "load_string include: %s", c ? "" : err);
    gw_conf_free(c);

    /* main file missing */
    snprintf(path, sizeof(path), "%s/nope.conf", dir);
    c = gw_conf_load(path, err);
    snprintf(want, sizeof(want), "%s:0: cannot open configuration file: No such file", path);
    ok(c == NULL && strstr(err, want) != NULL, "missing main file: %s", err);

    /* NUL byte */
    snprintf(path, sizeof(path), "%s/nul.conf", dir);
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fwrite("http {}\n\0x", 1, 10, f);
        fclose(f);
    }
    c = gw_conf_load(path, err);
    ok(c == NULL && strstr(err, "nul.conf:2: unexpected NUL byte") != NULL, "NUL byte: %s", err);

    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        diag("could not remove %s", dir);
}

/* Every prefix of a valid file either loads or fails with a positioned error;
 * under ASan this also shows no leak on any error path. */
static void test_prefixes(void)
{
    const char *text =
        "daemon off; # c\n"
        "error_log stderr info;\n"
        "http {\n"
        "  listen 127.0.0.1:8000;\n"
        "  model \"m\" { upstream http://127.0.0.1:8001; alias 'x'; timeout 1m30s; }\n"
        "  model n { upstream unix:/tmp/n.sock; task embed; }\n"
        "  route r { split m 9; split n 1; sticky field:user; fallback m; }\n"
        "}\n";
    char err[GW_CONF_ERRLEN], buf[1024];
    size_t len = strlen(text), bad = 0, loaded = 0;
    for (size_t i = 0; i <= len; i++) {
        memcpy(buf, text, i);
        buf[i] = '\0';
        struct gw_conf *c = gw_conf_load_string(buf, "p.conf", err);
        if (c != NULL)
            loaded++;
        else if (strncmp(err, "p.conf:", 7) != 0)
            bad++;
        gw_conf_free(c);
    }
    ok(bad == 0 && loaded >= 2, "all %zu prefixes parse or fail with a position (%zu loaded)",
       len + 1, loaded);
}

static const char *const all_directives[] = {
    "daemon", "pid", "error_log", "worker_connections", "http", "include", "admin_socket",
    "listen", "access_log", "client_max_body_size", "client_header_timeout",
    "client_body_timeout", "send_timeout", "keepalive_timeout", "timeout", "connect_timeout",
    "upstream_keepalive", "max_attempts", "max_fails", "fail_timeout", "shutdown_timeout",
    "model", "route", "upstream", "alias", "task", "max_connections", "keepalive",
    "split", "sticky", "fallback",
    "worker_binary", "runtime_dir", "health_check", "path", "replicas", "gpus", "device",
    "dtype", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
    "gpu_memory_utilization", "kv_cache_memory", "threads", "served_name", "reasoning_parser",
    "tool_call_parser", "env", "user", "group", "log", "queue_timeout", "drain_timeout",
    "restart_backoff", "max_restarts",
};

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t got;
    while (b != NULL && (got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    if (b != NULL)
        b[n] = '\0';
    return b;
}

/* The shipped file with every commented-out directive line ("# name ...;",
 * "# name ... {", "# }") turned on, except include: new, caller frees. */
static char *uncomment_all(const char *text)
{
    size_t len = strlen(text);
    char *out = malloc(len + 1), *o = out;
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) + 1 : strlen(line);
        const char *ws = line, *r;
        while (ws < line + n && (*ws == ' ' || *ws == '\t'))
            ws++;
        r = ws;
        int on = 0;
        if (r < line + n && *r == '#') {
            for (r++; *r == ' '; r++)
                ;
            const char *e = line + n;
            while (e > r && (e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\r'))
                e--;
            on = e > r && ((*r >= 'a' && *r <= 'z' && (e[-1] == ';' || e[-1] == '{')) ||
                           (e - r == 1 && *r == '}')) && strncmp(r, "include", 7) != 0;
            if (on) {
                memcpy(o, line, (size_t)(ws - line));
                o += ws - line;
                memcpy(o, r, (size_t)(e - r));
                o += e - r;
                *o++ = '\n';
            }
        }
        if (!on) {
            memcpy(o, line, n);
            o += n;
        }
        line += n;
    }
    *o = '\0';
    return out;
}

static void test_shipped(void)
{
    char err[GW_CONF_ERRLEN], path[1024];
    const char *src = getenv("LLMUX_SRCDIR");
    const char *tries[] = { "conf/llmux.conf", "../conf/llmux.conf" };
    struct gw_conf *c = NULL;
    if (src != NULL) {
        snprintf(path, sizeof(path), "%s/conf/llmux.conf", src);
    } else {
        snprintf(path, sizeof(path), "%s", tries[0]);
        if (access(path, R_OK) != 0)
            snprintf(path, sizeof(path), "%s", tries[1]);
    }
    c = gw_conf_load(path, err);
    ok(c != NULL, "shipped %s loads: %s", path, c ? "" : err);
    if (c != NULL) {
        ok(c->daemon == 0 && c->worker_connections == 1024 && c->n_listens == 1 &&
           strcmp(c->listens[0].addr, "127.0.0.1:8000") == 0 &&
           c->client_max_body_size == 16 << 20 && c->timeout_ms == 600000 &&
           c->connect_timeout_ms == 5000 && c->max_attempts == 3,
           "shipped conf keeps the defaults");
        ok(c->n_models >= 1 && c->models[0].n_upstreams >= 1, "shipped conf has an example model");
    }
    gw_conf_free(c);

    /* the commented-out lines are valid too, and show every directive */
    char *text = read_all(path), *all = text ? uncomment_all(text) : NULL;
    c = all ? gw_conf_load_string(all, path, err) : NULL;
    ok(c != NULL && c->n_routes >= 1 && c->pid_file != NULL,
       "shipped conf with every example uncommented loads: %s", c ? "" : err);
    gw_conf_free(c);
    size_t missing = 0;
    for (size_t i = 0; all && i < sizeof(all_directives) / sizeof(all_directives[0]); i++) {
        char word[64];
        snprintf(word, sizeof(word), "\n%s ", all_directives[i]);
        int found = 0;
        for (const char *q = all; !found && (q = strchr(q, '\n')) != NULL; q++) {
            const char *w = q + 1;
            while (*w == ' ')
                w++;
            found = strncmp(w, word + 1, strlen(word + 1)) == 0 ||
                    (strcmp(all_directives[i], "include") == 0 && strstr(w, "# include ") == w);
        }
        if (!found) {
            diag("%s is not in the shipped conf", all_directives[i]);
            missing++;
        }
    }
    ok(all != NULL && missing == 0, "the shipped conf shows every directive");
    free(text);
    free(all);

    /* and the man page documents every one */
    char man[1024];
    snprintf(man, sizeof(man), "%.*sman/llmux.conf.5", (int)(strlen(path) - strlen("conf/llmux.conf")),
             path);
    char *page = read_all(man);
    missing = 0;
    for (size_t i = 0; page && i < sizeof(all_directives) / sizeof(all_directives[0]); i++) {
        char item[80];
        snprintf(item, sizeof(item), ".It Ic %s", all_directives[i]);
        if (strstr(page, item) == NULL) {
            diag("%s is not documented in %s", all_directives[i], man);
            missing++;
        }
    }
    ok(page != NULL && missing == 0, "%s documents every directive", man);
    free(page);
}

int main(void)
{
    test_table();
    test_values();
    test_defaults();
    test_values_loaded();
    test_includes();
    test_prefixes();
    test_shipped();
    return tap_done();
}
