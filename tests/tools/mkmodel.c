/*
 * mkmodel.c -- writes a random-weight Hugging Face model folder (config.json,
 * generation_config.json, model.safetensors or shards + index, and a copy of
 * tokenizer.json / tokenizer_config.json / chat_template.jinja from
 * --tokenizer DIR) for Qwen2, Qwen3 and Qwen3-MoE, and XLM-RoBERTa encoders
 * (--arch xlmr-embed: XLMRobertaModel as bge-m3, optionally with its
 * sparse_linear.pt / colbert_linear.pt heads in torch's zip format and
 * sentence-transformers modules.json + 1_Pooling; --arch xlmr-rerank:
 * XLMRobertaForSequenceClassification, one label). Deterministic: the same
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
 * XLM-R: embeddings (word, position, token type) std 0.5 (--embed-std),
 * LayerNorm weights mean 1 std 0.05 and biases std 0.05, every Linear's
 * weight std 1/sqrt(fan_in) and bias std 0.1 (encoder, pooler, classifier,
 * sparse and colbert heads). --weights bin writes pytorch_model.bin (torch
 * zip checkpoint) instead of model.safetensors.
 * SenseVoice (--arch sensevoice: FunASR's SenseVoiceSmall, SenseVoiceEncoderSmall
 * SAN-M encoder + CTC): model.pt (torch zip state dict, f32 unless --dtype)
 * or model.safetensors (--weights safetensors), config.yaml in the published
 * layout with the sizes given, and am.mvn / chn_jpn_yue_eng_ko_spectok.bpe.model /
 * tokens.json copied from --frontend DIR. Prompt embedding (embed.weight)
 * and ctc.ctc_lo.weight std 0.5 (--embed-std), fsmn_block weights std
 * 1/sqrt(kernel), LayerNorms and Linears as XLM-R.
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
    const char *pooling, *weights;  /* xlmr: cls|mean|none; safetensors|bin|pt */
    const char *frontend;           /* sensevoice: folder with am.mvn, bpe model, tokens.json */
    int sparse, colbert, normalize, xlmr;
    int tp_layers, kernel_size, sanm_shift, input_dim;  /* sensevoice */
    int hidden, layers, heads, kv_heads, head_dim, inter, vocab, tie, max_pos, shards;
    int experts, top_k, moe_inter, norm_topk, sparse_step, window, max_window_layers;
    double rope_theta, embed_std;
    uint64_t seed;
};

