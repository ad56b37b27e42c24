/*
 * test_metrics.c -- gateway/gw_metrics.c: the rendered exposition (counters,
 * cumulative histogram buckets, gauges, per-backend series from a hand-built
 * router), label escaping, one HELP/TYPE per family, determinism, bounded
 * cardinality, and a structural check of text format 0.0.4. When
 * LLMUX_METRICS_DUMP names a file, the exposition is written there too (for
 * an outside parser such as prometheus_client).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "gw_metrics.h"
#include "gw_router.h"
#include "log.h"
#include "tap.h"
#include "util.h"

/* The exposition of <m> (and <r>) as a new NUL-terminated string. */
static char *render(struct gw_metrics *m, const struct gw_router *r)
{
    struct evbuffer *b = evbuffer_new();
    gw_metrics_render(m, r, b);
    size_t n = evbuffer_get_length(b);
    char *s = xmalloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

/* 1 when <text> has <line> as a whole line. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

/* Lines starting with <prefix>. */
static int count_prefix(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, len) == 0;
    return n;
}

/* ---- a small text format 0.0.4 checker ------------------------------------------ */

static int is_name_start(int c) { return isalpha(c) || c == '_' || c == ':'; }
static int is_name_char(int c) { return isalnum(c) || c == '_' || c == ':'; }

/* The family a sample name belongs to, given the current TYPE line. */
static int sample_in_family(const char *sample, size_t n, const char *fam, const char *type)
{
    size_t lf = strlen(fam);
    if (n == lf && strncmp(sample, fam, n) == 0)
        return strcmp(type, "histogram") != 0;
    if (strcmp(type, "histogram") != 0 || n <= lf || strncmp(sample, fam, lf) != 0)
        return 0;
    const char *suf = sample + lf;
    size_t ls = n - lf;
    return (ls == 7 && strncmp(suf, "_bucket", 7) == 0) || (ls == 4 && strncmp(suf, "_sum", 4) == 0) ||
           (ls == 6 && strncmp(suf, "_count", 6) == 0);
}

/* Checks every line: "# HELP name text", "# TYPE name type" (one per family,
 * before its samples), samples "name{l="v",...} value" that belong to the
 * family of the last TYPE line, label values with only \\ \" \n escapes, and
 * each family's name seen once. Returns NULL or a static reason; <bad> gets
 * the line number. */
static const char *check_exposition(const char *text, int *bad)
{
    char fam[256] = "", type[64] = "";
    char seen[64][256];
    int n_seen = 0, line = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '\n');
        line++;
        *bad = line;
        if (end == NULL)
            return "last line lacks a newline";
        size_t len = (size_t)(end - p);
        if (len >= 2 && p[0] == '#') {
            char kw[8], name[256], rest[64];
            if (sscanf(p, "# %7s %255s %63s", kw, name, rest) != 3)
                return "bad comment line";
            if (strcmp(kw, "TYPE") == 0) {
                if (strcmp(rest, "counter") && strcmp(rest, "gauge") && strcmp(rest, "histogram"))
                    return "unknown type";
                for (int i = 0; i < n_seen; i++)
                    if (strcmp(seen[i], name) == 0)
                        return "family declared twice";
                if (n_seen < 64)
                    snprintf(seen[n_seen++], sizeof(seen[0]), "%s", name);
                snprintf(fam, sizeof(fam), "%s", name);
                snprintf(type, sizeof(type), "%s", rest);
            } else if (strcmp(kw, "HELP") != 0) {
                return "comment neither HELP nor TYPE";
            }
            p = end + 1;
            continue;
        }
        const char *q = p;
        if (!is_name_start((unsigned char)*q))
            return "bad metric name";
        while (is_name_char((unsigned char)*q))
            q++;
        if (!sample_in_family(p, (size_t)(q - p), fam, type))
            return "sample outside its family";
        if (*q == '{') {
            q++;
            while (*q != '}') {
                if (!is_name_start((unsigned char)*q))
                    return "bad label name";
                while (is_name_char((unsigned char)*q))
                    q++;
                if (q[0] != '=' || q[1] != '"')
                    return "label without =\"";
                q += 2;
                while (*q != '"') {
                    if (*q == '\n' || *q == '\0')
                        return "unterminated label value";
                    if (*q == '\\') {
                        if (q[1] != '\\' && q[1] != '"' && q[1] != 'n')
                            return "bad escape";
                        q++;
                    }
                    q++;
                }
                q++;
                if (*q == ',')
                    q++;
                else if (*q != '}')
                    return "junk after label value";
            }
            q++;
        }
        if (*q++ != ' ')
            return "no space before value";
        char *vend;
        if (strncmp(q, "+Inf", 4) == 0)
            vend = (char *)q + 4;
        else
            strtod(q, &vend);
        if (vend == q || vend != end)
            return "bad value";
        p = end + 1;
    }
    *bad = 0;
    return NULL;
}

