/*
 * safetensors.h -- read-only access to the tensors of a Hugging Face model
 * folder: model.safetensors, or the shards named by
 * model.safetensors.index.json. Files are mmap'd; every header is checked
 * against the file size (a truncated or lying file is an error, never a
 * read out of bounds). Nothing here converts or copies tensor data.
 */
#ifndef LLMUX_SAFETENSORS_H
#define LLMUX_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

struct st_tensor {
    char *name;                 /* "model.layers.0.mlp.up_proj.weight" */
    char dtype_name[8];         /* as the header spells it: "BF16" */
    enum kn_dtype dtype;        /* KN_DTYPE_COUNT when not bf16/f16/f32 */
    int ndim;
    int64_t shape[KN_MAX_DIMS];
    const void *data;           /* inside the mapping */
    size_t nbytes;
    int file;                   /* index into st_set.maps */
};

struct st_map {
    char *path;
    void *base;
    size_t size;
};

struct st_set {
    struct st_map *maps;
    int n_maps;
    struct st_tensor *tensors;  /* sorted by name */
    int n_tensors;
};

/* Open the tensors of folder <dir> into <s> (zeroed by the call). 0, or -1
 * with a message naming the file and the problem in <err>; <s> is then
 * empty (st_close is still safe). */
int st_open_dir(struct st_set *s, const char *dir, char *err, size_t errlen);
/* Open one .safetensors file into <s>, adding to what it holds. 0 or -1. */
int st_open_file(struct st_set *s, const char *path, char *err, size_t errlen);
/* Sort the table after st_open_file calls (st_open_dir does it). 0, or -1
 * when a tensor name appears twice. */
int st_finish(struct st_set *s, char *err, size_t errlen);
/* The tensor called <name>, or NULL. Borrowed; valid until st_close(). */
const struct st_tensor *st_find(const struct st_set *s, const char *name);
/* Unmap and free everything; <s> is zeroed. */
void st_close(struct st_set *s);

#endif
