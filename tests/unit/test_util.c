/*
 * test_util.c -- common/util.c and common/log.c: string helpers, growth of
 * dynamic arrays, hashing stability, log levels and line format.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"
#include "util.h"

int main(void)
{
    char *s = xasprintf("%s-%d", "a", 7);
    ok(strcmp(s, "a-7") == 0, "xasprintf");
    free(s);
    s = xstrndup("abcdef", 3);
    ok(strcmp(s, "abc") == 0, "xstrndup");
    free(s);
    ok(xstrdup(NULL) == NULL, "xstrdup(NULL) is NULL");
    ok(str_ieq_n("content-type", "Content-Type", 12), "str_ieq_n equal");
    ok(!str_ieq_n("content-typ", "Content-Type", 12), "str_ieq_n shorter");
    ok(str_starts_with("/v1/models/x", "/v1/models/"), "prefix");
    ok(str_ieq_prefix("Qwen3", "qw", 2) && !str_ieq_prefix("q", "qw", 2), "case-blind prefix");

    int *arr = NULL;
    size_t cap = 0;
    xgrow((void **)&arr, &cap, 100, sizeof(int));
    ok(cap >= 100 && arr[99] == 0, "xgrow zero-fills");
    free(arr);

    ok(hash64("abc", 3, 0) == hash64("abc", 3, 0) && hash64("abc", 3, 0) != hash64("abc", 3, 1),
       "hash64 stable and seeded");
    int64_t a = now_us();
    int64_t b = now_us();
    ok(b >= a, "monotonic clock");

    ok(log_level_parse("debug") == LOG_DEBUG && log_level_parse("crit") == LOG_ERR &&
       log_level_parse("nope") == -1, "log level names");
    char path[] = "/tmp/llmux-logtestXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    log_init("test");
    ok(log_open(path) == 0, "log_open");
    log_set_level(LOG_INFO);
    log_info("hello %d", 42);
    log_debug("hidden");
    log_error("bad thing");
    log_open(NULL);
    FILE *f = fopen(path, "r");
    char buf[1024] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    ok(strstr(buf, " test ") && strstr(buf, " info hello 42\n"), "info line written: %s", buf);
    ok(strstr(buf, "hidden") == NULL, "debug filtered by level");
    ok(strstr(buf, " error main: bad thing\n") != NULL, "errors carry the function name");
    return tap_done();
}
