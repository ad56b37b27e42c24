/*
 * sensevoice.h -- a loaded FunAudioLLM SenseVoiceSmall speech model (FunASR's
 * SenseVoiceSmall: SAN-M encoder with FSMN memory, tp_encoders, CTC head)
 * and its forward pass over a batch of clips: features in, CTC log-probs
 * out, plus greedy CTC decoding. Built from kernels/ ops; it never decodes
 * audio, computes features (worker/audio/) or turns ids into text.
 * Owned by worker/models/ (sensevoice*.c).
 */
#ifndef LLMUX_SENSEVOICE_H
#define LLMUX_SENSEVOICE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* The language prompt, as FunASR's lid_dict keys. */
enum sv_language {
    SV_LANG_AUTO, SV_LANG_ZH, SV_LANG_EN, SV_LANG_YUE, SV_LANG_JA, SV_LANG_KO,
    SV_LANG_NOSPEECH,
    SV_LANG_COUNT
};

/* "auto", "zh", "en", "yue", "ja", "ko", "nospeech" -> the enum; -1 for any
 * other name (NULL or "" is SV_LANG_AUTO). */
int sv_language_parse(const char *name);
/* The FunASR name of <lang> ("auto", ...); "?" when out of range. Static. */
const char *sv_language_name(enum sv_language lang);

/* Number of prompt frames FunASR prepends to every clip: language,
 * event, emotion, text normalization (in that order). */
#define SV_N_PROMPT 4

struct sensevoice_info {
    char arch_name[64];         /* "SenseVoiceSmall" (config.yaml model) */
    int input_dim;              /* feature width: embed.weight columns (560) */
    int vocab_size;             /* ctc.ctc_lo rows (25055) */
    int hidden_size;            /* encoder_conf.output_size (512) */
    int n_heads, linear_units;  /* 4, 2048 */
    int n_blocks, tp_blocks;    /* 50 (encoders0 + encoders), 20 */
    int kernel_size, sanm_shift;/* FSMN: 11, 0 */
    int blank_id;               /* CTC blank (0) */
    /* Rows of the prompt embedding (FunASR's SenseVoiceSmall.embed):
     * lid_dict, event/emotion queries [1, 2], textnorm_dict. */
    int lid_query[SV_LANG_COUNT];   /* auto 0, zh 3, en 4, yue 7, ja 11, ko 12, nospeech 13 */
    int event_query, emotion_query; /* 1, 2 */
    int itn_query, no_itn_query;    /* withitn 14, woitn 15 */
    int n_queries;                  /* embed.weight rows (16) */
};

struct sensevoice;

/* Load the model folder <dir> (config.yaml: encoder SenseVoiceEncoderSmall
 * and its encoder_conf, model SenseVoiceSmall; weights from model.pt, the
 * torch.save zip state dict FunASR publishes, or model.safetensors with the
 * same names) onto <be>. Sizes not in config.yaml (input_dim, vocab) come
 * from the tensor shapes. NULL with a message in <err> naming what is wrong
 * (missing file, unsupported encoder or layer type, missing tensor, shape or
 * dtype). Free with sensevoice_free(). */
struct sensevoice *sensevoice_load(const char *dir, struct kn_backend *be, char *err,
                                   size_t errlen);
void sensevoice_free(struct sensevoice *m);
/* Only <dir>/config.yaml, checked as sensevoice_load checks it, into <info>
 * (input_dim, vocab_size and n_queries come from the weights: left 0). 0, or
 * -1 with a message in <err>. */
int sensevoice_read_config(const char *dir, struct sensevoice_info *info, char *err,
                           size_t errlen);
/* Borrowed; valid until sensevoice_free(). */
const struct sensevoice_info *sensevoice_get_info(const struct sensevoice *m);

/* One clip of a batch. The caller owns every buffer; NULL outputs are not
 * computed. Output row r is encoder frame r: rows 0..3 are the prompt
 * frames (language, event, emotion, textnorm), row 4 + t is feature row t,
 * i.e. the audio from t * lfr_n * frame_shift ms (60 ms per frame with
 * SenseVoice's frontend; FunASR's timestamps put a token of frames
 * [s, e) after the prompt at max(s*60-30, 0) .. e*60-30 ms). */
struct sensevoice_clip {
    const float *feats;         /* (n_frames, input_dim) f32, host (fbank+LFR+CMVN) */
    int n_frames;               /* >= 0 (0: only the prompt is run) */
    enum sv_language language;
    int use_itn;                /* 1: withitn prompt, 0: woitn */
    float *logprobs;            /* out (n_frames + 4, vocab) CTC log_softmax, or NULL */
    int32_t *argmax;            /* out (n_frames + 4) argmax id per frame (lowest id on
                                   ties, as torch), or NULL */
    float *hidden;              /* out (n_frames + 4, hidden_size) encoder output
                                   (after tp_norm), or NULL */
};

/* Run <n_clips> clips through one packed encoder pass (each clip attends
 * only to itself, as FunASR's masks), as FunASR's SenseVoiceSmall.inference
 * does it in float32. 0, or -1 (logged) on bad arguments or a backend
 * failure. Not reentrant on one <m> (scratch lives in it). */
int sensevoice_forward(struct sensevoice *m, struct sensevoice_clip *clips, int n_clips);

/* Greedy CTC over per-frame argmax ids (as FunASR: unique_consecutive, then
 * drop <blank_id>): writes the kept ids to <ids> and the frame index of the
 * first frame of each kept run to <frames> (may be NULL); both hold at least
 * <n> entries. Returns the number kept. */
int sensevoice_ctc_collapse(const int32_t *argmax, int n, int blank_id, int32_t *ids,
                            int32_t *frames);
/* The same from log-probs (n, vocab): argmax per row (lowest id on ties),
 * then sensevoice_ctc_collapse. */
int sensevoice_ctc_greedy(const float *logprobs, int n, int vocab, int blank_id,
                          int32_t *ids, int32_t *frames);

#endif