/* ---- router for backend series ------------------------------------------------- */

static struct gw_router *router_make(void)
{
    static char *ups[] = { (char *)"http://127.0.0.1:8001", (char *)"unix:/tmp/q.sock" };
    struct gw_model_conf mc[1];
    struct gw_conf c;
    char err[GW_CONF_ERRLEN];
    memset(&c, 0, sizeof(c));
    memset(mc, 0, sizeof(mc));
    mc[0].name = (char *)"qwen3";
    mc[0].upstreams = ups;
    mc[0].n_upstreams = 2;
    c.models = mc;
    c.n_models = 1;
    struct gw_router *r = gw_router_new(&c, err);
    if (r == NULL)
        diag("%s", err);
    return r;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_empty(void)
{
    struct gw_metrics *m = gw_metrics_new();
    char *s = render(m, NULL);
    int bad;
    const char *why = check_exposition(s, &bad);
    ok(why == NULL, "empty exposition is well formed (%s at line %d)", why ? why : "", bad);
    ok(has_line(s, "# TYPE llmux_build_info gauge") && count_prefix(s, "llmux_build_info{version=\"") == 1,
       "build_info present");
    ok(count_prefix(s, "llmux_start_time_seconds ") == 1, "start time present");
    ok(has_line(s, "llmux_requests_in_flight 0") && has_line(s, "llmux_connections_active 0") &&
       has_line(s, "llmux_connections_total 0"), "unlabelled gauges start at 0");
    ok(has_line(s, "# TYPE llmux_requests_total counter") &&
       has_line(s, "# TYPE llmux_request_duration_seconds histogram") &&
       has_line(s, "# TYPE llmux_backend_up gauge"), "families declared before first use");
    ok(count_prefix(s, "llmux_requests_total") == 0, "no series before first use");
    free(s);
    gw_metrics_free(m);
}

static void test_requests(void)
{
    struct gw_metrics *m = gw_metrics_new();
    const char *chat = "/v1/chat/completions";
    gw_metrics_request_done(m, "qwen3", chat, 200, 0.003, 0.001, 100, 1000);
    gw_metrics_request_done(m, "qwen3", chat, 200, 0.02, 0.01, 100, 1000);
    gw_metrics_request_done(m, "qwen3", chat, 200, 0.7, -1, 100, 1000);
    gw_metrics_request_done(m, "qwen3", chat, 502, 400.0, 0.3, 50, 0);
    gw_metrics_request_done(m, "", "/v1/models", 200, 0.0001, 0.0001, 0, 10);
    gw_metrics_request_done(m, "", "/wp-login.php", 404, 0.0001, 0.0001, 0, 10);
    gw_metrics_request_done(m, "", "/v1/models/qwen3", 200, 0.0001, 0.0001, 0, 10);
    gw_metrics_request_done(m, "bge-m3", "/v1/embeddings?x=1", 200, 0.01, 0.01, 7, 8);
    gw_metrics_connect_error(m, "qwen3#1");
    gw_metrics_connect_error(m, "qwen3#1");
    gw_metrics_retry(m, "qwen3");
    gw_metrics_in_flight(m, 1);
    gw_metrics_in_flight(m, 1);
    gw_metrics_in_flight(m, -1);
    gw_metrics_connection(m, 1);
    gw_metrics_connection(m, 1);
    gw_metrics_connection(m, -1);
    char *s = render(m, NULL);

    ok(has_line(s, "llmux_requests_total{model=\"qwen3\",route=\"/v1/chat/completions\",status=\"200\"} 3"),
       "requests_total by model, route, status");
    ok(has_line(s, "llmux_requests_total{model=\"qwen3\",route=\"/v1/chat/completions\",status=\"502\"} 1"),
       "requests_total 502");
    ok(has_line(s, "llmux_requests_total{model=\"\",route=\"other\",status=\"404\"} 1"),
       "unknown path counted as route=\"other\"");
    ok(has_line(s, "llmux_requests_total{model=\"\",route=\"/v1/models/{model}\",status=\"200\"} 1"),
       "model lookups share one route label");
    ok(has_line(s, "llmux_requests_total{model=\"bge-m3\",route=\"/v1/embeddings\",status=\"200\"} 1"),
       "query string dropped from the route");

    static const struct { const char *le; int n; } want[] = {
        { "0.005", 1 }, { "0.01", 1 }, { "0.025", 2 }, { "0.05", 2 }, { "0.1", 2 }, { "0.25", 2 },
        { "0.5", 2 }, { "1", 3 }, { "2.5", 3 }, { "5", 3 }, { "10", 3 }, { "30", 3 }, { "60", 3 },
        { "120", 3 }, { "300", 3 }, { "+Inf", 4 },
    };
    int all = 1;
    char line[256];
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        snprintf(line, sizeof(line),
                 "llmux_request_duration_seconds_bucket{model=\"qwen3\",route=\"/v1/chat/completions\",le=\"%s\"} %d",
                 want[i].le, want[i].n);
        if (!has_line(s, line)) {
            diag("missing: %s", line);
            all = 0;
        }
    }
    ok(all, "duration buckets are cumulative, with +Inf");
    ok(has_line(s, "llmux_request_duration_seconds_count{model=\"qwen3\",route=\"/v1/chat/completions\"} 4"),
       "histogram count");
    ok(has_line(s, "llmux_request_duration_seconds_sum{model=\"qwen3\",route=\"/v1/chat/completions\"} 400.723"),
       "histogram sum");
    ok(has_line(s, "llmux_time_to_first_byte_seconds_count{model=\"qwen3\"} 3") &&
       has_line(s, "llmux_time_to_first_byte_seconds_bucket{model=\"qwen3\",le=\"0.005\"} 1") &&
       has_line(s, "llmux_time_to_first_byte_seconds_bucket{model=\"qwen3\",le=\"0.01\"} 2"),
       "ttfb histogram skips requests without a first byte");
    ok(has_line(s, "llmux_request_bytes_total{model=\"qwen3\"} 350") &&
       has_line(s, "llmux_response_bytes_total{model=\"qwen3\"} 3000"), "byte counters");
    ok(has_line(s, "llmux_upstream_connect_errors_total{backend=\"qwen3#1\"} 2"), "connect errors");
    ok(has_line(s, "llmux_upstream_retries_total{model=\"qwen3\"} 1"), "retries");
    ok(has_line(s, "llmux_requests_in_flight 1"), "in-flight gauge");
    ok(has_line(s, "llmux_connections_active 1") && has_line(s, "llmux_connections_total 2"),
       "connection gauge and counter");

