/*
 * sensevoice.c -- loading FunASR's SenseVoiceSmall: the few keys of
 * config.yaml it needs (a line reader for its two-level "key: value" layout,
 * not a YAML library), weights from model.pt (torch zip state dict) or
 * model.safetensors with FunASR's names, onto the backend; plus the language
 * names and greedy CTC collapse. The forward pass is sensevoice_forward.c.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sensevoice_priv.h"
#include "util.h"

static const char *const lang_names[SV_LANG_COUNT] = { "auto", "zh", "en", "yue", "ja", "ko",
                                                       "nospeech" };
/* FunASR's lid_dict rows of SenseVoiceSmall.embed */
static const int lang_rows[SV_LANG_COUNT] = { 0, 3, 4, 7, 11, 12, 13 };

int sv_language_parse(const char *name)
{
    if (!name || !*name)
        return SV_LANG_AUTO;
    for (int i = 0; i < SV_LANG_COUNT; i++)
        if (strcmp(name, lang_names[i]) == 0)
            return i;
    return -1;
}

const char *sv_language_name(enum sv_language lang)
{
    return (unsigned)lang < SV_LANG_COUNT ? lang_names[lang] : "?";
}

/* ---- config.yaml ------------------------------------------------------------------ */

/* The keys read: top-level scalars and the scalars of encoder_conf / model_conf. */
struct sv_conf {
    char encoder[64], model[64], attn_type[32], input_layer[32], pos_enc[64];
    int output_size, heads, units, blocks, tp_blocks, kernel, shift, normalize_before;
    int concat_after, blank_id;
};

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        s[n - 1] = 0;
        s++;
    }
    return s;
}

static int conf_int(const char *v, int *out, const char *key, char *err, size_t errlen)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < -(1L << 30) || x > (1L << 30)) {
        snprintf(err, errlen, "config.yaml: %s: \"%s\" is not an integer", key, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int conf_bool(const char *v, int *out, const char *key, char *err, size_t errlen)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0)
        *out = 1;
    else if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0)
        *out = 0;
    else {
        snprintf(err, errlen, "config.yaml: %s: \"%s\" is not true or false", key, v);
        return -1;
    }
    return 0;
}

static int conf_set(struct sv_conf *c, const char *sect, const char *key, const char *v,
                    char *err, size_t errlen)
{
    static const struct { const char *k; size_t off; } ints[] = {
        { "output_size", offsetof(struct sv_conf, output_size) },
        { "attention_heads", offsetof(struct sv_conf, heads) },
        { "linear_units", offsetof(struct sv_conf, units) },
        { "num_blocks", offsetof(struct sv_conf, blocks) },
        { "tp_blocks", offsetof(struct sv_conf, tp_blocks) },
        { "kernel_size", offsetof(struct sv_conf, kernel) },
        { "sanm_shfit", offsetof(struct sv_conf, shift) },
    };
    if (!*sect) {
        if (strcmp(key, "encoder") == 0)
            snprintf(c->encoder, sizeof(c->encoder), "%s", v);
        else if (strcmp(key, "model") == 0)
            snprintf(c->model, sizeof(c->model), "%s", v);
        return 0;
    }
    if (strcmp(sect, "model_conf") == 0 && strcmp(key, "blank_id") == 0)
        return conf_int(v, &c->blank_id, key, err, errlen);
    if (strcmp(sect, "encoder_conf") != 0)
        return 0;
    for (size_t i = 0; i < ARRAY_SIZE(ints); i++)
        if (strcmp(key, ints[i].k) == 0)
            return conf_int(v, (int *)((char *)c + ints[i].off), key, err, errlen);
    if (strcmp(key, "normalize_before") == 0)
        return conf_bool(v, &c->normalize_before, key, err, errlen);
    if (strcmp(key, "concat_after") == 0)
        return conf_bool(v, &c->concat_after, key, err, errlen);
    if (strcmp(key, "selfattention_layer_type") == 0)
        snprintf(c->attn_type, sizeof(c->attn_type), "%s", v);
    else if (strcmp(key, "input_layer") == 0)
        snprintf(c->input_layer, sizeof(c->input_layer), "%s", v);
    else if (strcmp(key, "pos_enc_class") == 0)
        snprintf(c->pos_enc, sizeof(c->pos_enc), "%s", v);
    return 0;
}

/* Reads <dir>/config.yaml: "key: value" lines, a top-level key opening a
 * section for the indented lines under it; comments, lists and deeper
 * levels are skipped. Defaults are SenseVoiceEncoderSmall's arguments. */
