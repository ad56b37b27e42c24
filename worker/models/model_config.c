/*
 * model_config.c -- config.json of Qwen2 / Qwen3 / Qwen3-MoE checkpoints into
 * struct model_config, with transformers' defaults and derived values
 * (head_dim, layer_types, rope parameters), and the rope cos/sin table as
 * transformers' modeling_rope_utils computes it. Reads no tensors.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

static int get_int(json_t *o, const char *key, int def, int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= -2147483647LL &&
        json_integer_value(v) <= 2147483647LL) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    snprintf(err, errlen, "config.json: %s is not an integer", key);
    return -1;
}

static int get_num(json_t *o, const char *key, double def, double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) {
        snprintf(err, errlen, "config.json: %s is not a number", key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

/* First id of an int-or-list field, -1 when absent. */
static int32_t get_token_id(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    return json_is_integer(v) ? (int32_t)json_integer_value(v) : -1;
}

static int parse_dtype(json_t *root, struct model_config *c, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, "dtype");
    if (!json_is_string(v))
        v = json_object_get(root, "torch_dtype");
    const char *s = json_is_string(v) ? json_string_value(v) : "bfloat16";
    if (strcmp(s, "bfloat16") == 0)
        c->dtype = KN_BF16;
    else if (strcmp(s, "float16") == 0 || strcmp(s, "half") == 0)
        c->dtype = KN_F16;
    else if (strcmp(s, "float32") == 0 || strcmp(s, "float") == 0)
        c->dtype = KN_F32;
    else {
        snprintf(err, errlen, "config.json: unsupported dtype \"%s\" (bfloat16, float16, float32)", s);
        return -1;
    }
    return 0;
}

/* rope_parameters (transformers 5) or rope_scaling (older configs). */
static int parse_rope(json_t *root, struct model_config *c, char *err, size_t errlen)
{
    json_t *rp = json_object_get(root, "rope_parameters");
    if (!json_is_object(rp))
        rp = json_object_get(root, "rope_scaling");
    if (!json_is_object(rp))
        rp = NULL;
    double partial = 1.0;
    if (get_num(root, "rope_theta", 10000.0, &c->rope_theta, err, errlen) < 0)
        return -1;
    c->rope_kind = ROPE_DEFAULT;
    c->rope_factor = 1.0;
    c->rope_original_max_pos = c->max_position_embeddings;
    c->yarn_beta_fast = 32;
    c->yarn_beta_slow = 1;
    c->yarn_attn_factor = 1.0;
    c->yarn_truncate = 1;
    if (get_num(root, "partial_rotary_factor", 1.0, &partial, err, errlen) < 0)
        return -1;
    if (rp) {
        json_t *t = json_object_get(rp, "rope_type");
        if (!json_is_string(t))
            t = json_object_get(rp, "type");
        const char *type = json_is_string(t) ? json_string_value(t) : "default";
        if (get_num(rp, "rope_theta", c->rope_theta, &c->rope_theta, err, errlen) < 0 ||
            get_num(rp, "partial_rotary_factor", partial, &partial, err, errlen) < 0)
            return -1;
        if (strcmp(type, "default") == 0)
            c->rope_kind = ROPE_DEFAULT;
        else if (strcmp(type, "linear") == 0)
            c->rope_kind = ROPE_LINEAR;
        else if (strcmp(type, "dynamic") == 0)
            c->rope_kind = ROPE_DYNAMIC;
        else if (strcmp(type, "yarn") == 0)
            c->rope_kind = ROPE_YARN;
        else {
            snprintf(err, errlen, "config.json: unsupported rope type \"%s\" (default, linear, "
                     "dynamic, yarn)", type);
            return -1;
        }
        double orig = c->max_position_embeddings, mscale = 0, mscale_all = 0, beta;
        json_t *f = json_object_get(rp, "factor");
        if (c->rope_kind != ROPE_DEFAULT) {
            if (json_is_number(f))
                c->rope_factor = json_number_value(f);
            else if (c->rope_kind != ROPE_YARN) {
                snprintf(err, errlen, "config.json: rope type %s needs a factor", type);
                return -1;
            }
        }
        if (get_num(rp, "original_max_position_embeddings", orig, &orig, err, errlen) < 0 ||
            get_num(rp, "mscale", 0, &mscale, err, errlen) < 0 ||
            get_num(rp, "mscale_all_dim", 0, &mscale_all, err, errlen) < 0)
            return -1;
        c->rope_original_max_pos = (int)orig;
        if (c->rope_kind == ROPE_YARN) {
            if (!json_is_number(f))     /* DeepSeek-V3 style: the ratio of the lengths */
                c->rope_factor = (double)c->max_position_embeddings / orig;
            /* beta_* "or" defaults as transformers: 0 and null mean the default */
            if (get_num(rp, "beta_fast", 32, &beta, err, errlen) < 0)
                return -1;
            c->yarn_beta_fast = beta ? beta : 32;
            if (get_num(rp, "beta_slow", 1, &beta, err, errlen) < 0)
                return -1;
            c->yarn_beta_slow = beta ? beta : 1;
            json_t *tr = json_object_get(rp, "truncate");
            c->yarn_truncate = json_is_boolean(tr) ? json_is_true(tr) : 1;
            json_t *af = json_object_get(rp, "attention_factor");
            double fac = c->rope_factor;
#define YARN_MSCALE(s, m) ((s) <= 1 ? 1.0 : 0.1 * (m) * log(s) + 1.0)
            if (json_is_number(af))
                c->yarn_attn_factor = json_number_value(af);
            else if (mscale != 0 && mscale_all != 0)
                c->yarn_attn_factor = YARN_MSCALE(fac, mscale) / YARN_MSCALE(fac, mscale_all);
            else
                c->yarn_attn_factor = YARN_MSCALE(fac, 1.0);
#undef YARN_MSCALE
        }
    }
    c->rope_dim = (int)(c->head_dim * partial);
    if (c->rope_dim <= 0 || c->rope_dim % 2 || c->rope_dim > c->head_dim) {
        snprintf(err, errlen, "config.json: bad partial_rotary_factor %g", partial);
        return -1;
    }
    return 0;
}

