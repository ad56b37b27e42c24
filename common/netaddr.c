/*
 * netaddr.c -- listen address parsing and binding (see netaddr.h). No
 * name resolution beyond "localhost": a listen address is an address.
 */
#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse_tcp(const char *s, int allow_port0, struct net_addr *a)
{
    char host[256];
    const char *port;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        port = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            strcpy(host, "*");
            port = s;
        } else {
            if ((size_t)(colon - s) >= sizeof(host))
                return -1;
            memcpy(host, s, (size_t)(colon - s));
            host[colon - s] = '\0';
            port = colon + 1;
        }
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || errno != 0 || p < (allow_port0 ? 0 : 1) || p > 65535)
        return -1;
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
    if (strcmp(host, "*") == 0 || host[0] == '\0') {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)p);
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        a->len = sizeof(*sin);
        return 0;
    }
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)p);
        a->len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)p);
        a->len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

int net_addr_parse(const char *s, int allow_port0, struct net_addr *a, char *err,
                   size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&a->ss;
        const char *path = s + 5;
        if (path[0] == '\0' || strlen(path) >= sizeof(sun->sun_path)) {
            snprintf(err, errlen, "%s: empty or too long unix socket path", s);
            return -1;
        }
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, path);
        a->len = sizeof(*sun);
        a->unix_path = sun->sun_path;
        return 0;
    }
    if (parse_tcp(s, allow_port0, a) < 0) {
        snprintf(err, errlen, "%s: invalid address (unix:PATH, HOST:PORT, [V6]:PORT or PORT)", s);
        return -1;
    }
    return 0;
}

struct evconnlistener *net_listen(struct event_base *base, const struct net_addr *a,
                                  evconnlistener_cb cb, void *arg)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    struct stat st;
    if (a->unix_path != NULL && stat(a->unix_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(a->unix_path);           /* stale socket of a previous run */
    return evconnlistener_new_bind(base, cb, arg, flags, 511, (const struct sockaddr *)&a->ss,
                                   (int)a->len);
}

void net_listener_name(struct evconnlistener *l, const struct net_addr *a, char *buf,
                       size_t buflen)
{
    if (a->unix_path != NULL) {
        snprintf(buf, buflen, "unix:%s", a->unix_path);
        return;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    char ip[INET6_ADDRSTRLEN + 2] = "?";
    int port = 0;
    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&got, &gl) == 0) {
        if (got.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&got;
            inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
            port = ntohs(sin->sin_port);
        } else if (got.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&got;
            inet_ntop(AF_INET6, &sin6->sin6_addr, ip + 1, INET6_ADDRSTRLEN);
            ip[0] = '[';
            strcat(ip, "]");
            port = ntohs(sin6->sin6_port);
        }
    }
    snprintf(buf, buflen, "%s:%d", ip, port);
}
