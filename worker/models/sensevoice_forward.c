/*
 * sensevoice_forward.c -- SenseVoiceSmall's forward pass over a packed batch
 * of clips as kernels/ ops, as FunASR's SenseVoiceSmall.inference computes it:
 * per clip the 4 prompt rows (language, event, emotion, textnorm embeddings)
 * then the features, all scaled by sqrt(output_size) plus the sinusoidal
 * position code (assembled on the host); encoders0 + encoders (pre-LN SAN-M
 * blocks: attention within the clip + FSMN memory, ReLU MLP), after_norm,
 * tp_encoders, tp_norm; then the CTC head by row chunks with argmax and
 * logsumexp on the backend (log_softmax rows finished on the host). Clips never see each other (seq_start bounds).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sensevoice_priv.h"
#include "util.h"

/* (rows, cols) starting at row <r0> of <b> seen with row stride <ld> */
static struct kn_tensor mat(const struct kn_buf *b, int64_t rows, int64_t cols, int64_t ld,
                            int64_t off)
{
    int64_t shape[2] = { rows, cols }, stride[2] = { ld, 1 };
    return kn_tensor_view(&b->t, 2, shape, stride, off);
}

static struct kn_tensor heads(const struct kn_buf *b, int64_t t, int64_t h, int64_t d,
                              int64_t ld, int64_t off)
{
    int64_t shape[3] = { t, h, d }, stride[3] = { ld, d, 1 };
    return kn_tensor_view(&b->t, 3, shape, stride, off);
}

/* y = x W^T + b */
static int linear(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w, const struct kn_tensor *b)
{
    return kn_matmul(be, y, x, w) < 0 || kn_add(be, y, y, b) < 0 ? -1 : 0;
}

/* The sinusoidal table for positions 1..n as FunASR's SinusoidalPositionEncoder
 * computes it in float32: inv_i = exp(i * -(log(10000) / (depth/2 - 1))),
 * row p = [sin(p inv_0..), cos(p inv_0..)]. */
static void pe_reserve(struct sensevoice *m, int64_t n)
{
    int64_t dim = m->info.input_dim, half = dim / 2;
    if (n <= m->pe_rows)
        return;
    n += n / 2;
    m->pe = xrealloc(m->pe, (size_t)(n * dim) * sizeof(float));
    float inc = logf(10000.0f) / (float)((double)dim / 2.0 - 1.0);
    float *inv = xmalloc((size_t)(half + 1) * sizeof(float));
    for (int64_t i = 0; i < half; i++)
        inv[i] = expf((float)i * -inc);
    for (int64_t p = m->pe_rows; p < n; p++) {
        float *row = m->pe + p * dim, pos = (float)(p + 1);
        for (int64_t i = 0; i < half; i++) {
            float a = pos * inv[i];
            row[i] = (float)sin((double)a);
            row[half + i] = (float)cos((double)a);
        }
        for (int64_t i = 2 * half; i < dim; i++)     /* odd depth: torch would fail; keep 0 */
            row[i] = 0.0f;
    }
    free(inv);
    m->pe_rows = n;
}

