/* shmanon: a counter in shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS), seen through two
 * views of the same pages (the second made with mremap). Prints "i value alias": value == i + 1
 * as long as the memory is intact, and alias == value as long as the two views still share
 * their pages. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    volatile long *shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) { perror("mmap"); return 1; }
    volatile long *alias = mremap((void *)shared, 0, 4096, MREMAP_MAYMOVE);
    if (alias == MAP_FAILED) { perror("mremap"); return 1; }
    for (int i = 0; i < n; i++) {
        shared[0]++;
        printf("%d %ld %ld\n", i, shared[0], alias[0]);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    return 0;
}
