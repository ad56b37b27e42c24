/*
 * mkmodel.c -- writes a random-weight Hugging Face model folder (config.json,
 * generation_config.json, model.safetensors or shards + index, and a copy of
 * tokenizer.json / tokenizer_config.json / chat_template.jinja from
 * --tokenizer DIR) for Qwen2, Qwen3 and Qwen3-MoE. Deterministic: the same
 * flags give byte-identical files on every host (CI has no torch).
 *
 * Weights: tensor <name> draws from its own splitmix64 stream seeded with
 * hash64(name, seed) (common/util.h); each value is
 *   mean + std * sqrt(3) * (2u - 1),  u = (next >> 40) * 2^-24 in [0, 1)
 * (uniform with that mean and standard deviation), then rounded to the
 * dtype (bf16/f16 round to nearest even). Scales, chosen so that tiny models
 * give peaked logits (greedy continuations are not decided by rounding
 * ties; logit std ~ sqrt(hidden) * 0.5, 4 at hidden 64):
 *   embed_tokens, lm_head         std 0.5 (--embed-std)
 *   projections (q k v o, MLP, experts, router)  std 1/sqrt(fan_in)
 *   q/k/v biases (qwen2)          std 0.5
 *   RMSNorm weights               mean 1, std 0.05
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels.h"
#include "util.h"

struct opts {
    const char *arch, *out, *tokenizer, *dtype, *rope, *mlp_only;
    int hidden, layers, heads, kv_heads, head_dim, inter, vocab, tie, max_pos, shards;
    int experts, top_k, moe_inter, norm_topk, sparse_step, window, max_window_layers;
    double rope_theta, embed_std;
    uint64_t seed;
};

struct wt {
    char name[128];
    int ndim;
    int64_t shape[2];
    double mean, std;
    size_t nbytes, off;
    int shard;
};

struct wlist {
    struct wt *w;
    size_t n, cap;
};

static void add(struct wlist *l, double mean, double std, int ndim, int64_t d0, int64_t d1,
                const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void add(struct wlist *l, double mean, double std, int ndim, int64_t d0, int64_t d1,
                const char *fmt, ...)
{
    va_list ap;
    xgrow((void **)&l->w, &l->cap, l->n + 1, sizeof(*l->w));
    struct wt *w = &l->w[l->n++];
    memset(w, 0, sizeof(*w));
    va_start(ap, fmt);
    vsnprintf(w->name, sizeof(w->name), fmt, ap);
    va_end(ap);
    w->ndim = ndim;
    w->shape[0] = d0;
    w->shape[1] = d1;
    w->mean = mean;
    w->std = std;
}

static int is_moe_layer(const struct opts *o, int i)
{
    if (strcmp(o->arch, "qwen3_moe") != 0 || o->experts <= 0)
        return 0;
    if (o->mlp_only) {
        char *dup = xstrdup(o->mlp_only), *save = NULL;
        for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (atoi(t) == i) {
                free(dup);
                return 0;
            }
        free(dup);
    }
    return (i + 1) % o->sparse_step == 0;
}

static void build_list(const struct opts *o, struct wlist *l)
{
    int64_t hd = o->hidden, qd = (int64_t)o->heads * o->head_dim;
    int64_t kd = (int64_t)o->kv_heads * o->head_dim;
    int qwen2 = strcmp(o->arch, "qwen2") == 0;
    double sh = 1.0 / sqrt((double)hd);
    add(l, 0, o->embed_std, 2, o->vocab, hd, "model.embed_tokens.weight");
    for (int i = 0; i < o->layers; i++) {
        const char *p = "model.layers";
        add(l, 1, 0.05, 1, hd, 0, "%s.%d.input_layernorm.weight", p, i);
        add(l, 1, 0.05, 1, hd, 0, "%s.%d.post_attention_layernorm.weight", p, i);
        add(l, 0, sh, 2, qd, hd, "%s.%d.self_attn.q_proj.weight", p, i);
        add(l, 0, sh, 2, kd, hd, "%s.%d.self_attn.k_proj.weight", p, i);
        add(l, 0, sh, 2, kd, hd, "%s.%d.self_attn.v_proj.weight", p, i);
        add(l, 0, 1.0 / sqrt((double)qd), 2, hd, qd, "%s.%d.self_attn.o_proj.weight", p, i);
        if (qwen2) {
            add(l, 0, 0.5, 1, qd, 0, "%s.%d.self_attn.q_proj.bias", p, i);
            add(l, 0, 0.5, 1, kd, 0, "%s.%d.self_attn.k_proj.bias", p, i);
            add(l, 0, 0.5, 1, kd, 0, "%s.%d.self_attn.v_proj.bias", p, i);
        } else {
            add(l, 1, 0.05, 1, o->head_dim, 0, "%s.%d.self_attn.q_norm.weight", p, i);
            add(l, 1, 0.05, 1, o->head_dim, 0, "%s.%d.self_attn.k_norm.weight", p, i);
        }
        if (is_moe_layer(o, i)) {
            int64_t md = o->moe_inter;
            add(l, 0, sh, 2, o->experts, hd, "%s.%d.mlp.gate.weight", p, i);
            for (int e = 0; e < o->experts; e++) {
                add(l, 0, sh, 2, md, hd, "%s.%d.mlp.experts.%d.gate_proj.weight", p, i, e);
                add(l, 0, sh, 2, md, hd, "%s.%d.mlp.experts.%d.up_proj.weight", p, i, e);
                add(l, 0, 1.0 / sqrt((double)md), 2, hd, md,
                    "%s.%d.mlp.experts.%d.down_proj.weight", p, i, e);
            }
        } else {
            int64_t id = o->inter;
            add(l, 0, sh, 2, id, hd, "%s.%d.mlp.gate_proj.weight", p, i);
            add(l, 0, sh, 2, id, hd, "%s.%d.mlp.up_proj.weight", p, i);
            add(l, 0, 1.0 / sqrt((double)id), 2, hd, id, "%s.%d.mlp.down_proj.weight", p, i);
        }
    }
    add(l, 1, 0.05, 1, hd, 0, "model.norm.weight");
    if (!o->tie)
        add(l, 0, o->embed_std, 2, o->vocab, hd, "lm_head.weight");
}

static int cmp_wt(const void *a, const void *b)
{
    return strcmp(((const struct wt *)a)->name, ((const struct wt *)b)->name);
}

static size_t dtype_size(enum kn_dtype dt)
{
    return dt == KN_F32 ? 4 : 2;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Stream tensor <w>'s values into <f> in dtype <dt>. 0 or -1. */
