/*
 * main.c -- llmux-worker: flags (vLLM's names), the task (chat, embed,
 * rerank: config.json's architectures; transcribe: a SenseVoiceSmall
 * config.yaml; or --task), loading the model folder (tokenizer, chat
 * template, weights, generation_config.json defaults), the chat, encode or
 * speech engine, the HTTP server and the signals. A bad flag or a folder
 * that cannot be served exits 2 (fatal: no respawn).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "asr.h"
#include "audio/audio.h"

#include "chat_template.h"
#include "encode.h"
#include "encoder.h"
#include "engine.h"
#include "kernels.h"
#include "log.h"
#include "model.h"
#include "reasoning.h"
#include "sensevoice.h"
#include "server.h"
#include "spm_model.h"
#include "tokenizer.h"
#include "toolcall.h"
#include "util.h"

#define EXIT_FATAL 2
#define WK_GRACE_MS 10000

struct opts {
    const char *model, *listen, *device, *log_level;
    char **served;
    int n_served;
    int max_model_len, max_num_seqs, max_num_batched_tokens, block_size, threads;
    size_t kv_cache_bytes;
    int reasoning, toolcall, prefix_caching;
    size_t max_body;
    int task;                   /* -1: from config.json */
    int batched_given, seqs_given;
    int max_batch_inputs;
    double max_audio_seconds;
};

#define ASR_DEFAULT_SEQS 32
#define ASR_SEGMENT_S    30.0
#define ASR_FRAMES_PER_SEQ 500      /* 30 s of features (60 ms frames) */

#define ENC_DEFAULT_BATCHED_TOKENS 16384

static void usage(FILE *f)
{
    fprintf(f,
            "usage: llmux-worker --model DIR --listen unix:PATH|HOST:PORT [options]\n"
            "  --model DIR                    Hugging Face model folder\n"
            "  --listen ADDR                  unix:PATH or HOST:PORT (port 0: any)\n"
            "  --device cpu|cuda|auto         backend (default cpu)\n"
            "  --served-name NAME             model name clients use (repeatable; default: the folder name)\n"
            "  --max-model-len N              prompt + output tokens (default: the model's, bounded by the KV cache)\n"
            "  --max-num-seqs N               running sequences (default 256; transcribe: audio\n"
            "                                 segments per encoder batch, default 32)\n"
            "  --max-num-batched-tokens N     tokens per engine step (default 2048; encoders: 16384)\n"
            "  --task chat|embed|rerank|score|transcribe\n"
            "                                 what to serve (default: from config.json architectures,\n"
            "                                 or config.yaml model SenseVoiceSmall: transcribe)\n"
            "  --max-audio-seconds S          transcribe: longest audio accepted (default 600; cut\n"
            "                                 at silences into <= 30 s segments)\n"
            "  --max-batch-inputs N           encoders: inputs (or pairs) per request (default 2048)\n"
            "  --block-size N                 tokens per KV block (default 16)\n"
            "  --kv-cache-memory SIZE         KV cache bytes, suffix k/m/g (default 1g)\n"
            "  --threads N                    CPU threads (default 1; 0: all cores)\n"
            "  --reasoning-parser qwen3|deepseek_r1\n"
            "  --tool-call-parser hermes\n"
            "  --enable-prefix-caching | --no-enable-prefix-caching   (default on)\n"
            "  --max-body-size SIZE           request body limit (default 32m)\n"
            "  --seed N                       accepted for vLLM compatibility\n"
            "  --log-level LEVEL              error|warn|notice|info|debug (default info)\n"
            "  -h, --help                     this text\n"
            "  -v, --version                  print the version\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case '\0': break;
    default: return -1;
    }
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end != '\0')
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static int parse_int(const char *flag, const char *s, int lo, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > (1L << 30)) {
        fprintf(stderr, "llmux-worker: invalid value \"%s\" for %s\n", s, flag);
        return -1;
    }
    *out = (int)v;
    return 0;
}

