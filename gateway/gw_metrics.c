/*
 * gw_metrics.c -- the gateway's Prometheus metrics. Every family is one row
 * of a constant table; a series is (family, label values) and lives in one
 * open-addressing hash map, created on first use. Invariants: a series' label
 * text is already escaped and UTF-8 clean, so rendering only prints; output is
 * deterministic (families in table order, series sorted by label text);
 * label cardinality is bounded (unknown endpoint paths fold into "other",
 * and a family stops growing at GW_METRICS_MAX_SERIES label sets). Only the
 * event loop thread uses a struct gw_metrics; there is no global state.
 */
#include "gw_metrics.h"

#include "gw_api.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "gw_router.h"
#include "log.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

/* Label sets per family beyond which new ones fold into one "other" series. */
#define GW_METRICS_MAX_SERIES 2000
#define MAX_LABELS            3

/* Upper bounds of the latency buckets, in seconds; +Inf is implicit. */
static const double latency_bounds[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
};
#define N_BOUNDS ARRAY_SIZE(latency_bounds)

enum metric_type { MT_COUNTER = 0, MT_GAUGE, MT_HISTOGRAM };

static const char *const type_names[] = { "counter", "gauge", "histogram" };

/* The families the map holds, in render order. */
enum family_id {
    FAM_REQUESTS = 0,
    FAM_DURATION,
    FAM_TTFB,
    FAM_REQUEST_BYTES,
    FAM_RESPONSE_BYTES,
    FAM_CONNECT_ERRORS,
    FAM_RETRIES,
    FAM_COUNT
};

struct family_def {
    const char *name;
    const char *help;
    int         type;           /* enum metric_type */
    const char *labels[MAX_LABELS];
};

static const struct family_def families[FAM_COUNT] = {
    [FAM_REQUESTS] = { "llmux_requests_total", "Requests answered, by model, endpoint and status.",
                       MT_COUNTER, { "model", "route", "status" } },
    [FAM_DURATION] = { "llmux_request_duration_seconds",
                       "Time from request start to the last response byte.",
                       MT_HISTOGRAM, { "model", "route" } },
    [FAM_TTFB] = { "llmux_time_to_first_byte_seconds",
                   "Time from request start to the first response byte.",
                   MT_HISTOGRAM, { "model" } },
    [FAM_REQUEST_BYTES] = { "llmux_request_bytes_total", "Bytes read from clients.",
                            MT_COUNTER, { "model" } },
    [FAM_RESPONSE_BYTES] = { "llmux_response_bytes_total", "Bytes written to clients.",
                             MT_COUNTER, { "model" } },
    [FAM_CONNECT_ERRORS] = { "llmux_upstream_connect_errors_total",
                             "Failed connections to backends (kept across reloads).",
                             MT_COUNTER, { "backend" } },
    [FAM_RETRIES] = { "llmux_upstream_retries_total",
                      "Attempts that failed over to another backend.",
                      MT_COUNTER, { "model" } },
};

struct series {
    int       family;           /* enum family_id */
    char     *labels;           /* 'model="x",route="y"' escaped; "" when none */
    uint64_t  value;            /* counters */
    uint64_t  count;            /* histograms: observations */
    double    sum;              /* histograms: sum of observations */
    uint64_t  buckets[N_BOUNDS + 1]; /* histograms, not cumulative; last is +Inf */
};

struct family_state {
    struct series **list;       /* insertion order */
    size_t          n, cap;
    int             overflowed; /* warned once */
};

struct gw_metrics {
    struct series     **slots;  /* open addressing, power-of-two capacity */
    size_t              cap, n;
    struct family_state fam[FAM_COUNT];
    int64_t             in_flight;
    int64_t             connections_active;
    uint64_t            connections_total;
    int64_t             start_time;
    /* scratch for building label text */
    char               *key;
    size_t              key_len, key_cap;
};

/* ---- label text -------------------------------------------------------------- */

static void key_reserve(struct gw_metrics *m, size_t more)
{
    if (m->key_len + more + 1 > m->key_cap) {
        size_t cap = m->key_cap ? m->key_cap : 128;
        while (cap < m->key_len + more + 1)
            cap *= 2;
        m->key = xrealloc(m->key, cap);
        m->key_cap = cap;
    }
}

