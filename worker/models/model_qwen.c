/*
 * model_qwen.c -- Qwen2 / Qwen3 / Qwen3-MoE: weights from safetensors onto a
 * backend (borrowed from the mmap on the cpu backend), the paged KV cache,
 * and the forward pass as a sequence of kernels/ ops. The model never loops
 * over tensor elements; the host only prepares small index arrays (slots
 * from block tables, token order per expert).
 * Dtypes: the cpu backend runs everything in f32 on the weights as stored.
 * Elsewhere weight matrices stay as stored when the backend multiplies them
 * with f32 inputs (cuda: bf16 W, f32 x and y, f32 accumulation: matches the
 * f32 goldens and reads half the bytes); other dtypes are converted to f32
 * on the device once at load;
 * with LLMUX_MODEL_LOWP set, the matmul inputs and the KV cache take the
 * weights' dtype (bf16) while the residual stream, matmul outputs, norms,
 * rope and logits stay f32 (on the tiny golden models that is 5e-2..9e-2
 * off in logprobs, measured with this plan on the cpu backend).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

struct layer {
    struct kn_tensor in_norm, post_norm;
    struct kn_tensor wq, wk, wv, wo, bq, bk, bv;    /* b*: qwen2 only */
    struct kn_tensor q_norm, k_norm;                /* qwen3 only */
    int moe, window;
    struct kn_tensor w_gate, w_up, w_down;          /* dense MLP */
    struct kn_tensor router;                        /* (E, hidden) */
    struct kn_tensor *e_gate, *e_up, *e_down;       /* (E) experts */
    struct kn_tensor k_cache, v_cache;              /* (n_slots, Hkv, D) */
};

/* A growable scratch tensor: <t> holds <cap> elements of its dtype. */
struct model {
    struct model_config cfg;
    struct kn_backend *be;
    int host;                       /* cpu backend: host tensors work directly */
    struct st_set st;
    struct kn_tensor embed, final_norm, lm_head;
    struct layer *layers;
    enum kn_dtype act_dt, kv_dt;    /* residual stream and matmul outputs; cache */
    enum kn_dtype mm_dt;            /* matmul inputs (h, att, a) and weights */
    int block_size, n_slots;
    /* rope table (rope_rows, rope_dim) f32 */
    float *rope_host;
    int rope_rows;
    struct kn_tensor rope;
    /* scratch */
    struct kn_buf x, h, q, k, v, att, o, g, u, a;
    struct kn_buf rl, rids, rw, mx, mg, mu, ma, my, xl, ol, hl, logits;
    struct kn_buf i_tok, i_pos, i_seq, i_slot, i_bt, i_rows, i_perm, f_perm;
    int32_t *h_seq, *h_slot, *h_perm, *h_ids, *h_count;
    float *h_w, *h_permw, *h_zero;
    int64_t h_cap, h_zero_cap;
};

/* ---- loading ----------------------------------------------------------- */

/* 1 when the backend multiplies a weight of dtype <wdt> as stored with the
 * model's matmul inputs (mm_dt) into act_dt outputs (cuda: bf16 W, f32 x). */
static int matmul_takes(struct model *m, enum kn_dtype wdt)
{
    int64_t shape[2] = { 1, 8 };
    struct kn_tensor x = { 0 }, w = { 0 }, y = { 0 };
    x.dtype = m->mm_dt, w.dtype = wdt, y.dtype = m->act_dt;
    x.ndim = w.ndim = y.ndim = 2;
    memcpy(x.shape, shape, sizeof(shape));
    memcpy(w.shape, shape, sizeof(shape));
    memcpy(y.shape, shape, sizeof(shape));
    x.backend = w.backend = y.backend = m->be;
    return kn_backend_supports(m->be, KN_OP_MATMUL, &y, &x, &w, NULL);
}

