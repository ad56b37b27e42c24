/*
 * model.h -- a loaded chat LLM (Qwen2, Qwen3, Qwen3-MoE) and its forward
 * pass over a batch of sequences whose keys and values live in a paged KV
 * cache. The model describes its computation with kernels/ ops; it never
 * schedules, samples or tokenizes. Owned by worker/models/.
 */
#ifndef LLMUX_MODEL_H
#define LLMUX_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

enum model_arch { MODEL_QWEN2, MODEL_QWEN3, MODEL_QWEN3_MOE };

enum rope_kind { ROPE_DEFAULT, ROPE_LINEAR, ROPE_DYNAMIC, ROPE_YARN };

/* What config.json says, normalized. */
struct model_config {
    enum model_arch arch;
    char arch_name[64];             /* "Qwen3ForCausalLM" */
    char model_type[32];            /* "qwen3" */
    int vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, head_dim;
    int intermediate_size;
    int max_position_embeddings;
    float rms_norm_eps;
    int tie_word_embeddings;
    int attention_bias;             /* qwen2: q/k/v carry a bias */
    int use_sliding_window, sliding_window, max_window_layers;
    /* rope */
    double rope_theta;
    enum rope_kind rope_kind;
    double rope_factor;             /* linear/dynamic/yarn */
    int rope_original_max_pos;      /* yarn/dynamic */
    double yarn_beta_fast, yarn_beta_slow, yarn_attn_factor;  /* yarn */
    int yarn_truncate;              /* yarn: floor/ceil the correction range (default 1) */
    int rope_dim;                   /* rotated dims per head (partial_rotary_factor) */
    /* moe (arch == MODEL_QWEN3_MOE) */
    int n_experts, n_experts_per_tok, moe_intermediate_size;
    int norm_topk_prob, decoder_sparse_step;
    int n_mlp_only_layers;
    int mlp_only_layers[256];
    /* per layer: 1 when it uses sliding-window attention (transformers'
     * layer_types: explicit, or use_sliding_window && i >= max_window_layers) */
    unsigned char layer_sliding[256];
    /* ids from config.json (generation_config.json may add more eos) */
    int32_t bos_token_id, eos_token_id;
    enum kn_dtype dtype;            /* torch_dtype of the weights */
};

#define MODEL_MAX_LAYERS 256

/* Parse config.json text <json> into <c>. 0, or -1 with the reason
 * (unsupported architecture or dtype, a missing or bad field) in <err>. */
int model_config_parse(struct model_config *c, const char *json, char *err, size_t errlen);
/* model_config_parse of <dir>/config.json. */
int model_config_load(struct model_config *c, const char *dir, char *err, size_t errlen);
/* Window of layer <layer> (0: full attention). */
int model_config_layer_window(const struct model_config *c, int layer);
/* 1 when layer <layer> of a Qwen3-MoE model has the sparse MoE block. */
int model_config_layer_is_moe(const struct model_config *c, int layer);
/* Fill rows [p0, p1) of the rope table <cos_sin> (row p at cos_sin + p*rope_dim:
 * rope_dim/2 cosines then as many sines), as transformers computes them:
 * f32 inverse frequencies of the rope type, f32 angle pos*inv_freq, times the
 * yarn attention factor. Dynamic NTK: positions below
 * max_position_embeddings use the base frequencies; position p beyond uses
 * those transformers computes for a sequence of p+1 tokens (what its
 * token-by-token decode with a cache gives). */
void model_rope_fill(const struct model_config *c, float *cos_sin, int p0, int p1);

struct model;

/* Load the Hugging Face folder <dir> (config.json, model.safetensors or
 * shards with model.safetensors.index.json, mmap'd) onto backend <be>.
 * An unsupported architecture, dtype or a missing tensor is an error naming
 * it. NULL with a message in <err>. */
struct model *model_load(const char *dir, struct kn_backend *be, char *err, size_t errlen);
void model_free(struct model *m);
const struct model_config *model_get_config(const struct model *m);

/* Bytes of KV cache one block of <block_size> tokens takes (all layers,
 * K and V). */
size_t model_kv_block_bytes(const struct model *m, int block_size);
/* Allocate the paged KV cache: <n_blocks> blocks of <block_size> tokens.
 * Call once before model_forward. 0 or -1 (out of memory, logged). */
int model_kv_alloc(struct model *m, int n_blocks, int block_size);

/*
 * One forward step over a batch: sequence i contributes the tokens
 * [seq_start[i], seq_start[i+1]) of tokens/positions (its new tokens: a
 * prefill chunk or one decode token), occupying positions
 * seq_len[i]-n_new .. seq_len[i]-1 of its context. Slot of position p of
 * sequence i: block_table[i*max_blocks + p/block_size]*block_size +
 * p%block_size. The step writes the new tokens' K/V into their slots and
 * attends over positions 0..seq_len[i]-1 (cached ones read from the cache).
 */
struct model_batch {
    int n_tokens;
    const int32_t *tokens;          /* (n_tokens) */
    const int32_t *positions;       /* (n_tokens) */
    int n_seqs;
    const int32_t *seq_start;       /* (n_seqs+1), seq_start[0] = 0 */
    const int32_t *seq_len;         /* (n_seqs) context length after this step */
    const int32_t *block_table;     /* (n_seqs, max_blocks) */
    int max_blocks;
    /* rows of the batch (token indices) whose logits are wanted, in order */
    int n_logits;
    const int32_t *logit_rows;      /* (n_logits) */
};

/* Run the step; <logits> (n_logits, vocab_size) f32 host memory receives the
 * logits of the rows asked for. 0 or -1 (logged). */
int model_forward(struct model *m, const struct model_batch *b, float *logits);

#endif
