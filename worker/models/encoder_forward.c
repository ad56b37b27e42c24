/*
 * encoder_forward.c -- the XLM-RoBERTa forward pass over a packed batch as
 * kernels/ ops: embeddings (word + position + token type 0, LayerNorm),
 * post-LN blocks (bidirectional attention within each sequence, exact-erf
 * GELU MLP; on a GPU 16-bit tensor-core GEMMs and attention, f32 residual,
 * LayerNorm and softmax), then the heads: pooled dense vector, classifier logits, bge-m3
 * sparse weights and ColBERT vectors. The host prepares index arrays and
 * finishes the small outputs (L2 normalization, mean pooling, zeroing the
 * rows FlagEmbedding drops); it never loops over the hidden states otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_priv.h"
#include "log.h"
#include "util.h"

static struct kn_tensor mat(const struct kn_buf *b, int64_t rows, int64_t cols)
{
    int64_t shape[2] = { rows, cols }, stride[2] = { cols, 1 };
    return kn_tensor_view(&b->t, 2, shape, stride, 0);
}

static struct kn_tensor heads(const struct kn_buf *b, int64_t t, int64_t h, int64_t d)
{
    int64_t shape[3] = { t, h, d }, stride[3] = { h * d, d, 1 };
    return kn_tensor_view(&b->t, 3, shape, stride, 0);
}

/* An i32 vector of <n> entries from host <src>: wrapped on the cpu backend,
 * uploaded into <b> elsewhere. */
static int index_of(struct encoder *e, struct kn_tensor *out, struct kn_buf *b,
                    const int32_t *src, int64_t n)
{
    if (e->host) {
        *out = kn_tensor_host(KN_I32, 1, &n, (void *)(uintptr_t)src);
        return 0;
    }
    if (kn_buf_reserve(e->be, b, KN_I32, n) < 0)
        return -1;
    int64_t shape[1] = { n }, stride[1] = { 1 };
    *out = kn_tensor_view(&b->t, 1, shape, stride, 0);
    return kn_tensor_set(out, src);
}

/* y = x W^T + b */
static int linear(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w, const struct kn_tensor *b)
{
    return kn_matmul(be, y, x, w) < 0 || kn_add(be, y, y, b) < 0 ? -1 : 0;
}

/* Checks the batch; fills position ids (create_position_ids_from_input_ids:
 * pad tokens get padding_idx, the others padding_idx + their count of
 * non-pad tokens so far in the sequence) and each sequence's first row. */
static int batch_prepare(struct encoder *e, const struct encoder_batch *b, int64_t *T)
{
    const struct encoder_info *in = &e->info;
    if (b->n_seqs <= 0 || !b->seq_start || b->seq_start[0] != 0) {
        log_error("encoder_forward: empty batch or seq_start[0] != 0");
        return -1;
    }
    *T = b->seq_start[b->n_seqs];
    if (*T > e->h_cap || b->n_seqs > e->h_cap) {
        int64_t cap = (*T > b->n_seqs ? *T : b->n_seqs) + 16;
        e->h_pos = xrealloc(e->h_pos, (size_t)cap * sizeof(int32_t));
        e->h_cls = xrealloc(e->h_cls, (size_t)cap * sizeof(int32_t));
        e->h_cap = cap;
    }
    int32_t pad = in->pad_token_id;
    for (int s = 0; s < b->n_seqs; s++) {
        int32_t t0 = b->seq_start[s], t1 = b->seq_start[s + 1];
        if (t1 <= t0 || t1 - t0 > in->max_model_len) {
            log_error("encoder_forward: sequence %d has %d tokens (1..%d)", s, t1 - t0,
                      in->max_model_len);
            return -1;
        }
        e->h_cls[s] = t0;
        int32_t count = 0;
        for (int32_t t = t0; t < t1; t++) {
            int32_t id = b->tokens[t];
            if (id < 0 || id >= in->vocab_size) {
                log_error("encoder_forward: token %d of sequence %d is %d, outside the "
                          "vocabulary of %d", t - t0, s, id, in->vocab_size);
                return -1;
            }
            if (id != pad)
                count++;
            e->h_pos[t] = id != pad ? pad + count : pad;
        }
    }
    return 0;
}

/*
 * Scratch roles. cpu: every buffer f32 as its name says. GPU (16-bit GEMMs,
 * ct = the layers' weight dtype, see xlmr.c): x f32 residual stream; q f32
 * (T, 3 hidden) = x W_qkv^T + b; v f16 (T, 3 hidden) its copy that the
 * tensor-core attention reads; k ct (T, hidden) the GEMM input (x converted,
 * then the attention output); o f32 (T, hidden); h f32 (T, inter); att ct
 * (T, inter) = gelu(h), the last GEMM's input.
 */