static int write_values(FILE *f, const struct wt *w, enum kn_dtype dt, uint64_t seed)
{
    uint64_t state = hash64(w->name, strlen(w->name), seed);
    size_t n = (size_t)w->shape[0] * (size_t)(w->ndim == 2 ? w->shape[1] : 1);
    size_t es = dtype_size(dt), chunk = 1 << 16;
    unsigned char *buf = xmalloc(chunk * es);
    double a = w->std * sqrt(3.0);
    for (size_t done = 0; done < n;) {
        size_t m = n - done < chunk ? n - done : chunk;
        for (size_t i = 0; i < m; i++) {
            double u = (double)(splitmix64(&state) >> 40) * (1.0 / 16777216.0);
            float v = (float)(w->mean + a * (2.0 * u - 1.0));
            if (dt == KN_F32)
                memcpy(buf + 4 * i, &v, 4);
            else {
                uint16_t h = dt == KN_BF16 ? kn_f32_to_bf16(v) : kn_f32_to_f16(v);
                buf[2 * i] = (unsigned char)(h & 0xff);        /* little endian */
                buf[2 * i + 1] = (unsigned char)(h >> 8);
            }
        }
        if (fwrite(buf, es, m, f) != m) {
            free(buf);
            return -1;
        }
        done += m;
    }
    free(buf);
    return 0;
}

