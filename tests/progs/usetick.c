/* usetick: counts with libtick's tick() and prints each count, every DELAY microseconds.
 * Usage: usetick LIMIT DELAY (link with -ltick) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

long tick(long n);

int main(int argc, char **argv) {
    long limit = argc > 1 ? atol(argv[1]) : 1000, delay = argc > 2 ? atol(argv[2]) : 10000;
    for (long i = 0; i < limit; i = tick(i)) {
        printf("%ld\n", i);
        fflush(stdout);
        usleep(delay);
    }
    return 0;
}