enum {
    OPT_MODEL = 256, OPT_LISTEN, OPT_DEVICE, OPT_SERVED, OPT_MAXLEN, OPT_SEQS, OPT_BATCHED,
    OPT_BLOCK, OPT_KV, OPT_THREADS, OPT_REASONING, OPT_TOOL, OPT_PC, OPT_NO_PC, OPT_SEED,
    OPT_LOGLEVEL, OPT_BODY, OPT_TASK, OPT_BATCH_INPUTS, OPT_AUDIO_S
};

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        { "model", required_argument, NULL, OPT_MODEL },
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "device", required_argument, NULL, OPT_DEVICE },
        { "served-name", required_argument, NULL, OPT_SERVED },
        { "served-model-name", required_argument, NULL, OPT_SERVED },
        { "max-model-len", required_argument, NULL, OPT_MAXLEN },
        { "max-num-seqs", required_argument, NULL, OPT_SEQS },
        { "max-num-batched-tokens", required_argument, NULL, OPT_BATCHED },
        { "block-size", required_argument, NULL, OPT_BLOCK },
        { "kv-cache-memory", required_argument, NULL, OPT_KV },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "reasoning-parser", required_argument, NULL, OPT_REASONING },
        { "tool-call-parser", required_argument, NULL, OPT_TOOL },
        { "enable-prefix-caching", no_argument, NULL, OPT_PC },
        { "no-enable-prefix-caching", no_argument, NULL, OPT_NO_PC },
        { "seed", required_argument, NULL, OPT_SEED },
        { "log-level", required_argument, NULL, OPT_LOGLEVEL },
        { "max-body-size", required_argument, NULL, OPT_BODY },
        { "task", required_argument, NULL, OPT_TASK },
        { "max-batch-inputs", required_argument, NULL, OPT_BATCH_INPUTS },
        { "max-audio-seconds", required_argument, NULL, OPT_AUDIO_S },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'v' },
        { NULL, 0, NULL, 0 }
    };
    int ch, dummy;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":hv", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_MODEL: o->model = optarg; break;
        case OPT_LISTEN: o->listen = optarg; break;
        case OPT_DEVICE:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto")) {
                fprintf(stderr, "llmux-worker: --device must be cpu, cuda or auto\n");
                return -1;
            }
            o->device = optarg;
            break;
        case OPT_SERVED:
            o->served = xrealloc(o->served, (size_t)(o->n_served + 1) * sizeof(char *));
            o->served[o->n_served++] = optarg;
            break;
        case OPT_MAXLEN: if (parse_int("--max-model-len", optarg, 2, &o->max_model_len)) return -1; break;
        case OPT_SEQS:
            if (parse_int("--max-num-seqs", optarg, 1, &o->max_num_seqs)) return -1;
            o->seqs_given = 1;
            break;
        case OPT_AUDIO_S: {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end != '\0' || !(v > 0) || v > 86400) {
                fprintf(stderr, "llmux-worker: invalid value \"%s\" for --max-audio-seconds\n",
                        optarg);
                return -1;
            }
            o->max_audio_seconds = v;
            break;
        }
        case OPT_BATCHED:
            if (parse_int("--max-num-batched-tokens", optarg, 1, &o->max_num_batched_tokens)) return -1;
            o->batched_given = 1;
            break;
        case OPT_TASK:
            if (strcmp(optarg, "chat") == 0 || strcmp(optarg, "generate") == 0)
                o->task = WK_TASK_CHAT;
            else if (strcmp(optarg, "embed") == 0 || strcmp(optarg, "embedding") == 0)
                o->task = WK_TASK_EMBED;
            else if (strcmp(optarg, "rerank") == 0 || strcmp(optarg, "score") == 0)
                o->task = WK_TASK_RERANK;
            else if (strcmp(optarg, "transcribe") == 0 || strcmp(optarg, "transcription") == 0)
                o->task = WK_TASK_TRANSCRIBE;
            else {
                fprintf(stderr, "llmux-worker: --task must be chat, embed, rerank, score or "
                        "transcribe\n");
                return -1;
            }
            break;
        case OPT_BATCH_INPUTS:
            if (parse_int("--max-batch-inputs", optarg, 1, &o->max_batch_inputs)) return -1;
            break;
        case OPT_BLOCK: if (parse_int("--block-size", optarg, 1, &o->block_size)) return -1; break;
        case OPT_THREADS: if (parse_int("--threads", optarg, 0, &o->threads)) return -1; break;
        case OPT_SEED: if (parse_int("--seed", optarg, 0, &dummy)) return -1; break;
        case OPT_KV:
            if (parse_size(optarg, &o->kv_cache_bytes) < 0 || o->kv_cache_bytes == 0) {
                fprintf(stderr, "llmux-worker: invalid size \"%s\" for --kv-cache-memory\n", optarg);
                return -1;
            }
            break;
        case OPT_BODY:
            if (parse_size(optarg, &o->max_body) < 0 || o->max_body == 0) {
                fprintf(stderr, "llmux-worker: invalid size \"%s\" for --max-body-size\n", optarg);
                return -1;
            }
            break;
        case OPT_REASONING:
            if ((o->reasoning = reasoning_kind_parse(optarg)) < 0) {
                fprintf(stderr, "llmux-worker: unknown --reasoning-parser \"%s\" (qwen3, deepseek_r1)\n", optarg);
                return -1;
            }
            break;
        case OPT_TOOL:
            if ((o->toolcall = toolcall_kind_parse(optarg)) < 0) {
                fprintf(stderr, "llmux-worker: unknown --tool-call-parser \"%s\" (hermes)\n", optarg);
                return -1;
            }
            break;
        case OPT_PC: o->prefix_caching = 1; break;
        case OPT_NO_PC: o->prefix_caching = 0; break;
        case OPT_LOGLEVEL:
            if (log_level_parse(optarg) < 0) {
                fprintf(stderr, "llmux-worker: unknown --log-level \"%s\"\n", optarg);
                return -1;
            }
            o->log_level = optarg;
            break;
        case 'h': usage(stdout); exit(0);
        case 'v': printf("llmux-worker %s\n", PACKAGE_VERSION); exit(0);
        case ':':
            fprintf(stderr, "llmux-worker: option %s needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "llmux-worker: unknown option %s\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "llmux-worker: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (o->model == NULL || o->listen == NULL) {
        fprintf(stderr, "llmux-worker: --model and --listen are required (see --help)\n");
        return -1;
    }
    return 0;
}

