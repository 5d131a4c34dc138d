/* evloop: kernel objects an event loop keeps, with state in them. A pipe with 8 messages in
 * flight (both ends held), an eventfd in semaphore mode with count 5, and the read end of a
 * pipe whose writer is gone, all three watched by one epoll instance (the eventfd edge-
 * triggered), with user data 0xa, 0xb and 0xc. It ticks ("tick T") until tick argv[1], then asks
 * epoll what is ready, drains everything and prints
 * "epoll=a,b,c pipe=m0,...,m7 eventfd=5 eof=1 flags=F" (F: 1 when the non-blocking flags are as
 * set). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long at = argc > 1 ? atol(argv[1]) : 30;
    int p1[2], p2[2];
    if (pipe2(p1, O_NONBLOCK) || pipe(p2)) return 1;
    for (int i = 0; i < 8; i++) {
        char m[8];
        snprintf(m, sizeof m, "m%d", i);
        if (write(p1[1], m, sizeof m) != sizeof m) return 1;
    }
    close(p2[1]);
    int e = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { EPOLLIN, { .u64 = 0xa } };
    epoll_ctl(ep, EPOLL_CTL_ADD, p1[0], &ev);
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = 0xb;
    epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev);
    ev.events = EPOLLIN;
    ev.data.u64 = 0xc;
    epoll_ctl(ep, EPOLL_CTL_ADD, p2[0], &ev);
    for (long tick = 0;; tick++) {
        struct timespec ts = { 0, 20000000 };
        while (nanosleep(&ts, &ts) != 0) {}
        if (tick < at) {
            printf("tick %ld\n", tick);
            fflush(stdout);
            continue;
        }
        struct epoll_event got[8];
        int n = epoll_wait(ep, got, 8, 0);
        char seen[3] = { 0, 0, 0 };
        for (int i = 0; i < n; i++) if (got[i].data.u64 >= 0xa && got[i].data.u64 <= 0xc) seen[got[i].data.u64 - 0xa] = 1;
        char all[128] = "";
        char m[8];
        while (read(p1[0], m, sizeof m) == sizeof m) {
            if (all[0]) strcat(all, ",");
            strcat(all, m);
        }
        int count = 0;
        uint64_t v;
        while (read(e, &v, sizeof v) == sizeof v) count += (int)v;
        char c;
        int eof = read(p2[0], &c, 1) == 0;
        int flags = (fcntl(p1[0], F_GETFL) & O_NONBLOCK) && !(fcntl(p2[0], F_GETFL) & O_NONBLOCK);
        printf("epoll=%s%s%s pipe=%s eventfd=%d eof=%d flags=%d\n", seen[0] ? "a" : "", seen[1] ? ",b" : "", seen[2] ? ",c" : "", all, count, eof, flags);
        return 0;
    }
}
