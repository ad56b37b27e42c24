/*
 * golden.c -- shared helpers of the model golden tests (see golden.h).
 */
#include "golden.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

int golden_mkmodel(const char *mkmodel, const char *out, json_t *args, const char *const *extra)
{
    const char *argv[128];
    int n = 0;
    argv[n++] = mkmodel;
    argv[n++] = "--out";
    argv[n++] = out;
    for (size_t i = 0; args && i < json_array_size(args) && n < 96; i++)
        argv[n++] = json_string_value(json_array_get(args, i));
    for (int i = 0; extra && extra[i] && n < 126; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        execv(mkmodel, (char *const *)argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int golden_sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], md[32];
    unsigned int mdlen = 0;
    size_t n;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        EVP_DigestUpdate(ctx, buf, n);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

json_t *golden_load(const char *srcdir, const char *subdir, const char *name)
{
    char *path = xasprintf("%s/tests/golden/%s/%s.json", srcdir, subdir, name);
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    if (!g)
        printf("# %s: %s\n", path, je.text);
    free(path);
    return g;
}
