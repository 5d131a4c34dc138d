/* Threads that wait, through libc, in every call a signal handler cuts short with EINTR
 * however it was installed (signal(7)): epoll_wait, epoll_pwait, select, pselect, poll, ppoll
 * and sigtimedwait. Each kind is waited in by two threads, one with a long timeout and one
 * with a 1 ms timeout, over and over (so that some thread is always entering its call); the
 * main thread counts, printing a number every 3 ms. The program installs no handler, so no
 * wait may ever end in EINTR (or early, or with an event): one that does prints an ERROR
 * line. With "blocked", every waiting thread blocks every signal with a raw rt_sigprocmask
 * (past libc and libckpt), so that a checkpoint stops it with ptrace, not with a signal.
 *   eintrwaits [blocked] */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int blocked;

enum kind { EPOLL_WAIT, EPOLL_PWAIT, SELECT, PSELECT, POLL, PPOLL, SIGTIMEDWAIT, KINDS };
static const char *names[KINDS] = { "epoll_wait", "epoll_pwait", "select", "pselect", "poll", "ppoll", "sigtimedwait" };

struct waiter {
    enum kind kind;
    int ms; /* the timeout of each call */
};

/* A descriptor that never becomes ready: an eventfd never written. */
static int idle_fd(void) {
    int ev = eventfd(0, 0);
    if (ev < 0) { perror("eventfd"); _exit(1); }
    return ev;
}

static void *waiting(void *arg) {
    const struct waiter *w = arg;
    int fd = idle_fd();
    int ep = epoll_create1(0);
    struct epoll_event e = { .events = EPOLLIN };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) { perror("epoll"); _exit(1); }
    sigset_t waited, mask;
    sigemptyset(&waited);
    sigaddset(&waited, SIGRTMIN + 5);
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    if (blocked) {
        sigset_t all;
        sigfillset(&all);
        syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 8);
    }
    for (;;) {
        struct timespec ts = { w->ms / 1000, (w->ms % 1000) * 1000000L };
        struct timeval tv = { w->ms / 1000, (w->ms % 1000) * 1000L };
        struct pollfd p = { .fd = fd, .events = POLLIN };
        fd_set r;
        FD_ZERO(&r);
        FD_SET(fd, &r);
        siginfo_t si;
        long ret;
        errno = 0;
        switch (w->kind) {
        case EPOLL_WAIT: ret = epoll_wait(ep, &e, 1, w->ms); break;
        case EPOLL_PWAIT: ret = epoll_pwait(ep, &e, 1, w->ms, &mask); break;
        case SELECT: ret = select(fd + 1, &r, NULL, NULL, &tv); break;
        case PSELECT: ret = pselect(fd + 1, &r, NULL, NULL, &ts, &mask); break;
        case POLL: ret = poll(&p, 1, w->ms); break;
        case PPOLL: ret = ppoll(&p, 1, &ts, &mask); break;
        default:
            ret = sigtimedwait(&waited, &si, &ts);
            if (ret == -1 && errno == EAGAIN) ret = 0; /* its timeout */
            break;
        }
        if (ret != 0) printf("ERROR %s (%d ms) returned %ld: %s\n", names[w->kind], w->ms, ret, ret < 0 ? strerror(errno) : "ready?");
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    blocked = argc > 1 && !strcmp(argv[1], "blocked");
    /* The signal sigtimedwait waits for, which no one sends, blocked in every thread. */
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGRTMIN + 5);
    pthread_sigmask(SIG_BLOCK, &waited, NULL);
    static struct waiter w[2 * KINDS];
    for (int i = 0; i < 2 * KINDS; i++) {
        w[i].kind = i % KINDS;
        w[i].ms = i < KINDS ? 600000 : 1;
        pthread_t t;
        if (pthread_create(&t, NULL, waiting, &w[i])) { perror("pthread_create"); return 1; }
    }
    for (unsigned long n = 0;; n++) {
        printf("%lu\n", n);
        struct timespec t = { 0, 3000000 };
        while (nanosleep(&t, &t) != 0) {
            if (errno != EINTR) { perror("nanosleep"); return 1; }
            printf("ERROR nanosleep: %s\n", strerror(errno));
        }
    }
}
