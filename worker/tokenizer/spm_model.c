/*
 * spm_model.c -- a minimal protobuf walker for SentencePiece's ModelProto:
 * only field 1 (repeated SentencePiece {1 piece, 2 score, 3 type}) is kept,
 * everything else (trainer/normalizer specs) skipped by wire type. Also
 * DecodeIds-style ids -> text. Reads bytes only; never trusts a length.
 */
#include "spm_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "strbuf.h"
#include "util.h"

struct spm_piece {
    char *text;
    float score;
    int type;
};

struct spm_model {
    struct spm_piece *pieces;
    int n, cap;
};

struct pb {
    const uint8_t *p, *end;
};

static int pb_varint(struct pb *b, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end)
            return -1;
        uint8_t c = *b->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Skip a field of wire type <wt>. */
static int pb_skip(struct pb *b, int wt)
{
    uint64_t v;
    switch (wt) {
    case 0: return pb_varint(b, &v);
    case 1: if (b->end - b->p < 8) return -1; b->p += 8; return 0;
    case 5: if (b->end - b->p < 4) return -1; b->p += 4; return 0;
    case 2:
        if (pb_varint(b, &v) < 0 || v > (uint64_t)(b->end - b->p))
            return -1;
        b->p += v;
        return 0;
    default: return -1;
    }
}

static int parse_piece(struct spm_model *m, const uint8_t *p, size_t len)
{
    struct pb b = { p, p + len };
    struct spm_piece sp = { NULL, 0.0f, SPM_NORMAL };
    while (b.p < b.end) {
        uint64_t key, v;
        if (pb_varint(&b, &key) < 0)
            goto fail;
        int field = (int)(key >> 3), wt = (int)(key & 7);
        if (field == 1 && wt == 2) {
            if (pb_varint(&b, &v) < 0 || v > (uint64_t)(b.end - b.p))
                goto fail;
            free(sp.text);
            sp.text = xstrndup((const char *)b.p, (size_t)v);
            b.p += v;
        } else if (field == 2 && wt == 5) {
            if (b.end - b.p < 4)
                goto fail;
            uint32_t u = (uint32_t)b.p[0] | (uint32_t)b.p[1] << 8 | (uint32_t)b.p[2] << 16 |
                         (uint32_t)b.p[3] << 24;
            memcpy(&sp.score, &u, 4);
            b.p += 4;
        } else if (field == 3 && wt == 0) {
            if (pb_varint(&b, &v) < 0)
                goto fail;
            sp.type = (int)v;
        } else if (pb_skip(&b, wt) < 0) {
            goto fail;
        }
    }
    if (sp.text == NULL)
        sp.text = xstrdup("");
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->pieces = xrealloc(m->pieces, (size_t)m->cap * sizeof(*m->pieces));
    }
    m->pieces[m->n++] = sp;
    return 0;
fail:
    free(sp.text);
    return -1;
}

struct spm_model *spm_model_parse(const void *data, size_t len, char *err, size_t errlen)
{
    struct spm_model *m = xcalloc(1, sizeof(*m));
    struct pb b = { data, (const uint8_t *)data + len };
    while (b.p < b.end) {
        uint64_t key, v;
        if (pb_varint(&b, &key) < 0)
            goto bad;
        int field = (int)(key >> 3), wt = (int)(key & 7);
        if (field == 1 && wt == 2) {
            if (pb_varint(&b, &v) < 0 || v > (uint64_t)(b.end - b.p))
                goto bad;
            if (parse_piece(m, b.p, (size_t)v) < 0)
                goto bad;
            b.p += v;
        } else if (field == 0 || pb_skip(&b, wt) < 0) {
            goto bad;
        }
    }
    if (m->n == 0) {
        snprintf(err, errlen, "SentencePiece model has no pieces");
        spm_model_free(m);
        return NULL;
    }
    return m;
bad:
    snprintf(err, errlen, "SentencePiece model is not a valid protobuf (at byte %zu of %zu)",
             (size_t)(b.p - (const uint8_t *)data), len);
    spm_model_free(m);
    return NULL;
}

struct spm_model *spm_model_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s", path);
        return NULL;
    }
    struct strbuf b = { 0 };
    char buf[65536];
    size_t r;
    while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
        strbuf_add(&b, buf, r);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "cannot read %s", path);
        strbuf_free(&b);
        return NULL;
    }
    struct spm_model *m = spm_model_parse(b.p ? b.p : "", b.len, err, errlen);
    strbuf_free(&b);
    return m;
}