    ok(count_prefix(s, "# TYPE llmux_requests_total ") == 1 &&
       count_prefix(s, "# HELP llmux_requests_total ") == 1 &&
       count_prefix(s, "# TYPE llmux_request_duration_seconds ") == 1 &&
       count_prefix(s, "# HELP llmux_request_duration_seconds ") == 1,
       "HELP and TYPE once per family");
    int bad;
    const char *why = check_exposition(s, &bad);
    ok(why == NULL, "exposition is well formed (%s at line %d)", why ? why : "", bad);

    /* Sorted by label text: "" before "bge-m3" before "qwen3". */
    const char *a = strstr(s, "llmux_request_bytes_total{model=\"\"}");
    const char *b = strstr(s, "llmux_request_bytes_total{model=\"bge-m3\"}");
    const char *c = strstr(s, "llmux_request_bytes_total{model=\"qwen3\"}");
    ok(a && b && c && a < b && b < c, "series sorted by labels");
    char *s2 = render(m, NULL);
    ok(strcmp(s, s2) == 0, "rendering twice gives the same text");
    free(s2);
    free(s);
    gw_metrics_free(m);
}

/* Same observations in another order render the same series text. */
static void test_deterministic(void)
{
    struct gw_metrics *m1 = gw_metrics_new(), *m2 = gw_metrics_new();
    const char *models[] = { "c", "a", "b", "qwen3" };
    for (int i = 0; i < 4; i++)
        gw_metrics_request_done(m1, models[i], "/v1/completions", 200 + i, 0.1 * i, 0.01, 1, 2);
    for (int i = 3; i >= 0; i--)
        gw_metrics_request_done(m2, models[i], "/v1/completions", 200 + i, 0.1 * i, 0.01, 1, 2);
    char *s1 = render(m1, NULL), *s2 = render(m2, NULL);
    /* start_time may differ by a second between the two objects */
    char *t1 = strstr(s1, "# HELP llmux_requests_in_flight"), *t2 = strstr(s2, "# HELP llmux_requests_in_flight");
    ok(t1 && t2 && strcmp(t1, t2) == 0, "insertion order does not change the output");
    free(s1);
    free(s2);
    gw_metrics_free(m1);
    gw_metrics_free(m2);
}