static void key_add(struct gw_metrics *m, const char *s, size_t n)
{
    key_reserve(m, n);
    memcpy(m->key + m->key_len, s, n);
    m->key_len += n;
    m->key[m->key_len] = '\0';
}

/* Length of the valid UTF-8 sequence at <s> (<n> bytes left), or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Append <name>="<value>" to the scratch key, escaping \ " and newline as the
 * text format 0.0.4 asks, and replacing bytes that are not UTF-8 with U+FFFD
 * (a scrape with invalid UTF-8 is rejected whole). */
static void key_add_label(struct gw_metrics *m, const char *name, const char *value)
{
    const unsigned char *v = (const unsigned char *)(value ? value : "");
    size_t n = strlen((const char *)v);
    if (m->key_len > 0)
        key_add(m, ",", 1);
    key_add(m, name, strlen(name));
    key_add(m, "=\"", 2);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq_len(v + i, n - i);
        if (len == 0) {
            key_add(m, "\xef\xbf\xbd", 3);
            i++;
        } else if (v[i] == '\\') {
            key_add(m, "\\\\", 2);
            i++;
        } else if (v[i] == '"') {
            key_add(m, "\\\"", 2);
            i++;
        } else if (v[i] == '\n') {
            key_add(m, "\\n", 2);
            i++;
        } else {
            key_add(m, (const char *)v + i, len);
            i += len;
        }
    }
    key_add(m, "\"", 1);
}

/* Build the label text of <fam> for <values> into the scratch key. */
static void key_build(struct gw_metrics *m, int fam, const char *const *values)
{
    m->key_len = 0;
    key_reserve(m, 0);
    m->key[0] = '\0';
    for (size_t i = 0; i < MAX_LABELS && families[fam].labels[i] != NULL; i++)
        key_add_label(m, families[fam].labels[i], values[i]);
}

/* ---- series map ----------------------------------------------------------------- */

static uint64_t series_hash(int fam, const char *labels, size_t len)
{
    return hash64(labels, len, (uint64_t)fam + 1);
}

static void map_grow(struct gw_metrics *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct series **slots = xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < m->cap; i++) {
        struct series *s = m->slots[i];
        if (s == NULL)
            continue;
        size_t j = (size_t)series_hash(s->family, s->labels, strlen(s->labels)) & (cap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
}

/* The series of <fam> whose label text is the scratch key: found, or created
 * when <create> (new series start at zero). NULL only when !<create>. */
static struct series *map_lookup(struct gw_metrics *m, int fam, int create)
{
    if ((m->n + 1) * 10 > m->cap * 7)
        map_grow(m);
    size_t mask = m->cap - 1;
    size_t i = (size_t)series_hash(fam, m->key, m->key_len) & mask;
    for (; m->slots[i] != NULL; i = (i + 1) & mask) {
        struct series *s = m->slots[i];
        if (s->family == fam && strcmp(s->labels, m->key) == 0)
            return s;
    }
    if (!create)
        return NULL;
    struct series *s = xcalloc(1, sizeof(*s));
    s->family = fam;
    s->labels = xstrndup(m->key, m->key_len);
    m->slots[i] = s;
    m->n++;
    struct family_state *fs = &m->fam[fam];
    xgrow((void **)&fs->list, &fs->cap, fs->n + 1, sizeof(*fs->list));
    fs->list[fs->n++] = s;
    return s;
}

/* The series of <fam> for label <values> (one per label of the family),
 * created on first use. Once the family holds GW_METRICS_MAX_SERIES label
 * sets, a new set is counted in the series whose every label is "other". */
static struct series *series_get(struct gw_metrics *m, int fam, const char *const *values)
{
    key_build(m, fam, values);
    struct family_state *fs = &m->fam[fam];
    struct series *s = map_lookup(m, fam, fs->n < GW_METRICS_MAX_SERIES);
    if (s != NULL)
        return s;
    if (!fs->overflowed) {
        log_warn("metric %s has %d label sets; counting new ones as \"other\"",
                 families[fam].name, GW_METRICS_MAX_SERIES);
        fs->overflowed = 1;
    }
    static const char *const other[MAX_LABELS] = { "other", "other", "other" };
    key_build(m, fam, other);
    return map_lookup(m, fam, 1);
}

static void series_count(struct gw_metrics *m, int fam, const char *const *values, uint64_t n)
{
    series_get(m, fam, values)->value += n;
}

static void series_observe(struct gw_metrics *m, int fam, const char *const *values, double v)
{
    if (isnan(v))
        return;
    if (v < 0)
        v = 0;
    struct series *s = series_get(m, fam, values);
    size_t i = 0;
    while (i < N_BOUNDS && v > latency_bounds[i])
        i++;
    s->buckets[i]++;
    s->count++;
    s->sum += v;
}

/* ---- public updates ---------------------------------------------------------- */

struct gw_metrics *gw_metrics_new(void)
{
    struct gw_metrics *m = xcalloc(1, sizeof(*m));
    m->start_time = wall_time_s();
    map_grow(m);
    return m;
}

void gw_metrics_free(struct gw_metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i] != NULL) {
            free(m->slots[i]->labels);
            free(m->slots[i]);
        }
    }
    free(m->slots);
    for (size_t f = 0; f < FAM_COUNT; f++)
        free(m->fam[f].list);
    free(m->key);
    free(m);
}