/* Checks the clips, fills h_start and the scaled, position-coded input rows. */
static int assemble(struct sensevoice *m, const struct sensevoice_clip *c, int n, int64_t *T)
{
    const struct sensevoice_info *in = &m->info;
    int64_t dim = in->input_dim, tot = 0, longest = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].n_frames < 0 || c[i].n_frames > (1 << 20) || (c[i].n_frames > 0 && !c[i].feats) ||
            (unsigned)c[i].language >= SV_LANG_COUNT) {
            log_error("sensevoice_forward: clip %d: bad frames (%d), features or language", i,
                      c[i].n_frames);
            return -1;
        }
        int64_t L = (int64_t)c[i].n_frames + SV_N_PROMPT;
        tot += L;
        longest = L > longest ? L : longest;
    }
    if (n + 1 > m->h_start_cap) {
        m->h_start_cap = n + 16;
        m->h_start = xrealloc(m->h_start, (size_t)m->h_start_cap * sizeof(int32_t));
    }
    if (tot * dim > m->h_in_cap) {
        m->h_in_cap = tot * dim + tot * dim / 2;
        m->h_in = xrealloc(m->h_in, (size_t)m->h_in_cap * sizeof(float));
    }
    if (tot > INT32_MAX) {
        log_error("sensevoice_forward: %lld rows in one batch", (long long)tot);
        return -1;
    }
    pe_reserve(m, longest);
    float scale = (float)sqrt((double)in->hidden_size);
    int64_t r = 0;
    for (int i = 0; i < n; i++) {
        int q[SV_N_PROMPT] = { in->lid_query[c[i].language], in->event_query, in->emotion_query,
                               c[i].use_itn ? in->itn_query : in->no_itn_query };
        m->h_start[i] = (int32_t)r;
        int64_t L = (int64_t)c[i].n_frames + SV_N_PROMPT;
        for (int64_t t = 0; t < L; t++, r++) {
            const float *src = t < SV_N_PROMPT ? m->embed + (int64_t)q[t] * dim
                                               : c[i].feats + (t - SV_N_PROMPT) * dim;
            const float *pe = m->pe + t * dim;
            float *dst = m->h_in + r * dim;
            for (int64_t j = 0; j < dim; j++)
                dst[j] = src[j] * scale + pe[j];
        }
    }
    m->h_start[n] = (int32_t)r;
    *T = tot;
    return 0;
}

static int reserve_all(struct sensevoice *m, int64_t T, int n)
{
    const struct sensevoice_info *in = &m->info;
    int64_t D = in->hidden_size, dim = in->input_dim, U = in->linear_units;
    int64_t wide = dim > D ? dim : D;
    return kn_buf_reserve(m->be, &m->x0, KN_F32, T * dim) < 0 ||
           kn_buf_reserve(m->be, &m->x, KN_F32, T * D) < 0 ||
           kn_buf_reserve(m->be, &m->h, KN_F32, T * wide) < 0 ||
           kn_buf_reserve(m->be, &m->qkv, KN_F32, T * 3 * D) < 0 ||
           kn_buf_reserve(m->be, &m->att, KN_F32, T * D) < 0 ||
           kn_buf_reserve(m->be, &m->o, KN_F32, T * D) < 0 ||
           kn_buf_reserve(m->be, &m->fs, KN_F32, T * D) < 0 ||
           kn_buf_reserve(m->be, &m->ff, KN_F32, T * U) < 0 ||
           kn_buf_reserve(m->be, &m->seq, KN_I32, n + 1) < 0 ? -1 : 0;
}

/* One EncoderLayerSANM (normalize_before, no concat_after) on x (T, din) ->
 * m->x (T, D). <x> is m->x0 for encoders0, m->x otherwise. */