static void test_escaping(void)
{
    struct gw_metrics *m = gw_metrics_new();
    gw_metrics_retry(m, "a\"b\\c\nd");
    gw_metrics_retry(m, "bad\xff\xfe utf8 \xc3\xa9");
    gw_metrics_retry(m, "comma,{brace}=x");
    char *s = render(m, NULL);
    ok(has_line(s, "llmux_upstream_retries_total{model=\"a\\\"b\\\\c\\nd\"} 1"),
       "\\ \" and newline escaped");
    ok(has_line(s, "llmux_upstream_retries_total{model=\"bad\xef\xbf\xbd\xef\xbf\xbd utf8 \xc3\xa9\"} 1"),
       "invalid UTF-8 bytes replaced, valid kept");
    ok(has_line(s, "llmux_upstream_retries_total{model=\"comma,{brace}=x\"} 1"),
       "other characters pass unchanged");
    int bad;
    const char *why = check_exposition(s, &bad);
    ok(why == NULL, "escaped exposition is well formed (%s at line %d)", why ? why : "", bad);
    free(s);
    gw_metrics_free(m);
}

static void test_cardinality(void)
{
    struct gw_metrics *m = gw_metrics_new();
    char name[32];
    for (int i = 0; i < 2500; i++) {
        snprintf(name, sizeof(name), "model-%d", i);
        gw_metrics_retry(m, name);
    }
    gw_metrics_retry(m, "model-7");
    char *s = render(m, NULL);
    int n = count_prefix(s, "llmux_upstream_retries_total{");
    ok(n == 2001, "a family stops at 2000 label sets plus \"other\" (%d)", n);
    ok(has_line(s, "llmux_upstream_retries_total{model=\"other\"} 500"), "overflow counted in \"other\"");
    ok(has_line(s, "llmux_upstream_retries_total{model=\"model-7\"} 2"), "existing series still count");
    free(s);
    gw_metrics_free(m);
}

static void test_backends(void)
{
    struct gw_router *r = router_make();
    if (!ok(r != NULL, "router builds"))
        return;
    struct gw_backend **b = r->models[0]->backends;
    b[0]->in_flight = 3;
    b[0]->requests = 42;
    b[1]->state = GW_BACKEND_DOWN;
    b[1]->connect_errors = 5;
    struct gw_metrics *m = gw_metrics_new();
    char *s = render(m, r);
    ok(has_line(s, "llmux_backend_up{model=\"qwen3\",backend=\"qwen3#0\"} 1") &&
       has_line(s, "llmux_backend_up{model=\"qwen3\",backend=\"qwen3#1\"} 0"), "backend_up");
    ok(has_line(s, "llmux_backend_in_flight{model=\"qwen3\",backend=\"qwen3#0\"} 3") &&
       has_line(s, "llmux_backend_in_flight{model=\"qwen3\",backend=\"qwen3#1\"} 0"), "backend_in_flight");
    ok(has_line(s, "llmux_backend_requests_total{model=\"qwen3\",backend=\"qwen3#0\"} 42"),
       "backend_requests_total");
    ok(has_line(s, "llmux_backend_connect_errors_total{model=\"qwen3\",backend=\"qwen3#1\"} 5"),
       "backend_connect_errors_total");
    ok(has_line(s, "# TYPE llmux_backend_requests_total counter") &&
       count_prefix(s, "# TYPE llmux_backend_up ") == 1, "backend families declared once");
    int bad;
    const char *why = check_exposition(s, &bad);
    ok(why == NULL, "exposition with backends is well formed (%s at line %d)", why ? why : "", bad);

    /* A full sample for an outside parser. */
    const char *dump = getenv("LLMUX_METRICS_DUMP");
    if (dump != NULL) {
        gw_metrics_request_done(m, "qwen3", "/v1/chat/completions", 200, 1.5, 0.2, 10, 20);
        gw_metrics_request_done(m, "we\"ird\\\nname", "/v1/embeddings", 503, 0.01, -1, 1, 2);
        gw_metrics_connect_error(m, "qwen3#1");
        gw_metrics_retry(m, "qwen3");
        free(s);
        s = render(m, r);
        FILE *f = fopen(dump, "w");
        ok(f != NULL && fputs(s, f) >= 0 && fclose(f) == 0, "exposition written to %s", dump);
    }
    free(s);
    gw_metrics_free(m);
    gw_router_free(r);
}

int main(void)
{
    log_init("test");
    log_set_level(LOG_ERR);
    test_empty();
    test_requests();
    test_deterministic();
    test_escaping();
    test_cardinality();
    test_backends();
    return tap_done();
}