static int load_weight(struct model *m, struct kn_tensor *t, const char *name, int ndim,
                       int64_t d0, int64_t d1, char *err, size_t errlen)
{
    const struct st_tensor *s = st_find(&m->st, name);
    int64_t want[2] = { d0, d1 };
    if (!s) {
        snprintf(err, errlen, "missing tensor %s", name);
        return -1;
    }
    if (s->dtype == KN_DTYPE_COUNT) {
        snprintf(err, errlen, "tensor %s: unsupported dtype %s (BF16, F16, F32)", name,
                 s->dtype_name);
        return -1;
    }
    int same = s->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = s->shape[d] == want[d];
    if (!same) {
        char got[96] = "", exp[64];
        for (int d = 0; d < s->ndim; d++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)s->shape[d]);
        if (ndim == 1)
            snprintf(exp, sizeof(exp), "%lld", (long long)d0);
        else
            snprintf(exp, sizeof(exp), "%lld, %lld", (long long)d0, (long long)d1);
        snprintf(err, errlen, "tensor %s: shape [%s], expected [%s]", name, got, exp);
        return -1;
    }
    size_t esize = kn_dtype_size(s->dtype);
    if (m->host && ((uintptr_t)s->data % esize) == 0) {
        *t = kn_tensor_host(s->dtype, ndim, want, (void *)(uintptr_t)s->data);
        return 0;
    }
    if (!m->host && ndim == 2 && s->dtype != m->mm_dt && !matmul_takes(m, s->dtype)) {
        /* a matrix of another dtype than the model's: converted once on the device */
        struct kn_tensor tmp;
        int rc = kn_tensor_alloc(&tmp, m->be, s->dtype, ndim, want);
        rc = rc < 0 ? -1 : kn_tensor_set(&tmp, s->data) < 0 ||
                           kn_tensor_alloc(t, m->be, m->mm_dt, ndim, want) < 0 ||
                           kn_convert(m->be, t, &tmp) < 0 || kn_backend_sync(m->be) < 0 ? -1 : 0;
        kn_tensor_free(&tmp);
        if (rc < 0) {
            snprintf(err, errlen, "tensor %s: cannot convert it to %s on the %s backend", name,
                     kn_dtype_name(m->mm_dt), m->be->ops->name);
            return -1;
        }
        return 0;
    }
    if (kn_tensor_alloc(t, m->be, s->dtype, ndim, want) < 0 || kn_tensor_set(t, s->data) < 0) {
        snprintf(err, errlen, "tensor %s: cannot place %zu bytes on the %s backend", name,
                 s->nbytes, m->be->ops->name);
        return -1;
    }
    return 0;
}

#define W(t, ndim, d0, d1, ...) do { \
        char nm_[160]; \
        snprintf(nm_, sizeof(nm_), __VA_ARGS__); \
        if (load_weight(m, (t), nm_, (ndim), (d0), (d1), err, errlen) < 0) \
            return -1; \
    } while (0)

static int load_layer(struct model *m, int i, char *err, size_t errlen)
{
    const struct model_config *c = &m->cfg;
    struct layer *L = &m->layers[i];
    int64_t hd = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim;
    int64_t kd = (int64_t)c->n_kv_heads * c->head_dim;
    const char *p = "model.layers";
    W(&L->in_norm, 1, hd, 0, "%s.%d.input_layernorm.weight", p, i);
    W(&L->post_norm, 1, hd, 0, "%s.%d.post_attention_layernorm.weight", p, i);
    W(&L->wq, 2, qd, hd, "%s.%d.self_attn.q_proj.weight", p, i);
    W(&L->wk, 2, kd, hd, "%s.%d.self_attn.k_proj.weight", p, i);
    W(&L->wv, 2, kd, hd, "%s.%d.self_attn.v_proj.weight", p, i);
    W(&L->wo, 2, hd, qd, "%s.%d.self_attn.o_proj.weight", p, i);
    if (c->attention_bias) {
        W(&L->bq, 1, qd, 0, "%s.%d.self_attn.q_proj.bias", p, i);
        W(&L->bk, 1, kd, 0, "%s.%d.self_attn.k_proj.bias", p, i);
        W(&L->bv, 1, kd, 0, "%s.%d.self_attn.v_proj.bias", p, i);
    }
    if (c->arch != MODEL_QWEN2) {
        W(&L->q_norm, 1, c->head_dim, 0, "%s.%d.self_attn.q_norm.weight", p, i);
        W(&L->k_norm, 1, c->head_dim, 0, "%s.%d.self_attn.k_norm.weight", p, i);
    }
    L->window = model_config_layer_window(c, i);
    L->moe = model_config_layer_is_moe(c, i);
    if (!L->moe) {
        int64_t id = c->intermediate_size;
        W(&L->w_gate, 2, id, hd, "%s.%d.mlp.gate_proj.weight", p, i);
        W(&L->w_up, 2, id, hd, "%s.%d.mlp.up_proj.weight", p, i);
        W(&L->w_down, 2, hd, id, "%s.%d.mlp.down_proj.weight", p, i);
        return 0;
    }
    int64_t md = c->moe_intermediate_size;
    W(&L->router, 2, c->n_experts, hd, "%s.%d.mlp.gate.weight", p, i);
    L->e_gate = xcalloc((size_t)c->n_experts, sizeof(*L->e_gate));
    L->e_up = xcalloc((size_t)c->n_experts, sizeof(*L->e_up));
    L->e_down = xcalloc((size_t)c->n_experts, sizeof(*L->e_down));
    for (int e = 0; e < c->n_experts; e++) {
        W(&L->e_gate[e], 2, md, hd, "%s.%d.mlp.experts.%d.gate_proj.weight", p, i, e);
        W(&L->e_up[e], 2, md, hd, "%s.%d.mlp.experts.%d.up_proj.weight", p, i, e);
        W(&L->e_down[e], 2, hd, md, "%s.%d.mlp.experts.%d.down_proj.weight", p, i, e);
    }
    return 0;
}

