/* omp: an OpenMP reduction repeated; its results depend only on the round, so a restarted run
 * must print exactly what an uninterrupted one does: "round R value V". */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    for (int r = 0; r < rounds; r++) {
        double v = 0;
#pragma omp parallel for reduction(+ : v)
        for (int i = 0; i < 2000000; i++) v += (double)(i % (r + 2)) / 1000.0;
        printf("round %d value %.3f\n", r, v);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    return 0;
}
