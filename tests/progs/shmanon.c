/* shmanon: a counter in shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS). Restart brings the
 * memory back as a private copy (and says so); the counter goes on from its saved value.
 * Prints "i value" with value == i + 1 as long as the memory is intact. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    volatile long *shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) { perror("mmap"); return 1; }
    for (int i = 0; i < n; i++) {
        shared[0]++;
        printf("%d %ld\n", i, shared[0]);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    return 0;
}