/* generation_config.json: sampling defaults and eos ids (vLLM applies both). */
static void load_generation_config(const char *dir, struct api_defaults *d, int32_t **eos, int *n_eos)
{
    char *path = xasprintf("%s/generation_config.json", dir);
    json_t *g = json_load_file(path, 0, NULL);
    free(path);
    if (g == NULL || !json_is_object(g)) {
        json_decref(g);
        log_info("no generation_config.json: sampling defaults are OpenAI's");
        return;
    }
    char applied[512] = "";
    json_t *v;
#define GC_FLOAT(key, has, field) \
    if ((v = json_object_get(g, key)) && json_is_number(v)) { \
        d->has = 1; d->field = (float)json_number_value(v); \
        snprintf(applied + strlen(applied), sizeof(applied) - strlen(applied), " %s=%g", key, \
                 json_number_value(v)); }
    GC_FLOAT("temperature", has_temperature, temperature)
    GC_FLOAT("top_p", has_top_p, top_p)
    GC_FLOAT("min_p", has_min_p, min_p)
    GC_FLOAT("repetition_penalty", has_repetition_penalty, repetition_penalty)
#undef GC_FLOAT
    if ((v = json_object_get(g, "top_k")) && json_is_integer(v)) {
        d->has_top_k = 1;
        d->top_k = (int)json_integer_value(v);
        snprintf(applied + strlen(applied), sizeof(applied) - strlen(applied), " top_k=%d", d->top_k);
    }
    if ((v = json_object_get(g, "max_new_tokens")) && json_is_integer(v) && json_integer_value(v) > 0) {
        d->max_new_tokens = (int)json_integer_value(v);
        snprintf(applied + strlen(applied), sizeof(applied) - strlen(applied), " max_new_tokens=%d",
                 d->max_new_tokens);
    }
    v = json_object_get(g, "eos_token_id");
    if (json_is_integer(v)) {
        *eos = xrealloc(*eos, (size_t)(*n_eos + 1) * sizeof(int32_t));
        (*eos)[(*n_eos)++] = (int32_t)json_integer_value(v);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            if (!json_is_integer(x))
                continue;
            *eos = xrealloc(*eos, (size_t)(*n_eos + 1) * sizeof(int32_t));
            (*eos)[(*n_eos)++] = (int32_t)json_integer_value(x);
        }
    }
    log_notice("generation_config.json defaults applied:%s", applied[0] ? applied : " none");
    json_decref(g);
}

