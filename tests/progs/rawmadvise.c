/* rawmadvise GO [MIB]: maps MIB (default 8) MiB of private anonymous memory, fills every byte
 * with 0x5a and prints "ready". Then every 5 ms it prints "wait I" and looks for the file GO.
 * Once GO is there (the test makes it after a checkpoint, a kill and a restart), it drops the
 * memory with the madvise system call itself (MADV_DONTNEED, past libc: no interposition sees
 * it, as none sees the Go runtime's) and prints the verdict: "zeros" if every byte reads 0, as
 * the kernel promises for private anonymous memory, or "stale N" with N the bytes that do not.
 * Then it ends. The buffer's address and length are on the "ready" line: "ready ADDR LEN". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    size_t len = (size_t)(argc > 2 ? atoi(argv[2]) : 8) << 20;
    unsigned char *buf = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 1;
    memset(buf, 0x5a, len);
    printf("ready %p %zu\n", (void *)buf, len);
    fflush(stdout);
    for (long i = 0; access(argv[1], F_OK) != 0; i++) {
        printf("wait %ld\n", i);
        fflush(stdout);
        struct timespec ts = { 0, 5000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    if (syscall(SYS_madvise, buf, len, MADV_DONTNEED) != 0) {
        perror("madvise");
        return 1;
    }
    size_t stale = 0;
    for (size_t i = 0; i < len; i++) stale += buf[i] != 0;
    if (stale == 0) printf("zeros\n");
    else printf("stale %zu\n", stale);
    return 0;
}
