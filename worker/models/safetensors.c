/*
 * safetensors.c -- mmap'd safetensors files and shard indexes. The format:
 * a little-endian u64 header length N, N bytes of JSON naming each tensor's
 * dtype, shape and [begin, end) byte offsets into the data that follows.
 * Every offset, size and shape is checked before a pointer is handed out.
 * Must not copy, convert or write tensor data.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "util.h"

static enum kn_dtype st_dtype(const char *s)
{
    if (strcmp(s, "BF16") == 0)
        return KN_BF16;
    if (strcmp(s, "F16") == 0)
        return KN_F16;
    if (strcmp(s, "F32") == 0)
        return KN_F32;
    return KN_DTYPE_COUNT;
}

/* Element size of any safetensors dtype (for bounds checks of tensors we
 * never use), 0 when unknown. */
static size_t st_dtype_size(const char *s)
{
    static const struct { const char *name; size_t size; } tab[] = {
        { "BOOL", 1 }, { "U8", 1 }, { "I8", 1 }, { "F8_E4M3", 1 }, { "F8_E5M2", 1 },
        { "I16", 2 }, { "U16", 2 }, { "F16", 2 }, { "BF16", 2 }, { "I32", 4 },
        { "U32", 4 }, { "F32", 4 }, { "I64", 8 }, { "U64", 8 }, { "F64", 8 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(tab); i++)
        if (strcmp(s, tab[i].name) == 0)
            return tab[i].size;
    return 0;
}

static int map_file(struct st_map *m, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    m->path = xstrdup(path);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    m->size = (size_t)st.st_size;
    if (m->size < 8) {
        snprintf(err, errlen, "%s: truncated (%zu bytes)", path, m->size);
        close(fd);
        return -1;
    }
    m->base = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->base == MAP_FAILED) {
        m->base = NULL;
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Parse one header entry <v> named <name> of file <fi> into a new table row. */
static int add_entry(struct st_set *s, size_t *cap, int fi, const char *name, json_t *v,
                     const uint8_t *data, size_t data_size, char *err, size_t errlen)
{
    const char *path = s->maps[fi].path;
    json_t *jdt = json_object_get(v, "dtype"), *jshape = json_object_get(v, "shape");
    json_t *joff = json_object_get(v, "data_offsets");
    if (!json_is_string(jdt) || !json_is_array(jshape) || !json_is_array(joff) ||
        json_array_size(joff) != 2 || !json_is_integer(json_array_get(joff, 0)) ||
        !json_is_integer(json_array_get(joff, 1))) {
        snprintf(err, errlen, "%s: tensor %s: malformed header entry", path, name);
        return -1;
    }
    const char *dts = json_string_value(jdt);
    size_t esize = st_dtype_size(dts);
    if (esize == 0) {
        snprintf(err, errlen, "%s: tensor %s: unknown dtype %s", path, name, dts);
        return -1;
    }
    size_t ndim = json_array_size(jshape);
    if (ndim > KN_MAX_DIMS) {
        snprintf(err, errlen, "%s: tensor %s: %zu dimensions (at most %d)", path, name, ndim,
                 KN_MAX_DIMS);
        return -1;
    }
    struct st_tensor t = { 0 };
    uint64_t nelem = 1;
    for (size_t d = 0; d < ndim; d++) {
        json_t *e = json_array_get(jshape, d);
        json_int_t n = json_is_integer(e) ? json_integer_value(e) : -1;
        if (n < 0 || n > ((json_int_t)1 << 40) || (n && nelem > ((uint64_t)1 << 62) / (uint64_t)n)) {
            snprintf(err, errlen, "%s: tensor %s: bad shape", path, name);
            return -1;
        }
        t.shape[d] = n;
        nelem *= (uint64_t)n;
    }
    json_int_t b = json_integer_value(json_array_get(joff, 0));
    json_int_t e = json_integer_value(json_array_get(joff, 1));
    if (b < 0 || e < b || (uint64_t)e > data_size) {
        snprintf(err, errlen, "%s: tensor %s: data offsets [%lld, %lld) outside the %zu data bytes "
                 "(truncated file?)", path, name, (long long)b, (long long)e, data_size);
        return -1;
    }
    if ((uint64_t)(e - b) != nelem * esize) {
        snprintf(err, errlen, "%s: tensor %s: %lld bytes for %llu elements of %s", path, name,
                 (long long)(e - b), (unsigned long long)nelem, dts);
        return -1;
    }
    t.name = xstrdup(name);
    snprintf(t.dtype_name, sizeof(t.dtype_name), "%s", dts);
    t.dtype = st_dtype(dts);
    t.ndim = (int)ndim;
    t.data = data + b;
    t.nbytes = (size_t)(e - b);
    t.file = fi;
    if ((size_t)s->n_tensors + 1 > *cap)
        xgrow((void **)&s->tensors, cap, (size_t)s->n_tensors + 1, sizeof(*s->tensors));
    s->tensors[s->n_tensors++] = t;
    return 0;
}

int st_open_file(struct st_set *s, const char *path, char *err, size_t errlen)
{
    json_t *root = NULL;
    json_error_t jerr;
    size_t cap = (size_t)s->n_tensors;
    s->maps = xrealloc(s->maps, (size_t)(s->n_maps + 1) * sizeof(*s->maps));
    int fi = s->n_maps++;
    struct st_map *m = &s->maps[fi];
    memset(m, 0, sizeof(*m));
    if (map_file(m, path, err, errlen) < 0)
        goto fail;
    const uint8_t *p = m->base;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > m->size - 8) {
        snprintf(err, errlen, "%s: header of %llu bytes in a file of %zu (truncated?)", path,
                 (unsigned long long)hlen, m->size);
        goto fail;
    }
    root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: bad header JSON: %s", path, root ? "not an object" : jerr.text);
        goto fail;
    }
    const uint8_t *data = p + 8 + hlen;
    size_t data_size = m->size - 8 - (size_t)hlen;
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (strcmp(name, "__metadata__") == 0)
            continue;
        if (!json_is_object(v)) {
            snprintf(err, errlen, "%s: tensor %s: malformed header entry", path, name);
            goto fail;
        }
        if (add_entry(s, &cap, fi, name, v, data, data_size, err, errlen) < 0)
            goto fail;
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    return -1;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

int st_finish(struct st_set *s, char *err, size_t errlen)
{
    if (s->n_tensors > 1)
        qsort(s->tensors, (size_t)s->n_tensors, sizeof(*s->tensors), cmp_tensor);
    for (int i = 1; i < s->n_tensors; i++)
        if (strcmp(s->tensors[i - 1].name, s->tensors[i].name) == 0) {
            snprintf(err, errlen, "tensor %s appears twice (%s, %s)", s->tensors[i].name,
                     s->maps[s->tensors[i - 1].file].path, s->maps[s->tensors[i].file].path);
            return -1;
        }
    return 0;
}

/* The shard files named by <index_path>'s weight_map, each opened once. */
static int open_index(struct st_set *s, const char *dir, const char *index_path, char *err,
                      size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(index_path, 0, &jerr), *wm;
    char **done = NULL;
    int n_done = 0, rc = -1;
    if (!root) {
        snprintf(err, errlen, "%s: %s (line %d)", index_path, jerr.text, jerr.line);
        return -1;
    }
    wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        snprintf(err, errlen, "%s: no weight_map object", index_path);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        const char *f = json_string_value(v);
        if (!f || strchr(f, '/') || f[0] == '.' || !*f) {
            snprintf(err, errlen, "%s: tensor %s: bad shard file name", index_path, key);
            goto out;
        }
        int seen = 0;
        for (int i = 0; i < n_done && !seen; i++)
            seen = strcmp(done[i], f) == 0;
        if (seen)
            continue;
        done = xrealloc(done, (size_t)(n_done + 1) * sizeof(*done));
        done[n_done++] = xstrdup(f);
        char *path = xasprintf("%s/%s", dir, f);
        int r = st_open_file(s, path, err, errlen);
        free(path);
        if (r < 0)
            goto out;
    }
    /* every tensor the index names must be in a shard */
    if (st_finish(s, err, errlen) < 0)
        goto out;
    json_object_foreach(wm, key, v) {
        if (!st_find(s, key)) {
            snprintf(err, errlen, "%s: tensor %s is not in %s", index_path, key,
                     json_string_value(v));
            goto out;
        }
    }
    rc = 0;
out:
    for (int i = 0; i < n_done; i++)
        free(done[i]);
    free(done);
    json_decref(root);
    return rc;
}