static int layer_forward(struct sensevoice *m, const struct sv_layer *L, struct kn_tensor *x,
                         int64_t T, const struct kn_tensor *seq)
{
    const struct sensevoice_info *in = &m->info;
    struct kn_backend *be = m->be;
    int64_t D = in->hidden_size, H = in->n_heads, dk = D / H, din = L->din;
    int left = (in->kernel_size - 1) / 2 + in->sanm_shift;
    struct kn_tensor h = mat(&m->h, T, din, din, 0), qkv = mat(&m->qkv, T, 3 * D, 3 * D, 0);
    struct kn_tensor q3 = heads(&m->qkv, T, H, dk, 3 * D, 0);
    struct kn_tensor k3 = heads(&m->qkv, T, H, dk, 3 * D, D);
    struct kn_tensor v3 = heads(&m->qkv, T, H, dk, 3 * D, 2 * D);
    struct kn_tensor v = mat(&m->qkv, T, D, 3 * D, 2 * D);
    struct kn_tensor a3 = heads(&m->att, T, H, dk, D, 0), a = mat(&m->att, T, D, D, 0);
    struct kn_tensor o = mat(&m->o, T, D, D, 0), fs = mat(&m->fs, T, D, D, 0);
    struct kn_tensor xo = mat(&m->x, T, D, D, 0), hd = mat(&m->h, T, D, D, 0);
    struct kn_tensor ff = mat(&m->ff, T, in->linear_units, in->linear_units, 0);
    /* in_size == size: x + attention; encoders0 (input_dim -> D) has no residual */
    struct kn_tensor *ao = din == D ? &o : &xo;
    if (kn_layer_norm(be, &h, x, &L->ln1_w, &L->ln1_b, m->ln_eps) < 0 ||
        linear(be, &qkv, &h, &L->wqkv, &L->bqkv) < 0 ||
        kn_seq_attention(be, &a3, &q3, &k3, &v3, seq, (float)(1.0 / sqrt((double)dk))) < 0 ||
        linear(be, ao, &a, &L->wo, &L->bo) < 0 ||
        kn_seq_dwconv(be, &fs, &v, &L->fsmn, seq, left, 1) < 0 ||
        kn_add(be, ao, ao, &fs) < 0 || (din == D && kn_add(be, &xo, x, &o) < 0))
        return -1;
    if (kn_layer_norm(be, &hd, &xo, &L->ln2_w, &L->ln2_b, m->ln_eps) < 0 ||
        linear(be, &ff, &hd, &L->w1, &L->b1) < 0 || kn_act(be, &ff, &ff, KN_ACT_RELU) < 0 ||
        linear(be, &o, &ff, &L->w2, &L->b2) < 0 || kn_add(be, &xo, &xo, &o) < 0)
        return -1;
    return 0;
}

/* Clip of global row <r> (clips are in row order). */
static int clip_of(const int32_t *start, int n, int64_t r, int from)
{
    int i = from;
    while (i + 1 < n && r >= start[i + 1])
        i++;
    return i;
}

