/* zeroheap: Z MiB written with zeros (present pages), U MiB allocated but never touched, and
 * 1 MiB of pattern. Ticks, then checks all of it and prints PASS or FAIL. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t z = (argc > 1 ? strtoul(argv[1], 0, 10) : 512) << 20;
    size_t u = (argc > 2 ? strtoul(argv[2], 0, 10) : 512) << 20;
    int ticks = argc > 3 ? atoi(argv[3]) : 40;
    uint8_t *zero = malloc(z);
    memset(zero, 0xff, z);
    memset(zero, 0, z);
    uint8_t *untouched = calloc(1, u);
    uint32_t *pat = malloc(1 << 20);
    for (size_t i = 0; i < (1 << 20) / 4; i++) pat[i] = (uint32_t)(i * 2654435761u) | 1;
    for (int t = 0; t < ticks; t++) { printf("tick %d\n", t); fflush(stdout); usleep(20000); }
    for (size_t i = 0; i < z; i++) if (zero[i]) { printf("FAIL zero[%zu]\n", i); return 1; }
    for (size_t i = 0; i < u; i++) if (untouched[i]) { printf("FAIL untouched[%zu]\n", i); return 1; }
    for (size_t i = 0; i < (1 << 20) / 4; i++) if (pat[i] != ((uint32_t)(i * 2654435761u) | 1)) { printf("FAIL pat[%zu]\n", i); return 1; }
    printf("PASS\n");
    return 0;
}
