/*
 * log.h -- the error log shared by llmux programs. Lines read
 * "PID ROLE YYYY/MM/DD HH:MM:SS LEVEL msg". The level is checked before any
 * formatting, so a disabled debug line costs one compare. One log per process;
 * log_reopen() (SIGUSR1) reopens the file for logrotate.
 */
#ifndef LLMUX_LOG_H
#define LLMUX_LOG_H

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_NOTICE = 2, LOG_INFO = 3, LOG_DEBUG = 4 };

extern int log_current_level;

/* <role> is a short word ("gateway", "worker"); borrowed, must outlive the log. */
void log_init(const char *role);
/* Send lines to <path> ("stderr" or NULL: standard error). 0, or -1 with errno. */
int log_open(const char *path);
/* Reopen the current file (after rotation). 0 or -1. */
int log_reopen(void);
void log_set_level(int level);
/* "error"/"warn"/"notice"/"info"/"debug" (nginx names "crit"/"alert"/"emerg"
 * map to error) -> level, or -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(int level);
/* File descriptor of the log (for redirecting stderr of a daemon), or -1. */
int log_fd(void);

void log_write(int level, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_at(lvl, ...) \
    do { if ((lvl) <= log_current_level) log_write((lvl), __func__, __VA_ARGS__); } while (0)
#define log_error(...)  log_at(LOG_ERR, __VA_ARGS__)
#define log_warn(...)   log_at(LOG_WARN, __VA_ARGS__)
#define log_notice(...) log_at(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)   log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...)  log_at(LOG_DEBUG, __VA_ARGS__)

#endif
