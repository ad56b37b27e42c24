/*
 * sensevoice_priv.h -- private to worker/models/ (sensevoice.c loads,
 * sensevoice_forward.c runs): the loaded SenseVoiceSmall, its weights on the
 * backend and its scratch. Nothing outside those two files includes it.
 */
#ifndef LLMUX_SENSEVOICE_PRIV_H
#define LLMUX_SENSEVOICE_PRIV_H

#include "safetensors.h"
#include "sensevoice.h"
#include "torch_zip.h"

/* One EncoderLayerSANM; din is its input width (input_dim for encoders0). */
struct sv_layer {
    int din;
    struct kn_tensor ln1_w, ln1_b;      /* (din) */
    struct kn_tensor wqkv, bqkv;        /* linear_q_k_v (3D, din), (3D) */
    struct kn_tensor wo, bo;            /* linear_out (D, D), (D) */
    struct kn_tensor fsmn;              /* fsmn_block (D, 1, K) seen as (D, K) */
    struct kn_tensor ln2_w, ln2_b;      /* (D) */
    struct kn_tensor w1, b1, w2, b2;    /* feed_forward (U, D), (U), (D, U), (D) */
};

/* A growable scratch tensor: <t> holds <cap> elements of its dtype. */
struct sensevoice {
    struct sensevoice_info info;
    struct kn_backend *be;
    int host;                       /* cpu backend: host tensors work directly */
    float ln_eps;
    struct st_set st;               /* model.safetensors (or empty) */
    struct tz_file pt;              /* model.pt (or empty) */
    const char *prefix;             /* "" or "module." as the checkpoint names keys */
    float *embed;                   /* host f32 copy of embed.weight (n_queries, input_dim) */
    struct sv_layer *layers;        /* n_blocks + tp_blocks */
    struct kn_tensor after_w, after_b, tp_w, tp_b, ctc_w, ctc_b;
    /* host scratch */
    float *pe;                      /* sinusoidal table (pe_rows, input_dim), row p-1 = position p */
    int64_t pe_rows;
    float *h_in, *h_rows;           /* assembled input; downloaded rows */
    int64_t h_in_cap, h_rows_cap;
    int32_t *h_start, *h_ids;       /* clip row starts; argmax of a CTC chunk */
    float *h_lse;                   /* logsumexp of a CTC chunk's rows */
    int h_start_cap;
    /* backend scratch */
    struct kn_buf x0, x, h, qkv, att, o, fs, ff, lg, seq, ids, lse;
};

#endif
