/* ptyfull LIMIT: one pseudo-terminal pair (slave raw, echo off), filled each way until the
 * kernel takes no more (non-blocking writes into the master, then into the slave), so that
 * as many bytes as a pair holds are queued in it; then counts to LIMIT ("tick I"), and at the
 * end reads what each end has and prints "to_slave N to_master M". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static long fill(int fd) {
    char buf[512];
    memset(buf, 'q', sizeof buf);
    long total = 0;
    for (;;) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n > 0) { total += n; continue; }
        if (n < 0 && errno == EINTR) continue;
        return total;
    }
}

static long drain(int fd) {
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) { total += n; continue; }
        if (n < 0 && errno == EINTR) continue;
        return total;
    }
}

int main(int argc, char **argv) {
    long limit = argc > 1 ? atol(argv[1]) : 100;
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (m < 0 || grantpt(m) || unlockpt(m)) { perror("ptmx"); return 1; }
    int s = open(ptsname(m), O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (s < 0) { perror("slave"); return 1; }
    struct termios t;
    tcgetattr(s, &t);
    cfmakeraw(&t);
    tcsetattr(s, TCSANOW, &t);
    /* The line discipline moves bytes in the background: fill until a pause takes no more. */
    long a = 0, b = 0;
    for (int round = 0; round < 20; round++) {
        long more = fill(m) + fill(s);
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, 0);
        if (round > 0 && more == 0) break;
    }
    for (long i = 0; i < limit; i++) {
        printf("tick %ld\n", i);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, 0);
    }
    a = drain(s);
    b = drain(m);
    printf("to_slave %ld to_master %ld\n", a, b);
    return 0;
}
