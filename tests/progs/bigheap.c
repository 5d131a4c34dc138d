/* bigheap: a large heap (argv[1] MiB, default 576) filled with a known pattern plus many small
 * brk-heap blocks. Ticks a while (argv[2] ticks of 50 ms, default 30; with argv[3] = N, until
 * N ticks after it finds itself restored: its PID or its parent changed), then verifies
 * everything, allocates and frees more (both mmap'd and brk memory), and prints PASS or FAIL. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

struct node { struct node *next; uint64_t v; char pad[40]; };

static uint64_t pattern(uint64_t i) { return i * 0x9e3779b97f4a7c15ull ^ (i >> 3); }

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 576;
    int ticks = argc > 2 ? atoi(argv[2]) : 30;
    size_t words = mib * (1 << 20) / 8;
    uint64_t *big = malloc(words * 8);
    if (!big) { puts("FAIL malloc"); return 1; }
    for (size_t i = 0; i < words; i++) big[i] = pattern(i);
    struct node *head = 0;
    for (int i = 0; i < 20000; i++) {
        struct node *n = malloc(sizeof *n);
        n->v = pattern(i); n->next = head; head = n;
    }
    printf("ready %zu MiB\n", mib); fflush(stdout);
    int after_restart = argc > 3 ? atoi(argv[3]) : -1, left = -1;
    pid_t me = getpid(), parent = getppid();
    for (int t = 0; t < ticks && left != 0; t++) {
        printf("tick %d\n", t); fflush(stdout);
        usleep(50000);
        if (after_restart > 0 && left < 0 && (getpid() != me || getppid() != parent)) left = after_restart;
        if (left > 0) left--;
    }
    for (size_t i = 0; i < words; i++)
        if (big[i] != pattern(i)) { printf("FAIL big[%zu]\n", i); return 1; }
    int k = 20000;
    for (struct node *n = head; n; n = n->next)
        if (n->v != pattern(--k)) { printf("FAIL node %d\n", k); return 1; }
    /* More memory after the restart: a large mmap'd block and brk growth. */
    char *more = malloc(64 << 20);
    memset(more, 0x5a, 64 << 20);
    void *small[50000];
    for (int i = 0; i < 50000; i++) { small[i] = malloc(100 + i % 200); memset(small[i], i, 100); }
    for (int i = 0; i < 50000; i++) free(small[i]);
    free(more);
    free(big);
    printf("PASS brk=%p\n", sbrk(0)); fflush(stdout);
    return 0;
}
