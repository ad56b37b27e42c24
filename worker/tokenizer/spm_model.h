/*
 * spm_model.h -- the pieces of a SentencePiece model file (the .bpe.model
 * protobuf: ModelProto.pieces with their text, score and type), read with a
 * small protobuf walker of our own, and ids -> text as sentencepiece's
 * DecodeIds does it (the speech worker's CTC output). No encoding here.
 */
#ifndef LLMUX_SPM_MODEL_H
#define LLMUX_SPM_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* SentencePiece.Type */
enum spm_type {
    SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER_DEFINED = 4,
    SPM_UNUSED = 5, SPM_BYTE = 6
};

struct spm_model;

/* Parse <len> bytes of a ModelProto. NULL with a message in <err>. */
struct spm_model *spm_model_parse(const void *data, size_t len, char *err, size_t errlen);
/* Read and parse the file <path>. */
struct spm_model *spm_model_load(const char *path, char *err, size_t errlen);
/* A model from a plain list of pieces (FunASR's tokens.json): "<unk>" is
 * UNKNOWN, "<s>" and "</s>" CONTROL, the rest NORMAL (scores 0). */
struct spm_model *spm_model_from_pieces(const char *const *pieces, int n);
/* The same from a tokens.json file (a JSON array of strings). */
struct spm_model *spm_model_load_tokens_json(const char *path, char *err, size_t errlen);
void spm_model_free(struct spm_model *m);

int spm_model_size(const struct spm_model *m);
/* Borrowed piece text of <id> (NUL-terminated), or NULL out of range. */
const char *spm_model_piece(const struct spm_model *m, int id);
int spm_model_type(const struct spm_model *m, int id);
float spm_model_score(const struct spm_model *m, int id);
/* The id of piece <s>, or -1 (linear scan: not for hot paths). */
int spm_model_find(const struct spm_model *m, const char *s);

/* 1 when piece <id> is a SenseVoice rich tag ("<|...|>"). */
int spm_piece_is_tag(const struct spm_model *m, int id);

/* Append the text of <n> ids to a new string as DecodeIds: pieces joined,
 * U+2581 -> ' ', control pieces dropped, unknown as " \u2047 ", byte pieces
 * <0xXX> as their byte, the leading space removed. With <skip_tags> the
 * "<|...|>" pieces are dropped too, and the result is trimmed of spaces at
 * both ends. New string (caller frees). */
char *spm_model_decode(const struct spm_model *m, const int32_t *ids, int n, int skip_tags);

#endif