static int reserve_gpu(struct encoder *e, int64_t T)
{
    int64_t hd = e->info.hidden_size, id = e->intermediate_size;
    enum kn_dtype ct = e->layers[0].wq.dtype;
    return kn_buf_reserve(e->be, &e->x, KN_F32, T * hd) < 0 ||
           kn_buf_reserve(e->be, &e->q, KN_F32, T * 3 * hd) < 0 ||
           kn_buf_reserve(e->be, &e->v, KN_F16, T * 3 * hd) < 0 || kn_buf_reserve(e->be, &e->k, ct, T * hd) < 0 ||
           kn_buf_reserve(e->be, &e->o, KN_F32, T * hd) < 0 || kn_buf_reserve(e->be, &e->h, KN_F32, T * id) < 0 ||
           kn_buf_reserve(e->be, &e->att, ct, T * id) < 0
               ? -1 : 0;
}

static int reserve_all(struct encoder *e, int64_t T, int64_t n)
{
    const struct encoder_info *in = &e->info;
    int64_t hd = in->hidden_size, id = e->intermediate_size;
    int64_t cd = in->has_colbert ? in->colbert_dim : 1;
    int64_t nl = in->n_labels > 0 ? in->n_labels : 1;
    if (!e->host)
        return reserve_gpu(e, T) < 0 || kn_buf_reserve(e->be, &e->cls, KN_F32, n * hd) < 0 ||
               kn_buf_reserve(e->be, &e->c1, KN_F32, n * hd) < 0 ||
               kn_buf_reserve(e->be, &e->sc, KN_F32, n * nl) < 0 || kn_buf_reserve(e->be, &e->sp, KN_F32, T) < 0 ||
               kn_buf_reserve(e->be, &e->cb, KN_F32, T * cd) < 0
                   ? -1 : 0;
    return kn_buf_reserve(e->be, &e->x, KN_F32, T * hd) < 0 || kn_buf_reserve(e->be, &e->q, KN_F32, T * hd) < 0 ||
           kn_buf_reserve(e->be, &e->k, KN_F32, T * hd) < 0 || kn_buf_reserve(e->be, &e->v, KN_F32, T * hd) < 0 ||
           kn_buf_reserve(e->be, &e->att, KN_F32, T * hd) < 0 || kn_buf_reserve(e->be, &e->o, KN_F32, T * hd) < 0 ||
           kn_buf_reserve(e->be, &e->h, KN_F32, T * id) < 0 || kn_buf_reserve(e->be, &e->cls, KN_F32, n * hd) < 0 ||
           kn_buf_reserve(e->be, &e->c1, KN_F32, n * hd) < 0 || kn_buf_reserve(e->be, &e->sc, KN_F32, n * nl) < 0 ||
           kn_buf_reserve(e->be, &e->sp, KN_F32, T) < 0 || kn_buf_reserve(e->be, &e->cb, KN_F32, T * cd) < 0
               ? -1 : 0;
}

static int layer_forward(struct encoder *e, const struct enc_layer *L, int64_t T,
                         const struct kn_tensor *seq)
{
    const struct encoder_info *in = &e->info;
    struct kn_backend *be = e->be;
    int64_t hd = in->hidden_size, H = in->n_heads, D = hd / H;
    struct kn_tensor x = mat(&e->x, T, hd), q = mat(&e->q, T, hd), k = mat(&e->k, T, hd);
    struct kn_tensor v = mat(&e->v, T, hd), a = mat(&e->att, T, hd), o = mat(&e->o, T, hd);
    struct kn_tensor h = mat(&e->h, T, e->intermediate_size);
    struct kn_tensor q3 = heads(&e->q, T, H, D), k3 = heads(&e->k, T, H, D);
    struct kn_tensor v3 = heads(&e->v, T, H, D), a3 = heads(&e->att, T, H, D);
    if (linear(be, &q, &x, &L->wq, &L->bq) < 0 || linear(be, &k, &x, &L->wk, &L->bk) < 0 ||
        linear(be, &v, &x, &L->wv, &L->bv) < 0 ||
        kn_seq_attention(be, &a3, &q3, &k3, &v3, seq, (float)(1.0 / sqrt((double)D))) < 0 ||
        linear(be, &o, &a, &L->wo, &L->bo) < 0 || kn_add(be, &x, &x, &o) < 0 ||
        kn_layer_norm(be, &x, &x, &L->ln1_w, &L->ln1_b, e->ln_eps) < 0 ||
        linear(be, &h, &x, &L->wi, &L->bi) < 0 || kn_act(be, &h, &h, KN_ACT_GELU_ERF) < 0 ||
        linear(be, &o, &h, &L->wout, &L->bout) < 0 || kn_add(be, &x, &x, &o) < 0 ||
        kn_layer_norm(be, &x, &x, &L->ln2_w, &L->ln2_b, e->ln_eps) < 0)
        return -1;
    return 0;
}

