/*
 * encoder_priv.h -- private to worker/models/ (xlmr.c loads, encoder_forward.c
 * runs): the loaded XLM-RoBERTa encoder, its weights on the backend and its
 * scratch. Nothing outside xlmr.c and encoder_forward.c includes it.
 */
#ifndef LLMUX_ENCODER_PRIV_H
#define LLMUX_ENCODER_PRIV_H

#include "encoder.h"
#include "safetensors.h"
#include "torch_zip.h"

struct enc_layer {
    struct kn_tensor wq, bq, wk, bk, wv, bv, wo, bo, ln1_w, ln1_b;
    struct kn_tensor wi, bi, wout, bout, ln2_w, ln2_b;
};

/* A growable scratch tensor: <t> holds <cap> elements of its dtype. */
struct encoder {
    struct encoder_info info;
    struct kn_backend *be;
    int host;                       /* cpu backend: host tensors work directly */
    int intermediate_size, type_vocab_size, max_positions;
    float ln_eps;
    int32_t bos_id, eos_id, unk_id;
    struct st_set st;               /* model.safetensors (or empty) */
    struct tz_file bin, sparse_pt, colbert_pt;  /* pytorch_model.bin, heads */
    struct kn_tensor word, pos, type, emb_ln_w, emb_ln_b;
    struct enc_layer *layers;
    struct kn_tensor cls_w, cls_b, out_w, out_b;        /* rerank classifier */
    struct kn_tensor sparse_w, sparse_b, colbert_w, colbert_b;
    /* scratch */
    struct kn_buf x, q, k, v, att, o, h, cls, c1, sc, sp, cb;
    struct kn_buf i_tok, i_pos, i_seq, i_cls;
    int32_t *h_pos, *h_cls;
    int64_t h_cap;
    float *h_x;                     /* mean pooling: the last hidden states */
    int64_t h_x_cap;
};

#endif
