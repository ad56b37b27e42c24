/*
 * xlmr.c -- loading an XLM-RoBERTa encoder (XLMRobertaModel, as bge-m3;
 * XLMRobertaForSequenceClassification, as bge-reranker-v2-m3): config.json,
 * weights from model.safetensors (or shards) or pytorch_model.bin, with or
 * without the "roberta." prefix, bge-m3's sparse_linear.pt / colbert_linear.pt
 * heads, sentence-transformers' modules.json / 1_Pooling/config.json. It
 * places weights on the backend (on a GPU the layer GEMM weights in 16 bits,
 * q|k|v fused); the forward pass is encoder_forward.c.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "encoder_priv.h"
#include "util.h"

/* ---- config ------------------------------------------------------------- */

static int cfg_int(json_t *o, const char *key, int def, int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 1 << 30) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    snprintf(err, errlen, "config.json: %s is not a non-negative integer", key);
    return -1;
}

static int parse_config(struct encoder *e, const char *dir, char *err, size_t errlen)
{
    char *path = xasprintf("%s/config.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    struct encoder_info *in = &e->info;
    int rc = -1, heads = 0;
    if (!root) {
        snprintf(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
        goto out;
    }
    json_t *arch = json_array_get(json_object_get(root, "architectures"), 0);
    const char *an = json_string_value(arch);
    if (!an) {
        snprintf(err, errlen, "config.json: no architectures");
        goto out;
    }
    if (strcmp(an, "XLMRobertaModel") == 0)
        in->kind = ENCODER_EMBED;
    else if (strcmp(an, "XLMRobertaForSequenceClassification") == 0)
        in->kind = ENCODER_RERANK;
    else {
        snprintf(err, errlen, "config.json: unsupported architecture %s (XLMRobertaModel, "
                 "XLMRobertaForSequenceClassification)", an);
        goto out;
    }
    snprintf(in->arch_name, sizeof(in->arch_name), "%s", an);
    const char *act = json_string_value(json_object_get(root, "hidden_act"));
    if (act && strcmp(act, "gelu") != 0) {
        snprintf(err, errlen, "config.json: hidden_act %s is not supported (gelu)", act);
        goto out;
    }
    const char *pet = json_string_value(json_object_get(root, "position_embedding_type"));
    if (pet && strcmp(pet, "absolute") != 0) {
        snprintf(err, errlen, "config.json: position_embedding_type %s is not supported", pet);
        goto out;
    }
    int bos, eos;
    if (cfg_int(root, "vocab_size", 250002, &in->vocab_size, err, errlen) < 0 ||
        cfg_int(root, "hidden_size", 768, &in->hidden_size, err, errlen) < 0 ||
        cfg_int(root, "num_hidden_layers", 12, &in->n_layers, err, errlen) < 0 ||
        cfg_int(root, "num_attention_heads", 12, &heads, err, errlen) < 0 ||
        cfg_int(root, "intermediate_size", 3072, &e->intermediate_size, err, errlen) < 0 ||
        cfg_int(root, "max_position_embeddings", 514, &e->max_positions, err, errlen) < 0 ||
        cfg_int(root, "type_vocab_size", 1, &e->type_vocab_size, err, errlen) < 0 ||
        cfg_int(root, "pad_token_id", 1, &in->pad_token_id, err, errlen) < 0 ||
        cfg_int(root, "bos_token_id", 0, &bos, err, errlen) < 0 ||
        cfg_int(root, "eos_token_id", 2, &eos, err, errlen) < 0)
        goto out;
    in->n_heads = heads;
    e->bos_id = bos;
    e->eos_id = eos;
    e->unk_id = 3;      /* <unk> of the XLM-R vocabulary (FlagEmbedding drops it too) */
    json_t *eps = json_object_get(root, "layer_norm_eps");
    e->ln_eps = json_is_number(eps) ? (float)json_number_value(eps) : 1e-12f;
    /* num_labels as transformers: id2label's size, else num_labels, else 2 */
    json_t *id2 = json_object_get(root, "id2label");
    if (json_is_object(id2) && json_object_size(id2) > 0)
        in->n_labels = (int)json_object_size(id2);
    else if (cfg_int(root, "num_labels", 2, &in->n_labels, err, errlen) < 0)
        goto out;
    if (in->kind == ENCODER_EMBED)
        in->n_labels = 0;
    if (in->hidden_size <= 0 || in->n_layers <= 0 || heads <= 0 || in->hidden_size % heads ||
        e->intermediate_size <= 0 || in->vocab_size <= 0 || e->type_vocab_size < 1 ||
        e->max_positions <= in->pad_token_id + 1 || in->n_layers > 1024 ||
        (in->kind == ENCODER_RERANK && in->n_labels < 1)) {
        snprintf(err, errlen, "config.json: inconsistent sizes (hidden %d, heads %d, layers %d, "
                 "max_position_embeddings %d, pad %d)", in->hidden_size, heads, in->n_layers,
                 e->max_positions, in->pad_token_id);
        goto out;
    }
    in->max_model_len = e->max_positions - in->pad_token_id - 1;
    rc = 0;
out:
    json_decref(root);
    free(path);
    return rc;
}

/* modules.json + the Pooling module's config.json; defaults: CLS, normalized. */
static int parse_modules(struct encoder *e, const char *dir, char *err, size_t errlen)
{
    struct encoder_info *in = &e->info;
    in->pooling = POOL_CLS;
    in->normalize = in->kind == ENCODER_EMBED;
    char *path = xasprintf("%s/modules.json", dir), *pp = NULL;
    json_t *mods = NULL, *pool = NULL;
    json_error_t je;
    int rc = -1;
    if (access(path, F_OK) != 0 || in->kind != ENCODER_EMBED) {
        rc = 0;
        goto out;
    }
    if (!(mods = json_load_file(path, 0, &je)) || !json_is_array(mods)) {
        snprintf(err, errlen, "%s: %s", path, mods ? "not a list" : je.text);
        goto out;
    }
    in->normalize = 0;
    size_t i;
    json_t *m;
    json_array_foreach(mods, i, m) {
        const char *type = json_string_value(json_object_get(m, "type"));
        const char *mp = json_string_value(json_object_get(m, "path"));
        if (!type)
            continue;
        if (strstr(type, "Normalize"))
            in->normalize = 1;
        if (!strstr(type, "Pooling") || !mp)
            continue;
        free(pp);
        pp = xasprintf("%s/%s/config.json", dir, mp);
        json_decref(pool);
        if (!(pool = json_load_file(pp, 0, &je))) {
            snprintf(err, errlen, "%s: %s", pp, je.text);
            goto out;
        }
        int cls = json_is_true(json_object_get(pool, "pooling_mode_cls_token"));
        int mean = json_is_true(json_object_get(pool, "pooling_mode_mean_tokens"));
        static const char *other[] = { "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                                       "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken" };
        for (size_t k = 0; k < ARRAY_SIZE(other); k++)
            if (json_is_true(json_object_get(pool, other[k]))) {
                snprintf(err, errlen, "%s: %s is not supported (cls or mean)", pp, other[k]);
                goto out;
            }
        if (cls + mean != 1) {
            snprintf(err, errlen, "%s: need exactly one of cls or mean pooling", pp);
            goto out;
        }
        in->pooling = cls ? POOL_CLS : POOL_MEAN;
    }
    rc = 0;
out:
    json_decref(mods);
    json_decref(pool);
    free(path);
    free(pp);
    return rc;
}

/* ---- weights ------------------------------------------------------------- */

/* A tensor found in one of the sources. */
struct wref {
    enum kn_dtype dtype;
    const char *dtype_name;
    int ndim;
    const int64_t *shape;
    const void *data;
};

static int find_in(const struct encoder *e, const struct tz_file *tz, const char *name,
                   struct wref *w)
{
    if (tz) {
        const struct tz_tensor *t = tz_find(tz, name);
        if (!t)
            return -1;
        *w = (struct wref){ t->dtype, t->dtype_name, t->ndim, t->shape, t->data };
        return 0;
    }
    const struct st_tensor *s = e->st.n_tensors ? st_find(&e->st, name) : NULL;
    if (s) {
        *w = (struct wref){ s->dtype, s->dtype_name, s->ndim, s->shape, s->data };
        return 0;
    }
    const struct tz_tensor *t = e->bin.n_tensors ? tz_find(&e->bin, name) : NULL;
    if (t) {
        *w = (struct wref){ t->dtype, t->dtype_name, t->ndim, t->shape, t->data };
        return 0;
    }
    return -1;
}

/* The 16-bit type a GPU keeps a layer matrix of checkpoint dtype <dt> in,
 * for tensor-core GEMMs: bf16 stays bf16, f16 and f32 become f16 (f16 keeps
 * more of an f32 checkpoint's mantissa). */
static enum kn_dtype lowp_of(enum kn_dtype dt)
{
    return dt == KN_BF16 ? KN_BF16 : KN_F16;
}

/* Tensor <name> of shape (d0[, d1]) from <tz> (NULL: the model's weights)
 * onto the backend: borrowed from the mapping on the cpu when aligned, else
 * copied; on other backends converted on the host and uploaded: to f32, or
 * with <lowp> (the layers' GEMM weights) to lowp_of() the checkpoint dtype. */
static int load_w(struct encoder *e, const struct tz_file *tz, const char *src,
                  struct kn_tensor *t, const char *name, int ndim, int64_t d0, int64_t d1,
                  int lowp, char *err, size_t errlen)
{
    struct wref w;
    int64_t want[2] = { d0, d1 };
    if (find_in(e, tz, name, &w) < 0) {
        snprintf(err, errlen, "missing tensor %s%s%s", name, src ? " in " : "", src ? src : "");
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
        char got[96] = "";
        for (int d = 0; d < w.ndim; d++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)w.shape[d]);
        char exp[64];
        if (ndim == 1)
            snprintf(exp, sizeof(exp), "%lld", (long long)d0);
        else
            snprintf(exp, sizeof(exp), "%lld, %lld", (long long)d0, (long long)d1);
        snprintf(err, errlen, "tensor %s: shape [%s], expected [%s]", name, got, exp);
        return -1;
    }
    size_t es = kn_dtype_size(w.dtype), n = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    if (e->host && (uintptr_t)w.data % es == 0) {
        *t = kn_tensor_host(w.dtype, ndim, want, (void *)(uintptr_t)w.data);
        return 0;
    }
    int rc;
    if (e->host) {
        rc = kn_tensor_alloc(t, e->be, w.dtype, ndim, want);
        if (rc == 0)
            memcpy(t->data, w.data, n * es);
    } else if (lowp) {
        enum kn_dtype lt = lowp_of(w.dtype);
        uint16_t *hb = xmalloc(n * sizeof(uint16_t) + 1);
        for (size_t i = 0; i < n; i++) {
            const unsigned char *p = (const unsigned char *)w.data + i * es;
            float f;
            if (w.dtype == lt) {
                memcpy(&hb[i], p, 2);
                continue;
            }
            if (w.dtype == KN_F32)
                memcpy(&f, p, 4);
            else {
                uint16_t h;
                memcpy(&h, p, 2);
                f = w.dtype == KN_BF16 ? kn_bf16_to_f32(h) : kn_f16_to_f32(h);
            }
            hb[i] = lt == KN_BF16 ? kn_f32_to_bf16(f) : kn_f32_to_f16(f);
        }
        rc = kn_tensor_alloc(t, e->be, lt, ndim, want) < 0 || kn_tensor_set(t, hb) < 0 ? -1 : 0;
        free(hb);
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
        rc = kn_tensor_alloc(t, e->be, KN_F32, ndim, want) < 0 || kn_tensor_set(t, f) < 0 ? -1 : 0;
        free(f);
    }
    if (rc < 0)
        snprintf(err, errlen, "tensor %s: cannot place %zu bytes on the %s backend", name,
                 n * es, e->be->ops->name);
    return rc;
}

#define WL(lowp, t, ndim, d0, d1, ...) do { \
        char nm_[192]; \
        snprintf(nm_, sizeof(nm_), __VA_ARGS__); \
        if (load_w(e, NULL, NULL, (t), nm_, (ndim), (d0), (d1), (lowp), err, errlen) < 0) \
            return -1; \
    } while (0)
#define W(...) WL(0, __VA_ARGS__)
#define W16(...) WL(!e->host, __VA_ARGS__)

/* On a GPU: q, k, v weights (and biases) fused into one (3 hidden, hidden)
 * matrix held by wq (bq), with wk, wv (bk, bv) borrowed row views of it, so
 * that one GEMM makes q|k|v. 0 or -1. */
static int fuse_qkv(struct encoder *e, struct enc_layer *L, char *err, size_t errlen)
{
    int64_t hd = e->info.hidden_size;
    struct kn_tensor *parts[2][3] = { { &L->wq, &L->wk, &L->wv }, { &L->bq, &L->bk, &L->bv } };
    for (int m = 0; m < 2; m++) {
        int nd = 2 - m;                         /* weights (3hd, hd), biases (3hd,) */
        int64_t all[2] = { 3 * hd, hd }, one[2] = { hd, hd };
        int64_t stride[2] = { nd == 2 ? hd : 1, 1 }, part = nd == 2 ? hd * hd : hd;
        struct kn_tensor f;
        if (kn_tensor_alloc(&f, e->be, parts[m][0]->dtype, nd, all) < 0)
            goto fail;
        for (int j = 0; j < 3; j++) {
            struct kn_tensor dst = kn_tensor_view(&f, nd, one, stride, j * part);
            if (kn_convert(e->be, &dst, parts[m][j]) < 0) {
                kn_tensor_free(&f);
                goto fail;
            }
        }
        if (kn_backend_sync(e->be) < 0) {
            kn_tensor_free(&f);
            goto fail;
        }
        for (int j = 0; j < 3; j++)
            kn_tensor_free(parts[m][j]);
        *parts[m][0] = f;
        for (int j = 1; j < 3; j++)
            *parts[m][j] = kn_tensor_view(&f, nd, one, stride, j * part);
    }
    return 0;
fail:
    snprintf(err, errlen, "cannot fuse the q, k, v weights on the %s backend", e->be->ops->name);
    return -1;
}

static int load_layer(struct encoder *e, const char *p, int i, char *err, size_t errlen)
{
    struct enc_layer *L = &e->layers[i];
    int64_t hd = e->info.hidden_size, id = e->intermediate_size;
    const char *a = "attention";
    W16(&L->wq, 2, hd, hd, "%sencoder.layer.%d.%s.self.query.weight", p, i, a);
    W(&L->bq, 1, hd, 0, "%sencoder.layer.%d.%s.self.query.bias", p, i, a);
    W16(&L->wk, 2, hd, hd, "%sencoder.layer.%d.%s.self.key.weight", p, i, a);
    W(&L->bk, 1, hd, 0, "%sencoder.layer.%d.%s.self.key.bias", p, i, a);
    W16(&L->wv, 2, hd, hd, "%sencoder.layer.%d.%s.self.value.weight", p, i, a);
    W(&L->bv, 1, hd, 0, "%sencoder.layer.%d.%s.self.value.bias", p, i, a);
    W16(&L->wo, 2, hd, hd, "%sencoder.layer.%d.%s.output.dense.weight", p, i, a);
    W(&L->bo, 1, hd, 0, "%sencoder.layer.%d.%s.output.dense.bias", p, i, a);
    W(&L->ln1_w, 1, hd, 0, "%sencoder.layer.%d.%s.output.LayerNorm.weight", p, i, a);
    W(&L->ln1_b, 1, hd, 0, "%sencoder.layer.%d.%s.output.LayerNorm.bias", p, i, a);
    W16(&L->wi, 2, id, hd, "%sencoder.layer.%d.intermediate.dense.weight", p, i);
    W(&L->bi, 1, id, 0, "%sencoder.layer.%d.intermediate.dense.bias", p, i);
    W16(&L->wout, 2, hd, id, "%sencoder.layer.%d.output.dense.weight", p, i);
    W(&L->bout, 1, hd, 0, "%sencoder.layer.%d.output.dense.bias", p, i);
    W(&L->ln2_w, 1, hd, 0, "%sencoder.layer.%d.output.LayerNorm.weight", p, i);
    W(&L->ln2_b, 1, hd, 0, "%sencoder.layer.%d.output.LayerNorm.bias", p, i);
    return e->host ? 0 : fuse_qkv(e, L, err, errlen);
}

static int load_weights(struct encoder *e, char *err, size_t errlen)
{
    const struct encoder_info *in = &e->info;
    int64_t hd = in->hidden_size;
    struct wref w;
    /* the prefix the checkpoint uses ("roberta." in ...ForSequenceClassification) */
    const char *p = find_in(e, NULL, "roberta.embeddings.word_embeddings.weight", &w) == 0
                        ? "roberta." : "";
    W(&e->word, 2, in->vocab_size, hd, "%sembeddings.word_embeddings.weight", p);
    W(&e->pos, 2, e->max_positions, hd, "%sembeddings.position_embeddings.weight", p);
    W(&e->type, 2, e->type_vocab_size, hd, "%sembeddings.token_type_embeddings.weight", p);
    W(&e->emb_ln_w, 1, hd, 0, "%sembeddings.LayerNorm.weight", p);
    W(&e->emb_ln_b, 1, hd, 0, "%sembeddings.LayerNorm.bias", p);
    e->layers = xcalloc((size_t)in->n_layers, sizeof(*e->layers));
    for (int i = 0; i < in->n_layers; i++)
        if (load_layer(e, p, i, err, errlen) < 0)
            return -1;
    if (in->kind == ENCODER_RERANK) {
        W(&e->cls_w, 2, hd, hd, "classifier.dense.weight");
        W(&e->cls_b, 1, hd, 0, "classifier.dense.bias");
        W(&e->out_w, 2, in->n_labels, hd, "classifier.out_proj.weight");
        W(&e->out_b, 1, in->n_labels, 0, "classifier.out_proj.bias");
    }
    return 0;
}
#undef W
#undef W16
#undef WL

/* bge-m3's <file> head (Linear hidden -> n): n from its weight's shape; 0
 * when the file is absent, 1 when loaded, -1 on error. */
static int load_head(struct encoder *e, const char *dir, const char *file, struct tz_file *tz,
                     struct kn_tensor *w, struct kn_tensor *b, int *n, char *err, size_t errlen)
{
    char *path = xasprintf("%s/%s", dir, file);
    int rc = -1;
    if (access(path, F_OK) != 0 || e->info.kind != ENCODER_EMBED) {
        rc = 0;
        goto out;
    }
    if (tz_open(tz, path, err, errlen) < 0)
        goto out;
    const struct tz_tensor *t = tz_find(tz, "weight");
    if (!t || t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > 1 << 20) {
        snprintf(err, errlen, "%s: no 2-D tensor \"weight\"", path);
        goto out;
    }
    *n = (int)t->shape[0];
    if (load_w(e, tz, file, w, "weight", 2, *n, e->info.hidden_size, 0, err, errlen) < 0 ||
        load_w(e, tz, file, b, "bias", 1, *n, 0, 0, err, errlen) < 0)
        goto out;
    rc = 1;
out:
    free(path);
    return rc;
}

struct encoder *encoder_load(const char *dir, struct kn_backend *be, char *err, size_t errlen)
{
    struct encoder *e = xcalloc(1, sizeof(*e));
    e->be = be;
    e->host = strcmp(be->ops->name, "cpu") == 0;
    if (parse_config(e, dir, err, errlen) < 0 || parse_modules(e, dir, err, errlen) < 0)
        goto fail;
    char *st1 = xasprintf("%s/model.safetensors", dir);
    char *st2 = xasprintf("%s/model.safetensors.index.json", dir);
    char *bin = xasprintf("%s/pytorch_model.bin", dir);
    int have_st = access(st1, F_OK) == 0 || access(st2, F_OK) == 0, rc;
    if (have_st)
        rc = st_open_dir(&e->st, dir, err, errlen);
    else if (access(bin, F_OK) == 0)
        rc = tz_open(&e->bin, bin, err, errlen);
    else {
        snprintf(err, errlen, "%s: no model.safetensors or pytorch_model.bin", dir);
        rc = -1;
    }
    free(st1);
    free(st2);
    free(bin);
    if (rc < 0 || load_weights(e, err, errlen) < 0)
        goto fail;
    int one = 0;
    if ((e->info.has_sparse = load_head(e, dir, "sparse_linear.pt", &e->sparse_pt, &e->sparse_w,
                                        &e->sparse_b, &one, err, errlen)) < 0)
        goto fail;
    if (e->info.has_sparse && one != 1) {
        snprintf(err, errlen, "sparse_linear.pt: weight has %d rows, expected 1", one);
        goto fail;
    }
    if ((e->info.has_colbert = load_head(e, dir, "colbert_linear.pt", &e->colbert_pt,
                                         &e->colbert_w, &e->colbert_b, &e->info.colbert_dim,
                                         err, errlen)) < 0)
        goto fail;
    return e;
fail:
    encoder_free(e);
    return NULL;
}

void encoder_free(struct encoder *e)
{
    if (!e)
        return;
    if (e->layers) {
        for (int i = 0; i < e->info.n_layers; i++) {
            struct enc_layer *L = &e->layers[i];
            struct kn_tensor *all[] = { &L->wq, &L->bq, &L->wk, &L->bk, &L->wv, &L->bv, &L->wo,
                                        &L->bo, &L->ln1_w, &L->ln1_b, &L->wi, &L->bi, &L->wout,
                                        &L->bout, &L->ln2_w, &L->ln2_b };
            for (size_t j = 0; j < ARRAY_SIZE(all); j++)
                kn_tensor_free(all[j]);
        }
        free(e->layers);
    }
    struct kn_tensor *w[] = { &e->word, &e->pos, &e->type, &e->emb_ln_w, &e->emb_ln_b,
                              &e->cls_w, &e->cls_b, &e->out_w, &e->out_b, &e->sparse_w,
                              &e->sparse_b, &e->colbert_w, &e->colbert_b };
    for (size_t j = 0; j < ARRAY_SIZE(w); j++)
        kn_tensor_free(w[j]);
    struct kn_buf *b[] = { &e->x, &e->q, &e->k, &e->v, &e->att, &e->o, &e->h, &e->cls, &e->c1,
                            &e->sc, &e->sp, &e->cb, &e->i_tok, &e->i_pos, &e->i_seq, &e->i_cls };
    for (size_t j = 0; j < ARRAY_SIZE(b); j++)
        kn_buf_free(b[j]);
    free(e->h_pos);
    free(e->h_cls);
    free(e->h_x);
    st_close(&e->st);
    tz_close(&e->bin);
    tz_close(&e->sparse_pt);
    tz_close(&e->colbert_pt);
    free(e);
}

const struct encoder_info *encoder_get_info(const struct encoder *e)
{
    return &e->info;
}