static int parse_config(struct sv_conf *c, const char *dir, char *err, size_t errlen)
{
    char *path = xasprintf("%s/config.yaml", dir), line[1024], sect[64] = "";
    FILE *f = fopen(path, "r");
    int rc = -1, lineno = 0;
    *c = (struct sv_conf){ .output_size = 256, .heads = 4, .units = 2048, .blocks = 6,
                           .kernel = 11, .normalize_before = 1 };
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        goto out;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *hash = strstr(line, " #");
        if (line[0] == '#')
            continue;
        if (hash)
            *hash = 0;
        int indent = 0;
        while (line[indent] == ' ')
            indent++;
        char *s = line + indent, *colon = strchr(s, ':');
        if (!*trim(s) || *s == '-' || !colon)
            continue;
        *colon = 0;
        char *key = trim(s), *val = trim(colon + 1);
        if (indent == 0) {
            snprintf(sect, sizeof(sect), "%s", *val ? "" : key);
            if (*val && conf_set(c, "", key, val, err, errlen) < 0)
                goto out;
        } else if (*sect && *val && conf_set(c, sect, key, val, err, errlen) < 0) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, " (line %d)", lineno);
            goto out;
        }
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    free(path);
    return rc;
}

static int check_config(struct sensevoice *m, const struct sv_conf *c, char *err, size_t errlen)
{
    struct sensevoice_info *in = &m->info;
    if (strcmp(c->encoder, "SenseVoiceEncoderSmall") != 0) {
        snprintf(err, errlen, "config.yaml: encoder \"%s\" is not supported "
                 "(SenseVoiceEncoderSmall)", c->encoder);
        return -1;
    }
    if (*c->model && strcmp(c->model, "SenseVoiceSmall") != 0) {
        snprintf(err, errlen, "config.yaml: model \"%s\" is not supported (SenseVoiceSmall)",
                 c->model);
        return -1;
    }
    if ((*c->attn_type && strcmp(c->attn_type, "sanm") != 0) ||
        (*c->input_layer && strcmp(c->input_layer, "pe") != 0) ||
        (*c->pos_enc && strcmp(c->pos_enc, "SinusoidalPositionEncoder") != 0) ||
        !c->normalize_before || c->concat_after) {
        snprintf(err, errlen, "config.yaml: encoder_conf needs selfattention_layer_type sanm, "
                 "input_layer pe, SinusoidalPositionEncoder, normalize_before true, "
                 "concat_after false");
        return -1;
    }
    if (c->output_size < 1 || c->heads < 1 || c->output_size % c->heads || c->units < 1 ||
        c->blocks < 1 || c->tp_blocks < 0 || c->kernel < 1 || c->shift < 0 ||
        (c->kernel - 1) / 2 + c->shift > c->kernel - 1 || c->output_size > 1 << 16 ||
        c->units > 1 << 20 || c->blocks > 4096 || c->tp_blocks > 4096 || c->kernel > 1024) {
        snprintf(err, errlen, "config.yaml: bad encoder_conf sizes (output_size %d, "
                 "attention_heads %d, linear_units %d, num_blocks %d, tp_blocks %d, "
                 "kernel_size %d, sanm_shfit %d)", c->output_size, c->heads, c->units,
                 c->blocks, c->tp_blocks, c->kernel, c->shift);
        return -1;
    }
    snprintf(in->arch_name, sizeof(in->arch_name), "SenseVoiceSmall");
    in->hidden_size = c->output_size;
    in->n_heads = c->heads;
    in->linear_units = c->units;
    in->n_blocks = c->blocks;
    in->tp_blocks = c->tp_blocks;
    in->kernel_size = c->kernel;
    in->sanm_shift = c->shift;
    in->blank_id = c->blank_id;
    for (int i = 0; i < SV_LANG_COUNT; i++)
        in->lid_query[i] = lang_rows[i];
    in->event_query = 1;
    in->emotion_query = 2;
    in->itn_query = 14;
    in->no_itn_query = 15;
    return 0;
}

/* ---- weights ------------------------------------------------------------------------ */

struct wref {
    enum kn_dtype dtype;
    const char *dtype_name;
    int ndim;
    const int64_t *shape;
    const void *data;
};

static int find_w(const struct sensevoice *m, const char *name, struct wref *w)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", m->prefix, name);
    if (m->st.n_tensors) {
        const struct st_tensor *s = st_find(&m->st, full);
        if (!s)
            return -1;
        *w = (struct wref){ s->dtype, s->dtype_name, s->ndim, s->shape, s->data };
        return 0;
    }
    const struct tz_tensor *t = tz_find(&m->pt, full);
    if (!t)
        return -1;
    *w = (struct wref){ t->dtype, t->dtype_name, t->ndim, t->shape, t->data };
    return 0;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    buf[0] = 0;
    for (int d = 0; d < ndim; d++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%lld", d ? ", " : "",
                 (long long)shape[d]);
}

