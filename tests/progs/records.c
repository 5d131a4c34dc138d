/* records: a program that keeps a file of fixed-size records in place, as a database keeps its
 * tables, and a log it appends to.
 *
 *   records FILE LOG [LIMIT]
 *
 * Record n (from 1) goes to offset (n-1)*32 of FILE with pwrite; after every fourth record, an
 * earlier one (n/2, from well before any recent moment) is written again in place with a new
 * generation (n). Before each record it
 * reads back the one before it and the rewritten one, and checks that FILE holds what its
 * memory says it wrote there: a file that went on without it (a restart from an older
 * checkpoint with the file as it was later) shows as "inconsistent" with exit 1 only where the
 * bytes differ. FILE "-" keeps no records. Each record is also a line appended to LOG
 * (O_APPEND) and printed on stdout ("n"), every 20 ms, up to LIMIT (default 1000): "done N". */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIZE 32

static void record(char *buf, long n, long gen) {
    snprintf(buf, SIZE + 1, "rec %08ld gen %08ld .....\n", n, gen);
}

/* The record at n as FILE should hold it, from what this program remembers. */
static int check(int fd, long n, long gen) {
    char want[SIZE + 1], got[SIZE];
    record(want, n, gen);
    if (pread(fd, got, SIZE, (n - 1) * SIZE) != SIZE || memcmp(got, want, SIZE) != 0) {
        printf("inconsistent: record %ld is not what was written (gen %ld)\n", n, gen);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long limit = argc > 3 ? atol(argv[3]) : 1000;
    int keep = strcmp(argv[1], "-") != 0;
    int fd = keep ? open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
    int log = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if ((keep && fd < 0) || log < 0) { perror("open"); return 2; }
    long rewritten = 0, rewritten_gen = 0;
    for (long n = 1; n <= limit; n++) {
        char buf[SIZE + 1];
        if (keep && n > 1 && (check(fd, n - 1, 0) || (rewritten && check(fd, rewritten, rewritten_gen))))
            return 1;
        if (keep) {
            record(buf, n, 0);
            if (pwrite(fd, buf, SIZE, (n - 1) * SIZE) != SIZE) return 3;
            if (n % 4 == 0) {
                rewritten = n / 2;
                rewritten_gen = n;
                record(buf, rewritten, rewritten_gen);
                if (pwrite(fd, buf, SIZE, (rewritten - 1) * SIZE) != SIZE) return 3;
            }
        }
        dprintf(log, "%ld\n", n);
        printf("%ld\n", n);
        fflush(stdout);
        usleep(20000);
    }
    printf("done %ld\n", limit);
    return 0;
}
