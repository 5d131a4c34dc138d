/* procfile: keeps /proc/meminfo open part-read (a file the kernel makes as it is read, with no
 * size of its own), and /proc/self/stat too, counts to N, then reads on from where it was.
 * Usage: procfile N */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 300;
    int mem = open("/proc/meminfo", O_RDONLY), stat = open("/proc/self/stat", O_RDONLY);
    char b[16] = { 0 };
    if (mem < 0 || stat < 0 || read(mem, b, 8) != 8 || read(stat, b + 8, 1) != 1) { perror("proc"); return 1; }
    for (int i = 1; i <= n; i++) { printf("%d\n", i); fflush(stdout); usleep(10000); }
    char c = 0;
    if (read(mem, &c, 1) != 1 || read(stat, b + 8, 1) < 0) { perror("read on"); return 1; }
    printf("then %.8s%c\n", b, c);
    return 0;
}
