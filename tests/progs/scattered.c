/* scattered MIB MODE DIR: a heap of MIB MiB of random bytes (its last sixteenth never touched),
 * then rounds of scattered single-page writes, one round each time the file DIR/go.N appears
 * (N = 1, 2, ...). Before each round waits it prints "ready N PAGES SUM": the round it waits
 * for, the pages written in all so far and a checksum of the whole heap.
 *
 * MODE "random": each round writes 12,000 pseudo-random pages (about 47 MiB) and drops 200
 * others (MADV_DONTNEED: they must read back as zeros).
 * MODE "stripes": round k (1 to 3) writes every page p with p % 3 == k - 1 (and round 3 only
 * a few pages), so that an image taken after round 3 leaves every page to a different base
 * from its neighbours: as many runs of pages stored elsewhere as pages.
 * MODE "blocks": each round writes a block of 1 MiB and 8 single pages and drops 8 others, so
 * that most of the heap is left unwritten in runs of many MiB (an incremental checkpoint's
 * writer is forked without them), and first forks a child that checks the whole heap too: the
 * memory left out of the writer's fork is inherited by the program's own children again.
 * MODE "zeros": as "blocks", but every other piece of 8 MiB of the heap is written with zeros
 * at the start rather than random bytes (pages in memory that hold zeros: a full image's writer
 * is forked without them), and each round also writes zeros over one piece of random bytes and
 * a few random bytes into a piece of zeros, so that zeros and data trade places.
 *
 * Each round first checks the heap against the checksum it printed last (it prints "BAD" and
 * exits 1 if memory changed under it, say after a restart), so a restarted copy that is told to
 * go on proves its whole heap came back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint64_t checksum(const uint64_t *w, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ w[i]) * 1099511628211ull + (i & 0xff);
    return h;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: scattered MIB random|stripes|blocks|zeros DIR\n");
        return 2;
    }
    size_t len = strtoul(argv[1], 0, 10) << 20;
    int stripes = strcmp(argv[2], "stripes") == 0;
    int zeros = strcmp(argv[2], "zeros") == 0;
    int blocks = zeros || strcmp(argv[2], "blocks") == 0;
    const size_t piece = 8 << 20;
    const char *dir = argv[3];
    size_t pages = len / 4096, used = pages - pages / 16;
    uint64_t *heap = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (heap == MAP_FAILED) return 2;
    for (size_t i = 0; i < used * 512; i++) heap[i] = zeros && i * 8 / piece % 2 ? 0 : next();
    size_t words = len / 8;
    uint64_t sum = checksum(heap, words);
    long written = 0;
    for (int round = 1;; round++) {
        printf("ready %d %ld %016llx\n", round, written, (unsigned long long)sum);
        fflush(stdout);
        char go[4096];
        snprintf(go, sizeof go, "%s/go.%d", dir, round);
        while (access(go, F_OK) != 0) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, 0);
        }
        uint64_t now = checksum(heap, words);
        if (now != sum) {
            printf("BAD %d %016llx %016llx\n", round, (unsigned long long)now, (unsigned long long)sum);
            fflush(stdout);
            return 1;
        }
        if (blocks) {
            pid_t c = fork();
            if (c == 0) _exit(checksum(heap, words) == sum ? 0 : 1);
            int st = -1;
            if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                printf("BAD %d child %d status %d\n", round, (int)c, st);
                fflush(stdout);
                return 1;
            }
            size_t first = (size_t)(round * 37 % (used / 256 - 1)) * 256;
            for (size_t p = first; p < first + 256; p++) {
                heap[p * 512 + next() % 512] = next();
                written++;
            }
            for (int i = 0; i < 8; i++) {
                size_t p = next() % used;
                heap[p * 512 + next() % 512] = next();
                written++;
            }
            for (int i = 0; i < 8; i++) madvise((char *)heap + (next() % used) * 4096, 4096, MADV_DONTNEED);
            if (zeros) {
                size_t pieces = used * 4096 / piece, k = next() % pieces;
                memset((char *)heap + k * piece, 0, piece);
                k = next() % pieces;
                for (int i = 0; i < 4; i++) heap[k * piece / 8 + next() % (piece / 8)] = next() | 1;
                written += 2048 + 4;
            }
        } else if (stripes) {
            size_t step = round == 3 ? 7919 : 3;
            for (size_t p = (size_t)(round - 1) % 3; p < used; p += step) {
                heap[p * 512 + next() % 512] = next();
                written++;
            }
        } else {
            for (int i = 0; i < 12000; i++) {
                size_t p = next() % used;
                heap[p * 512 + next() % 512] = next();
                written++;
            }
            for (int i = 0; i < 200; i++) madvise((char *)heap + (next() % used) * 4096, 4096, MADV_DONTNEED);
        }
        sum = checksum(heap, words);
    }
}