struct spm_model *spm_model_from_pieces(const char *const *pieces, int n)
{
    struct spm_model *m = xcalloc(1, sizeof(*m));
    m->pieces = xcalloc((size_t)(n > 0 ? n : 1), sizeof(*m->pieces));
    m->n = m->cap = n;
    for (int i = 0; i < n; i++) {
        m->pieces[i].text = xstrdup(pieces[i]);
        m->pieces[i].type = strcmp(pieces[i], "<unk>") == 0 ? SPM_UNKNOWN :
                            (strcmp(pieces[i], "<s>") == 0 || strcmp(pieces[i], "</s>") == 0)
                                ? SPM_CONTROL : SPM_NORMAL;
    }
    return m;
}

struct spm_model *spm_model_load_tokens_json(const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *a = json_load_file(path, 0, &je);
    if (a == NULL || !json_is_array(a) || json_array_size(a) == 0) {
        snprintf(err, errlen, "%s: not a JSON list of pieces%s%s", path, a ? "" : ": ",
                 a ? "" : je.text);
        json_decref(a);
        return NULL;
    }
    int n = (int)json_array_size(a);
    const char **p = xcalloc((size_t)n, sizeof(*p));
    for (int i = 0; i < n; i++) {
        p[i] = json_string_value(json_array_get(a, (size_t)i));
        if (p[i] == NULL) {
            snprintf(err, errlen, "%s: entry %d is not a string", path, i);
            free(p);
            json_decref(a);
            return NULL;
        }
    }
    struct spm_model *m = spm_model_from_pieces(p, n);
    free(p);
    json_decref(a);
    return m;
}

void spm_model_free(struct spm_model *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < m->n; i++)
        free(m->pieces[i].text);
    free(m->pieces);
    free(m);
}

int spm_model_size(const struct spm_model *m) { return m->n; }

const char *spm_model_piece(const struct spm_model *m, int id)
{
    return id >= 0 && id < m->n ? m->pieces[id].text : NULL;
}

int spm_model_type(const struct spm_model *m, int id)
{
    return id >= 0 && id < m->n ? m->pieces[id].type : 0;
}

float spm_model_score(const struct spm_model *m, int id)
{
    return id >= 0 && id < m->n ? m->pieces[id].score : 0.0f;
}

int spm_model_find(const struct spm_model *m, const char *s)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->pieces[i].text, s) == 0)
            return i;
    return -1;
}

int spm_piece_is_tag(const struct spm_model *m, int id)
{
    const char *p = spm_model_piece(m, id);
    if (p == NULL)
        return 0;
    size_t l = strlen(p);
    return l >= 4 && p[0] == '<' && p[1] == '|' && p[l - 2] == '|' && p[l - 1] == '>';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *spm_model_decode(const struct spm_model *m, const int32_t *ids, int n, int skip_tags)
{
    static const char ws[] = "\xe2\x96\x81";        /* U+2581 */
    struct strbuf b = { 0 };
    strbuf_add(&b, "", 0);
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= m->n)
            continue;
        const struct spm_piece *sp = &m->pieces[id];
        if (sp->type == SPM_CONTROL || (skip_tags && spm_piece_is_tag(m, id)))
            continue;
        if (sp->type == SPM_UNKNOWN) {
            strbuf_adds(&b, " \xe2\x81\x87 ");
            continue;
        }
        const char *t = sp->text;
        if (sp->type == SPM_BYTE && strlen(t) == 6 && t[0] == '<' && t[1] == '0' && t[2] == 'x' &&
            hexval(t[3]) >= 0 && hexval(t[4]) >= 0 && t[5] == '>') {
            char c = (char)(hexval(t[3]) * 16 + hexval(t[4]));
            strbuf_add(&b, &c, 1);
            continue;
        }
        while (*t) {
            if (strncmp(t, ws, 3) == 0) {
                strbuf_add(&b, " ", 1);
                t += 3;
            } else {
                strbuf_add(&b, t, 1);
                t++;
            }
        }
    }
    char *s = b.p;
    size_t len = b.len, start = 0;
    if (skip_tags) {
        while (start < len && s[start] == ' ')
            start++;
        while (len > start && s[len - 1] == ' ')
            len--;
    } else if (len > 0 && s[0] == ' ') {
        start = 1;
    }
    memmove(s, s + start, len - start);
    s[len - start] = '\0';
    return s;
}
