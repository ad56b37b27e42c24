/*
 * netaddr.h -- listen addresses as the conf files and flags spell them
 * ("unix:PATH", "HOST:PORT", "[V6]:PORT", "*:PORT", "PORT") and libevent
 * listeners bound on them. Shared by the gateway, its admin socket and the
 * worker; it knows nothing of HTTP.
 */
#ifndef LLMUX_NETADDR_H
#define LLMUX_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/listener.h>

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    const char *unix_path;      /* points into ss for unix:PATH, else NULL */
};

/* Parse <s> into <a>. Port 0 (the kernel picks) only when <allow_port0>.
 * 0, or -1 with a message in <err>. */
int net_addr_parse(const char *s, int allow_port0, struct net_addr *a, char *err,
                   size_t errlen);

/* A close-on-exec, reusable listener on <a> with a backlog of 511; a stale
 * socket file at a unix path is removed first. NULL on failure, errno set. */
struct evconnlistener *net_listen(struct event_base *base, const struct net_addr *a,
                                  evconnlistener_cb cb, void *arg);

/* What <l> is bound to, for logs: "IP:PORT" with the real port, or
 * "unix:PATH". */
void net_listener_name(struct evconnlistener *l, const struct net_addr *a, char *buf,
                       size_t buflen);

#endif