int st_open_dir(struct st_set *s, const char *dir, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    char *index = xasprintf("%s/model.safetensors.index.json", dir);
    char *single = xasprintf("%s/model.safetensors", dir);
    int rc;
    if (access(index, R_OK) == 0)
        rc = open_index(s, dir, index, err, errlen);
    else if (access(single, F_OK) == 0)
        rc = st_open_file(s, single, err, errlen) < 0 ? -1 : st_finish(s, err, errlen);
    else {
        snprintf(err, errlen, "%s: no model.safetensors or model.safetensors.index.json", dir);
        rc = -1;
    }
    free(index);
    free(single);
    if (rc < 0)
        st_close(s);
    return rc;
}

const struct st_tensor *st_find(const struct st_set *s, const char *name)
{
    int lo = 0, hi = s->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, s->tensors[mid].name);
        if (c == 0)
            return &s->tensors[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

void st_close(struct st_set *s)
{
    for (int i = 0; i < s->n_tensors; i++)
        free(s->tensors[i].name);
    free(s->tensors);
    for (int i = 0; i < s->n_maps; i++) {
        if (s->maps[i].base)
            munmap(s->maps[i].base, s->maps[i].size);
        free(s->maps[i].path);
    }
    free(s->maps);
    memset(s, 0, sizeof(*s));
}