static void add_eos(int32_t **eos, int *n, int32_t id)
{
    if (id < 0)
        return;
    for (int i = 0; i < *n; i++)
        if ((*eos)[i] == id)
            return;
    *eos = xrealloc(*eos, (size_t)(*n + 1) * sizeof(int32_t));
    (*eos)[(*n)++] = id;
}

/* The task config.json's "architectures" names: XLMRobertaModel embeds,
 * XLMRobertaForSequenceClassification reranks, anything else chats (the
 * chat loader judges it). A folder with config.yaml naming model
 * SenseVoiceSmall (and no config.json) transcribes. */
static int task_from_config(const char *dir)
{
    char *cj = xasprintf("%s/config.json", dir), *cy = xasprintf("%s/config.yaml", dir);
    int has_json = access(cj, F_OK) == 0, has_yaml = access(cy, F_OK) == 0;
    free(cj);
    free(cy);
    if (!has_json && has_yaml) {
        struct sensevoice_info si;
        char err[256];
        if (sensevoice_read_config(dir, &si, err, sizeof(err)) == 0)
            return WK_TASK_TRANSCRIBE;
        log_warn("config.yaml: %s", err);
    }
    char *path = xasprintf("%s/config.json", dir);
    json_t *c = json_load_file(path, 0, NULL);
    free(path);
    int task = WK_TASK_CHAT;
    json_t *a = json_object_get(c, "architectures");
    const char *arch = json_string_value(json_array_get(a, 0));
    if (arch && strcmp(arch, "XLMRobertaModel") == 0)
        task = WK_TASK_EMBED;
    else if (arch && (strcmp(arch, "XLMRobertaForSequenceClassification") == 0))
        task = WK_TASK_RERANK;
    json_decref(c);
    return task;
}

static int encoder_forward_cb(void *arg, const struct encoder_batch *b, struct encoder_out *out)
{
    return encoder_forward(arg, b, out);
}

