/* counter: state lives only in memory (a running hash). Prints "i x" for i < N, then "done x".
 * An uninterrupted run and a checkpointed-and-restarted run must print the same lines. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    long delay_us = argc > 2 ? atol(argv[2]) : 10000;
    uint64_t x = 88172645463325252ull;
    static uint64_t history[4096];
    for (int i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        history[i % 4096] = x;
        printf("%d %llu\n", i, (unsigned long long)(x ^ history[(i * 7) % 4096]));
        fflush(stdout);
        struct timespec ts = { delay_us / 1000000, (delay_us % 1000000) * 1000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    printf("done %llu\n", (unsigned long long)x);
    return 0;
}
