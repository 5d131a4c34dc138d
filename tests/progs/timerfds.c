/* A CLOCK_MONOTONIC timerfd read in a loop. It prints one numbered line per expiration
 * ("tick N"), however the kernel grouped the expirations into reads, so the lines of a run do
 * not depend on its timing; it exits once it has printed TOTAL of them.
 *   timerfds rel MS TOTAL      every MS ms, the first MS ms after the start
 *   timerfds abs MS TOTAL      the same, the first expiry set as an absolute deadline
 *                              (TFD_TIMER_ABSTIME)
 *   timerfds pending FIRST MS TOTAL GO
 *                              first expiry after FIRST ms, then every MS ms (0: just once);
 *                              waits in poll (which reads nothing) until it has expired,
 *                              prints "pending", and leaves the expirations unread until the
 *                              file GO exists (looked for every millisecond); then prints
 *                              "first read N" (what that one read returned) and goes on as
 *                              above. A timer that expires once is read once more without
 *                              blocking: "then disarmed" if nothing came, then it exits. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static struct timespec ms_to_ts(long ms) {
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };
    return t;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 4) {
        fprintf(stderr, "usage: timerfds rel|abs MS TOTAL | pending FIRST MS TOTAL GO\n");
        return 2;
    }
    const char *how = argv[1];
    int pending = strcmp(how, "pending") == 0;
    if (pending && argc < 6) return 2;
    long first = atol(argv[2]);
    long ms = pending ? atol(argv[3]) : first;
    unsigned long total = strtoul(argv[pending ? 4 : 3], NULL, 10);

    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = { ms_to_ts(ms), ms_to_ts(first) };
    int flags = 0;
    if (strcmp(how, "abs") == 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        its.it_value.tv_sec += now.tv_sec;
        its.it_value.tv_nsec += now.tv_nsec;
        its.it_value.tv_sec += its.it_value.tv_nsec / 1000000000;
        its.it_value.tv_nsec %= 1000000000;
        flags = TFD_TIMER_ABSTIME;
    }
    if (tfd < 0 || timerfd_settime(tfd, flags, &its, NULL) != 0) {
        perror("timerfd");
        return 1;
    }

    unsigned long n = 0;
    if (pending) {
        struct pollfd p = { tfd, POLLIN, 0 };
        while (poll(&p, 1, -1) != 1)
            ;
        printf("pending\n");
        struct timespec ms1 = ms_to_ts(1);
        while (access(argv[5], F_OK) != 0) nanosleep(&ms1, NULL);
    }
    int firstread = pending;
    while (n < total) {
        uint64_t ticks;
        ssize_t r = read(tfd, &ticks, sizeof ticks);
        if (r != (ssize_t)sizeof ticks) {
            if (r < 0 && errno == EINTR) continue;
            printf("ERROR read returned %zd: %s\n", r, r < 0 ? strerror(errno) : "short");
            return 1;
        }
        if (firstread) printf("first read %llu\n", (unsigned long long)ticks);
        firstread = 0;
        for (uint64_t i = 0; i < ticks && n < total; i++) printf("tick %lu\n", n++);
        if (ms == 0) {
            uint64_t more;
            fcntl(tfd, F_SETFL, O_NONBLOCK);
            if (read(tfd, &more, sizeof more) < 0 && errno == EAGAIN) printf("then disarmed\n");
            break;
        }
    }
    return 0;
}