struct wt {
    char name[128];
    int ndim;
    int64_t shape[3];
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
static void add3(struct wlist *l, double mean, double std, const int64_t shape[3],
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
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

/* A 3-D tensor (a Conv1d weight). */
static void add3(struct wlist *l, double mean, double std, const int64_t shape[3],
                 const char *fmt, ...)
{
    va_list ap;
    xgrow((void **)&l->w, &l->cap, l->n + 1, sizeof(*l->w));
    struct wt *w = &l->w[l->n++];
    memset(w, 0, sizeof(*w));
    va_start(ap, fmt);
    vsnprintf(w->name, sizeof(w->name), fmt, ap);
    va_end(ap);
    w->ndim = 3;
    memcpy(w->shape, shape, sizeof(w->shape));
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

/* XLM-R tensors with prefix <p> ("" or "roberta.") */
static void build_xlmr(const struct opts *o, struct wlist *l)
{
    int64_t hd = o->hidden, id = o->inter;
    double sh = 1.0 / sqrt((double)hd), si = 1.0 / sqrt((double)id), es = o->embed_std;
    int rerank = strcmp(o->arch, "xlmr-rerank") == 0;
    const char *p = rerank ? "roberta." : "";
    add(l, 0, es, 2, o->vocab, hd, "%sembeddings.word_embeddings.weight", p);
    add(l, 0, es, 2, o->max_pos, hd, "%sembeddings.position_embeddings.weight", p);
    add(l, 0, es, 2, 1, hd, "%sembeddings.token_type_embeddings.weight", p);
    add(l, 1, 0.05, 1, hd, 0, "%sembeddings.LayerNorm.weight", p);
    add(l, 0, 0.05, 1, hd, 0, "%sembeddings.LayerNorm.bias", p);
    for (int i = 0; i < o->layers; i++) {
        static const char *qkv[] = { "query", "key", "value" };
        for (int j = 0; j < 3; j++) {
            add(l, 0, sh, 2, hd, hd, "%sencoder.layer.%d.attention.self.%s.weight", p, i, qkv[j]);
            add(l, 0, 0.1, 1, hd, 0, "%sencoder.layer.%d.attention.self.%s.bias", p, i, qkv[j]);
        }
        add(l, 0, sh, 2, hd, hd, "%sencoder.layer.%d.attention.output.dense.weight", p, i);
        add(l, 0, 0.1, 1, hd, 0, "%sencoder.layer.%d.attention.output.dense.bias", p, i);
        add(l, 1, 0.05, 1, hd, 0, "%sencoder.layer.%d.attention.output.LayerNorm.weight", p, i);
        add(l, 0, 0.05, 1, hd, 0, "%sencoder.layer.%d.attention.output.LayerNorm.bias", p, i);
        add(l, 0, sh, 2, id, hd, "%sencoder.layer.%d.intermediate.dense.weight", p, i);
        add(l, 0, 0.1, 1, id, 0, "%sencoder.layer.%d.intermediate.dense.bias", p, i);
        add(l, 0, si, 2, hd, id, "%sencoder.layer.%d.output.dense.weight", p, i);
        add(l, 0, 0.1, 1, hd, 0, "%sencoder.layer.%d.output.dense.bias", p, i);
        add(l, 1, 0.05, 1, hd, 0, "%sencoder.layer.%d.output.LayerNorm.weight", p, i);
        add(l, 0, 0.05, 1, hd, 0, "%sencoder.layer.%d.output.LayerNorm.bias", p, i);
    }
    if (rerank) {
        add(l, 0, sh, 2, hd, hd, "classifier.dense.weight");
        add(l, 0, 0.1, 1, hd, 0, "classifier.dense.bias");
        add(l, 0, sh, 2, 1, hd, "classifier.out_proj.weight");
        add(l, 0, 0.1, 1, 1, 0, "classifier.out_proj.bias");
    } else {
        add(l, 0, sh, 2, hd, hd, "pooler.dense.weight");
        add(l, 0, 0.1, 1, hd, 0, "pooler.dense.bias");
    }
}

/* One EncoderLayerSANM "encoder.<group>.<i>." with input width <din>. */
static void sv_layer(const struct opts *o, struct wlist *l, const char *group, int i, int64_t din)
{
    int64_t hd = o->hidden, u = o->inter, k3[3] = { hd, 1, o->kernel_size };
    const char *p = "encoder";
    add(l, 0, 1.0 / sqrt((double)din), 2, 3 * hd, din, "%s.%s.%d.self_attn.linear_q_k_v.weight",
        p, group, i);
    add(l, 0, 0.1, 1, 3 * hd, 0, "%s.%s.%d.self_attn.linear_q_k_v.bias", p, group, i);
    add(l, 0, 1.0 / sqrt((double)hd), 2, hd, hd, "%s.%s.%d.self_attn.linear_out.weight", p,
        group, i);
    add(l, 0, 0.1, 1, hd, 0, "%s.%s.%d.self_attn.linear_out.bias", p, group, i);
    add3(l, 0, 1.0 / sqrt((double)o->kernel_size), k3, "%s.%s.%d.self_attn.fsmn_block.weight",
         p, group, i);
    add(l, 0, 1.0 / sqrt((double)hd), 2, u, hd, "%s.%s.%d.feed_forward.w_1.weight", p, group, i);
    add(l, 0, 0.1, 1, u, 0, "%s.%s.%d.feed_forward.w_1.bias", p, group, i);
    add(l, 0, 1.0 / sqrt((double)u), 2, hd, u, "%s.%s.%d.feed_forward.w_2.weight", p, group, i);
    add(l, 0, 0.1, 1, hd, 0, "%s.%s.%d.feed_forward.w_2.bias", p, group, i);
    add(l, 1, 0.05, 1, din, 0, "%s.%s.%d.norm1.weight", p, group, i);
    add(l, 0, 0.05, 1, din, 0, "%s.%s.%d.norm1.bias", p, group, i);
    add(l, 1, 0.05, 1, hd, 0, "%s.%s.%d.norm2.weight", p, group, i);
    add(l, 0, 0.05, 1, hd, 0, "%s.%s.%d.norm2.bias", p, group, i);
}

/* The state dict of FunASR's SenseVoiceSmall. */
static void build_sensevoice(const struct opts *o, struct wlist *l)
{
    int64_t hd = o->hidden;
    add(l, 0, o->embed_std, 2, 16, o->input_dim, "embed.weight");
    sv_layer(o, l, "encoders0", 0, o->input_dim);
    for (int i = 0; i < o->layers - 1; i++)
        sv_layer(o, l, "encoders", i, hd);
    for (int i = 0; i < o->tp_layers; i++)
        sv_layer(o, l, "tp_encoders", i, hd);
    add(l, 1, 0.05, 1, hd, 0, "encoder.after_norm.weight");
    add(l, 0, 0.05, 1, hd, 0, "encoder.after_norm.bias");
    add(l, 1, 0.05, 1, hd, 0, "encoder.tp_norm.weight");
    add(l, 0, 0.05, 1, hd, 0, "encoder.tp_norm.bias");
    add(l, 0, o->embed_std, 2, o->vocab, hd, "ctc.ctc_lo.weight");
    add(l, 0, 0.1, 1, o->vocab, 0, "ctc.ctc_lo.bias");
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

/* The next <m> values of a tensor's stream <state> into <buf> in dtype <dt>. */
static void gen_values(unsigned char *buf, size_t m, uint64_t *state, double mean, double a,
                       enum kn_dtype dt)
{
    for (size_t i = 0; i < m; i++) {
        double u = (double)(splitmix64(state) >> 40) * (1.0 / 16777216.0);
        float v = (float)(mean + a * (2.0 * u - 1.0));
        if (dt == KN_F32)
            memcpy(buf + 4 * i, &v, 4);
        else {
            uint16_t h = dt == KN_BF16 ? kn_f32_to_bf16(v) : kn_f32_to_f16(v);
            buf[2 * i] = (unsigned char)(h & 0xff);        /* little endian */
            buf[2 * i + 1] = (unsigned char)(h >> 8);
        }
    }
}

static size_t wt_nelem(const struct wt *w)
{
    size_t n = 1;
    for (int d = 0; d < w->ndim; d++)
        n *= (size_t)w->shape[d];
    return n;
}

/* Stream tensor <w>'s values into <f> in dtype <dt>. 0 or -1. */
static int write_values(FILE *f, const struct wt *w, enum kn_dtype dt, uint64_t seed)
{
    uint64_t state = hash64(w->name, strlen(w->name), seed);
    size_t n = wt_nelem(w), es = dtype_size(dt), chunk = 1 << 16;
    unsigned char *buf = xmalloc(chunk * es);
    for (size_t done = 0; done < n;) {
        size_t m = n - done < chunk ? n - done : chunk;
        gen_values(buf, m, &state, w->mean, w->std * sqrt(3.0), dt);
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
        char shape[96] = "";
        for (int d = 0; d < w->ndim; d++)
            snprintf(shape + strlen(shape), sizeof(shape) - strlen(shape), "%s%lld",
                     d ? "," : "", (long long)w->shape[d]);
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

/* ---- torch zip checkpoints (torch.save of a state dict) ------------------------ */

static uint32_t crc32_buf(uint32_t crc, const unsigned char *p, size_t n)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

struct bytes {
    unsigned char *p;
    size_t n, cap;
};

static void put(struct bytes *b, const void *p, size_t n)
{
    xgrow((void **)&b->p, &b->cap, b->n + n + 1, 1);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_s(struct bytes *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_le(struct bytes *b, uint64_t v, int n)
{
    unsigned char c[8];
    for (int i = 0; i < n; i++)
        c[i] = (unsigned char)(v >> (8 * i));
    put(b, c, (size_t)n);
}

static void put_str(struct bytes *b, const char *s)     /* pickle BINUNICODE */
{
    put(b, "X", 1);
    put_le(b, strlen(s), 4);
    put(b, s, strlen(s));
}

static void put_int(struct bytes *b, int64_t v)         /* BININT1 / BININT / LONG1 */
{
    if (v >= 0 && v < 256) {
        put(b, "K", 1);
        put_le(b, (uint64_t)v, 1);
    } else if (v >= 0 && v < 0x7fffffff) {
        put(b, "J", 1);
        put_le(b, (uint64_t)v, 4);
    } else {
        put(b, "\x8a\x08", 2);
        put_le(b, (uint64_t)v, 8);
    }
}

static void put_dims(struct bytes *b, const int64_t *d, int n)     /* a tuple of ints */
{
    put(b, "(", 1);
    for (int i = 0; i < n; i++)
        put_int(b, d[i]);
    put(b, "t", 1);
}

/* Entry <name> of a stored zip: local header (64-byte aligned data through
 * an "FB" extra field, as torch writes), then data; central record in <cd>. */
static void zip_entry(struct bytes *z, struct bytes *cd, int *n, const char *name,
                      const unsigned char *data, size_t len)
{
    size_t nl = strlen(name), off = z->n, pad = (64 - (off + 30 + nl + 4) % 64) % 64;
    uint32_t crc = crc32_buf(0, data, len);
    put_le(z, 0x04034b50u, 4);
    put_le(z, 20, 2); put_le(z, 0, 2); put_le(z, 0, 2);         /* version, flags, stored */
    put_le(z, 0, 2); put_le(z, 0x21, 2);                        /* time, date (1980-01-01) */
    put_le(z, crc, 4); put_le(z, len, 4); put_le(z, len, 4);
    put_le(z, nl, 2); put_le(z, pad + 4, 2);
    put(z, name, nl);
    put_le(z, 0x4246, 2); put_le(z, pad, 2);                    /* "FB" padding field */
    for (size_t i = 0; i < pad; i++)
        put(z, "Z", 1);
    put(z, data, len);
    put_le(cd, 0x02014b50u, 4);
    put_le(cd, 20, 2); put_le(cd, 20, 2); put_le(cd, 0, 2); put_le(cd, 0, 2);
    put_le(cd, 0, 2); put_le(cd, 0x21, 2);
    put_le(cd, crc, 4); put_le(cd, len, 4); put_le(cd, len, 4);
    put_le(cd, nl, 2); put_le(cd, 0, 2); put_le(cd, 0, 2);      /* name, extra, comment */
    put_le(cd, 0, 2); put_le(cd, 0, 2); put_le(cd, 0, 4);       /* disk, attributes */
    put_le(cd, off, 4);
    put(cd, name, nl);
    (*n)++;
}

/* torch.save(OrderedDict) of the tensors of <l> as a zip checkpoint at
 * <path>: keys are the names less their first <strip> characters, values
 * drawn as write_values does. 0 or -1. */
static int write_torch_zip(const char *path, const struct wlist *l, size_t strip,
                           enum kn_dtype dt, uint64_t seed)
{
    struct bytes pk = { 0 }, z = { 0 }, cd = { 0 };
    const char *cls = dt == KN_F32 ? "FloatStorage" : dt == KN_F16 ? "HalfStorage"
                                                                   : "BFloat16Storage";
    int n = 0, rc = -1;
    put_s(&pk, "\x80\x02" "ccollections\nOrderedDict\n)R(");
    for (size_t i = 0; i < l->n; i++) {
        const struct wt *w = &l->w[i];
        int64_t stride[3];
        for (int d = w->ndim - 1, s = 1; d >= 0; s *= (int)w->shape[d], d--)
            stride[d] = s;
        char key[24];
        snprintf(key, sizeof(key), "%zu", i);
        put_str(&pk, w->name + strip);
        put_s(&pk, "ctorch._utils\n_rebuild_tensor_v2\n((");
        put_str(&pk, "storage");
        put_s(&pk, "ctorch\n");
        put_s(&pk, cls);
        put_s(&pk, "\n");
        put_str(&pk, key);
        put_str(&pk, "cpu");
        put_int(&pk, (int64_t)wt_nelem(w));
        put(&pk, "tQ", 2);
        put_int(&pk, 0);
        put_dims(&pk, w->shape, w->ndim);
        put_dims(&pk, stride, w->ndim);
        put_s(&pk, "\x89" "ccollections\nOrderedDict\n)RtR");
    }
    put(&pk, "u.", 2);
    zip_entry(&z, &cd, &n, "archive/data.pkl", pk.p, pk.n);
    zip_entry(&z, &cd, &n, "archive/byteorder", (const unsigned char *)"little", 6);
    for (size_t i = 0; i < l->n; i++) {
        const struct wt *w = &l->w[i];
        size_t cnt = wt_nelem(w);
        unsigned char *buf = xmalloc(cnt * dtype_size(dt) + 1);
        uint64_t state = hash64(w->name, strlen(w->name), seed);
        gen_values(buf, cnt, &state, w->mean, w->std * sqrt(3.0), dt);
        char rec[48];
        snprintf(rec, sizeof(rec), "archive/data/%zu", i);
        zip_entry(&z, &cd, &n, rec, buf, cnt * dtype_size(dt));
        free(buf);
    }
    zip_entry(&z, &cd, &n, "archive/version", (const unsigned char *)"3\n", 2);
    size_t cd_off = z.n;
    put(&z, cd.p, cd.n);
    put_le(&z, 0x06054b50u, 4);
    put_le(&z, 0, 2); put_le(&z, 0, 2); put_le(&z, (uint64_t)n, 2); put_le(&z, (uint64_t)n, 2);
    put_le(&z, cd.n, 4); put_le(&z, cd_off, 4); put_le(&z, 0, 2);
    FILE *f = fopen(path, "wb");
    if (f && fwrite(z.p, 1, z.n, f) == z.n)
        rc = 0;
    if (f && fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "mkmodel: %s: write failed\n", path);
    free(pk.p);
    free(z.p);
    free(cd.p);
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

static char *xlmr_config_json(const struct opts *o)
{
    int rerank = strcmp(o->arch, "xlmr-rerank") == 0;
    const char *tdt = strcmp(o->dtype, "f32") == 0 ? "float32"
                    : strcmp(o->dtype, "f16") == 0 ? "float16" : "bfloat16";
    return xasprintf(
        "{\n  \"architectures\": [\"%s\"],\n  \"attention_probs_dropout_prob\": 0.1,\n"
        "  \"bos_token_id\": 0,\n  \"classifier_dropout\": null,\n  \"eos_token_id\": 2,\n"
        "  \"hidden_act\": \"gelu\",\n  \"hidden_dropout_prob\": 0.1,\n  \"hidden_size\": %d,\n%s"
        "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n"
        "  \"layer_norm_eps\": 1e-05,\n  \"max_position_embeddings\": %d,\n"
        "  \"model_type\": \"xlm-roberta\",\n  \"num_attention_heads\": %d,\n"
        "  \"num_hidden_layers\": %d,\n  \"pad_token_id\": 1,\n"
        "  \"position_embedding_type\": \"absolute\",\n  \"torch_dtype\": \"%s\",\n"
        "  \"type_vocab_size\": 1,\n  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n",
        rerank ? "XLMRobertaForSequenceClassification" : "XLMRobertaModel", o->hidden,
        rerank ? "  \"id2label\": {\"0\": \"LABEL_0\"},\n  \"label2id\": {\"LABEL_0\": 0},\n" : "",
        o->inter, o->max_pos, o->heads, o->layers, tdt, o->vocab);
}

/* modules.json, 1_Pooling/config.json (and 2_Normalize/) as bge-m3 ships them. */
static int write_st_modules(const struct opts *o)
{
    char *pool = xasprintf("%s/1_Pooling", o->out), *norm = xasprintf("%s/2_Normalize", o->out);
    char *mods = xasprintf(
        "[\n  {\n    \"idx\": 0,\n    \"name\": \"0\",\n    \"path\": \"\",\n"
        "    \"type\": \"sentence_transformers.models.Transformer\"\n  },\n"
        "  {\n    \"idx\": 1,\n    \"name\": \"1\",\n    \"path\": \"1_Pooling\",\n"
        "    \"type\": \"sentence_transformers.models.Pooling\"\n  }%s\n]\n",
        o->normalize ? ",\n  {\n    \"idx\": 2,\n    \"name\": \"2\",\n"
                       "    \"path\": \"2_Normalize\",\n"
                       "    \"type\": \"sentence_transformers.models.Normalize\"\n  }" : "");
    int cls = strcmp(o->pooling, "cls") == 0;
    char *pcfg = xasprintf(
        "{\n  \"word_embedding_dimension\": %d,\n  \"pooling_mode_cls_token\": %s,\n"
        "  \"pooling_mode_mean_tokens\": %s,\n  \"pooling_mode_max_tokens\": false,\n"
        "  \"pooling_mode_mean_sqrt_len_tokens\": false\n}\n",
        o->hidden, cls ? "true" : "false", cls ? "false" : "true");
    int rc = (mkdir(pool, 0755) < 0 && errno != EEXIST) ||
             (o->normalize && mkdir(norm, 0755) < 0 && errno != EEXIST) ||
             write_text(o->out, "modules.json", mods) < 0 ||
             write_text(pool, "config.json", pcfg) < 0 ? -1 : 0;
    free(pool);
    free(norm);
    free(mods);
    free(pcfg);
    return rc;
}

/* bge-m3's heads: <name>.pt holding Linear(hidden, n) as "weight", "bias". */
static int write_head(const struct opts *o, const char *name, int n, enum kn_dtype dt)
{
    struct wlist l = { 0 };
    add(&l, 0, 0.1, 1, n, 0, "%s.bias", name);
    add(&l, 0, 1.0 / sqrt((double)o->hidden), 2, n, o->hidden, "%s.weight", name);
    char *path = xasprintf("%s/%s.pt", o->out, name);
    int rc = write_torch_zip(path, &l, strlen(name) + 1, dt, o->seed);
    free(path);
    free(l.w);
    return rc;
}

/* An XLM-R folder; 0 or 1 (exit status). */
static int make_xlmr(const struct opts *o, enum kn_dtype dt, const char *dt_name)
{
    struct wlist l = { 0 };
    int rc = 1;
    char *cfg = xlmr_config_json(o), *path = NULL;
    build_xlmr(o, &l);
    qsort(l.w, l.n, sizeof(*l.w), cmp_wt);
    for (size_t i = 0; i < l.n; i++)
        l.w[i].nbytes = wt_nelem(&l.w[i]) * dtype_size(dt);
    if (write_text(o->out, "config.json", cfg) < 0)
        goto out;
    if (strcmp(o->weights, "bin") == 0) {
        path = xasprintf("%s/pytorch_model.bin", o->out);
        if (write_torch_zip(path, &l, 0, dt, o->seed) < 0)
            goto out;
    } else {
        path = xasprintf("%s/model.safetensors", o->out);
        if (write_shard(path, &l, 0, dt, dt_name, o->seed) < 0)
            goto out;
    }
    if ((o->sparse && write_head(o, "sparse_linear", 1, dt) < 0) ||
        (o->colbert > 0 && write_head(o, "colbert_linear", o->colbert, dt) < 0) ||
        (strcmp(o->pooling, "none") != 0 && write_st_modules(o) < 0))
        goto out;
    if (o->tokenizer && (copy_file(o->tokenizer, o->out, "tokenizer.json", 1) < 0 ||
                         copy_file(o->tokenizer, o->out, "tokenizer_config.json", 1) < 0 ||
                         copy_file(o->tokenizer, o->out, "special_tokens_map.json", 0) < 0))
        goto out;
    rc = 0;
out:
    free(cfg);
    free(path);
    free(l.w);
    return rc;
}

static char *sensevoice_config_yaml(const struct opts *o)
{
    return xasprintf(
        "encoder: SenseVoiceEncoderSmall\nencoder_conf:\n    output_size: %d\n"
        "    attention_heads: %d\n    linear_units: %d\n    num_blocks: %d\n"
        "    tp_blocks: %d\n    dropout_rate: 0.1\n    positional_dropout_rate: 0.1\n"
        "    attention_dropout_rate: 0.1\n    input_layer: pe\n"
        "    pos_enc_class: SinusoidalPositionEncoder\n    normalize_before: true\n"
        "    kernel_size: %d\n    sanm_shfit: %d\n    selfattention_layer_type: sanm\n\n\n"
        "model: SenseVoiceSmall\nmodel_conf:\n    length_normalized_loss: true\n    sos: 1\n"
        "    eos: 2\n    ignore_id: -1\n\n"
        "tokenizer: SentencepiecesTokenizer\ntokenizer_conf:\n  bpemodel: null\n"
        "  unk_symbol: <unk>\n  split_with_space: true\n\n"
        "frontend: WavFrontend\nfrontend_conf:\n    fs: 16000\n    window: hamming\n"
        "    n_mels: 80\n    frame_length: 25\n    frame_shift: 10\n    lfr_m: 7\n"
        "    lfr_n: 6\n    cmvn_file: null\n",
        o->hidden, o->heads, o->inter, o->layers, o->tp_layers, o->kernel_size, o->sanm_shift);
}

/* A SenseVoiceSmall folder; 0 or 1 (exit status). */
static int make_sensevoice(const struct opts *o, enum kn_dtype dt, const char *dt_name)
{
    struct wlist l = { 0 };
    int rc = 1;
    char *cfg = sensevoice_config_yaml(o), *path = NULL;
    build_sensevoice(o, &l);
    qsort(l.w, l.n, sizeof(*l.w), cmp_wt);
    for (size_t i = 0; i < l.n; i++)
        l.w[i].nbytes = wt_nelem(&l.w[i]) * dtype_size(dt);
    if (write_text(o->out, "config.yaml", cfg) < 0)
        goto out;
    if (strcmp(o->weights, "safetensors") == 0) {
        path = xasprintf("%s/model.safetensors", o->out);
        if (write_shard(path, &l, 0, dt, dt_name, o->seed) < 0)
            goto out;
    } else {
        path = xasprintf("%s/model.pt", o->out);
        if (write_torch_zip(path, &l, 0, dt, o->seed) < 0)
            goto out;
    }
    if (o->frontend && (copy_file(o->frontend, o->out, "am.mvn", 1) < 0 ||
                        copy_file(o->frontend, o->out, "chn_jpn_yue_eng_ko_spectok.bpe.model", 0) < 0 ||
                        copy_file(o->frontend, o->out, "tokens.json", 0) < 0))
        goto out;
    rc = 0;
out:
    free(cfg);
    free(path);
    free(l.w);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: mkmodel --out DIR [--arch qwen2|qwen3|qwen3_moe] [--hidden N] [--layers N]\n"
            "  [--heads N] [--kv-heads N] [--head-dim N] [--intermediate N] [--vocab N]\n"
            "  [--dtype bf16|f16|f32] [--seed N] [--tie 0|1] [--max-pos N] [--rope-theta X]\n"
            "  [--rope linear:F|dynamic:F|yarn:F:ORIG] [--sliding-window N --max-window-layers N]\n"
            "  [--experts N --top-k N --moe-intermediate N --norm-topk 0|1 --sparse-step N\n"
            "   --mlp-only I,J] [--embed-std X] [--shards N] [--tokenizer DIR]\n"
            "       mkmodel --out DIR --arch xlmr-embed|xlmr-rerank [--hidden N] [--layers N]\n"
            "  [--heads N] [--intermediate N] [--vocab N (250002)] [--max-pos N (8194)]\n"
            "  [--dtype ...] [--seed N] [--embed-std X] [--sparse 0|1] [--colbert DIM]\n"
            "  [--pooling cls|mean|none] [--normalize 0|1] [--weights safetensors|bin]\n"
            "  [--tokenizer DIR]\n"
            "       mkmodel --out DIR --arch sensevoice [--hidden N] [--layers N (num_blocks)]\n"
            "  [--tp-layers N] [--heads N] [--intermediate N] [--kernel-size N] [--sanm-shift N]\n"
            "  [--input-dim N (560)] [--vocab N (25055)] [--dtype f32|bf16|f16 (f32)]\n"
            "  [--weights pt|safetensors] [--seed N] [--embed-std X] [--frontend DIR]\n");
}

int main(int argc, char **argv)
{
    struct opts o = { .arch = "qwen3", .dtype = NULL, .tp_layers = 1, .kernel_size = 11,
                      .input_dim = 560, .hidden = 64, .layers = 2, .heads = 4,
                      .kv_heads = 2, .head_dim = 16, .inter = 128, .vocab = -1, .tie = 1,
                      .max_pos = -1, .pooling = "none", .weights = NULL, .normalize = 1, .shards = 1, .experts = 8, .top_k = 2, .moe_inter = 32,
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
        { "embed-std", 1, 0, 'e' }, { "seed", 1, 0, 'z' }, { "help", 0, 0, 'h' },
        { "sparse", 1, 0, 1 }, { "colbert", 1, 0, 2 }, { "pooling", 1, 0, 3 },
        { "normalize", 1, 0, 4 }, { "weights", 1, 0, 5 }, { "tp-layers", 1, 0, 6 },
        { "kernel-size", 1, 0, 7 }, { "sanm-shift", 1, 0, 8 }, { "input-dim", 1, 0, 9 },
        { "frontend", 1, 0, 10 }, { 0 } };
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
        case 1: o.sparse = atoi(optarg); break;
        case 2: o.colbert = atoi(optarg); break;
        case 3: o.pooling = optarg; break;
        case 4: o.normalize = atoi(optarg); break;
        case 5: o.weights = optarg; break;
        case 6: o.tp_layers = atoi(optarg); break;
        case 7: o.kernel_size = atoi(optarg); break;
        case 8: o.sanm_shift = atoi(optarg); break;
        case 9: o.input_dim = atoi(optarg); break;
        case 10: o.frontend = optarg; break;
        default: usage(); return 2;
        }
    }
    int sv = strcmp(o.arch, "sensevoice") == 0;
    if (!o.dtype)
        o.dtype = sv ? "f32" : "bf16";
    if (!o.weights)
        o.weights = sv ? "pt" : "safetensors";
    enum kn_dtype dt = strcmp(o.dtype, "f32") == 0 ? KN_F32 : strcmp(o.dtype, "f16") == 0 ? KN_F16
                     : strcmp(o.dtype, "bf16") == 0 ? KN_BF16 : KN_DTYPE_COUNT;
    const char *dt_name = dt == KN_F32 ? "F32" : dt == KN_F16 ? "F16" : "BF16";
    o.xlmr = strncmp(o.arch, "xlmr-", 5) == 0;
    if (o.vocab < 0)
        o.vocab = sv ? 25055 : o.xlmr ? 250002 : 151936;
    if (sv) {
        if (!o.out || dt == KN_DTYPE_COUNT || o.hidden <= 0 || o.layers <= 0 || o.heads <= 0 ||
            o.hidden % o.heads || o.inter <= 0 || o.vocab <= 0 || o.tp_layers < 0 ||
            o.kernel_size < 1 || o.sanm_shift < 0 ||
            (o.kernel_size - 1) / 2 + o.sanm_shift > o.kernel_size - 1 || o.input_dim <= 0 ||
            (strcmp(o.weights, "safetensors") && strcmp(o.weights, "pt") &&
             strcmp(o.weights, "bin"))) {
            usage();
            return 2;
        }
        if (mkdir(o.out, 0755) < 0 && errno != EEXIST) {
            fprintf(stderr, "mkmodel: %s: %s\n", o.out, strerror(errno));
            return 1;
        }
        return make_sensevoice(&o, dt, dt_name);
    }
    if (o.max_pos < 0)
        o.max_pos = o.xlmr ? 8194 : 4096;
    if (o.xlmr) {
        if (!o.out || dt == KN_DTYPE_COUNT || o.hidden <= 0 || o.layers <= 0 || o.heads <= 0 ||
            o.hidden % o.heads || o.inter <= 0 || o.vocab <= 0 || o.max_pos < 3 ||
            o.colbert < 0 || (strcmp(o.arch, "xlmr-embed") && strcmp(o.arch, "xlmr-rerank")) ||
            (strcmp(o.pooling, "cls") && strcmp(o.pooling, "mean") && strcmp(o.pooling, "none")) ||
            (strcmp(o.weights, "safetensors") && strcmp(o.weights, "bin"))) {
            usage();
            return 2;
        }
        if (mkdir(o.out, 0755) < 0 && errno != EEXIST) {
            fprintf(stderr, "mkmodel: %s: %s\n", o.out, strerror(errno));
            return 1;
        }
        return make_xlmr(&o, dt, dt_name);
    }
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
