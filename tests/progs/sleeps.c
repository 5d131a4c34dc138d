/* sleeps: one sleep or wait of about 1.5 s, chosen by argv[1]: nanosleep, sleep (2 s), poll,
 * epoll_wait, select, ppoll. Prints "start", then "MODE r=R errno=E elapsed_ms=MS" with the
 * call's return value and the time it took on CLOCK_MONOTONIC. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *m = argv[1];
    struct timespec t0, t1;
    int ep = epoll_create1(0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    printf("start\n");
    fflush(stdout);
    long r = -2;
    errno = 0;
    if (!strcmp(m, "nanosleep")) {
        struct timespec ts = { 1, 500000000 };
        r = nanosleep(&ts, NULL);
    } else if (!strcmp(m, "sleep")) {
        r = sleep(2);
    } else if (!strcmp(m, "poll")) {
        r = poll(NULL, 0, 1500);
    } else if (!strcmp(m, "epoll_wait")) {
        struct epoll_event ev;
        r = epoll_wait(ep, &ev, 1, 1500);
    } else if (!strcmp(m, "select")) {
        struct timeval tv = { 1, 500000 };
        r = select(0, NULL, NULL, NULL, &tv);
    } else if (!strcmp(m, "ppoll")) {
        struct timespec ts = { 1, 500000000 };
        r = ppoll(NULL, 0, &ts, NULL);
    }
    int e = errno;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("%s r=%ld errno=%d elapsed_ms=%ld\n", m, r, r < 0 ? e : 0, ms);
    return 0;
}