/* The GPU layer (scratch roles above): 16-bit GEMMs with f32 output, one
 * fused q|k|v GEMM, f16 tensor-core attention; residual adds, LayerNorm and
 * the softmax in f32. */
static int layer_forward_gpu(struct encoder *e, const struct enc_layer *L, int64_t T,
                             const struct kn_tensor *seq)
{
    const struct encoder_info *in = &e->info;
    struct kn_backend *be = e->be;
    int64_t hd = in->hidden_size, H = in->n_heads, D = hd / H, id = e->intermediate_size;
    struct kn_tensor x = mat(&e->x, T, hd), xh = mat(&e->k, T, hd), o = mat(&e->o, T, hd);
    struct kn_tensor qkv = mat(&e->q, T, 3 * hd), qkvh = mat(&e->v, T, 3 * hd);
    struct kn_tensor h = mat(&e->h, T, id), hh = mat(&e->att, T, id);
    struct kn_tensor a3 = heads(&e->k, T, H, D);
    int64_t shape[3] = { T, H, D }, stride[3] = { 3 * hd, D, 1 };
    struct kn_tensor q3 = kn_tensor_view(&e->v.t, 3, shape, stride, 0);
    struct kn_tensor k3 = kn_tensor_view(&e->v.t, 3, shape, stride, hd);
    struct kn_tensor v3 = kn_tensor_view(&e->v.t, 3, shape, stride, 2 * hd);
    if (kn_convert(be, &xh, &x) < 0 || linear(be, &qkv, &xh, &L->wq, &L->bq) < 0 ||
        kn_convert(be, &qkvh, &qkv) < 0 ||
        kn_seq_attention(be, &a3, &q3, &k3, &v3, seq, (float)(1.0 / sqrt((double)D))) < 0 ||
        linear(be, &o, &xh, &L->wo, &L->bo) < 0 || kn_add(be, &x, &x, &o) < 0 ||
        kn_layer_norm(be, &x, &x, &L->ln1_w, &L->ln1_b, e->ln_eps) < 0 ||
        kn_convert(be, &xh, &x) < 0 || linear(be, &h, &xh, &L->wi, &L->bi) < 0 ||
        kn_act(be, &hh, &h, KN_ACT_GELU_ERF) < 0 ||
        linear(be, &o, &hh, &L->wout, &L->bout) < 0 || kn_add(be, &x, &x, &o) < 0 ||
        kn_layer_norm(be, &x, &x, &L->ln2_w, &L->ln2_b, e->ln_eps) < 0)
        return -1;
    return 0;
}

/* row /= max(|row|, 1e-12), as torch.nn.functional.normalize */
static void l2_normalize(float *row, int64_t n)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)row[i] * row[i];
    double norm = sqrt(ss);
    float inv = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
    for (int64_t i = 0; i < n; i++)
        row[i] *= inv;
}

static int dense_out(struct encoder *e, const struct encoder_batch *b, int64_t T,
                     const struct kn_tensor *cls, float *dense)
{
    const struct encoder_info *in = &e->info;
    int64_t hd = in->hidden_size, n = b->n_seqs;
    if (in->pooling == POOL_CLS) {
        if (kn_tensor_get(cls, dense) < 0)
            return -1;
    } else {
        if (T * hd > e->h_x_cap) {
            free(e->h_x);
            e->h_x = xmalloc((size_t)(T * hd) * sizeof(float));
            e->h_x_cap = T * hd;
        }
        struct kn_tensor x = mat(&e->x, T, hd);
        if (kn_tensor_get(&x, e->h_x) < 0)
            return -1;
        for (int64_t s = 0; s < n; s++) {
            int64_t t0 = b->seq_start[s], t1 = b->seq_start[s + 1];
            for (int64_t i = 0; i < hd; i++) {
                double acc = 0;
                for (int64_t t = t0; t < t1; t++)
                    acc += e->h_x[t * hd + i];
                dense[s * hd + i] = (float)(acc / (double)(t1 - t0));
            }
        }
    }
    if (in->normalize)
        for (int64_t s = 0; s < n; s++)
            l2_normalize(dense + s * hd, hd);
    return 0;
}

