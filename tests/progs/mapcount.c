/* mapcount: a counter in a MAP_SHARED file mapping, incremented every few ms up to N. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[2]);
    int fd = open(argv[1], O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, 4096) != 0) { perror("open"); return 1; }
    volatile long *counter = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (counter == MAP_FAILED) { perror("mmap"); return 1; }
    close(fd);
    while (*counter < n) {
        (*counter)++;
        printf("%ld\n", *counter);
        fflush(stdout);
        usleep(10000);
    }
    printf("done %ld\n", *counter);
    return 0;
}
