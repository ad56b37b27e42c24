/*
 * replay.c -- runs every file of the fuzz corpus (tests/fuzz/corpus, or the
 * directories given) through LLVMFuzzerTestOneInput without libFuzzer, so
 * CI (gcc, ASan+UBSan build) checks that no input found so far crashes,
 * leaks or hangs. Prints TAP: one line per directory.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/tap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(sz > 0 ? (size_t)sz : 1);
        size_t got = fread(buf, 1, sz > 0 ? (size_t)sz : 0, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, got);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    char def[4096];
    const char *src = getenv("LLMUX_SRCDIR");
    snprintf(def, sizeof(def), "%s/tests/fuzz/corpus", src ? src : ".");
    if (argc < 2) {
        int n = run_dir(def);
        ok(n > 0, "replayed %d corpus inputs from %s", n, def);
    }
    for (int i = 1; i < argc; i++) {
        int n = run_dir(argv[i]);
        ok(n > 0, "replayed %d inputs from %s", n, argv[i]);
    }
    return tap_done();
}
