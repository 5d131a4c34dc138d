/* changing: memory that keeps changing, for incremental checkpoints. A buffer of argv[1] MiB
 * filled with a known pattern; then step after step (argv[2] steps, argv[3] ms apart) it
 * rewrites a few pseudo-random pages, every 5th step unmaps, maps again and refills a side
 * region, every 7th step drops a page (MADV_DONTNEED: it reads as zeros; not with argv[4]
 * "nodrop"), and every 3rd grows
 * the brk heap by a block. Each step prints its number and a checksum of all of it, so a
 * restarted run can be compared line by line with an uninterrupted one. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#define PAGE 4096
#define SIDE_PAGES 16

static uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

static uint64_t sum(const uint64_t *p, size_t words, uint64_t h) {
    for (size_t i = 0; i < words; i++) h = mix(h ^ p[i]) + i;
    return h;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 32;
    long steps = argc > 2 ? atol(argv[2]) : 1000000;
    long ms = argc > 3 ? atol(argv[3]) : 20;
    int drop = !(argc > 4 && strcmp(argv[4], "nodrop") == 0);
    size_t pages = mib * 256, words = pages * PAGE / 8;
    uint64_t *buf = mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) { puts("FAIL mmap"); return 1; }
    for (size_t i = 0; i < words; i++) buf[i] = mix(i);
    uint64_t *side = 0;
    uint64_t *blocks[4096];
    int nblocks = 0;
    for (long s = 1; s <= steps; s++) {
        for (int j = 0; j < 8; j++) {
            size_t pg = mix(s * 8 + j) % pages;
            uint64_t *w = buf + pg * (PAGE / 8);
            for (int k = 0; k < PAGE / 8; k += 7) w[k] = mix(s ^ (uint64_t)k << 20);
        }
        if (s % 5 == 0 || !side) {
            if (side) munmap(side, SIDE_PAGES * PAGE);
            side = mmap(0, SIDE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            for (size_t i = 0; i < SIDE_PAGES * PAGE / 8; i++) side[i] = mix(s + i);
        }
        if (drop && s % 7 == 0) madvise(buf + (mix(s) % pages) * (PAGE / 8), PAGE, MADV_DONTNEED);
        if (s % 3 == 0 && nblocks < 4096) {
            uint64_t *b = sbrk(PAGE);
            if (b != (void *)-1) { for (int k = 0; k < PAGE / 8; k++) b[k] = mix(s * 1000 + k); blocks[nblocks++] = b; }
        }
        uint64_t h = sum(buf, words, 1);
        h = sum(side, SIDE_PAGES * PAGE / 8, h);
        for (int b = 0; b < nblocks; b++) h = sum(blocks[b], PAGE / 8, h);
        printf("step %ld %016llx\n", s, (unsigned long long)h);
        fflush(stdout);
        if (ms) usleep(ms * 1000);
    }
    return 0;
}
