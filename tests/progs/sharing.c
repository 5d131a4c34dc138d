/* A parent and its child sharing what fork shares: a socket pair (the child sends consecutive
 * numbers, the parent checks them) and the open file description of a log file (one offset,
 * moved by both: each writes a line per number). At the end the parent reaps the child and
 * reads the log back: every line of both must be there once, none overwritten.
 * Usage: sharing LOG [LIMIT] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long limit = argc > 2 ? atol(argv[2]) : 2000;
    int log = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int sv[2];
    if (log < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 2;
    pid_t child = fork();
    if (child == 0) {
        close(sv[0]);
        for (long n = 1; n <= limit; n++) {
            char line[32];
            int len = snprintf(line, sizeof line, "c %06ld\n", n);
            if (write(log, line, len) != len) return 3;
            if (send(sv[1], &n, sizeof n, 0) != sizeof n) return 3;
            usleep(1000);
        }
        return 9;
    }
    close(sv[1]);
    printf("child %d\n", (int)child);
    fflush(stdout);
    long n, expect = 1;
    while (recv(sv[0], &n, sizeof n, MSG_WAITALL) == sizeof n) {
        if (n != expect) { printf("wrong: got %ld, expected %ld\n", n, expect); return 1; }
        char line[32];
        int len = snprintf(line, sizeof line, "p %06ld\n", n);
        if (write(log, line, len) != len) return 3;
        if (n % 100 == 0) { printf("got %ld\n", n); fflush(stdout); }
        expect++;
    }
    int st;
    pid_t w = waitpid(child, &st, 0);
    char *seen = calloc(2 * limit + 2, 1);
    FILE *f = fopen(argv[1], "r");
    char buf[64];
    long lines = 0, bad = 0;
    while (f && fgets(buf, sizeof buf, f)) {
        long v = atol(buf + 2);
        int who = buf[0] == 'c' ? 0 : buf[0] == 'p' ? 1 : -1;
        if (who < 0 || v < 1 || v > limit || strlen(buf) != 9 || seen[2 * v + who]++) bad++;
        lines++;
    }
    printf("waitpid %d: exit %d; log: %ld lines, %ld bad\n", (int)w, WIFEXITED(st) ? WEXITSTATUS(st) : -1, lines, bad);
    return 0;
}