/* The encoder output rows to each clip's <hidden>. */
static int hidden_out(struct sensevoice *m, struct sensevoice_clip *c, int n, int64_t T)
{
    int64_t D = m->info.hidden_size;
    int any = 0;
    for (int i = 0; i < n; i++)
        any |= c[i].hidden != NULL;
    if (!any)
        return 0;
    if (T * D > m->h_rows_cap) {
        m->h_rows_cap = T * D;
        m->h_rows = xrealloc(m->h_rows, (size_t)m->h_rows_cap * sizeof(float));
    }
    struct kn_tensor x = mat(&m->x, T, D, D, 0);
    if (kn_tensor_get(&x, m->h_rows) < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (c[i].hidden)
            memcpy(c[i].hidden, m->h_rows + (int64_t)m->h_start[i] * D,
                   (size_t)((int64_t)(m->h_start[i + 1] - m->h_start[i]) * D) * sizeof(float));
    return 0;
}

/* CTC head by row chunks: logits, argmax and logsumexp per row on the
 * backend; the logits come to the host only for clips that want log-probs. */
static int ctc_out(struct sensevoice *m, struct sensevoice_clip *c, int n, int64_t T)
{
    int64_t D = m->info.hidden_size, V = m->info.vocab_size;
    int any = 0;
    for (int i = 0; i < n; i++)
        any |= c[i].logprobs || c[i].argmax;
    if (!any)
        return 0;
    int64_t R = (4 << 20) / V;      /* about 16 MB of logits at a time */
    R = R < 1 ? 1 : R > T ? T : R;
    if (kn_buf_reserve(m->be, &m->lg, KN_F32, R * V) < 0 || kn_buf_reserve(m->be, &m->ids, KN_I32, R) < 0 ||
        kn_buf_reserve(m->be, &m->lse, KN_F32, R) < 0)
        return -1;
    m->h_ids = xrealloc(m->h_ids, (size_t)R * sizeof(int32_t));
    m->h_lse = xrealloc(m->h_lse, (size_t)R * sizeof(float));
    int ci = 0;
    for (int64_t r0 = 0; r0 < T; r0 += R) {
        int64_t nr = T - r0 < R ? T - r0 : R, sh[1] = { nr }, st[1] = { 1 };
        struct kn_tensor x = mat(&m->x, nr, D, D, r0 * D), lg = mat(&m->lg, nr, V, V, 0);
        struct kn_tensor ids = kn_tensor_view(&m->ids.t, 1, sh, st, 0);
        struct kn_tensor lse = kn_tensor_view(&m->lse.t, 1, sh, st, 0);
        if (linear(m->be, &lg, &x, &m->ctc_w, &m->ctc_b) < 0 ||
            kn_row_argmax(m->be, &ids, &lse, &lg) < 0 || kn_tensor_get(&ids, m->h_ids) < 0 ||
            kn_tensor_get(&lse, m->h_lse) < 0)
            return -1;
        int want_lp = 0;
        for (int i = clip_of(m->h_start, n, r0, ci); i < n && m->h_start[i] < r0 + nr; i++)
            want_lp |= c[i].logprobs != NULL;
        if (want_lp) {
            if (nr * V > m->h_rows_cap) {
                m->h_rows_cap = R * V;
                m->h_rows = xrealloc(m->h_rows, (size_t)m->h_rows_cap * sizeof(float));
            }
            if (kn_tensor_get(&lg, m->h_rows) < 0)
                return -1;
        }
        for (int64_t k = 0; k < nr; k++) {
            int64_t r = r0 + k;
            ci = clip_of(m->h_start, n, r, ci);
            int64_t t = r - m->h_start[ci];
            if (c[ci].argmax)
                c[ci].argmax[t] = m->h_ids[k];
            if (c[ci].logprobs) {
                const float *row = m->h_rows + k * V;
                float *out = c[ci].logprobs + t * V, lse_k = m->h_lse[k];
                for (int64_t v = 0; v < V; v++)
                    out[v] = row[v] - lse_k;
            }
        }
    }
    return 0;
}

int sensevoice_forward(struct sensevoice *m, struct sensevoice_clip *clips, int n_clips)
{
    const struct sensevoice_info *in = &m->info;
    int64_t T;
    if (n_clips < 1 || !clips) {
        log_error("sensevoice_forward: no clips");
        return -1;
    }
    if (assemble(m, clips, n_clips, &T) < 0 || reserve_all(m, T, n_clips) < 0)
        return -1;
    int64_t dim = in->input_dim, ns = n_clips + 1;
    struct kn_tensor x0 = mat(&m->x0, T, dim, dim, 0), seq;
    int64_t sshape[1] = { ns }, sstride[1] = { 1 };
    seq = kn_tensor_view(&m->seq.t, 1, sshape, sstride, 0);
    if (kn_tensor_set(&x0, m->h_in) < 0 || kn_tensor_set(&seq, m->h_start) < 0)
        return -1;
    struct kn_tensor x = mat(&m->x, T, in->hidden_size, in->hidden_size, 0);
    for (int i = 0; i < in->n_blocks + in->tp_blocks; i++) {
        if (layer_forward(m, &m->layers[i], i == 0 ? &x0 : &x, T, &seq) < 0)
            return -1;
        if (i == in->n_blocks - 1 &&
            kn_layer_norm(m->be, &x, &x, &m->after_w, &m->after_b, m->ln_eps) < 0)
            return -1;
    }
    if (kn_layer_norm(m->be, &x, &x, &m->tp_w, &m->tp_b, m->ln_eps) < 0 ||
        hidden_out(m, clips, n_clips, T) < 0 || ctc_out(m, clips, n_clips, T) < 0)
        return -1;
    return 0;
}
