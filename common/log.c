/*
 * log.c -- the process's error log. Owns one file descriptor and the current
 * level; writes each line with a single write(2) so that lines from several
 * processes appending to one file do not interleave.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int log_current_level = LOG_NOTICE;

static const char *log_role = "llmux";
static char *log_path;          /* NULL: stderr */
static int log_fd_cur = 2;

static const char *level_names[] = { "error", "warn", "notice", "info", "debug" };

void log_init(const char *role)
{
    log_role = role;
}

int log_open(const char *path)
{
    if (path == NULL || strcmp(path, "stderr") == 0) {
        if (log_fd_cur > 2)
            close(log_fd_cur);
        log_fd_cur = 2;
        free(log_path);
        log_path = NULL;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1)
        return -1;
    if (log_fd_cur > 2)
        close(log_fd_cur);
    log_fd_cur = fd;
    if (log_path != path) {
        char *copy = strdup(path);
        free(log_path);
        log_path = copy;
    }
    return 0;
}

int log_reopen(void)
{
    if (log_path == NULL)
        return 0;
    return log_open(log_path);
}

void log_set_level(int level)
{
    log_current_level = level;
}

int log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    if (strcmp(name, "crit") == 0 || strcmp(name, "alert") == 0 || strcmp(name, "emerg") == 0)
        return LOG_ERR;
    return -1;
}

const char *log_level_name(int level)
{
    if (level < 0 || level > LOG_DEBUG)
        return "?";
    return level_names[level];
}

int log_fd(void)
{
    return log_fd_cur;
}

void log_write(int level, const char *func, const char *fmt, ...)
{
    char line[4096];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    int n = snprintf(line, sizeof(line), "%d %s %04d/%02d/%02d %02d:%02d:%02d %s ",
                     (int)getpid(), log_role, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, log_level_name(level));
    if (level <= LOG_WARN && func != NULL && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%s: ", func);
    if (n < (int)sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n >= (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w;
    do {
        w = write(log_fd_cur, line, (size_t)n);
    } while (w == -1 && errno == EINTR);
}