static int load_weights(struct model *m, char *err, size_t errlen)
{
    const struct model_config *c = &m->cfg;
    W(&m->embed, 2, c->vocab_size, c->hidden_size, "model.embed_tokens.weight");
    W(&m->final_norm, 1, c->hidden_size, 0, "model.norm.weight");
    m->layers = xcalloc((size_t)c->n_layers, sizeof(*m->layers));
    for (int i = 0; i < c->n_layers; i++)
        if (load_layer(m, i, err, errlen) < 0)
            return -1;
    if (c->tie_word_embeddings && !st_find(&m->st, "lm_head.weight")) {
        m->lm_head = m->embed;
        m->lm_head.owned = 0;       /* borrowed from embed */
    } else
        W(&m->lm_head, 2, c->vocab_size, c->hidden_size, "lm_head.weight");
    return 0;
}
#undef W

/* Grow the rope table to cover positions < <need>. 0 or -1. */
static int rope_reserve(struct model *m, int need)
{
    const struct model_config *c = &m->cfg;
    if (need <= m->rope_rows)
        return 0;
    int rows = m->rope_rows ? m->rope_rows : 1024;
    while (rows < need)
        rows *= 2;
    m->rope_host = xrealloc(m->rope_host, (size_t)rows * (size_t)c->rope_dim * sizeof(float));
    model_rope_fill(c, m->rope_host, m->rope_rows, rows);
    int64_t shape[2] = { rows, c->rope_dim };
    kn_tensor_free(&m->rope);
    m->rope_rows = rows;
    if (m->host) {
        m->rope = kn_tensor_host(KN_F32, 2, shape, m->rope_host);
        return 0;
    }
    if (kn_tensor_alloc(&m->rope, m->be, KN_F32, 2, shape) < 0 ||
        kn_tensor_set(&m->rope, m->rope_host) < 0) {
        m->rope_rows = 0;
        return -1;
    }
    return 0;
}

struct model *model_load(const char *dir, struct kn_backend *be, char *err, size_t errlen)
{
    struct model *m = xcalloc(1, sizeof(*m));
    m->be = be;
    m->host = strcmp(be->ops->name, "cpu") == 0;
    m->act_dt = KN_F32;
    m->kv_dt = KN_F32;
    m->mm_dt = KN_F32;
    if (model_config_load(&m->cfg, dir, err, errlen) < 0)
        goto fail;
    if (st_open_dir(&m->st, dir, err, errlen) < 0)
        goto fail;
    if (!m->host && getenv("LLMUX_MODEL_LOWP")) {
        const struct st_tensor *e = st_find(&m->st, "model.embed_tokens.weight");
        if (e && (e->dtype == KN_BF16 || e->dtype == KN_F16))
            m->mm_dt = m->kv_dt = e->dtype;
    }
    if (load_weights(m, err, errlen) < 0)
        goto fail;
    int first = m->cfg.max_position_embeddings < 4096 ? m->cfg.max_position_embeddings : 4096;
    if (rope_reserve(m, first) < 0) {
        snprintf(err, errlen, "rope table: out of backend memory");
        goto fail;
    }
    return m;
fail:
    model_free(m);
    return NULL;
}