/* Tensor <name> of shape want[0..ndim) onto the backend, placed as the
 * (d0[, d1]) tensor <as_ndim>/<as> (a Conv1d (D, 1, K) weight becomes (D, K)):
 * borrowed from the mapping on the cpu when aligned, else copied; on other
 * backends converted to f32 on the host and uploaded. */
static int load_w(struct sensevoice *m, struct kn_tensor *t, const char *name, int ndim,
                  const int64_t *want, int as_ndim, const int64_t *as, char *err,
                  size_t errlen)
{
    struct wref w;
    if (find_w(m, name, &w) < 0) {
        snprintf(err, errlen, "missing tensor %s%s", m->prefix, name);
        return -1;
    }
    if (w.dtype == KN_DTYPE_COUNT) {
        snprintf(err, errlen, "tensor %s: unsupported dtype %s (BF16, F16, F32)", name,
                 w.dtype_name);
        return -1;
    }
    int same = w.ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = w.shape[d] == want[d];
    if (!same) {
        char got[96], exp[96];
        shape_str(got, sizeof(got), w.ndim, w.shape);
        shape_str(exp, sizeof(exp), ndim, want);
        snprintf(err, errlen, "tensor %s: shape [%s], expected [%s]", name, got, exp);
        return -1;
    }
    size_t es = kn_dtype_size(w.dtype), n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)want[d];
    if (m->host && (uintptr_t)w.data % es == 0) {
        *t = kn_tensor_host(w.dtype, as_ndim, as, (void *)(uintptr_t)w.data);
        return 0;
    }
    int rc;
    if (m->host) {
        rc = kn_tensor_alloc(t, m->be, w.dtype, as_ndim, as);
        if (rc == 0)
            memcpy(t->data, w.data, n * es);
    } else {
        float *f = xmalloc(n * sizeof(float) + 1);
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            const unsigned char *p = (const unsigned char *)w.data + i * es;
            if (w.dtype == KN_F32)
                memcpy(&f[i], p, 4);
            else {
                memcpy(&h, p, 2);
                f[i] = w.dtype == KN_BF16 ? kn_bf16_to_f32(h) : kn_f16_to_f32(h);
            }
        }
        rc = kn_tensor_alloc(t, m->be, KN_F32, as_ndim, as) < 0 || kn_tensor_set(t, f) < 0
                 ? -1 : 0;
        free(f);
    }
    if (rc < 0)
        snprintf(err, errlen, "tensor %s: cannot place %zu bytes on the %s backend", name,
                 n * es, m->be->ops->name);
    return rc;
}