static int parse_layers(json_t *root, struct model_config *c, char *err, size_t errlen)
{
    json_t *lt = json_object_get(root, "layer_types");
    int window_on = c->use_sliding_window && c->sliding_window > 0;
    for (int i = 0; i < c->n_layers; i++)
        c->layer_sliding[i] = window_on && i >= c->max_window_layers;
    if (json_is_array(lt)) {
        if ((int)json_array_size(lt) != c->n_layers) {
            snprintf(err, errlen, "config.json: layer_types has %zu entries for %d layers",
                     json_array_size(lt), c->n_layers);
            return -1;
        }
        for (int i = 0; i < c->n_layers; i++) {
            const char *s = json_string_value(json_array_get(lt, (size_t)i));
            if (s && strcmp(s, "sliding_attention") == 0)
                c->layer_sliding[i] = window_on;
            else if (s && strcmp(s, "full_attention") == 0)
                c->layer_sliding[i] = 0;
            else {
                snprintf(err, errlen, "config.json: layer_types[%d] is not full_attention or "
                         "sliding_attention", i);
                return -1;
            }
        }
    }
    json_t *mo = json_object_get(root, "mlp_only_layers");
    c->n_mlp_only_layers = 0;
    if (json_is_array(mo)) {
        if (json_array_size(mo) > ARRAY_SIZE(c->mlp_only_layers)) {
            snprintf(err, errlen, "config.json: too many mlp_only_layers");
            return -1;
        }
        for (size_t i = 0; i < json_array_size(mo); i++) {
            json_t *e = json_array_get(mo, i);
            if (!json_is_integer(e)) {
                snprintf(err, errlen, "config.json: mlp_only_layers[%zu] is not an integer", i);
                return -1;
            }
            c->mlp_only_layers[c->n_mlp_only_layers++] = (int)json_integer_value(e);
        }
    }
    return 0;
}