void model_free(struct model *m)
{
    if (!m)
        return;
    const struct model_config *c = &m->cfg;
    if (m->layers) {
        for (int i = 0; i < c->n_layers; i++) {
            struct layer *L = &m->layers[i];
            struct kn_tensor *all[] = { &L->in_norm, &L->post_norm, &L->wq, &L->wk, &L->wv,
                                        &L->wo, &L->bq, &L->bk, &L->bv, &L->q_norm, &L->k_norm,
                                        &L->w_gate, &L->w_up, &L->w_down, &L->router,
                                        &L->k_cache, &L->v_cache };
            for (size_t j = 0; j < ARRAY_SIZE(all); j++)
                kn_tensor_free(all[j]);
            for (int e = 0; L->e_gate && e < c->n_experts; e++) {
                kn_tensor_free(&L->e_gate[e]);
                kn_tensor_free(&L->e_up[e]);
                kn_tensor_free(&L->e_down[e]);
            }
            free(L->e_gate);
            free(L->e_up);
            free(L->e_down);
        }
        free(m->layers);
    }
    kn_tensor_free(&m->lm_head);
    kn_tensor_free(&m->embed);
    kn_tensor_free(&m->final_norm);
    kn_tensor_free(&m->rope);
    free(m->rope_host);
    struct kn_buf *bufs[] = { &m->x, &m->h, &m->q, &m->k, &m->v, &m->att, &m->o, &m->g, &m->u,
                           &m->a, &m->rl, &m->rids, &m->rw, &m->mx, &m->mg, &m->mu, &m->ma,
                           &m->my, &m->xl, &m->ol, &m->hl, &m->logits, &m->i_tok, &m->i_pos,
                           &m->i_seq, &m->i_slot, &m->i_bt, &m->i_rows, &m->i_perm, &m->f_perm };
    for (size_t j = 0; j < ARRAY_SIZE(bufs); j++)
        kn_buf_free(bufs[j]);
    free(m->h_seq);
    free(m->h_slot);
    free(m->h_perm);
    free(m->h_ids);
    free(m->h_count);
    free(m->h_w);
    free(m->h_permw);
    free(m->h_zero);
    st_close(&m->st);
    free(m);
}

const struct model_config *model_get_config(const struct model *m)
{
    return &m->cfg;
}

size_t model_kv_block_bytes(const struct model *m, int block_size)
{
    const struct model_config *c = &m->cfg;
    return 2 * (size_t)c->n_layers * (size_t)block_size * (size_t)c->n_kv_heads *
           (size_t)c->head_dim * kn_dtype_size(m->kv_dt);
}

int model_kv_alloc(struct model *m, int n_blocks, int block_size)
{
    const struct model_config *c = &m->cfg;
    if (n_blocks <= 0 || block_size <= 0) {
        log_error("model_kv_alloc: bad size %d blocks of %d", n_blocks, block_size);
        return -1;
    }
    int64_t shape[3] = { (int64_t)n_blocks * block_size, c->n_kv_heads, c->head_dim };
    for (int i = 0; i < c->n_layers; i++) {
        struct layer *L = &m->layers[i];
        kn_tensor_free(&L->k_cache);
        kn_tensor_free(&L->v_cache);
        if (kn_tensor_alloc(&L->k_cache, m->be, m->kv_dt, 3, shape) < 0 ||
            kn_tensor_alloc(&L->v_cache, m->be, m->kv_dt, 3, shape) < 0) {
            log_error("model_kv_alloc: out of memory for %d blocks of %d tokens", n_blocks,
                      block_size);
            return -1;
        }
    }
    m->block_size = block_size;
    m->n_slots = n_blocks * block_size;
    return 0;
}

/* ---- forward ----------------------------------------------------------- */

/* Contiguous (rows, cols) view of <b>, <off> elements in. */
static struct kn_tensor mat(const struct kn_buf *b, int64_t rows, int64_t cols, int64_t off)
{
    int64_t shape[2] = { rows, cols }, stride[2] = { cols, 1 };
    return kn_tensor_view(&b->t, 2, shape, stride, off);
}

