/* migrateheap: the target of the migration benchmark. Fills argv[1] MiB of heap with random
 * bytes, prints "ready", then keeps writing argv[2] MiB/s of new random bytes over the heap (one
 * 4 KiB piece at a time, at pseudo-random pages, so the writes land on ever new pages as a real
 * working set's would) and prints a line "tick N NS P" every millisecond: N counts up by one, NS
 * is CLOCK_REALTIME, P its parent's PID, which changes when the program finds itself restored
 * (myrestart's init is its parent there). The benchmark reads the lines where they went (a file
 * the original and the migrated copy both write) and takes the interval between the original's
 * last line and the copy's first as the time the program made no progress. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }

int main(int argc, char **argv) {
    size_t bytes = (argc > 1 ? strtoull(argv[1], 0, 10) : 1024) << 20;
    double rate = argc > 2 ? atof(argv[2]) : 16; /* MiB per second */
    /* Page-aligned, so that each 4 KiB write dirties one page, not two. */
    uint64_t *heap = aligned_alloc(4096, bytes), x = 88172645463325252ull;
    size_t words = bytes / 8, pages = bytes / 4096;
    for (size_t i = 0; i < words; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; heap[i] = x; }
    printf("ready\n"); fflush(stdout);
    uint64_t start = now(CLOCK_MONOTONIC), written = 0, tick = 0, next_tick = start;
    for (;;) {
        uint64_t t = now(CLOCK_MONOTONIC);
        /* Bytes due by now at the asked rate, written a page at a time. */
        uint64_t due = (uint64_t)((double)(t - start) * rate * 1048576.0 / 1e9);
        while (written + 4096 <= due) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            uint64_t *page = heap + (x % pages) * 512;
            for (int i = 0; i < 512; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; page[i] = x; }
            written += 4096;
        }
        if (t >= next_tick) {
            printf("tick %llu %llu %d\n", (unsigned long long)tick++, (unsigned long long)now(CLOCK_REALTIME), (int)getppid());
            fflush(stdout);
            next_tick += 1000000;
            if (next_tick < t) next_tick = t; /* after a stop, one line, not a burst of them */
        }
    }
}