int model_config_parse(struct model_config *c, const char *json, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    int rc = -1;
    memset(c, 0, sizeof(*c));
    if (!json_is_object(root)) {
        snprintf(err, errlen, "config.json: %s", root ? "not an object" : jerr.text);
        goto out;
    }
    json_t *archs = json_object_get(root, "architectures");
    const char *arch = json_string_value(json_array_get(archs, 0));
    if (!arch) {
        snprintf(err, errlen, "config.json: no architectures");
        goto out;
    }
    snprintf(c->arch_name, sizeof(c->arch_name), "%s", arch);
    snprintf(c->model_type, sizeof(c->model_type), "%s",
             json_string_value(json_object_get(root, "model_type")) ?: "");
    if (strcmp(arch, "Qwen2ForCausalLM") == 0)
        c->arch = MODEL_QWEN2;
    else if (strcmp(arch, "Qwen3ForCausalLM") == 0)
        c->arch = MODEL_QWEN3;
    else if (strcmp(arch, "Qwen3MoeForCausalLM") == 0)
        c->arch = MODEL_QWEN3_MOE;
    else {
        snprintf(err, errlen, "unsupported architecture %s (Qwen2ForCausalLM, Qwen3ForCausalLM, "
                 "Qwen3MoeForCausalLM)", arch);
        goto out;
    }
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0)) {
        snprintf(err, errlen, "config.json: unsupported hidden_act (silu only)");
        goto out;
    }
    double eps;
    int head_dim;
    if (get_int(root, "vocab_size", 151936, &c->vocab_size, err, errlen) < 0 ||
        get_int(root, "hidden_size", 0, &c->hidden_size, err, errlen) < 0 ||
        get_int(root, "num_hidden_layers", 0, &c->n_layers, err, errlen) < 0 ||
        get_int(root, "num_attention_heads", 0, &c->n_heads, err, errlen) < 0 ||
        get_int(root, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err, errlen) < 0 ||
        get_int(root, "head_dim", 0, &head_dim, err, errlen) < 0 ||
        get_int(root, "intermediate_size", 0, &c->intermediate_size, err, errlen) < 0 ||
        get_int(root, "max_position_embeddings", 32768, &c->max_position_embeddings, err,
                errlen) < 0 ||
        get_num(root, "rms_norm_eps", 1e-6, &eps, err, errlen) < 0 ||
        get_int(root, "tie_word_embeddings", 0, &c->tie_word_embeddings, err, errlen) < 0 ||
        get_int(root, "attention_bias", c->arch == MODEL_QWEN2, &c->attention_bias, err,
                errlen) < 0 ||
        get_int(root, "use_sliding_window", 0, &c->use_sliding_window, err, errlen) < 0 ||
        get_int(root, "sliding_window", 0, &c->sliding_window, err, errlen) < 0 ||
        get_int(root, "max_window_layers", 28, &c->max_window_layers, err, errlen) < 0)
        goto out;
    /* Qwen2's attention always has q/k/v biases, whatever the config says */
    if (c->arch == MODEL_QWEN2)
        c->attention_bias = 1;
    c->rms_norm_eps = (float)eps;
    if (c->n_kv_heads <= 0)
        c->n_kv_heads = c->n_heads;
    if (c->hidden_size <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->intermediate_size < 0 ||
        c->vocab_size <= 0 || c->n_heads % c->n_kv_heads) {
        snprintf(err, errlen, "config.json: bad sizes (hidden_size %d, num_hidden_layers %d, "
                 "num_attention_heads %d, num_key_value_heads %d, vocab_size %d)", c->hidden_size,
                 c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size);
        goto out;
    }
    if (c->n_layers > MODEL_MAX_LAYERS) {
        snprintf(err, errlen, "config.json: %d layers (at most %d)", c->n_layers, MODEL_MAX_LAYERS);
        goto out;
    }
    c->head_dim = head_dim > 0 ? head_dim : c->hidden_size / c->n_heads;
    if (c->head_dim <= 0 || c->max_position_embeddings <= 0) {
        snprintf(err, errlen, "config.json: bad head_dim or max_position_embeddings");
        goto out;
    }
    if (c->arch == MODEL_QWEN3_MOE) {
        if (get_int(root, "num_experts", 0, &c->n_experts, err, errlen) < 0 ||
            get_int(root, "num_experts_per_tok", 0, &c->n_experts_per_tok, err, errlen) < 0 ||
            get_int(root, "moe_intermediate_size", 0, &c->moe_intermediate_size, err, errlen) < 0 ||
            get_int(root, "norm_topk_prob", 0, &c->norm_topk_prob, err, errlen) < 0 ||
            get_int(root, "decoder_sparse_step", 1, &c->decoder_sparse_step, err, errlen) < 0)
            goto out;
        if (c->n_experts > 0 && (c->n_experts_per_tok < 1 || c->n_experts_per_tok > c->n_experts ||
                                 c->moe_intermediate_size <= 0 || c->decoder_sparse_step < 1)) {
            snprintf(err, errlen, "config.json: bad MoE sizes (num_experts %d, num_experts_per_tok "
                     "%d, moe_intermediate_size %d, decoder_sparse_step %d)", c->n_experts,
                     c->n_experts_per_tok, c->moe_intermediate_size, c->decoder_sparse_step);
            goto out;
        }
    }
    if (parse_dtype(root, c, err, errlen) < 0 || parse_rope(root, c, err, errlen) < 0 ||
        parse_layers(root, c, err, errlen) < 0)
        goto out;
    c->bos_token_id = get_token_id(root, "bos_token_id");
    c->eos_token_id = get_token_id(root, "eos_token_id");
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int model_config_load(struct model_config *c, const char *dir, char *err, size_t errlen)
{
    char *path = xasprintf("%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        goto out;
    }
    for (;;) {
        if (len + 4096 + 1 > cap)
            xgrow((void **)&buf, &cap, len + 4096 + 1, 1);
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    buf[len] = 0;
    rc = model_config_parse(c, buf, err, errlen);
out:
    if (f)
        fclose(f);
    free(buf);
    free(path);
    return rc;
}

int model_config_layer_window(const struct model_config *c, int layer)
{
    return c->layer_sliding[layer] ? c->sliding_window : 0;
}

int model_config_layer_is_moe(const struct model_config *c, int layer)
{
    if (c->arch != MODEL_QWEN3_MOE || c->n_experts <= 0)
        return 0;
    for (int i = 0; i < c->n_mlp_only_layers; i++)
        if (c->mlp_only_layers[i] == layer)
            return 0;
    return (layer + 1) % c->decoder_sparse_step == 0;
}

/* ---- rope: transformers' inverse frequencies, in its f32 arithmetic ----- */

/* 1 / base^(2i/dim), each step rounded to f32 as torch does. */
static void inv_freq_default(float *inv, int dim, double base)
{
    for (int i = 0; i < dim / 2; i++) {
        float e = (float)(2 * i) / (float)dim;
        float p = (float)pow((double)(float)base, (double)e);
        inv[i] = 1.0f / p;
    }
}

static void inv_freq_yarn(const struct model_config *c, float *inv, int dim)
{
    double base = c->rope_theta, fac = c->rope_factor, orig = c->rope_original_max_pos;
    double low = dim * log(orig / (c->yarn_beta_fast * 2 * M_PI)) / (2 * log(base));
    double high = dim * log(orig / (c->yarn_beta_slow * 2 * M_PI)) / (2 * log(base));
    if (c->yarn_truncate) {
        low = floor(low);
        high = ceil(high);
    }
    if (low < 0)
        low = 0;
    if (high > dim - 1)
        high = dim - 1;
    if (low == high)
        high += 0.001;
    for (int i = 0; i < dim / 2; i++) {
        float e = (float)(2 * i) / (float)dim;
        float pf = (float)pow((double)(float)base, (double)e);
        float extra = 1.0f / pf, inter = 1.0f / ((float)fac * pf);
        float ramp = ((float)i - (float)low) / (float)(high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float ef = 1.0f - ramp;
        inv[i] = inter * (1.0f - ef) + extra * ef;
    }
}

static void inv_freq_of(const struct model_config *c, float *inv, int dim, int seq_len)
{
    switch (c->rope_kind) {
    case ROPE_LINEAR:
        inv_freq_default(inv, dim, c->rope_theta);
        for (int i = 0; i < dim / 2; i++)
            inv[i] /= (float)c->rope_factor;
        break;
    case ROPE_DYNAMIC: {
        double base = c->rope_theta, fac = c->rope_factor, mp = c->max_position_embeddings;
        if (seq_len > c->max_position_embeddings)
            base *= pow(fac * seq_len / mp - (fac - 1), (double)dim / (dim - 2));
        inv_freq_default(inv, dim, base);
        break;
    }
    case ROPE_YARN:
        inv_freq_yarn(c, inv, dim);
        break;
    default:
        inv_freq_default(inv, dim, c->rope_theta);
    }
}

void model_rope_fill(const struct model_config *c, float *cos_sin, int p0, int p1)
{
    int dim = c->rope_dim, half = dim / 2;
    float *inv = xmalloc((size_t)half * sizeof(float));
    float scale = c->rope_kind == ROPE_YARN ? (float)c->yarn_attn_factor : 1.0f;
    int have = -1;
    for (int p = p0; p < p1; p++) {
        int seq_len = p + 1 > c->max_position_embeddings ? p + 1 : c->max_position_embeddings;
        if (have != seq_len && (have < 0 || c->rope_kind == ROPE_DYNAMIC)) {
            inv_freq_of(c, inv, dim, seq_len);
            have = seq_len;
        }
        float *row = cos_sin + (size_t)p * dim;
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv[i];
            row[i] = (float)cos((double)a) * scale;
            row[half + i] = (float)sin((double)a) * scale;
        }
    }
    free(inv);
}