/* Load the encoder and start the encode engine. 0 or -1 (logged). */
static int start_encoder(struct wk *w, const struct opts *o, int *max_len_out)
{
    char err[512] = "";
    if ((w->encoder = encoder_load(o->model, w->be, err, sizeof(err))) == NULL) {
        log_error("model: %s", err);
        return -1;
    }
    const struct encoder_info *ei = encoder_get_info(w->encoder);
    int want = w->task == WK_TASK_EMBED ? ENCODER_EMBED : ENCODER_RERANK;
    if ((int)ei->kind != want) {
        log_error("--task %s does not fit %s (a %s model)", wk_task_name(w->task), ei->arch_name,
                  ei->kind == ENCODER_EMBED ? "embedding" : "reranking");
        return -1;
    }
    int max_len = o->max_model_len ? o->max_model_len : ei->max_model_len;
    if (ei->max_model_len > 0 && max_len > ei->max_model_len) {
        log_error("--max-model-len %d exceeds what %s's position embeddings hold (%d)", max_len,
                  ei->arch_name, ei->max_model_len);
        return -1;
    }
    w->enc_hidden = ei->hidden_size;
    w->enc_n_labels = ei->n_labels > 0 ? ei->n_labels : 1;
    w->enc_colbert_dim = ei->colbert_dim;
    w->enc_has_sparse = ei->has_sparse;
    w->enc_has_colbert = ei->has_colbert && ei->colbert_dim > 0;
    int32_t warm[2];
    int n_warm = 0;
    int32_t bos = tokenizer_bos_id(w->tok), eos = tokenizer_eos_id(w->tok);
    if (bos >= 0)
        warm[n_warm++] = bos;
    if (eos >= 0)
        warm[n_warm++] = eos;
    if (n_warm == 0)
        warm[n_warm++] = ei->pad_token_id >= 0 ? ei->pad_token_id : 0;
    struct encode_config ec = {
        .max_num_batched_tokens = o->batched_given ? o->max_num_batched_tokens
                                                   : ENC_DEFAULT_BATCHED_TOKENS,
        .max_num_seqs = o->max_num_seqs,
        .hidden = w->enc_hidden, .n_labels = w->enc_n_labels, .colbert_dim = w->enc_colbert_dim,
        .forward = encoder_forward_cb, .forward_arg = w->encoder,
        .warmup_ids = warm, .n_warmup = n_warm
    };
    if ((w->encq = encode_start(&ec, wk_engine_notify, w, err, sizeof(err))) == NULL) {
        log_error("encode engine: %s", err);
        return -1;
    }
    *max_len_out = max_len;
    log_notice("%s encoder: hidden %d, %d layers, %d heads, pooling %s%s%s%s; batches of at most "
               "%d tokens and %d sequences", ei->arch_name, ei->hidden_size, ei->n_layers,
               ei->n_heads, ei->pooling == POOL_MEAN ? "mean" : "cls",
               ei->normalize ? ", normalized" : "", ei->has_sparse ? ", sparse head" : "",
               ei->has_colbert ? ", colbert head" : "", ec.max_num_batched_tokens, ec.max_num_seqs);
    return 0;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct wk *w = arg;
    log_notice("signal %d received: graceful stop (at most %d ms)", (int)sig, WK_GRACE_MS);
    wk_server_shutdown(w, WK_GRACE_MS);
}

/* An embed or rerank worker: backend, encoder, encode engine, server, loop.
 * 0 after a clean stop, -1 (logged) when it cannot serve. main frees. */
static int run_encoder(struct wk *w, const struct opts *o, struct event **sigterm,
                       struct event **sigint)
{
    int max_len = 0;
    if ((w->be = kn_backend_init(o->device, 0)) == NULL) {
        log_error("backend %s could not start", o->device);
        return -1;
    }
    if (kn_backend_set_threads(w->be, o->threads) < 0)
        return -1;
    w->base = event_base_new();
    if (w->base == NULL || wk_server_notify_init(w) < 0)
        return -1;
    if (start_encoder(w, o, &max_len) < 0)
        return -1;
    w->api.tok = w->tok;
    w->api.max_model_len = max_len;
    w->api.served_names = w->served;
    w->api.n_served = w->n_served;
    w->max_body = o->max_body;
    w->started = wall_time_s();
    if (wk_server_listen(w, o->listen) < 0)
        return -1;
    *sigterm = evsignal_new(w->base, SIGTERM, signal_cb, w);
    *sigint = evsignal_new(w->base, SIGINT, signal_cb, w);
    event_add(*sigterm, NULL);
    event_add(*sigint, NULL);
    log_notice("serving %s (task %s) as \"%s\" on %s: max_model_len %d, max_batch_inputs %d, "
               "device %s, %d thread(s)", o->model, wk_task_name(w->task), w->served[0], o->listen,
               max_len, w->max_batch_inputs, o->device, o->threads);
    event_base_dispatch(w->base);
    log_notice("stopped");
    return 0;
}

