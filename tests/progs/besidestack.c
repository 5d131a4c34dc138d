/* besidestack SIDE: memory of its own right beside the stack libckpt maps for itself.
 *
 * SIGUSR2 (ckpt's checkpoint signal) has a handler of the program's, run on an alternate
 * signal stack (SA_ONSTACK), as the Go runtime's handlers are: libckpt then runs each
 * checkpoint on a 1 MiB stack of its own, mapped at the first one, wherever the kernel puts a
 * new 1 MiB mapping. The program makes that place a hole of exactly 1 MiB, the highest free
 * range that size: 64 KiB of data it reads and writes on SIDE ("above" or "below" the hole),
 * one read-only page on the other side. In the program as started the stack and the data
 * never form one region (libckpt's stack is mapped with flags of its own); once restored, the
 * kernel may make them one.
 *
 * Every 10 ms it checks its data, prints "I hole=H merged=M bad=B", and writes the next 512
 * words of its data: H is 1 while nothing is mapped in the hole (0 once libckpt's stack is
 * there), M is 1 when /proc/self/maps shows the data and the hole as one region, B is the
 * number of data pages holding a word that is not one the program wrote there (each word
 * holds its own index and the step that wrote it, so zeros are never right). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (1ul << 20)
#define PAGE 4096ul
#define DATA (64ul << 10)
#define WORDS (DATA / 8)
#define MAGIC 0x5eedf00d00000000ull

static volatile sig_atomic_t got;
static void on_usr2(int sig) { got += sig == SIGUSR2; }
static char altstack[64 << 10];

static uint64_t word(uint64_t w, uint64_t step) { return MAGIC ^ (w << 40) ^ step; }

/* The region of /proc/self/maps holding `addr`: its bounds, or 0 and 0 if none does. */
static void region_of(uintptr_t addr, uintptr_t *start, uintptr_t *end) {
    *start = *end = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= addr && addr < e) {
            *start = s;
            *end = e;
            break;
        }
    }
    fclose(f);
}

static void *map_at(uintptr_t at, size_t len, int prot) {
    void *p = mmap((void *)at, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != MAP_FAILED && p != (void *)at) {
        munmap(p, len);
        return MAP_FAILED;
    }
    return p;
}

int main(int argc, char **argv) {
    int above = argc > 1 && strcmp(argv[1], "above") == 0;
    if (argc < 2 || (!above && strcmp(argv[1], "below") != 0)) {
        fprintf(stderr, "usage: besidestack above|below\n");
        return 2;
    }
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    struct sigaction sa = {0};
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    if (sigaltstack(&ss, 0) != 0 || sigaction(SIGUSR2, &sa, 0) != 0) return 1;
    setvbuf(stdout, 0, _IOLBF, 0);
    printf("start\n");

    /* A new 1 MiB mapping goes to the top of the highest free range that holds it: `top`.
     * If the 1 MiB and a page below it are free too, they are the hole and its lower
     * neighbour; if not, the mapping stays (that range is no longer free) and the next one
     * is tried. */
    uintptr_t top = 0;
    for (int tries = 0; tries < 64 && !top; tries++) {
        char *q = mmap(0, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (q == MAP_FAILED) return 1;
        uintptr_t below = (uintptr_t)q - MIB - DATA;
        void *t = map_at(below, MIB + DATA, PROT_NONE);
        if (t != MAP_FAILED) {
            munmap(t, MIB + DATA);
            top = (uintptr_t)q;
        }
    }
    if (!top) return 1;
    uintptr_t hole = top - MIB;
    /* Above the hole, the start of `top`'s mapping stays; the rest of it, less than 1 MiB,
     * cannot take the stack. */
    size_t above_len = above ? DATA : PAGE;
    munmap((void *)(top + above_len), MIB - above_len);
    size_t below_len = above ? PAGE : DATA;
    if (map_at(hole - below_len, below_len, above ? PROT_READ : PROT_READ | PROT_WRITE) == MAP_FAILED) return 1;
    if (!above && mprotect((void *)top, PAGE, PROT_READ) != 0) return 1;
    uint64_t *data = (uint64_t *)(above ? top : hole - DATA);
    for (uint64_t w = 0; w < WORDS; w++) data[w] = word(w, 0);

    for (uint64_t step = 1;; step++) {
        uintptr_t s, e, ds, de;
        region_of(hole, &s, &e);
        region_of((uintptr_t)data, &ds, &de);
        int bad = 0;
        for (uint64_t p = 0; p < DATA / PAGE; p++) {
            for (uint64_t w = p * PAGE / 8; w < (p + 1) * PAGE / 8; w++) {
                uint64_t x = data[w] ^ MAGIC;
                if (x >> 40 != w || (x & ((1ull << 40) - 1)) >= step) {
                    bad++;
                    break;
                }
            }
        }
        printf("%llu hole=%d merged=%d bad=%d\n", (unsigned long long)step, e == 0, e != 0 && s == ds && e == de, bad);
        for (uint64_t k = 0; k < 512; k++) {
            uint64_t w = (step * 512 + k) % WORDS;
            data[w] = word(w, step);
        }
        struct timespec ts = { 0, 10000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
}
