/*
 * golden.h -- what the model golden tests share: running tests/tools/mkmodel
 * to rebuild a golden's random-weight model, the sha256 of a file, and
 * loading a golden JSON file from tests/golden/. Test code only.
 */
#ifndef LLMUX_TEST_GOLDEN_H
#define LLMUX_TEST_GOLDEN_H

#include <jansson.h>

/* Run <mkmodel> --out <out> with the strings of JSON array <args> (may be
 * NULL) and then <extra> (NULL-terminated, may be NULL). 0 when it exited 0. */
int golden_mkmodel(const char *mkmodel, const char *out, json_t *args, const char *const *extra);

/* Lower-case hex sha256 of the file at <path> into <hex>. 0 or -1. */
int golden_sha256_file(const char *path, char hex[65]);

/* <srcdir>/tests/golden/<subdir>/<name>.json, or NULL (diag printed). */
json_t *golden_load(const char *srcdir, const char *subdir, const char *name);

#endif
