/* shmobj: a counter in a POSIX shared memory object (shm_open NAME, mode 0640, 12388 bytes),
 * mapped MAP_SHARED, its descriptor closed (or, with a second argument "keep", kept open).
 * Prints "i value": value == i + 1 as long as the object holds what the program wrote; with
 * "keep", "i value read", read being the counter read through the descriptor (== value while
 * the descriptor and the mapping share the object). Others may read the counter through the
 * object's file. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: shmobj /NAME\n"); return 1; }
    int fd = shm_open(argv[1], O_CREAT | O_EXCL | O_RDWR, 0640);
    if (fd < 0) { perror("shm_open"); return 1; }
    if (fchmod(fd, 0640) != 0 || ftruncate(fd, 3 * 4096 + 100) != 0) { perror("sizing"); return 1; }
    volatile long *shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shared == MAP_FAILED) { perror("mmap"); return 1; }
    int keep = argc > 2 && argv[2][0] == 'k';
    if (!keep) close(fd);
    for (int i = 0;; i++) {
        shared[0]++;
        long seen = 0;
        if (keep && pread(fd, &seen, sizeof seen, 0) != sizeof seen) { perror("pread"); return 1; }
        if (keep) printf("%d %ld %ld\n", i, shared[0], seen);
        else printf("%d %ld\n", i, shared[0]);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
}
