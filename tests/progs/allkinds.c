/* allkinds: one process with every kind of state an image has a note for, so that a crafted
 * image can be made of each note. Two threads (the worker waits); two POSIX timers (one for
 * the process, one for the main thread, both far off); an epoll instance watching a pipe and
 * a timerfd; an inotify instance with two watches on argv[1]/a and argv[1]/b and a gap in
 * their numbers; a unix stream listener at argv[1]/sock, a unix datagram socket bound to
 * argv[1]/dgram, a socket pair with bytes queued; an eventfd; a file argv[1]/data open for
 * writing in place, written once before "ready". Prints "ready", then "tick T"
 * every 20 ms until tick argv[2], then "done". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void *idle(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static void on_timer(int sig) { (void)sig; }

static int bound(const char *dir, const char *name, int type) {
    int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, name);
    unlink(a.sun_path);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror(name); exit(1); }
    return s;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *dir = argv[1];
    long ticks = atol(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGRTMIN, on_timer);
    signal(SIGRTMIN + 1, on_timer);

    pthread_t worker;
    pthread_create(&worker, NULL, idle, NULL);
    timer_t t1, t2;
    struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN };
    ev.sigev_value.sival_int = 0x1234;
    timer_create(CLOCK_MONOTONIC, &ev, &t1);
    struct itimerspec far = { .it_value = { 3600, 0 }, .it_interval = { 3600, 0 } };
    timer_settime(t1, 0, &far, NULL);
    struct sigevent ev2 = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN + 1 };
    ev2._sigev_un._tid = gettid();
    timer_create(CLOCK_REALTIME, &ev2, &t2);
    timer_settime(t2, 0, &far, NULL);

    int p[2];
    pipe2(p, O_CLOEXEC);
    write(p[1], "in the pipe", 11);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    timerfd_settime(tfd, 0, &far, NULL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e1 = { .events = EPOLLIN, .data.u64 = 0xa };
    struct epoll_event e2 = { .events = EPOLLIN, .data.u64 = 0xb };
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e1);
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e2);

    char a[4096], b[4096], c[4096];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    mkdir(a, 0755);
    mkdir(b, 0755);
    mkdir(c, 0755);
    int in = inotify_init1(IN_CLOEXEC);
    inotify_add_watch(in, a, IN_CREATE);
    int gap = inotify_add_watch(in, c, IN_CREATE);
    inotify_add_watch(in, b, IN_CREATE);
    inotify_rm_watch(in, gap);

    int listener = bound(dir, "sock", SOCK_STREAM);
    listen(listener, 16);
    int dgram = bound(dir, "dgram", SOCK_DGRAM);
    int pair[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
    write(pair[0], "queued", 6);
    int efd = eventfd(3, EFD_CLOEXEC);
    (void)listener, (void)dgram, (void)efd;

    /* Last, so that every other descriptor keeps its number (tests name them). */
    char data[4096];
    snprintf(data, sizeof data, "%s/data", dir);
    int df = open(data, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (df < 0 || write(df, "written once", 12) != 12) { perror(data); return 1; }
    printf("ready\n");
    for (long t = 1; t <= ticks; t++) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        while (nanosleep(&ts, &ts) != 0) {}
        printf("tick %ld\n", t);
    }
    printf("done\n");
    return 0;
}