static int heads_out(struct encoder *e, const struct encoder_batch *b, int64_t T,
                     struct encoder_out *out)
{
    const struct encoder_info *in = &e->info;
    struct kn_backend *be = e->be;
    struct kn_tensor x = mat(&e->x, T, in->hidden_size);
    if (out->sparse && in->has_sparse) {
        struct kn_tensor sp = mat(&e->sp, T, 1);
        if (linear(be, &sp, &x, &e->sparse_w, &e->sparse_b) < 0 ||
            kn_act(be, &sp, &sp, KN_ACT_RELU) < 0 || kn_tensor_get(&sp, out->sparse) < 0)
            return -1;
        for (int64_t t = 0; t < T; t++) {
            int32_t id = b->tokens[t];
            if (id == e->bos_id || id == e->eos_id || id == in->pad_token_id || id == e->unk_id)
                out->sparse[t] = 0.0f;
        }
    }
    if (out->colbert && in->has_colbert) {
        int64_t cd = in->colbert_dim;
        struct kn_tensor cb = mat(&e->cb, T, cd);
        if (linear(be, &cb, &x, &e->colbert_w, &e->colbert_b) < 0 ||
            kn_tensor_get(&cb, out->colbert) < 0)
            return -1;
        for (int s = 0; s < b->n_seqs; s++)
            for (int64_t t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) {
                if (t == b->seq_start[s])
                    memset(out->colbert + t * cd, 0, (size_t)cd * sizeof(float));
                else
                    l2_normalize(out->colbert + t * cd, cd);
            }
    }
    return 0;
}

int encoder_forward(struct encoder *e, const struct encoder_batch *b, struct encoder_out *out)
{
    const struct encoder_info *in = &e->info;
    struct kn_backend *be = e->be;
    int64_t T, hd = in->hidden_size, n = b->n_seqs;
    struct kn_tensor tok, pos, seq, clsi;
    if (batch_prepare(e, b, &T) < 0 || reserve_all(e, T, n) < 0)
        return -1;
    if (index_of(e, &tok, &e->i_tok, b->tokens, T) < 0 ||
        index_of(e, &pos, &e->i_pos, e->h_pos, T) < 0 ||
        index_of(e, &seq, &e->i_seq, b->seq_start, n + 1) < 0 ||
        index_of(e, &clsi, &e->i_cls, e->h_cls, n) < 0)
        return -1;
    /* token type 0 for every token: row 0 of the table, broadcast */
    int64_t tshape[1] = { hd }, tstride[1] = { 1 };
    struct kn_tensor type0 = kn_tensor_view(&e->type, 1, tshape, tstride, 0);
    struct kn_tensor x = mat(&e->x, T, hd), o = mat(&e->o, T, hd);
    if (kn_embed(be, &x, &e->word, &tok) < 0 || kn_embed(be, &o, &e->pos, &pos) < 0 ||
        kn_add(be, &x, &x, &o) < 0 || kn_add(be, &x, &x, &type0) < 0 ||
        kn_layer_norm(be, &x, &x, &e->emb_ln_w, &e->emb_ln_b, e->ln_eps) < 0)
        return -1;
    for (int i = 0; i < in->n_layers; i++)
        if ((e->host ? layer_forward(e, &e->layers[i], T, &seq)
                     : layer_forward_gpu(e, &e->layers[i], T, &seq)) < 0)
            return -1;
    struct kn_tensor cls = mat(&e->cls, n, hd);
    if ((out->dense || out->scores) && kn_gather_rows(be, &cls, &x, &clsi) < 0)
        return -1;
    if (out->dense && dense_out(e, b, T, &cls, out->dense) < 0)
        return -1;
    if (out->scores && in->kind == ENCODER_RERANK) {
        struct kn_tensor c1 = mat(&e->c1, n, hd), sc = mat(&e->sc, n, in->n_labels);
        if (linear(be, &c1, &cls, &e->cls_w, &e->cls_b) < 0 ||
            kn_act(be, &c1, &c1, KN_ACT_TANH) < 0 ||
            linear(be, &sc, &c1, &e->out_w, &e->out_b) < 0 || kn_tensor_get(&sc, out->scores) < 0)
            return -1;
    }
    return heads_out(e, b, T, out);
}