void gw_metrics_request_done(struct gw_metrics *m, const char *model, const char *route,
                             int status, double latency_s, double ttfb_s,
                             uint64_t bytes_in, uint64_t bytes_out)
{
    char status_s[16];
    const char *mod = model ? model : "";
    const char *rt = gw_api_route_label(route);
    snprintf(status_s, sizeof(status_s), "%d", status);

    series_count(m, FAM_REQUESTS, (const char *[]){ mod, rt, status_s }, 1);
    series_observe(m, FAM_DURATION, (const char *[]){ mod, rt }, latency_s);
    if (ttfb_s >= 0)
        series_observe(m, FAM_TTFB, (const char *[]){ mod }, ttfb_s);
    series_count(m, FAM_REQUEST_BYTES, (const char *[]){ mod }, bytes_in);
    series_count(m, FAM_RESPONSE_BYTES, (const char *[]){ mod }, bytes_out);
}

void gw_metrics_connect_error(struct gw_metrics *m, const char *backend)
{
    series_count(m, FAM_CONNECT_ERRORS, (const char *[]){ backend ? backend : "" }, 1);
}

void gw_metrics_retry(struct gw_metrics *m, const char *model)
{
    series_count(m, FAM_RETRIES, (const char *[]){ model ? model : "" }, 1);
}

void gw_metrics_in_flight(struct gw_metrics *m, int delta)
{
    m->in_flight += delta;
}

void gw_metrics_connection(struct gw_metrics *m, int delta)
{
    m->connections_active += delta;
    if (delta > 0)
        m->connections_total += (uint64_t)delta;
}

/* ---- rendering ------------------------------------------------------------------ */

/* <v> as the text format writes floats: shortest of %.15g/%.17g that reads
 * back exactly, "+Inf", "-Inf" or "NaN". <buf> holds 32 bytes. */
static const char *fmt_double(char *buf, double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(buf, 32, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, 32, "%.17g", v);
    return buf;
}

static void render_header(struct evbuffer *out, const char *name, const char *help, int type)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type_names[type]);
}

static int series_cmp(const void *pa, const void *pb)
{
    const struct series *a = *(const struct series *const *)pa;
    const struct series *b = *(const struct series *const *)pb;
    return strcmp(a->labels, b->labels);
}

