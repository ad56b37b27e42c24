/*
 * encoder.h -- a loaded XLM-RoBERTa encoder (XLMRobertaModel: bge-m3 with
 * its dense, sparse and ColBERT heads; XLMRobertaForSequenceClassification:
 * bge-reranker-v2-m3) and its forward pass over a packed batch of
 * variable-length sequences (no padding compute). Built from kernels/ ops;
 * it never tokenizes, batches requests or formats answers.
 * Owned by worker/models/ (encoder_*.c, xlmr.c, torch_zip.c).
 */
#ifndef LLMUX_ENCODER_H
#define LLMUX_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

enum encoder_kind { ENCODER_EMBED, ENCODER_RERANK };

struct encoder_info {
    enum encoder_kind kind;
    char arch_name[64];         /* "XLMRobertaModel" */
    int vocab_size, hidden_size, n_layers, n_heads;
    int max_model_len;          /* max_position_embeddings - padding_idx - 1 (bge-m3: 8192) */
    int pad_token_id;
    int n_labels;               /* rerank: classifier outputs (1 for bge-reranker) */
    int has_sparse;             /* sparse_linear.pt present (bge-m3) */
    int has_colbert;            /* colbert_linear.pt present */
    int colbert_dim;
    int normalize;              /* dense vectors L2-normalized (sentence-transformers
                                   modules.json Normalize, or bge-m3 default) */
    enum { POOL_CLS, POOL_MEAN } pooling;  /* 1_Pooling/config.json; default CLS */
};

struct encoder;

/* Load the Hugging Face folder <dir> (config.json; model.safetensors or
 * pytorch_model.bin; sparse_linear.pt / colbert_linear.pt when present;
 * modules.json and 1_Pooling/config.json when present) onto <be>. NULL
 * with a message naming what is wrong (unsupported architecture, dtype,
 * missing tensor). */
struct encoder *encoder_load(const char *dir, struct kn_backend *be, char *err, size_t errlen);
void encoder_free(struct encoder *e);
const struct encoder_info *encoder_get_info(const struct encoder *e);

/* A packed batch: sequence i is tokens[seq_start[i] .. seq_start[i+1]),
 * already tokenized with <s>/</s> (and the pair template for reranking),
 * each at most max_model_len tokens. */
struct encoder_batch {
    int n_seqs;
    const int32_t *tokens;
    const int32_t *seq_start;   /* (n_seqs+1) */
};

/* Host outputs the caller allocated; NULL fields are not computed.
 *   dense   (n_seqs, hidden)   pooled (and normalized when info.normalize)
 *   scores  (n_seqs, n_labels) raw classifier logits (rerank)
 *   sparse  (n_tokens)         relu(sparse_linear(h)) per token (bge-m3),
 *                              0 for special tokens as FlagEmbedding drops them
 *   colbert (n_tokens, colbert_dim) per token, normalized; row of each
 *                              sequence's first token (<s>) is zero, as
 *                              FlagEmbedding skips it */
struct encoder_out {
    float *dense;
    float *scores;
    float *sparse;
    float *colbert;
};

/* 0 or -1 (logged). */
int encoder_forward(struct encoder *e, const struct encoder_batch *b, struct encoder_out *out);

#endif
