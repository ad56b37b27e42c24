/*
 * test_netaddr.c -- listen address parsing: unix paths, IPv4/IPv6 with and
 * without host, port 0 only where allowed, and the errors.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "netaddr.h"
#include "tap.h"

static int port_of(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return -1;
}

int main(void)
{
    struct net_addr a;
    char err[256];
    ok(net_addr_parse("unix:/run/x.sock", 0, &a, err, sizeof(err)) == 0 &&
       a.ss.ss_family == AF_UNIX && strcmp(a.unix_path, "/run/x.sock") == 0, "unix path");
    ok(net_addr_parse("127.0.0.1:8000", 0, &a, err, sizeof(err)) == 0 &&
       a.ss.ss_family == AF_INET && port_of(&a) == 8000 && a.unix_path == NULL, "ipv4:port");
    ok(net_addr_parse("8000", 0, &a, err, sizeof(err)) == 0 && a.ss.ss_family == AF_INET &&
       ((struct sockaddr_in *)&a.ss)->sin_addr.s_addr == htonl(INADDR_ANY), "bare port = any");
    ok(net_addr_parse("*:81", 0, &a, err, sizeof(err)) == 0 && port_of(&a) == 81, "*:port");
    ok(net_addr_parse("[::1]:9000", 0, &a, err, sizeof(err)) == 0 &&
       a.ss.ss_family == AF_INET6 && port_of(&a) == 9000, "[v6]:port");
    ok(net_addr_parse("localhost:7", 0, &a, err, sizeof(err)) == 0 &&
       ((struct sockaddr_in *)&a.ss)->sin_addr.s_addr == htonl(INADDR_LOOPBACK), "localhost");
    ok(net_addr_parse("127.0.0.1:0", 0, &a, err, sizeof(err)) == -1, "port 0 refused");
    ok(net_addr_parse("127.0.0.1:0", 1, &a, err, sizeof(err)) == 0 && port_of(&a) == 0,
       "port 0 where allowed");
    const char *bad[] = { "unix:", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:x", "nohost.example:80",
                          "[::1:80", "[::1]80", "-1" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ok(net_addr_parse(bad[i], 1, &a, err, sizeof(err)) == -1 && err[0] != '\0',
           "%s rejected: %s", bad[i], err);
    }
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    memcpy(longpath, "unix:", 5);
    ok(net_addr_parse(longpath, 0, &a, err, sizeof(err)) == -1, "too long unix path");
    return tap_done();
}