static int load_2d(struct sensevoice *m, struct kn_tensor *t, int64_t d0, int64_t d1,
                   char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static int load_2d(struct sensevoice *m, struct kn_tensor *t, int64_t d0, int64_t d1,
                   char *err, size_t errlen, const char *fmt, ...)
{
    char name[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    int64_t s[2] = { d0, d1 };
    int nd = d1 > 0 ? 2 : 1;
    return load_w(m, t, name, nd, s, nd, s, err, errlen);
}

#define W2(t, d0, d1, ...) do { \
        if (load_2d(m, (t), (d0), (d1), err, errlen, __VA_ARGS__) < 0) \
            return -1; \
    } while (0)

static int load_layer(struct sensevoice *m, struct sv_layer *L, const char *group, int i,
                      int din, char *err, size_t errlen)
{
    const struct sensevoice_info *in = &m->info;
    int64_t D = in->hidden_size, U = in->linear_units, K = in->kernel_size;
    const char *p = "encoder";
    L->din = din;
    W2(&L->ln1_w, din, 0, "%s.%s.%d.norm1.weight", p, group, i);
    W2(&L->ln1_b, din, 0, "%s.%s.%d.norm1.bias", p, group, i);
    W2(&L->wqkv, 3 * D, din, "%s.%s.%d.self_attn.linear_q_k_v.weight", p, group, i);
    W2(&L->bqkv, 3 * D, 0, "%s.%s.%d.self_attn.linear_q_k_v.bias", p, group, i);
    W2(&L->wo, D, D, "%s.%s.%d.self_attn.linear_out.weight", p, group, i);
    W2(&L->bo, D, 0, "%s.%s.%d.self_attn.linear_out.bias", p, group, i);
    W2(&L->ln2_w, D, 0, "%s.%s.%d.norm2.weight", p, group, i);
    W2(&L->ln2_b, D, 0, "%s.%s.%d.norm2.bias", p, group, i);
    W2(&L->w1, U, D, "%s.%s.%d.feed_forward.w_1.weight", p, group, i);
    W2(&L->b1, U, 0, "%s.%s.%d.feed_forward.w_1.bias", p, group, i);
    W2(&L->w2, D, U, "%s.%s.%d.feed_forward.w_2.weight", p, group, i);
    W2(&L->b2, D, 0, "%s.%s.%d.feed_forward.w_2.bias", p, group, i);
    char name[192];
    int64_t want[3] = { D, 1, K }, as[2] = { D, K };
    snprintf(name, sizeof(name), "%s.%s.%d.self_attn.fsmn_block.weight", p, group, i);
    struct wref w;
    if (find_w(m, name, &w) == 0 && w.ndim == 2)    /* converters that squeeze it: (D, K) */
        return load_w(m, &L->fsmn, name, 2, as, 2, as, err, errlen);
    return load_w(m, &L->fsmn, name, 3, want, 2, as, err, errlen);
}

static int load_weights(struct sensevoice *m, char *err, size_t errlen)
{
    struct sensevoice_info *in = &m->info;
    struct wref e, c;
    m->prefix = "";
    if (find_w(m, "embed.weight", &e) < 0) {
        m->prefix = "module.";
        if (find_w(m, "embed.weight", &e) < 0) {
            m->prefix = "";
            snprintf(err, errlen, "missing tensor embed.weight (not a SenseVoiceSmall "
                     "state dict)");
            return -1;
        }
    }
    if (find_w(m, "ctc.ctc_lo.weight", &c) < 0) {
        snprintf(err, errlen, "missing tensor %sctc.ctc_lo.weight", m->prefix);
        return -1;
    }
    if (e.ndim != 2 || e.shape[0] < 16 || e.shape[1] < 1 || e.shape[1] > 1 << 16 ||
        c.ndim != 2 || c.shape[0] < 16 || c.shape[0] > 1 << 24) {
        snprintf(err, errlen, "tensors embed.weight / ctc.ctc_lo.weight: bad shapes");
        return -1;
    }
    in->input_dim = (int)e.shape[1];
    in->n_queries = (int)e.shape[0];
    in->vocab_size = (int)c.shape[0];
    if (in->blank_id < 0 || in->blank_id >= in->vocab_size) {
        snprintf(err, errlen, "blank_id %d outside the vocabulary of %d", in->blank_id,
                 in->vocab_size);
        return -1;
    }
    /* the prompt table stays on the host in f32: the input is assembled there */
    struct kn_tensor emb = { 0 };
    int64_t es[2] = { in->n_queries, in->input_dim };
    int host = m->host;
    m->host = 1;
    int rc = load_w(m, &emb, "embed.weight", 2, es, 2, es, err, errlen);
    m->host = host;
    if (rc < 0)
        return -1;
    m->embed = xmalloc((size_t)(in->n_queries * in->input_dim) * sizeof(float));
    struct kn_tensor ef = kn_tensor_host(KN_F32, 2, es, m->embed);
    for (int64_t r = 0; r < es[0]; r++)
        for (int64_t j = 0; j < es[1]; j++) {
            const unsigned char *p = (const unsigned char *)emb.data +
                                     (size_t)(r * es[1] + j) * kn_dtype_size(emb.dtype);
            uint16_t h;
            float v;
            if (emb.dtype == KN_F32)
                memcpy(&v, p, 4);
            else {
                memcpy(&h, p, 2);
                v = emb.dtype == KN_BF16 ? kn_bf16_to_f32(h) : kn_f16_to_f32(h);
            }
            ((float *)ef.data)[r * es[1] + j] = v;
        }
    kn_tensor_free(&emb);
    int n = in->n_blocks + in->tp_blocks;
    m->layers = xcalloc((size_t)n, sizeof(*m->layers));
    for (int i = 0; i < n; i++) {
        const char *g = i == 0 ? "encoders0" : i < in->n_blocks ? "encoders" : "tp_encoders";
        int idx = i == 0 ? 0 : i < in->n_blocks ? i - 1 : i - in->n_blocks;
        if (load_layer(m, &m->layers[i], g, idx, i == 0 ? in->input_dim : in->hidden_size,
                       err, errlen) < 0)
            return -1;
    }
    int64_t D = in->hidden_size;
    W2(&m->after_w, D, 0, "encoder.after_norm.weight");
    W2(&m->after_b, D, 0, "encoder.after_norm.bias");
    W2(&m->tp_w, D, 0, "encoder.tp_norm.weight");
    W2(&m->tp_b, D, 0, "encoder.tp_norm.bias");
    W2(&m->ctc_w, in->vocab_size, D, "ctc.ctc_lo.weight");
    W2(&m->ctc_b, in->vocab_size, 0, "ctc.ctc_lo.bias");
    return 0;
}
#undef W2

struct sensevoice *sensevoice_load(const char *dir, struct kn_backend *be, char *err,
                                   size_t errlen)
{
    struct sensevoice *m = xcalloc(1, sizeof(*m));
    struct sv_conf c;
    m->be = be;
    m->host = strcmp(be->ops->name, "cpu") == 0;
    m->ln_eps = 1e-5f;          /* FunASR's LayerNorm is torch's default */
    m->prefix = "";
    if (parse_config(&c, dir, err, errlen) < 0 || check_config(m, &c, err, errlen) < 0)
        goto fail;
    char *st = xasprintf("%s/model.safetensors", dir), *pt = xasprintf("%s/model.pt", dir);
    int rc;
    if (access(pt, F_OK) == 0)
        rc = tz_open(&m->pt, pt, err, errlen);
    else if (access(st, F_OK) == 0)
        rc = st_open_dir(&m->st, dir, err, errlen);
    else {
        snprintf(err, errlen, "%s: no model.pt or model.safetensors", dir);
        rc = -1;
    }
    free(st);
    free(pt);
    if (rc < 0 || load_weights(m, err, errlen) < 0)
        goto fail;
    return m;
fail:
    sensevoice_free(m);
    return NULL;
}

int sensevoice_read_config(const char *dir, struct sensevoice_info *info, char *err,
                           size_t errlen)
{
    struct sensevoice m = { 0 };
    struct sv_conf c;
    if (parse_config(&c, dir, err, errlen) < 0 || check_config(&m, &c, err, errlen) < 0)
        return -1;
    *info = m.info;
    return 0;
}

static void layer_free(struct sv_layer *L)
{
    struct kn_tensor *all[] = { &L->ln1_w, &L->ln1_b, &L->wqkv, &L->bqkv, &L->wo, &L->bo,
                                &L->fsmn, &L->ln2_w, &L->ln2_b, &L->w1, &L->b1, &L->w2,
                                &L->b2 };
    for (size_t j = 0; j < ARRAY_SIZE(all); j++)
        kn_tensor_free(all[j]);
}

void sensevoice_free(struct sensevoice *m)
{
    if (!m)
        return;
    if (m->layers) {
        for (int i = 0; i < m->info.n_blocks + m->info.tp_blocks; i++)
            layer_free(&m->layers[i]);
        free(m->layers);
    }
    struct kn_tensor *w[] = { &m->after_w, &m->after_b, &m->tp_w, &m->tp_b, &m->ctc_w,
                              &m->ctc_b };
    for (size_t j = 0; j < ARRAY_SIZE(w); j++)
        kn_tensor_free(w[j]);
    struct kn_buf *b[] = { &m->x0, &m->x, &m->h, &m->qkv, &m->att, &m->o, &m->fs, &m->ff,
                           &m->lg, &m->seq, &m->ids, &m->lse };
    for (size_t j = 0; j < ARRAY_SIZE(b); j++)
        kn_buf_free(b[j]);
    free(m->embed);
    free(m->pe);
    free(m->h_in);
    free(m->h_rows);
    free(m->h_start);
    free(m->h_ids);
    free(m->h_lse);
    st_close(&m->st);
    tz_close(&m->pt);
    free(m);
}

const struct sensevoice_info *sensevoice_get_info(const struct sensevoice *m)
{
    return &m->info;
}

/* ---- greedy CTC ---------------------------------------------------------------------- */

int sensevoice_ctc_collapse(const int32_t *argmax, int n, int blank_id, int32_t *ids,
                            int32_t *frames)
{
    int k = 0;
    for (int t = 0; t < n; t++) {
        if (t > 0 && argmax[t] == argmax[t - 1])
            continue;
        if (argmax[t] == blank_id)
            continue;
        ids[k] = argmax[t];
        if (frames)
            frames[k] = t;
        k++;
    }
    return k;
}

int sensevoice_ctc_greedy(const float *logprobs, int n, int vocab, int blank_id, int32_t *ids,
                          int32_t *frames)
{
    int32_t *am = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    for (int t = 0; t < n; t++) {
        const float *r = logprobs + (size_t)t * (size_t)vocab;
        int best = 0;
        for (int v = 1; v < vocab; v++)
            if (r[v] > r[best])
                best = v;
        am[t] = best;
    }
    int k = sensevoice_ctc_collapse(am, n, blank_id, ids, frames);
    free(am);
    return k;
}