static int sv_forward_cb(void *arg, struct sensevoice_clip *clips, int n)
{
    return sensevoice_forward(arg, clips, n);
}

/* The pieces of the model's SentencePiece file (or tokens.json); they must
 * cover the CTC vocabulary. NULL (logged) when neither loads. */
static struct spm_model *load_pieces(const char *dir, int vocab)
{
    char err[256] = "", err2[256] = "";
    char *p = xasprintf("%s/chn_jpn_yue_eng_ko_spectok.bpe.model", dir);
    struct spm_model *m = spm_model_load(p, err, sizeof(err));
    free(p);
    if (m == NULL) {
        p = xasprintf("%s/tokens.json", dir);
        m = spm_model_load_tokens_json(p, err2, sizeof(err2));
        free(p);
        if (m == NULL) {
            log_error("no SentencePiece pieces: %s; %s", err, err2);
            return NULL;
        }
        log_notice("pieces from tokens.json (%s)", err);
    }
    if (spm_model_size(m) < vocab) {
        log_error("the SentencePiece model has %d pieces but the CTC head %d ids",
                  spm_model_size(m), vocab);
        spm_model_free(m);
        return NULL;
    }
    return m;
}

/* A transcribe worker: backend, SenseVoice, front end, pieces, speech
 * engine, server, loop. 0 after a clean stop, -1 (logged). main frees. */
static int run_transcribe(struct wk *w, const struct opts *o, struct event **sigterm,
                          struct event **sigint)
{
    char err[512] = "";
    if ((w->be = kn_backend_init(o->device, 0)) == NULL) {
        log_error("backend %s could not start", o->device);
        return -1;
    }
    if (kn_backend_set_threads(w->be, o->threads) < 0)
        return -1;
    if ((w->sv = sensevoice_load(o->model, w->be, err, sizeof(err))) == NULL) {
        log_error("model: %s", err);
        return -1;
    }
    const struct sensevoice_info *si = sensevoice_get_info(w->sv);
    if ((w->frontend = fbank_frontend_load(o->model, err, sizeof(err))) == NULL) {
        log_error("front end: %s", err);
        return -1;
    }
    if (fbank_frontend_dim(w->frontend) != si->input_dim) {
        log_error("the front end makes %d-wide features but the model takes %d",
                  fbank_frontend_dim(w->frontend), si->input_dim);
        return -1;
    }
    if ((w->spm = load_pieces(o->model, si->vocab_size)) == NULL)
        return -1;
    w->base = event_base_new();
    if (w->base == NULL || wk_server_notify_init(w) < 0)
        return -1;
    int seqs = o->seqs_given ? o->max_num_seqs : ASR_DEFAULT_SEQS;
    struct asr_config ac = {
        .max_num_seqs = seqs, .max_batch_frames = (long)seqs * ASR_FRAMES_PER_SEQ,
        .max_audio_seconds = o->max_audio_seconds, .max_segment_seconds = ASR_SEGMENT_S,
        .blank_id = si->blank_id, .frontend = w->frontend, .forward = sv_forward_cb,
        .forward_arg = w->sv, .warmup = 1
    };
    if ((w->asrq = asr_start(&ac, wk_engine_notify, w, err, sizeof(err))) == NULL) {
        log_error("speech engine: %s", err);
        return -1;
    }
    w->api.served_names = w->served;
    w->api.n_served = w->n_served;
    w->max_body = o->max_body;
    w->started = wall_time_s();
    if (wk_server_listen(w, o->listen) < 0)
        return -1;
    *sigterm = evsignal_new(w->base, SIGTERM, signal_cb, w);
    *sigint = evsignal_new(w->base, SIGINT, signal_cb, w);
    event_add(*sigterm, NULL);
    event_add(*sigint, NULL);
    log_notice("serving %s (task transcribe, %s: hidden %d, %d+%d blocks, vocab %d) as \"%s\" on "
               "%s: max_audio_seconds %g, batches of at most %d segments, device %s, %d thread(s)",
               o->model, si->arch_name, si->hidden_size, si->n_blocks, si->tp_blocks,
               si->vocab_size, w->served[0], o->listen, o->max_audio_seconds, seqs, o->device,
               o->threads);
    event_base_dispatch(w->base);
    log_notice("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = { .device = "cpu", .max_num_seqs = 256, .max_num_batched_tokens = 2048,
                      .block_size = 16, .threads = 1, .kv_cache_bytes = (size_t)1 << 30,
                      .prefix_caching = 1, .max_body = (size_t)32 << 20, .task = -1,
                      .max_batch_inputs = 2048, .max_audio_seconds = 600 };
    struct wk w;
    struct event *sigterm = NULL, *sigint = NULL;
    int32_t *eos = NULL;
    int n_eos = 0, rc = EXIT_FATAL;
    char err[512] = "";