/* Contiguous (T, H, D) view of <b>. */
static struct kn_tensor heads(const struct kn_buf *b, int64_t t, int64_t h, int64_t d)
{
    int64_t shape[3] = { t, h, d }, stride[3] = { h * d, d, 1 };
    return kn_tensor_view(&b->t, 3, shape, stride, 0);
}

/* An i32 index vector of <n> entries from host <src>: wrapped as is on the
 * cpu backend, uploaded into <b> elsewhere. */
static int index_of(struct model *m, struct kn_tensor *out, struct kn_buf *b, const void *src,
                    int64_t n, enum kn_dtype dt)
{
    if (m->host) {
        *out = kn_tensor_host(dt, 1, &n, (void *)(uintptr_t)src);
        return 0;
    }
    if (kn_buf_reserve(m->be, b, dt, n) < 0)
        return -1;
    int64_t shape[1] = { n }, stride[1] = { 1 };
    *out = kn_tensor_view(&b->t, 1, shape, stride, 0);
    return kn_tensor_set(out, src);
}

static void host_reserve(struct model *m, int64_t n)
{
    if (n <= m->h_cap)
        return;
    n += n / 2;
    m->h_seq = xrealloc(m->h_seq, (size_t)n * sizeof(int32_t));
    m->h_slot = xrealloc(m->h_slot, (size_t)n * sizeof(int32_t));
    m->h_perm = xrealloc(m->h_perm, (size_t)n * sizeof(int32_t));
    m->h_ids = xrealloc(m->h_ids, (size_t)n * sizeof(int32_t));
    m->h_w = xrealloc(m->h_w, (size_t)n * sizeof(float));
    m->h_permw = xrealloc(m->h_permw, (size_t)n * sizeof(float));
    m->h_cap = n;
}

/* Sequence and cache slot of every token; checks the batch. 0 or -1. */
static int batch_prepare(struct model *m, const struct model_batch *b)
{
    if (m->block_size <= 0) {
        log_error("model_forward: no KV cache (call model_kv_alloc)");
        return -1;
    }
    if (b->n_seqs <= 0 || b->seq_start[0] != 0 || b->seq_start[b->n_seqs] != b->n_tokens) {
        log_error("model_forward: seq_start does not cover the %d tokens", b->n_tokens);
        return -1;
    }
    int max_pos = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        if (b->seq_start[i + 1] < b->seq_start[i]) {
            log_error("model_forward: seq_start not increasing at %d", i);
            return -1;
        }
        for (int t = b->seq_start[i]; t < b->seq_start[i + 1]; t++) {
            int32_t p = b->positions[t];
            if (p < 0 || p >= b->seq_len[i] || p / m->block_size >= b->max_blocks) {
                log_error("model_forward: token %d position %d outside sequence %d (len %d, "
                          "%d blocks)", t, p, i, b->seq_len[i], b->max_blocks);
                return -1;
            }
            int32_t blk = b->block_table[(int64_t)i * b->max_blocks + p / m->block_size];
            if (blk < 0 || (int64_t)blk * m->block_size >= m->n_slots) {
                log_error("model_forward: sequence %d block %d outside the cache", i, blk);
                return -1;
            }
            m->h_seq[t] = i;
            m->h_slot[t] = blk * m->block_size + p % m->block_size;
            if (p > max_pos)
                max_pos = p;
        }
        for (int j = 0; j < (b->seq_len[i] + m->block_size - 1) / m->block_size; j++) {
            int32_t blk = j < b->max_blocks ? b->block_table[(int64_t)i * b->max_blocks + j] : -1;
            if (blk < 0 || (int64_t)blk * m->block_size >= m->n_slots) {
                log_error("model_forward: sequence %d block %d of its context is outside the "
                          "cache", i, j);
                return -1;
            }
        }
    }
    for (int r = 0; r < b->n_logits; r++)
        if (b->logit_rows[r] < 0 || b->logit_rows[r] >= b->n_tokens) {
            log_error("model_forward: logit row %d outside the batch", b->logit_rows[r]);
            return -1;
        }
    if (rope_reserve(m, max_pos + 1) < 0) {
        log_error("model_forward: rope table for position %d: out of memory", max_pos);
        return -1;
    }
    return 0;
}