static void render_family(const struct gw_metrics *m, int fam, struct evbuffer *out)
{
    const struct family_def *def = &families[fam];
    const struct family_state *fs = &m->fam[fam];
    char num[32];

    render_header(out, def->name, def->help, def->type);
    if (fs->n == 0)
        return;
    struct series **sorted = xmalloc(fs->n * sizeof(*sorted));
    memcpy(sorted, fs->list, fs->n * sizeof(*sorted));
    qsort(sorted, fs->n, sizeof(*sorted), series_cmp);
    for (size_t i = 0; i < fs->n; i++) {
        const struct series *s = sorted[i];
        const char *sep = s->labels[0] ? "," : "";
        if (def->type != MT_HISTOGRAM) {
            if (s->labels[0])
                evbuffer_add_printf(out, "%s{%s} %" PRIu64 "\n", def->name, s->labels, s->value);
            else
                evbuffer_add_printf(out, "%s %" PRIu64 "\n", def->name, s->value);
            continue;
        }
        uint64_t cum = 0;
        for (size_t b = 0; b < N_BOUNDS; b++) {
            cum += s->buckets[b];
            evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", def->name,
                                s->labels, sep, latency_bounds[b], cum);
        }
        cum += s->buckets[N_BOUNDS];
        evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", def->name,
                            s->labels, sep, cum);
        if (s->labels[0]) {
            evbuffer_add_printf(out, "%s_sum{%s} %s\n", def->name, s->labels,
                                fmt_double(num, s->sum));
            evbuffer_add_printf(out, "%s_count{%s} %" PRIu64 "\n", def->name, s->labels, s->count);
        } else {
            evbuffer_add_printf(out, "%s_sum %s\n", def->name, fmt_double(num, s->sum));
            evbuffer_add_printf(out, "%s_count %" PRIu64 "\n", def->name, s->count);
        }
    }
    free(sorted);
}

/* Per-backend gauges and counters, read from the router's backends. */
enum backend_field { BF_UP = 0, BF_IN_FLIGHT, BF_REQUESTS, BF_CONNECT_ERRORS };

static void render_backends(struct gw_metrics *m, const struct gw_router *r, int field,
                            struct evbuffer *out)
{
    static const struct {
        const char *name, *help;
        int type;
    } defs[] = {
        [BF_UP] = { "llmux_backend_up", "1 when the backend is up (passive health), else 0.",
                    MT_GAUGE },
        [BF_IN_FLIGHT] = { "llmux_backend_in_flight", "Requests the backend is serving now.",
                           MT_GAUGE },
        [BF_REQUESTS] = { "llmux_backend_requests_total",
                          "Requests sent to the backend since the last reload.", MT_COUNTER },
        [BF_CONNECT_ERRORS] = { "llmux_backend_connect_errors_total",
                                "Failed connections to the backend since the last reload.",
                                MT_COUNTER },
    };
    render_header(out, defs[field].name, defs[field].help, defs[field].type);
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_models; i++) {
        const struct gw_model *md = r->models[i];
        for (size_t j = 0; j < md->n_backends; j++) {
            const struct gw_backend *b = md->backends[j];
            uint64_t v = 0;
            switch (field) {
            case BF_UP: v = b->state == GW_BACKEND_UP; break;
            case BF_IN_FLIGHT: v = b->in_flight > 0 ? (uint64_t)b->in_flight : 0; break;
            case BF_REQUESTS: v = b->requests; break;
            default: v = b->connect_errors; break;
            }
            m->key_len = 0;
            key_reserve(m, 0);
            m->key[0] = '\0';
            key_add_label(m, "model", md->name);
            key_add_label(m, "backend", b->name);
            evbuffer_add_printf(out, "%s{%s} %" PRIu64 "\n", defs[field].name, m->key, v);
        }
    }
}

void gw_metrics_render(struct gw_metrics *m, const struct gw_router *r, struct evbuffer *out)
{
    render_header(out, "llmux_build_info", "Version of the llmux gateway; always 1.", MT_GAUGE);
    evbuffer_add_printf(out, "llmux_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
    render_header(out, "llmux_start_time_seconds",
                  "Start time of the gateway since the Unix epoch in seconds.", MT_GAUGE);
    evbuffer_add_printf(out, "llmux_start_time_seconds %" PRId64 "\n", m->start_time);
    render_header(out, "llmux_requests_in_flight", "Requests being served now.", MT_GAUGE);
    evbuffer_add_printf(out, "llmux_requests_in_flight %" PRId64 "\n", m->in_flight);
    render_header(out, "llmux_connections_active", "Client connections open now.", MT_GAUGE);
    evbuffer_add_printf(out, "llmux_connections_active %" PRId64 "\n", m->connections_active);
    render_header(out, "llmux_connections_total", "Client connections accepted.", MT_COUNTER);
    evbuffer_add_printf(out, "llmux_connections_total %" PRIu64 "\n", m->connections_total);
    for (int f = 0; f < FAM_COUNT; f++)
        render_family(m, f, out);
    for (int f = BF_UP; f <= BF_CONNECT_ERRORS; f++)
        render_backends(m, r, f, out);
}
