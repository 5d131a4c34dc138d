/* listeners: a server with every kind of listening socket, and a FIFO.
 *   - AF_UNIX stream listener at the path argv[1]/sock
 *   - AF_UNIX stream listener at the abstract name argv[2]
 *   - TCP listener on [::] (IPV6_V6ONLY off, SO_REUSEADDR on), port argv[3]
 *   - UDP socket bound to 127.0.0.1, port argv[4]
 *   - the FIFO argv[1]/fifo, opened at both ends, holding "in the fifo"
 * Prints "tcp=PORT udp=PORT", then serves forever: a connection that sends a line gets
 * "LISTENER: LINE" back ("path", "abstract" or "tcp"), except the line "fifo", which gets what
 * the FIFO holds; a datagram gets "udp: DATAGRAM" back. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int unix_listener(const char *name, int abstract) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    socklen_t len;
    if (abstract) {
        strncpy(a.sun_path + 1, name, sizeof a.sun_path - 2);
        len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
    } else {
        strncpy(a.sun_path, name, sizeof a.sun_path - 1);
        len = sizeof a;
    }
    if (bind(s, (struct sockaddr *)&a, len) || listen(s, 16)) { perror("unix listener"); exit(1); }
    return s;
}

static int port_of(int s) {
    struct sockaddr_in6 a;
    socklen_t len = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &len);
    return ntohs(a.sin6_port);
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    char path[200], fifo[200];
    snprintf(path, sizeof path, "%s/sock", argv[1]);
    snprintf(fifo, sizeof fifo, "%s/fifo", argv[1]);
    int lp = unix_listener(path, 0), la = unix_listener(argv[2], 1);
    int lt = socket(AF_INET6, SOCK_STREAM, 0), one = 1, zero = 0;
    setsockopt(lt, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lt, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 any6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT, .sin6_port = htons(atoi(argv[3])) };
    if (bind(lt, (struct sockaddr *)&any6, sizeof any6) || listen(lt, 16)) { perror("tcp"); return 1; }
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[4])) };
    lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(u, (struct sockaddr *)&lo, sizeof lo)) { perror("udp"); return 1; }
    if (mkfifo(fifo, 0600)) { perror("mkfifo"); return 1; }
    int fr = open(fifo, O_RDONLY | O_NONBLOCK), fw = open(fifo, O_WRONLY);
    if (fr < 0 || fw < 0 || write(fw, "in the fifo", 11) != 11) { perror("fifo"); return 1; }
    printf("tcp=%d udp=%d\n", port_of(lt), port_of(u));
    fflush(stdout);
    int ep = epoll_create1(0);
    int fds[4] = { lp, la, lt, u };
    const char *names[4] = { "path", "abstract", "tcp", "udp" };
    for (int i = 0; i < 4; i++) {
        struct epoll_event ev = { EPOLLIN, { .u32 = i } };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    for (;;) {
        struct epoll_event ev;
        if (epoll_wait(ep, &ev, 1, -1) != 1) continue;
        int i = ev.data.u32;
        char in[256], out[300];
        if (fds[i] == u) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(u, in, sizeof in - 1, 0, (struct sockaddr *)&from, &fl);
            if (n < 0) continue;
            in[n] = 0;
            int len = snprintf(out, sizeof out, "udp: %s", in);
            sendto(u, out, len, 0, (struct sockaddr *)&from, fl);
            continue;
        }
        int c = accept(fds[i], NULL, NULL);
        if (c < 0) continue;
        ssize_t n = read(c, in, sizeof in - 1);
        if (n > 0) {
            while (n > 0 && (in[n - 1] == '\n' || in[n - 1] == '\r')) n--;
            in[n] = 0;
            int len;
            if (strcmp(in, "fifo") == 0) {
                ssize_t k = read(fr, out, sizeof out - 1);
                len = k < 0 ? 0 : (int)k;
            } else {
                len = snprintf(out, sizeof out, "%s: %s", names[i], in);
            }
            if (write(c, out, len) != len) perror("write");
        }
        close(c);
    }
}