/* Dense MLP of the rows in h -> out. */
static int mlp_dense(struct model *m, struct layer *L, struct kn_tensor *out,
                     const struct kn_tensor *h, int64_t T)
{
    int64_t I = m->cfg.intermediate_size;
    struct kn_tensor g = mat(&m->g, T, I, 0), u = mat(&m->u, T, I, 0), a = mat(&m->a, T, I, 0);
    if (kn_matmul(m->be, &g, h, &L->w_gate) < 0 || kn_matmul(m->be, &u, h, &L->w_up) < 0 ||
        kn_silu_mul(m->be, &a, &g, &u) < 0 || kn_matmul(m->be, out, &a, &L->w_down) < 0)
        return -1;
    return 0;
}

/* Sparse MoE block: route, group the (token, expert) pairs by expert in
 * ascending expert order (transformers' order of accumulation), run each
 * expert on its rows, scatter-add the weighted results into <out>. */
static int mlp_moe(struct model *m, struct layer *L, struct kn_tensor *out,
                   const struct kn_tensor *h, int64_t T)
{
    const struct model_config *c = &m->cfg;
    int64_t E = c->n_experts, K = c->n_experts_per_tok, hd = c->hidden_size;
    int64_t md = c->moe_intermediate_size, n = T * K;
    struct kn_tensor rl = mat(&m->rl, T, E, 0), rids = mat(&m->rids, T, K, 0);
    struct kn_tensor rw = mat(&m->rw, T, K, 0), perm, permw;
    if (kn_matmul(m->be, &rl, h, &L->router) < 0 ||
        kn_moe_route(m->be, &rids, &rw, &rl, (int)K, c->norm_topk_prob) < 0 ||
        kn_tensor_get(&rids, m->h_ids) < 0 || kn_tensor_get(&rw, m->h_w) < 0)
        return -1;
    int32_t *count = m->h_count;
    memset(count, 0, (size_t)(E + 1) * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) {
        if (m->h_ids[i] < 0 || m->h_ids[i] >= E) {
            log_error("moe: expert id %d out of range", m->h_ids[i]);
            return -1;
        }
        count[m->h_ids[i] + 1]++;
    }
    for (int64_t e = 0; e < E; e++)
        count[e + 1] += count[e];
    /* stable counting sort: within an expert, tokens ascending */
    for (int64_t i = 0; i < n; i++) {
        int32_t e = m->h_ids[i], at = count[e]++;
        m->h_perm[at] = (int32_t)(i / K);
        m->h_permw[at] = m->h_w[i];
    }
    /* count[e] is now the end of expert e's run */
    if (index_of(m, &perm, &m->i_perm, m->h_perm, n, KN_I32) < 0 ||
        index_of(m, &permw, &m->f_perm, m->h_permw, n, KN_F32) < 0)
        return -1;
    struct kn_tensor mx = mat(&m->mx, n, hd, 0);
    if (kn_gather_rows(m->be, &mx, h, &perm) < 0)
        return -1;
    for (int64_t e = 0, start = 0; e < E; e++) {
        int64_t end = count[e], rows = end - start;
        if (rows > 0) {
            struct kn_tensor x = mat(&m->mx, rows, hd, start * hd);
            struct kn_tensor g = mat(&m->mg, rows, md, 0), u = mat(&m->mu, rows, md, 0);
            struct kn_tensor a = mat(&m->ma, rows, md, 0), y = mat(&m->my, rows, hd, start * hd);
            if (kn_matmul(m->be, &g, &x, &L->e_gate[e]) < 0 ||
                kn_matmul(m->be, &u, &x, &L->e_up[e]) < 0 || kn_silu_mul(m->be, &a, &g, &u) < 0 ||
                kn_matmul(m->be, &y, &a, &L->e_down[e]) < 0)
                return -1;
        }
        start = end;
    }
    if (m->host)
        memset(out->data, 0, (size_t)(T * hd) * kn_dtype_size(out->dtype));
    else if (kn_tensor_set(out, m->h_zero) < 0)
        return -1;
    struct kn_tensor my = mat(&m->my, n, hd, 0);
    return kn_scatter_add_rows(m->be, out, &my, &perm, &permw);
}

