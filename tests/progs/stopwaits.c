/* Threads asleep in the system calls a ptrace stop cuts short with EINTR, not a restart code
 * (signal(7): "Interruption of system calls ... by stop signals"), for `ckpt checkpoint PID`
 * to attach to: one thread in epoll_wait on an idle eventfd, one in sigtimedwait for a signal
 * no one sends (blocked), the main thread in epoll_pwait on an idle eventfd, all with long
 * timeouts, and a counter thread that prints a number every 3 ms, waiting in select (which
 * returns a restart code). No handler is installed, so no wait may ever end in EINTR: one that
 * does prints an ERROR line. With "blockall", the sleeping threads and the counter block every
 * signal (as glibc's timer helper thread does) and make their calls with syscall(2), past any
 * library that would hide an EINTR, and the main thread waits for the counter in
 * pthread_join (for libckpt, preloaded, to take the checkpoint signal on). With "fork", the
 * program forks first: the child is the program as without it, and the parent has the same
 * sleeping threads and leader but no counter (a tree, both of whose processes have such calls).
 *   stopwaits [blockall | fork] */
#define _GNU_SOURCE
#include <errno.h>
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

static int blockall;

static int idle_epoll(void) {
    int ep = epoll_create1(0), ev = eventfd(0, 0);
    struct epoll_event e = { .events = EPOLLIN };
    if (ep < 0 || ev < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) != 0) { perror("epoll"); _exit(1); }
    return ep;
}

static void block_all(void) {
    sigset_t all;
    sigfillset(&all);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 8);
}

static void *in_epoll_wait(void *arg) {
    (void)arg;
    int ep = idle_epoll();
    if (blockall) block_all();
    for (;;) {
        struct epoll_event e;
        long r = blockall ? syscall(SYS_epoll_wait, ep, &e, 1, 600000) : epoll_wait(ep, &e, 1, 600000);
        if (r != 0) printf("ERROR epoll_wait returned %ld: %s\n", r, r < 0 ? strerror(errno) : "?");
    }
    return NULL;
}

static void *in_sigtimedwait(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 5);
    if (blockall) block_all();
    for (;;) {
        struct timespec t = { 600, 0 };
        siginfo_t si;
        long r = blockall ? syscall(SYS_rt_sigtimedwait, &set, &si, &t, 8) : sigtimedwait(&set, &si, &t);
        if (!(r == -1 && errno == EAGAIN)) printf("ERROR sigtimedwait returned %ld: %s\n", r, r < 0 ? strerror(errno) : "?");
    }
    return NULL;
}

static void *counting(void *arg) {
    (void)arg;
    if (blockall) block_all();
    for (unsigned long n = 0;; n++) {
        printf("%lu\n", n);
        struct timeval tv = { 0, 3000 };
        long r = blockall ? syscall(SYS_select, 0, NULL, NULL, NULL, &tv) : select(0, NULL, NULL, NULL, &tv);
        if (r != 0) printf("ERROR select returned %ld: %s\n", r, r < 0 ? strerror(errno) : "?");
    }
    return NULL;
}

int main(int argc, char **argv) {
    blockall = argc > 1 && strcmp(argv[1], "blockall") == 0;
    int parent = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
        pid_t c = fork();
        if (c < 0) {
            perror("fork");
            return 1;
        }
        parent = c > 0;
    }
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGRTMIN + 5);
    pthread_sigmask(SIG_BLOCK, &waited, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, in_epoll_wait, NULL) || pthread_create(&t, NULL, in_sigtimedwait, NULL) || (!parent && pthread_create(&t, NULL, counting, NULL))) {
        perror("pthread_create");
        return 1;
    }
    if (blockall) return pthread_join(t, NULL);
    int ep = idle_epoll();
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    for (;;) {
        struct epoll_event e;
        int r = epoll_pwait(ep, &e, 1, 600000, &mask);
        if (r != 0) printf("ERROR epoll_pwait returned %d: %s\n", r, r < 0 ? strerror(errno) : "?");
    }
}
