/* One process holding both ends of a pseudo-terminal pair, as a terminal emulator's test or
 * `expect` driving itself: each step writes "ping N" into the master and "pong N" into the
 * slave before reading step N-1's lines from the other ends, so a line is always queued each
 * way; it prints what it got, and its terminal as the slave sees it first and every 100 steps,
 * with the state of a second pair it holds idle (locked, in packet mode).
 * Ends after LIMIT steps. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long limit = argc > 1 ? atol(argv[1]) : 1000;
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) { perror("ptmx"); return 1; }
    int s = open(ptsname(m), O_RDWR | O_NOCTTY);
    if (s < 0) { perror("slave"); return 1; }
    struct termios t;
    tcgetattr(s, &t);
    t.c_lflag &= ~ECHO;
    t.c_cc[VKILL] = 11;
    tcsetattr(s, TCSANOW, &t);
    struct winsize w = { 52, 132, 0, 0 };
    ioctl(m, TIOCSWINSZ, &w);
    /* A second pair, never unlocked, in packet mode, 9x21: held, not used. */
    int idle = posix_openpt(O_RDWR | O_NOCTTY), on = 1;
    struct winsize small = { 9, 21, 0, 0 };
    if (idle < 0 || ioctl(idle, TIOCPKT, &on) || ioctl(idle, TIOCSWINSZ, &small)) { perror("idle pty"); return 1; }
    FILE *from_slave = fdopen(dup(s), "r"), *from_master = fdopen(dup(m), "r");
    char line[128];
    for (long n = 1; n <= limit; n++) {
        dprintf(m, "ping %ld\n", n);
        dprintf(s, "pong %ld\n", n);
        if (n % 100 == 1) {
            tcgetattr(s, &t);
            ioctl(s, TIOCGWINSZ, &w);
            int pkt = -1, lck = -1;
            ioctl(idle, TIOCGPKT, &pkt);
            ioctl(idle, TIOCGPTLCK, &lck);
            ioctl(idle, TIOCGWINSZ, &small);
            printf("info lflag=%o kill=%d rows=%d cols=%d; idle pair packet=%d locked=%d rows=%d cols=%d\n", (unsigned)t.c_lflag, t.c_cc[VKILL],
                   w.ws_row, w.ws_col, pkt, lck, small.ws_row, small.ws_col);
        }
        if (n == 1) continue;
        if (!fgets(line, sizeof line, from_slave)) return 3;
        line[strcspn(line, "\n")] = 0;
        printf("slave got %s\n", line);
        if (!fgets(line, sizeof line, from_master)) return 4;
        line[strcspn(line, "\r\n")] = 0;
        printf("master got %s\n", line);
        fflush(stdout);
        usleep(2000);
    }
    printf("done\n");
    return 0;
}
