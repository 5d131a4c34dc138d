/* collide: owns memory at 0x5000000, where myrestart itself is loaded, and checks it after a
 * restart. Prints "i sum" lines, then PASS or FAIL. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define AT ((void *)0x5000000)
#define LEN (16u << 20)

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    uint32_t *p = mmap(AT, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != AT) { printf("FAIL mmap\n"); return 1; }
    for (size_t i = 0; i < LEN / 4; i++) p[i] = (uint32_t)(i * 2654435761u);
    for (int i = 0; i < n; i++) {
        printf("%d %u\n", i, p[(i * 4099) % (LEN / 4)]);
        fflush(stdout);
        usleep(10000);
    }
    for (size_t i = 0; i < LEN / 4; i++)
        if (p[i] != (uint32_t)(i * 2654435761u)) { printf("FAIL at %zu\n", i); return 1; }
    printf("PASS\n");
    return 0;
}
