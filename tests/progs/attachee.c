/* A program started without ckpt, for `ckpt checkpoint PID` to attach to: it prints a counter
 * and waits between lines in nanosleep ("sleep", the default), in a read of a timerfd
 * ("read"), in select ("select"), or in a loop on the vdso's clock, without a system call
 * ("spin"). Every wait's result is checked: a call the attach cut short (EINTR, a short read)
 * is printed as an ERROR line.
 *   attachee [sleep|read|select|spin] [MS] [MIB]   MIB: touch that much anonymous memory first */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "sleep";
    long ms = argc > 2 ? atol(argv[2]) : 5;
    long mib = argc > 3 ? atol(argv[3]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mib > 0) {
        size_t len = (size_t)mib << 20;
        char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) { perror("mmap"); return 1; }
        for (size_t i = 0; i < len; i += 4096) m[i] = (char)(i >> 12);
    }
    int tfd = -1;
    if (strcmp(how, "read") == 0) {
        tfd = timerfd_create(CLOCK_MONOTONIC, 0);
        struct itimerspec its = { { ms / 1000, (ms % 1000) * 1000000 }, { ms / 1000, (ms % 1000) * 1000000 } };
        if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) != 0) { perror("timerfd"); return 1; }
    }
    for (unsigned long n = 0;; n++) {
        printf("%lu\n", n);
        if (strcmp(how, "select") == 0) {
            struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
            int r = select(0, NULL, NULL, NULL, &tv);
            if (r != 0) printf("ERROR select returned %d: %s\n", r, r < 0 ? strerror(errno) : "?");
        } else if (strcmp(how, "spin") == 0) {
            struct timespec now, end;
            clock_gettime(CLOCK_MONOTONIC, &end);
            end.tv_nsec += ms * 1000000;
            end.tv_sec += end.tv_nsec / 1000000000;
            end.tv_nsec %= 1000000000;
            do clock_gettime(CLOCK_MONOTONIC, &now);
            while (now.tv_sec < end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
        } else if (tfd >= 0) {
            uint64_t ticks;
            ssize_t r = read(tfd, &ticks, sizeof ticks);
            if (r != (ssize_t)sizeof ticks) printf("ERROR read returned %zd: %s\n", r, r < 0 ? strerror(errno) : "short");
        } else {
            struct timespec t = { ms / 1000, (ms % 1000) * 1000000 }, left;
            if (nanosleep(&t, &left) != 0) printf("ERROR nanosleep: %s\n", strerror(errno));
        }
    }
}
