/* clock: prints CLOCK_MONOTONIC and CLOCK_REALTIME (through the vdso) every 20 ms. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    for (int i = 0; i < n; i++) {
        struct timespec m, r;
        clock_gettime(CLOCK_MONOTONIC, &m);
        clock_gettime(CLOCK_REALTIME, &r);
        printf("%d %lld %lld\n", i, m.tv_sec * 1000000000LL + m.tv_nsec, r.tv_sec * 1000000000LL + r.tv_nsec);
        fflush(stdout);
        usleep(20000);
    }
    return 0;
}