    memset(&w, 0, sizeof(w));
    w.notify_fd = -1;
    log_init("worker");
    if (parse_args(argc, argv, &o) < 0)
        return EXIT_FATAL;
    if (o.log_level)
        log_set_level(log_level_parse(o.log_level));
    signal(SIGPIPE, SIG_IGN);

    w.model_dir = xstrdup(o.model);
    if (o.n_served == 0) {
        const char *base = strrchr(o.model, '/');
        char *name = xstrdup(base && base[1] ? base + 1 : o.model);
        size_t l = strlen(name);
        while (l > 1 && name[l - 1] == '/')
            name[--l] = '\0';
        w.served = xcalloc(1, sizeof(char *));
        w.served[0] = name;
        w.n_served = 1;
    } else {
        w.served = xcalloc((size_t)o.n_served, sizeof(char *));
        for (int i = 0; i < o.n_served; i++)
            w.served[i] = xstrdup(o.served[i]);
        w.n_served = o.n_served;
    }
    w.task = o.task >= 0 ? o.task : task_from_config(o.model);
    w.max_batch_inputs = o.max_batch_inputs;
    if (w.task == WK_TASK_TRANSCRIBE) {
        if (run_transcribe(&w, &o, &sigterm, &sigint) == 0)
            rc = 0;
        goto out;
    }
    if ((w.tok = tokenizer_load(o.model, err, sizeof(err))) == NULL) {
        log_error("tokenizer: %s", err);
        goto out;
    }
    if (w.task != WK_TASK_CHAT) {
        if (run_encoder(&w, &o, &sigterm, &sigint) == 0)
            rc = 0;
        goto out;
    }
    if ((w.tmpl = chat_template_load_dir(o.model, err, sizeof(err))) == NULL)
        log_warn("no chat template (%s): /v1/chat/completions answers 400", err);
    if ((w.be = kn_backend_init(o.device, 0)) == NULL) {
        log_error("backend %s could not start", o.device);
        goto out;
    }
    if (kn_backend_set_threads(w.be, o.threads) < 0)
        goto out;
    if ((w.model = model_load(o.model, w.be, err, sizeof(err))) == NULL) {
        log_error("model: %s", err);
        goto out;
    }
    const struct model_config *mc = model_get_config(w.model);
    load_generation_config(o.model, &w.api.defs, &eos, &n_eos);
    add_eos(&eos, &n_eos, tokenizer_eos_id(w.tok));
    add_eos(&eos, &n_eos, mc->eos_token_id);

