/*
 * torch_zip.h -- read-only access to the tensors of a PyTorch zip checkpoint
 * holding a plain state dict (torch.save of an OrderedDict of tensors:
 * pytorch_model.bin, bge-m3's sparse_linear.pt and colbert_linear.pt). The
 * zip's stored entries are mmap'd; data.pkl is run through a small pickle
 * machine that knows only what torch.save emits for such a dict. Every
 * offset and size is checked: a bad file is an error, never a crash.
 * Nothing here converts or copies tensor data.
 */
#ifndef LLMUX_TORCH_ZIP_H
#define LLMUX_TORCH_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

struct tz_tensor {
    char *name;                 /* state dict key: "weight" */
    char dtype_name[24];        /* storage class: "FloatStorage" */
    enum kn_dtype dtype;        /* KN_DTYPE_COUNT unless Float/Half/BFloat16 */
    int ndim;                   /* 0 for a scalar */
    int64_t shape[KN_MAX_DIMS];
    const void *data;           /* inside the file (NULL for an unknown dtype) */
    size_t nbytes;
};

struct tz_file {
    void *map;                  /* mmap of the file (NULL for tz_open_mem) */
    size_t map_size;
    struct tz_tensor *tensors;  /* sorted by name */
    int n_tensors;
};

/* Open the checkpoint <path> into <f> (zeroed by the call). 0, or -1 with
 * a message naming the file and the problem in <err>; tz_close is then
 * still safe. */
int tz_open(struct tz_file *f, const char *path, char *err, size_t errlen);
/* The same over <len> bytes at <buf>, borrowed (must outlive <f>). */
int tz_open_mem(struct tz_file *f, const void *buf, size_t len, char *err, size_t errlen);
/* The tensor called <name>, or NULL. Borrowed; valid until tz_close(). */
const struct tz_tensor *tz_find(const struct tz_file *f, const char *name);
void tz_close(struct tz_file *f);

#endif