static int reserve_all(struct model *m, int64_t T, int64_t n_logits)
{
    const struct model_config *c = &m->cfg;
    int64_t hd = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim;
    int64_t kd = (int64_t)c->n_kv_heads * c->head_dim;
    enum kn_dtype a = m->act_dt, mm = m->mm_dt;
    if (kn_buf_reserve(m->be, &m->x, a, T * hd) < 0 || kn_buf_reserve(m->be, &m->h, mm, T * hd) < 0 ||
        kn_buf_reserve(m->be, &m->q, a, T * qd) < 0 || kn_buf_reserve(m->be, &m->k, a, T * kd) < 0 ||
        kn_buf_reserve(m->be, &m->v, a, T * kd) < 0 || kn_buf_reserve(m->be, &m->att, mm, T * qd) < 0 ||
        kn_buf_reserve(m->be, &m->o, a, T * hd) < 0 ||
        kn_buf_reserve(m->be, &m->g, a, T * c->intermediate_size) < 0 ||
        kn_buf_reserve(m->be, &m->u, a, T * c->intermediate_size) < 0 ||
        kn_buf_reserve(m->be, &m->a, mm, T * c->intermediate_size) < 0 ||
        kn_buf_reserve(m->be, &m->xl, a, n_logits * hd) < 0 || kn_buf_reserve(m->be, &m->ol, a, n_logits * hd) < 0 ||
        kn_buf_reserve(m->be, &m->hl, mm, n_logits * hd) < 0)
        return -1;
    if (!m->host && kn_buf_reserve(m->be, &m->logits, KN_F32, n_logits * c->vocab_size) < 0)
        return -1;
    host_reserve(m, T * (c->n_experts_per_tok > 0 ? c->n_experts_per_tok : 1));
    if (c->arch == MODEL_QWEN3_MOE && c->n_experts > 0) {
        int64_t n = T * c->n_experts_per_tok, md = c->moe_intermediate_size;
        if (kn_buf_reserve(m->be, &m->rl, KN_F32, T * c->n_experts) < 0 ||
            kn_buf_reserve(m->be, &m->rids, KN_I32, n) < 0 || kn_buf_reserve(m->be, &m->rw, KN_F32, n) < 0 ||
            kn_buf_reserve(m->be, &m->mx, mm, n * hd) < 0 || kn_buf_reserve(m->be, &m->mg, a, n * md) < 0 ||
            kn_buf_reserve(m->be, &m->mu, a, n * md) < 0 || kn_buf_reserve(m->be, &m->ma, mm, n * md) < 0 ||
            kn_buf_reserve(m->be, &m->my, a, n * hd) < 0)
            return -1;
        if (!m->h_count)
            m->h_count = xmalloc((size_t)(c->n_experts + 1) * sizeof(int32_t));
        if (!m->host && m->h_zero_cap < T * hd) {
            free(m->h_zero);
            m->h_zero = xcalloc((size_t)(T * hd), kn_dtype_size(a));
            m->h_zero_cap = T * hd;
        }
    }
    return 0;
}

static int layer_forward(struct model *m, struct layer *L, int li, int64_t T,
                         const struct kn_tensor *pos, const struct kn_tensor *seq,
                         const struct kn_tensor *slot, const struct kn_tensor *bt)
{
    const struct model_config *c = &m->cfg;
    int64_t hd = c->hidden_size, H = c->n_heads, Hk = c->n_kv_heads, D = c->head_dim;
    struct kn_backend *be = m->be;
    struct kn_tensor x = mat(&m->x, T, hd, 0), h = mat(&m->h, T, hd, 0), o = mat(&m->o, T, hd, 0);
    struct kn_tensor q = mat(&m->q, T, H * D, 0), k = mat(&m->k, T, Hk * D, 0);
    struct kn_tensor v = mat(&m->v, T, Hk * D, 0);
    /* o holds the previous layer's MLP output: x += o, h = norm(x) */
    if (kn_rms_norm(be, &h, li ? &o : &x, &L->in_norm, li ? &x : NULL, c->rms_norm_eps) < 0 ||
        kn_matmul(be, &q, &h, &L->wq) < 0 || kn_matmul(be, &k, &h, &L->wk) < 0 ||
        kn_matmul(be, &v, &h, &L->wv) < 0)
        return -1;
    if (c->attention_bias && (kn_add(be, &q, &q, &L->bq) < 0 || kn_add(be, &k, &k, &L->bk) < 0 ||
                              kn_add(be, &v, &v, &L->bv) < 0))
        return -1;
    if (c->arch != MODEL_QWEN2) {
        struct kn_tensor qr = mat(&m->q, T * H, D, 0), kr = mat(&m->k, T * Hk, D, 0);
        if (kn_rms_norm(be, &qr, &qr, &L->q_norm, NULL, c->rms_norm_eps) < 0 ||
            kn_rms_norm(be, &kr, &kr, &L->k_norm, NULL, c->rms_norm_eps) < 0)
            return -1;
    }
    struct kn_tensor q3 = heads(&m->q, T, H, D), k3 = heads(&m->k, T, Hk, D);
    struct kn_tensor v3 = heads(&m->v, T, Hk, D), a3 = heads(&m->att, T, H, D);
    struct kn_tensor a2 = mat(&m->att, T, H * D, 0);
    if (kn_rope(be, &q3, pos, &m->rope) < 0 || kn_rope(be, &k3, pos, &m->rope) < 0 ||
        kn_kv_store(be, &L->k_cache, &L->v_cache, &k3, &v3, slot) < 0 ||
        kn_paged_attention(be, &a3, &q3, &L->k_cache, &L->v_cache, bt, seq, pos, m->block_size,
                           (float)(1.0 / sqrt((double)D)), L->window) < 0 ||
        kn_matmul(be, &o, &a2, &L->wo) < 0 ||
        kn_rms_norm(be, &h, &o, &L->post_norm, &x, c->rms_norm_eps) < 0)
        return -1;
    return L->moe ? mlp_moe(m, L, &o, &h, T) : mlp_dense(m, L, &o, &h, T);
}

