/* manyptys N LIMIT: holds N pseudo-terminal pairs (both ends of each, echo off), counts to
 * LIMIT printing "tick I", then writes a line into each pair's master, reads it from that
 * pair's slave, and prints "pairs N ok K" (K: the pairs that passed it on). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MOST 512

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 70;
    long limit = argc > 2 ? atol(argv[2]) : 100;
    static int m[MOST], s[MOST];
    if (n > MOST) n = MOST;
    for (int i = 0; i < n; i++) {
        m[i] = posix_openpt(O_RDWR | O_NOCTTY);
        if (m[i] < 0 || grantpt(m[i]) || unlockpt(m[i])) { printf("error ptmx %d\n", i); return 1; }
        s[i] = open(ptsname(m[i]), O_RDWR | O_NOCTTY);
        if (s[i] < 0) { printf("error slave %d\n", i); return 1; }
        struct termios t;
        tcgetattr(s[i], &t);
        t.c_lflag &= ~ECHO;
        tcsetattr(s[i], TCSANOW, &t);
    }
    for (long i = 0; i < limit; i++) {
        printf("tick %ld\n", i);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, 0);
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char line[16], got[16] = { 0 };
        int len = snprintf(line, sizeof line, "p%d\n", i);
        if (write(m[i], line, len) != len) continue;
        if (read(s[i], got, sizeof got - 1) == len && memcmp(got, line, len) == 0) ok++;
    }
    printf("pairs %d ok %d\n", n, ok);
    return 0;
}