/* One safetensors file holding the tensors of shard <shard>. 0 or -1. */
static int write_shard(const char *path, struct wlist *l, int shard, enum kn_dtype dt,
                       const char *dt_name, uint64_t seed)
{
    size_t off = 0, hlen;
    char *hdr = xstrdup("{\"__metadata__\":{\"format\":\"pt\"}"), *t;
    for (size_t i = 0; i < l->n; i++) {
        struct wt *w = &l->w[i];
        if (w->shard != shard)
            continue;
        w->off = off;
        off += w->nbytes;
        char shape[64];
        if (w->ndim == 1)
            snprintf(shape, sizeof(shape), "%lld", (long long)w->shape[0]);
        else
            snprintf(shape, sizeof(shape), "%lld,%lld", (long long)w->shape[0],
                     (long long)w->shape[1]);
        t = xasprintf("%s,\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                      hdr, w->name, dt_name, shape, w->off, w->off + w->nbytes);
        free(hdr);
        hdr = t;
    }
    t = xasprintf("%s}", hdr);
    free(hdr);
    hdr = t;
    hlen = strlen(hdr);
    size_t padded = (hlen + 7) & ~(size_t)7;    /* data 8-byte aligned, as the python writer */
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "mkmodel: %s: %s\n", path, strerror(errno));
        free(hdr);
        return -1;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int rc = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen ? 0 : -1;
    for (size_t i = hlen; rc == 0 && i < padded; i++)
        rc = fputc(' ', f) == EOF ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        if (l->w[i].shard == shard)
            rc = write_values(f, &l->w[i], dt, seed);
    if (fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "mkmodel: %s: write failed\n", path);
    free(hdr);
    return rc;
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int rc = f && fputs(text, f) >= 0 ? 0 : -1;
    if (f && fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "mkmodel: %s: cannot write\n", path);
    free(path);
    return rc;
}

static int copy_file(const char *from_dir, const char *to_dir, const char *name, int required)
{
    char *src = xasprintf("%s/%s", from_dir, name), *dst = xasprintf("%s/%s", to_dir, name);
    FILE *in = fopen(src, "rb"), *out = NULL;
    int rc = 0;
    char buf[65536];
    size_t n;
    if (!in) {
        if (required)
            fprintf(stderr, "mkmodel: %s: %s\n", src, strerror(errno));
        rc = required ? -1 : 0;
        goto out;
    }
    out = fopen(dst, "wb");
    if (!out) {
        fprintf(stderr, "mkmodel: %s: %s\n", dst, strerror(errno));
        rc = -1;
        goto out;
    }
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            rc = -1;
            break;
        }
out:
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    free(src);
    free(dst);
    return rc;
}

static char *config_json(const struct opts *o)
{
    const char *archname = strcmp(o->arch, "qwen2") == 0 ? "Qwen2ForCausalLM"
                         : strcmp(o->arch, "qwen3") == 0 ? "Qwen3ForCausalLM"
                                                         : "Qwen3MoeForCausalLM";
    const char *tdt = strcmp(o->dtype, "f32") == 0 ? "float32"
                    : strcmp(o->dtype, "f16") == 0 ? "float16" : "bfloat16";
    char rope[256] = "null", moe[512] = "", window[64] = "null";
    if (o->rope) {      /* "linear:F", "dynamic:F", "yarn:F:ORIG" */
        char kind[16] = "";
        double fac = 1;
        int orig = 0;
        if (sscanf(o->rope, "%15[a-z]:%lf:%d", kind, &fac, &orig) < 2)
            return NULL;
        if (strcmp(kind, "yarn") == 0)      /* the older key, as Qwen's docs write it */
            snprintf(rope, sizeof(rope), "{\"rope_type\":\"yarn\",\"factor\":%g,"
                     "\"original_max_position_embeddings\":%d}", fac, orig);
        else
            snprintf(rope, sizeof(rope), "{\"rope_type\":\"%s\",\"factor\":%g}", kind, fac);
    }
    if (strcmp(o->arch, "qwen3_moe") == 0)
        snprintf(moe, sizeof(moe), "  \"num_experts\": %d,\n  \"num_experts_per_tok\": %d,\n"
                 "  \"moe_intermediate_size\": %d,\n  \"norm_topk_prob\": %s,\n"
                 "  \"decoder_sparse_step\": %d,\n  \"mlp_only_layers\": [%s],\n"
                 "  \"router_aux_loss_coef\": 0.001,\n  \"output_router_logits\": false,\n",
                 o->experts, o->top_k, o->moe_inter, o->norm_topk ? "true" : "false",
                 o->sparse_step, o->mlp_only ? o->mlp_only : "");
    if (o->window > 0)
        snprintf(window, sizeof(window), "%d", o->window);
    int linear_style = o->rope && strncmp(o->rope, "yarn", 4) != 0;
    return xasprintf(
        "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
        "  \"attention_bias\": %s,\n  \"attention_dropout\": 0.0,\n"
        "  \"bos_token_id\": 151643,\n  \"eos_token_id\": 151645,\n"
        "  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n"
        "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n"
        "  \"max_position_embeddings\": %d,\n  \"max_window_layers\": %d,\n%s"
        "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n"
        "  \"num_key_value_heads\": %d,\n  \"rms_norm_eps\": 1e-06,\n"
        "  \"%s\": %s,\n  \"rope_theta\": %g,\n  \"sliding_window\": %s,\n"
        "  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n  \"use_cache\": true,\n"
        "  \"use_sliding_window\": %s,\n  \"vocab_size\": %d\n}\n",
        archname, o->arch, strcmp(o->arch, "qwen2") == 0 ? "true" : "false", o->head_dim,
        o->hidden, o->inter, o->max_pos, o->max_window_layers, moe, o->heads, o->layers,
        o->kv_heads, linear_style ? "rope_parameters" : "rope_scaling", rope, o->rope_theta,
        window, o->tie ? "true" : "false", tdt, o->window > 0 ? "true" : "false", o->vocab);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: mkmodel --out DIR [--arch qwen2|qwen3|qwen3_moe] [--hidden N] [--layers N]\n"
            "  [--heads N] [--kv-heads N] [--head-dim N] [--intermediate N] [--vocab N]\n"
            "  [--dtype bf16|f16|f32] [--seed N] [--tie 0|1] [--max-pos N] [--rope-theta X]\n"
            "  [--rope linear:F|dynamic:F|yarn:F:ORIG] [--sliding-window N --max-window-layers N]\n"
            "  [--experts N --top-k N --moe-intermediate N --norm-topk 0|1 --sparse-step N\n"
            "   --mlp-only I,J] [--embed-std X] [--shards N] [--tokenizer DIR]\n");
}

