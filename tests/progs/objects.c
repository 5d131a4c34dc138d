/* objects: every kernel object an event loop is built from, each holding state, all watched
 * by one epoll instance:
 *   a  self-pipe with 8 messages in flight ("m0".."m7"; the read end non-blocking)
 *   b  stream socketpair end 0, with "to0" queued for it     c  end 1, with "to1" queued
 *   d  datagram socketpair end 1, with messages "d1" "d2" "d3" queued
 *   e  eventfd with count 42 (the kernel shows it in hexadecimal)
 *   f  periodic timerfd (CLOCK_MONOTONIC, every 30 ms)
 *   g  signalfd for SIGUSR1 (blocked)
 *   h  inotify watch (IN_CREATE) on the directory argv[1], watch descriptor 2 (watch 1 was
 *      removed before: a restart must not renumber it)
 *   a memfd "ckptbuf" holding "sealed-data", sealed against growing and shrinking, and mapped
 *   shared with "hello-map" written through the mapping at offset 64
 * It prints "tick N" every 20 ms until SIGUSR1 arrives on the signalfd, then asks epoll what is
 * ready, drains everything and prints one line (with an absolute CLOCK_REALTIME timerfd an hour
 * ahead, abs=1 while its deadline stays where it was):
 * "ready=LETTERS pipe=.. s0=.. s1=.. dgram=.. eventfd=N timer=T sig=N created=NAME@WD memfd=../..
 *  seals=N shared=B sndbuf=N flags=B abs=B". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static void add(int ep, int fd, char tag) {
    struct epoll_event ev = { EPOLLIN, { .u64 = (uint64_t)tag } };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) { perror("epoll_ctl"); exit(1); }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int p[2], st[2], dg[2];
    if (pipe2(p, O_NONBLOCK) || socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg)) return 1;
    fcntl(p[1], F_SETFL, 0);
    for (int i = 0; i < 8; i++) {
        char m[4];
        snprintf(m, sizeof m, "m%d", i);
        if (write(p[1], m, sizeof m) != sizeof m) return 1;
    }
    int sndbuf = 65536;
    setsockopt(st[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (write(st[1], "to0", 3) != 3 || write(st[0], "to1", 3) != 3) return 1;
    for (int i = 1; i <= 3; i++) {
        char m[3] = { 'd', (char)('0' + i), 0 };
        if (send(dg[0], m, 2, 0) != 2) return 1;
    }
    fcntl(st[1], F_SETFL, O_NONBLOCK);
    fcntl(dg[1], F_SETFL, O_NONBLOCK);
    int e = eventfd(42, EFD_NONBLOCK);
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = { { 0, 30000000 }, { 0, 30000000 } };
    timerfd_settime(t, 0, &its, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    int s = signalfd(-1, &usr1, SFD_NONBLOCK);
    int in = inotify_init1(IN_NONBLOCK);
    if (inotify_add_watch(in, "/", IN_DELETE) != 1 || inotify_add_watch(in, argv[1], IN_CREATE) != 2) { perror("inotify_add_watch"); return 1; }
    inotify_rm_watch(in, 1);
    char ignored[256] __attribute__((aligned(8)));
    if (read(in, ignored, sizeof ignored) <= 0) { perror("IN_IGNORED"); return 1; }
    int ta = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct itimerspec deadline = { { 0, 0 }, { now.tv_sec + 3600, now.tv_nsec } };
    timerfd_settime(ta, TFD_TIMER_ABSTIME, &deadline, NULL);
    int m = memfd_create("ckptbuf", MFD_ALLOW_SEALING);
    if (ftruncate(m, 4096) || pwrite(m, "sealed-data", 11, 0) != 11) return 1;
    char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    if (map == MAP_FAILED) return 1;
    strcpy(map + 64, "hello-map");
    fcntl(m, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    add(ep, p[0], 'a');
    add(ep, st[0], 'b');
    add(ep, st[1], 'c');
    add(ep, dg[1], 'd');
    add(ep, e, 'e');
    add(ep, t, 'f');
    add(ep, s, 'g');
    add(ep, in, 'h');
    for (long tick = 0;; tick++) {
        struct pollfd pf = { s, POLLIN, 0 };
        if (poll(&pf, 1, 20) == 1) break;
        printf("tick %ld\n", tick);
        fflush(stdout);
    }
    /* Let the timer fire at least once more, whatever happened before. */
    struct pollfd pt = { t, POLLIN, 0 };
    poll(&pt, 1, 1000);
    struct epoll_event got[16];
    int n = epoll_wait(ep, got, 16, 0);
    char ready[16] = "";
    for (char c = 'a'; c <= 'h'; c++)
        for (int i = 0; i < n; i++)
            if (got[i].data.u64 == (uint64_t)c) strncat(ready, &c, 1);
    char pipe_all[64] = "", mm[4];
    while (read(p[0], mm, sizeof mm) == sizeof mm) {
        if (pipe_all[0]) strcat(pipe_all, ",");
        strcat(pipe_all, mm);
    }
    char s0[16] = "", s1[16] = "";
    if (recv(st[0], s0, sizeof s0 - 1, MSG_DONTWAIT) < 0) strcpy(s0, "none");
    if (recv(st[1], s1, sizeof s1 - 1, MSG_DONTWAIT) < 0) strcpy(s1, "none");
    char dgram[32] = "", d[8];
    ssize_t k;
    while ((k = recv(dg[1], d, sizeof d - 1, MSG_DONTWAIT)) > 0) {
        d[k] = 0;
        if (dgram[0]) strcat(dgram, ",");
        strcat(dgram, d);
    }
    uint64_t v = 0, ticks = 0;
    if (read(e, &v, sizeof v) != sizeof v) v = 0;
    if (read(t, &ticks, sizeof ticks) != sizeof ticks) ticks = 0;
    struct signalfd_siginfo si;
    int sig = read(s, &si, sizeof si) == sizeof si ? (int)si.ssi_signo : 0;
    char ibuf[4096] __attribute__((aligned(8)));
    char created[64] = "none";
    ssize_t il = read(in, ibuf, sizeof ibuf);
    if (il > 0) {
        struct inotify_event *ie = (struct inotify_event *)ibuf;
        if (ie->len) snprintf(created, sizeof created, "%.50s@%d", ie->name, ie->wd);
    }
    char viafd[16] = "";
    if (pread(m, viafd, 11, 0) != 11) strcpy(viafd, "unreadable");
    strcpy(map + 128, "written-later");
    char back[16] = "";
    if (pread(m, back, 13, 128) != 13) back[0] = 0;
    int shared = strcmp(back, "written-later") == 0;
    int sb = 0;
    socklen_t sl = sizeof sb;
    getsockopt(st[0], SOL_SOCKET, SO_SNDBUF, &sb, &sl);
    int flags = (fcntl(p[0], F_GETFL) & O_NONBLOCK) && !(fcntl(p[1], F_GETFL) & O_NONBLOCK) && (fcntl(st[1], F_GETFL) & O_NONBLOCK) &&
                !(fcntl(st[0], F_GETFL) & O_NONBLOCK) && (fcntl(t, F_GETFD) & FD_CLOEXEC) && (fcntl(ep, F_GETFD) & FD_CLOEXEC);
    struct itimerspec left;
    timerfd_gettime(ta, &left);
    clock_gettime(CLOCK_REALTIME, &now);
    long long want = (long long)deadline.it_value.tv_sec - now.tv_sec, remaining = left.it_value.tv_sec;
    int abs_ok = remaining >= want - 2 && remaining <= want + 1;
    printf("ready=%s pipe=%s s0=%s s1=%s dgram=%s eventfd=%llu timer=%d sig=%d created=%s memfd=%s/%s seals=%d shared=%d sndbuf=%d flags=%d abs=%d\n",
           ready, pipe_all, s0, s1, dgram, (unsigned long long)v, ticks > 0, sig, created, viafd, map + 64, fcntl(m, F_GET_SEALS), shared, sb,
           flags, abs_ok);
    return 0;
}
