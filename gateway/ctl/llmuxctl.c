/*
 * llmuxctl.c -- the admin CLI: sends commands to a running llmux over its
 * admin socket and prints the replies. One connection per command line: it
 * sends the line, shuts its side down and reads until the gateway closes, so
 * it needs no knowledge of how many replies a line produces. Knows nothing of
 * the commands themselves (the gateway's `help` lists them); it only quotes
 * arguments and reads "error:" replies for its exit status.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

#define DEFAULT_SOCKET "/run/llmux/admin.sock"
#define EXIT_OK      0
#define EXIT_ERROR   1      /* the gateway answered with an error */
#define EXIT_UNREACH 2      /* no answer: the socket cannot be reached */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: llmuxctl [-hvj] [-s socket] [-t seconds] [command [args...]]\n"
            "  -s socket   admin socket (default $LLMUX_ADMIN_SOCKET or " DEFAULT_SOCKET ")\n"
            "  -j          ask for the reply as JSON (the \"json\" prefix)\n"
            "  -t seconds  give up waiting for a reply after this long (default 60)\n"
            "  -v          print the version and exit\n"
            "  -h          this help\n"
            "Without a command, reads commands from standard input, one per line\n"
            "(\"llmux> \" prompt on a terminal). \"llmuxctl help\" lists the commands.\n");
}

/* Append <word> to <out> (length *<n>, capacity *<cap>), quoted when it holds
 * blanks, quotes, backslashes or ';' (the protocol's specials). */
static void append_word(char **out, size_t *n, size_t *cap, const char *word)
{
    size_t len = strlen(word);
    int quote = len == 0 || strpbrk(word, " \t;\"'\\") != NULL;
    xgrow((void **)out, cap, *n + 2 * len + 4, 1);
    if (*n > 0)
        (*out)[(*n)++] = ' ';
    if (quote)
        (*out)[(*n)++] = '"';
    for (const char *p = word; *p; p++) {
        if (quote && (*p == '"' || *p == '\\'))
            (*out)[(*n)++] = '\\';
        (*out)[(*n)++] = *p;
    }
    if (quote)
        (*out)[(*n)++] = '"';
    (*out)[*n] = '\0';
}

static int connect_socket(const char *path)
{
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "llmuxctl: socket path %s is too long\n", path);
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        fprintf(stderr, "llmuxctl: socket: %s\n", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
        int e = errno;
        fprintf(stderr, "llmuxctl: cannot connect to %s: %s (is llmux running with "
                "\"admin_socket %s;\"? -s or LLMUX_ADMIN_SOCKET choose another)\n",
                path, strerror(e), path);
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when one of the replies in <buf> (replies end with an empty line) is an
 * error: text "error: ..." or a JSON object with an "error" member. */
static int reply_is_error(const char *buf)
{
    const char *p = buf;
    while (*p) {
        while (*p == '\n')
            p++;
        if (strncmp(p, "error:", 6) == 0 || strncmp(p, "{\"error\":", 9) == 0 ||
            strncmp(p, "{\n  \"error\":", 12) == 0)
            return 1;
        const char *end = strstr(p, "\n\n");
        if (end == NULL)
            break;
        p = end + 2;
    }
    return 0;
}

/* Send <line>, read every reply until the gateway closes, print them (the
 * last empty line dropped unless <keep_last>). Returns an exit status. */
static int exchange(const char *path, const char *line, int timeout_s, int keep_last)
{
    int fd = connect_socket(path);
    if (fd == -1)
        return EXIT_UNREACH;
    size_t len = strlen(line), off = 0;
    int rc = EXIT_OK;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    while (off < len) {
        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1)
            break;          /* refused peers are closed on: read what it said */
        off += (size_t)w;
    }
    if (off == len)
        (void)!send(fd, "\n", 1, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int pr = poll(&pfd, 1, timeout_s * 1000);
        if (pr == -1 && errno == EINTR)
            continue;
        if (pr == 0) {
            fprintf(stderr, "llmuxctl: no reply from %s within %ds\n", path, timeout_s);
            rc = EXIT_UNREACH;
            break;
        }
        xgrow((void **)&buf, &cap, n + 65536 + 1, 1);
        ssize_t r = recv(fd, buf + n, 65536, 0);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            if (errno != ECONNRESET || n == 0) {
                fprintf(stderr, "llmuxctl: reading from %s: %s\n", path, strerror(errno));
                rc = EXIT_UNREACH;
            }
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (buf == NULL)
        return rc;
    buf[n] = '\0';
    if (rc == EXIT_OK && reply_is_error(buf))
        rc = EXIT_ERROR;
    size_t shown = n;
    if (!keep_last && shown >= 2 && buf[shown - 1] == '\n' && buf[shown - 2] == '\n')
        shown--;
    fwrite(buf, 1, shown, stdout);
    fflush(stdout);
    free(buf);
    return rc;
}

/* Interactive: each line of standard input is sent as is; "quit" or "exit"
 * (or end of input) ends. Returns 0, 1 when some reply was an error, 2 when
 * the socket could not be reached. */
static int interactive(const char *path, int json, int timeout_s)
{
    int tty = isatty(0) && isatty(1);
    int worst = EXIT_OK;
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) {
            fputs("llmux> ", stdout);
            fflush(stdout);
        }
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            continue;
        if (strcmp(p, "quit") == 0 || strcmp(p, "exit") == 0)
            break;
        char *send_line = json ? xasprintf("json %s", p) : xstrdup(p);
        /* Replies keep their empty line: the output reads as the protocol does. */
        int rc = exchange(path, send_line, timeout_s, 1);
        free(send_line);
        if (rc > worst)
            worst = rc;
    }
    if (tty && feof(stdin))
        fputs("\n", stdout);
    free(line);
    return worst;
}

int main(int argc, char **argv)
{
    const char *path = getenv("LLMUX_ADMIN_SOCKET");
    int json = 0, timeout_s = 60, opt;
    if (path == NULL || path[0] == '\0')
        path = DEFAULT_SOCKET;
    signal(SIGPIPE, SIG_IGN);
    /* '+': options end at the command, whose arguments may start with '-'. */
    while ((opt = getopt(argc, argv, "+hvjs:t:")) != -1) {
        switch (opt) {
        case 's': path = optarg; break;
        case 'j': json = 1; break;
        case 't':
            timeout_s = atoi(optarg);
            if (timeout_s <= 0) {
                fprintf(stderr, "llmuxctl: bad timeout \"%s\"\n", optarg);
                return EXIT_UNREACH;
            }
            break;
        case 'v': printf("llmuxctl %s\n", PACKAGE_VERSION); return EXIT_OK;
        case 'h': usage(stdout); return EXIT_OK;
        default:  usage(stderr); return EXIT_UNREACH;
        }
    }
    if (optind == argc)
        return interactive(path, json, timeout_s);
    char *line = NULL;
    size_t n = 0, cap = 0;
    if (json)
        append_word(&line, &n, &cap, "json");
    for (int i = optind; i < argc; i++)
        append_word(&line, &n, &cap, argv[i]);
    int rc = exchange(path, line, timeout_s, 0);
    free(line);
    return rc;
}