    size_t block_bytes = model_kv_block_bytes(w.model, o.block_size);
    int n_blocks = block_bytes ? (int)(o.kv_cache_bytes / block_bytes) : 0;
    long capacity = (long)n_blocks * o.block_size;
    if (n_blocks < 1) {
        log_error("--kv-cache-memory %zu bytes holds no KV block (%zu bytes each)", o.kv_cache_bytes,
                  block_bytes);
        goto out;
    }
    int max_len = o.max_model_len;
    if (max_len == 0) {
        max_len = mc->max_position_embeddings > 0 ? mc->max_position_embeddings : 4096;
        if (max_len > capacity) {
            log_notice("max_model_len %d lowered to %ld, what the KV cache holds", max_len, capacity);
            max_len = (int)capacity;
        }
    } else if (max_len > capacity) {
        log_error("--max-model-len %d is larger than the KV cache holds (%ld tokens); raise "
                  "--kv-cache-memory", max_len, capacity);
        goto out;
    } else if (mc->max_position_embeddings > 0 && max_len > mc->max_position_embeddings) {
        log_warn("--max-model-len %d exceeds max_position_embeddings %d", max_len,
                 mc->max_position_embeddings);
    }
    w.api.tok = w.tok;
    w.api.tmpl = w.tmpl;
    w.api.max_model_len = max_len;
    w.api.served_names = w.served;
    w.api.n_served = w.n_served;
    w.api.reasoning = o.reasoning;
    w.api.toolcall = o.toolcall;
    w.max_body = o.max_body;
    w.started = wall_time_s();

    w.base = event_base_new();
    if (w.base == NULL || wk_server_notify_init(&w) < 0)
        goto out;
    struct engine_config ec = { .block_size = o.block_size, .n_blocks = n_blocks,
                                .max_num_seqs = o.max_num_seqs,
                                .max_num_batched_tokens = o.max_num_batched_tokens,
                                .max_model_len = max_len,
                                .enable_prefix_caching = o.prefix_caching,
                                .eos_ids = eos, .n_eos_ids = n_eos };
    if ((w.eng = engine_start(w.model, &ec, wk_engine_notify, &w, err, sizeof(err))) == NULL) {
        log_error("engine: %s", err);
        goto out;
    }
    if (wk_server_listen(&w, o.listen) < 0)
        goto out;
    sigterm = evsignal_new(w.base, SIGTERM, signal_cb, &w);
    sigint = evsignal_new(w.base, SIGINT, signal_cb, &w);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    log_notice("serving %s (%s, %d layers) as \"%s\" on %s: max_model_len %d, %d KV blocks of %d "
               "tokens, max_num_seqs %d, device %s, %d thread(s)", o.model, mc->arch_name,
               mc->n_layers, w.served[0], o.listen, max_len, n_blocks, o.block_size,
               o.max_num_seqs, o.device, o.threads);
    event_base_dispatch(w.base);
    log_notice("stopped");
    rc = 0;
out:
    if (w.base)
        wk_server_free(&w);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (w.eng)
        engine_stop(w.eng);
    if (w.encq)
        encode_stop(w.encq);
    if (w.asrq)
        asr_stop(w.asrq);
    if (w.base) {
        wk_server_notify_free(&w);
        event_base_free(w.base);
    }
    if (w.model)
        model_free(w.model);
    if (w.encoder)
        encoder_free(w.encoder);
    if (w.sv)
        sensevoice_free(w.sv);
    if (w.frontend)
        fbank_frontend_free(w.frontend);
    if (w.spm)
        spm_model_free(w.spm);
    if (w.be)
        kn_backend_free(w.be);
    if (w.tmpl)
        chat_template_free(w.tmpl);
    if (w.tok)
        tokenizer_free(w.tok);
    for (int i = 0; i < w.n_served; i++)
        free(w.served[i]);
    free(w.served);
    free(w.model_dir);
    free(o.served);
    free(eos);
    return rc;
}