int main(int argc, char **argv)
{
    struct opts o = { .arch = "qwen3", .dtype = "bf16", .hidden = 64, .layers = 2, .heads = 4,
                      .kv_heads = 2, .head_dim = 16, .inter = 128, .vocab = 151936, .tie = 1,
                      .max_pos = 4096, .shards = 1, .experts = 8, .top_k = 2, .moe_inter = 32,
                      .norm_topk = 1, .sparse_step = 1, .max_window_layers = 0,
                      .rope_theta = 1000000.0, .embed_std = 0.5, .seed = 1 };
    static const struct option lo[] = {
        { "arch", 1, 0, 'a' }, { "out", 1, 0, 'o' }, { "tokenizer", 1, 0, 't' },
        { "dtype", 1, 0, 'd' }, { "rope", 1, 0, 'r' }, { "mlp-only", 1, 0, 'M' },
        { "hidden", 1, 0, 'H' }, { "layers", 1, 0, 'L' }, { "heads", 1, 0, 'n' },
        { "kv-heads", 1, 0, 'k' }, { "head-dim", 1, 0, 'D' }, { "intermediate", 1, 0, 'I' },
        { "vocab", 1, 0, 'V' }, { "tie", 1, 0, 'T' }, { "max-pos", 1, 0, 'P' },
        { "shards", 1, 0, 'S' }, { "experts", 1, 0, 'E' }, { "top-k", 1, 0, 'K' },
        { "moe-intermediate", 1, 0, 'm' }, { "norm-topk", 1, 0, 'N' },
        { "sparse-step", 1, 0, 's' }, { "sliding-window", 1, 0, 'w' },
        { "max-window-layers", 1, 0, 'W' }, { "rope-theta", 1, 0, 'R' },
        { "embed-std", 1, 0, 'e' }, { "seed", 1, 0, 'z' }, { "help", 0, 0, 'h' }, { 0 } };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'a': o.arch = optarg; break;
        case 'o': o.out = optarg; break;
        case 't': o.tokenizer = optarg; break;
        case 'd': o.dtype = optarg; break;
        case 'r': o.rope = optarg; break;
        case 'M': o.mlp_only = optarg; break;
        case 'H': o.hidden = atoi(optarg); break;
        case 'L': o.layers = atoi(optarg); break;
        case 'n': o.heads = atoi(optarg); break;
        case 'k': o.kv_heads = atoi(optarg); break;
        case 'D': o.head_dim = atoi(optarg); break;
        case 'I': o.inter = atoi(optarg); break;
        case 'V': o.vocab = atoi(optarg); break;
        case 'T': o.tie = atoi(optarg); break;
        case 'P': o.max_pos = atoi(optarg); break;
        case 'S': o.shards = atoi(optarg); break;
        case 'E': o.experts = atoi(optarg); break;
        case 'K': o.top_k = atoi(optarg); break;
        case 'm': o.moe_inter = atoi(optarg); break;
        case 'N': o.norm_topk = atoi(optarg); break;
        case 's': o.sparse_step = atoi(optarg); break;
        case 'w': o.window = atoi(optarg); break;
        case 'W': o.max_window_layers = atoi(optarg); break;
        case 'R': o.rope_theta = atof(optarg); break;
        case 'e': o.embed_std = atof(optarg); break;
        case 'z': o.seed = strtoull(optarg, NULL, 0); break;
        default: usage(); return 2;
        }
    }
    enum kn_dtype dt = strcmp(o.dtype, "f32") == 0 ? KN_F32 : strcmp(o.dtype, "f16") == 0 ? KN_F16
                     : strcmp(o.dtype, "bf16") == 0 ? KN_BF16 : KN_DTYPE_COUNT;
    const char *dt_name = dt == KN_F32 ? "F32" : dt == KN_F16 ? "F16" : "BF16";
    if (!o.out || dt == KN_DTYPE_COUNT || o.hidden <= 0 || o.layers <= 0 || o.heads <= 0 ||
        o.kv_heads <= 0 || o.heads % o.kv_heads || o.head_dim <= 0 || o.vocab <= 0 ||
        o.shards < 1 || o.sparse_step < 1 ||
        (strcmp(o.arch, "qwen2") && strcmp(o.arch, "qwen3") && strcmp(o.arch, "qwen3_moe"))) {
        usage();
        return 2;
    }
    if (mkdir(o.out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "mkmodel: %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    struct wlist l = { 0 };
    build_list(&o, &l);
    qsort(l.w, l.n, sizeof(*l.w), cmp_wt);
    size_t total = 0;
    for (size_t i = 0; i < l.n; i++) {
        l.w[i].nbytes = (size_t)l.w[i].shape[0] * (size_t)(l.w[i].ndim == 2 ? l.w[i].shape[1] : 1) *
                        dtype_size(dt);
        l.w[i].shard = (int)(i * (size_t)o.shards / l.n);
        total += l.w[i].nbytes;
    }
    int rc = 1;
    char *cfg = config_json(&o), *path = NULL;
    if (!cfg) {
        fprintf(stderr, "mkmodel: bad --rope %s\n", o.rope);
        goto out;
    }
    if (write_text(o.out, "config.json", cfg) < 0 ||
        write_text(o.out, "generation_config.json",
                   "{\n  \"bos_token_id\": 151643,\n  \"do_sample\": true,\n"
                   "  \"eos_token_id\": [151645, 151643],\n  \"pad_token_id\": 151643,\n"
                   "  \"temperature\": 0.6,\n  \"top_k\": 20,\n  \"top_p\": 0.95\n}\n") < 0)
        goto out;
    if (o.shards == 1) {
        path = xasprintf("%s/model.safetensors", o.out);
        if (write_shard(path, &l, 0, dt, dt_name, o.seed) < 0)
            goto out;
    } else {
        char *idx = xasprintf("{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {", total), *t;
        for (int s = 0; s < o.shards; s++) {
            free(path);
            path = xasprintf("%s/model-%05d-of-%05d.safetensors", o.out, s + 1, o.shards);
            if (write_shard(path, &l, s, dt, dt_name, o.seed) < 0) {
                free(idx);
                goto out;
            }
        }
        for (size_t i = 0; i < l.n; i++) {
            t = xasprintf("%s%s\n    \"%s\": \"model-%05d-of-%05d.safetensors\"", idx,
                          i ? "," : "", l.w[i].name, l.w[i].shard + 1, o.shards);
            free(idx);
            idx = t;
        }
        t = xasprintf("%s\n  }\n}\n", idx);
        free(idx);
        int r = write_text(o.out, "model.safetensors.index.json", t);
        free(t);
        if (r < 0)
            goto out;
    }
    if (o.tokenizer && (copy_file(o.tokenizer, o.out, "tokenizer.json", 1) < 0 ||
                        copy_file(o.tokenizer, o.out, "tokenizer_config.json", 1) < 0 ||
                        copy_file(o.tokenizer, o.out, "chat_template.jinja", 0) < 0))
        goto out;
    rc = 0;
out:
    free(cfg);
    free(path);
    free(l.w);
    return rc;
}
