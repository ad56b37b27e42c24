/*
 * tokenizer.h -- the worker's tokenizer interface: byte-level BPE (Qwen2/
 * Qwen2.5/Qwen3) or SentencePiece Unigram (XLM-R: precompiled charsmap,
 * Metaspace) loaded from a Hugging Face tokenizer.json, encode (one text or a
 * pair) with added and special tokens matched first, decode, and incremental
 * detokenization for streams. Immutable after load (a bounded word cache inside has its own
 * lock, taken with trylock): safe to share between threads.
 * Owned by worker/tokenizer/; it knows nothing of HTTP or the engine.
 */
#ifndef LLMUX_TOKENIZER_H
#define LLMUX_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct tokenizer;

/* Load <path>: a tokenizer.json, or a model folder holding one (its
 * tokenizer_config.json is read too, for bos/eos/pad token names and
 * add_bos_token). NULL on failure with a message in <err>. */
struct tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
void tokenizer_free(struct tokenizer *tok);

/* Number of ids (base vocabulary plus added tokens; ids are 0..n-1, gaps
 * allowed). */
int tokenizer_vocab_size(const struct tokenizer *tok);
/* The id of token string <s> (vocabulary or added token), or -1. */
int32_t tokenizer_token_to_id(const struct tokenizer *tok, const char *s);
/* The token's string as tokenizer.json spells it (byte-level form, e.g.
 * "Ġhello"; Unigram: "▁hello"), or NULL for an unknown id. Borrowed, lives with <tok>. */
const char *tokenizer_id_to_token(const struct tokenizer *tok, int32_t id);
/* The raw bytes the token decodes to (byte-level mapping undone, or for
 * Unigram the Metaspace "▁" turned into a space; an added token's content). 0, or -1 for an unknown id. Borrowed. */
int tokenizer_token_bytes(const struct tokenizer *tok, int32_t id, const char **bytes,
                          size_t *len);
/* 1 when <id> is a special added token (special: true in tokenizer.json). */
int tokenizer_is_special(const struct tokenizer *tok, int32_t id);
/* bos/eos/pad ids from tokenizer_config.json, -1 when none. */
int32_t tokenizer_bos_id(const struct tokenizer *tok);
int32_t tokenizer_eos_id(const struct tokenizer *tok);
int32_t tokenizer_pad_id(const struct tokenizer *tok);
/* bos/eos token strings ("" when none); borrowed. For chat templates. */
const char *tokenizer_bos_token(const struct tokenizer *tok);
const char *tokenizer_eos_token(const struct tokenizer *tok);
/* add_bos_token of tokenizer_config.json (0 when absent). Informational:
 * tokenizer_encode() adds what the tokenizer.json post-processor says. */
int tokenizer_add_bos_token(const struct tokenizer *tok);

/* Encode <len> bytes of UTF-8 <text> as Hugging Face tokenizers does
 * (tokenizer.encode(text, add_special_tokens=...)). *ids is malloc'd, the
 * caller frees it. Returns 0, or -1 (message in err) for invalid UTF-8. */
int tokenizer_encode(const struct tokenizer *tok, const char *text, size_t len,
                     int add_special_tokens, int32_t **ids, size_t *n_ids,
                     char *err, size_t errlen);
/* Encode a pair as tokenizer.encode(a, b, add_special_tokens=...): each text
 * on its own, then the post-processor's pair template (XLM-R: <s> A </s></s>
 * B </s>; none: A B). -1 (message in err) for invalid UTF-8, or when
 * add_special_tokens is set and the post-processor's pair form is not one we
 * implement. *ids is malloc'd, the caller frees it. */
int tokenizer_encode_pair(const struct tokenizer *tok, const char *a, size_t alen,
                          const char *b, size_t blen, int add_special_tokens, int32_t **ids,
                          size_t *n_ids, char *err, size_t errlen);

/* The model of a loaded tokenizer. */
#define TOKENIZER_BPE 0
#define TOKENIZER_UNIGRAM 1
int tokenizer_model_type(const struct tokenizer *tok);

/* Decode as tokenizer.decode(ids, skip_special_tokens=...): invalid UTF-8
 * becomes U+FFFD. *out is malloc'd and NUL-terminated; the caller frees it.
 * Returns 0, or -1 for an id outside the vocabulary (message in err; HF
 * would silently drop it). */
int tokenizer_decode(const struct tokenizer *tok, const int32_t *ids, size_t n_ids,
                     int skip_special_tokens, char **out, size_t *out_len,
                     char *err, size_t errlen);

/*
 * Incremental detokenization of one stream of ids: each push returns the new
 * text that is complete (never half a UTF-8 character); finish flushes what
 * is left (an incomplete tail becomes U+FFFD). The concatenation of all
 * pushes and the finish equals tokenizer_decode() of all ids.
 */
struct detok {
    const struct tokenizer *tok;
    int skip_special;
    char pending[8];            /* bytes of an unfinished UTF-8 character */
    size_t n_pending;
    size_t n_tokens;            /* tokens shown so far (a Metaspace decoder treats
                                 * the first one apart) */
};
void detok_init(struct detok *d, const struct tokenizer *tok, int skip_special_tokens);
/* Append the text of <id> to <out> (grown with xgrow/realloc; *out_len and
 * *out_cap updated, NUL-terminated). Returns bytes appended, -1 for a bad id. */
long detok_push(struct detok *d, int32_t id, char **out, size_t *out_len, size_t *out_cap);
long detok_finish(struct detok *d, char **out, size_t *out_len, size_t *out_cap);

#endif