int model_forward(struct model *m, const struct model_batch *b, float *logits)
{
    const struct model_config *c = &m->cfg;
    int64_t T = b->n_tokens, hd = c->hidden_size, NL = b->n_logits;
    struct kn_tensor tok, pos, seq, slot, bt, rows;
    if (T <= 0)
        return 0;
    if (reserve_all(m, T, NL) < 0)
        return -1;
    if (batch_prepare(m, b) < 0)
        return -1;
    if (index_of(m, &tok, &m->i_tok, b->tokens, T, KN_I32) < 0 ||
        index_of(m, &pos, &m->i_pos, b->positions, T, KN_I32) < 0 ||
        index_of(m, &seq, &m->i_seq, m->h_seq, T, KN_I32) < 0 ||
        index_of(m, &slot, &m->i_slot, m->h_slot, T, KN_I32) < 0 ||
        index_of(m, &bt, &m->i_bt, b->block_table, (int64_t)b->n_seqs * b->max_blocks,
                 KN_I32) < 0)
        return -1;
    int64_t bt_shape[2] = { b->n_seqs, b->max_blocks }, bt_stride[2] = { b->max_blocks, 1 };
    bt = kn_tensor_view(&bt, 2, bt_shape, bt_stride, 0);
    struct kn_tensor x = mat(&m->x, T, hd, 0);
    if (kn_embed(m->be, &x, &m->embed, &tok) < 0)
        return -1;
    for (int li = 0; li < c->n_layers; li++)
        if (layer_forward(m, &m->layers[li], li, T, &pos, &seq, &slot, &bt) < 0)
            return -1;
    if (NL <= 0)
        return 0;
    /* only the rows asked for: final residual add, norm, lm_head */
    struct kn_tensor o = mat(&m->o, T, hd, 0), xl = mat(&m->xl, NL, hd, 0);
    struct kn_tensor ol = mat(&m->ol, NL, hd, 0), hl = mat(&m->hl, NL, hd, 0), lg;
    int64_t lshape[2] = { NL, c->vocab_size };
    if (index_of(m, &rows, &m->i_rows, b->logit_rows, NL, KN_I32) < 0 ||
        kn_gather_rows(m->be, &xl, &x, &rows) < 0 || kn_gather_rows(m->be, &ol, &o, &rows) < 0 ||
        kn_rms_norm(m->be, &hl, &ol, &m->final_norm, &xl, c->rms_norm_eps) < 0)
        return -1;
    if (m->host) {
        lg = kn_tensor_host(KN_F32, 2, lshape, logits);
        return kn_matmul(m->be, &lg, &hl, &m->lm_head);
    }
    lg = mat(&m->logits, NL, c->vocab_size, 0);
    if (kn_matmul(m->be, &lg, &hl, &m->lm_head) < 0 || kn_tensor_get(&lg, logits) < 0)
        return -1;
    return 0;
}
