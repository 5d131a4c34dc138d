/* dontfork: memory a child process does not inherit as it is (MADV_DONTFORK: absent in a
 * child; MADV_WIPEONFORK: zeros in a child), as V8 and RDMA libraries use. A counter lives in
 * each; each tick prints "i a b" with a == b == i + 1 as long as both kept their contents.
 * With argv[2] "raw" the memory is marked with the system call itself, not libc's madvise. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    long *a = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long *b = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int raw = argc > 2 && strcmp(argv[2], "raw") == 0;
    int (*mark)(void *, size_t, int) = madvise;
    if (raw) {
        if (a == MAP_FAILED || b == MAP_FAILED || syscall(SYS_madvise, a, 1 << 20, MADV_DONTFORK) || syscall(SYS_madvise, b, 1 << 20, MADV_WIPEONFORK)) {
            perror("mmap/madvise");
            return 1;
        }
    } else if (a == MAP_FAILED || b == MAP_FAILED || mark(a, 1 << 20, MADV_DONTFORK) || mark(b, 1 << 20, MADV_WIPEONFORK)) {
        perror("mmap/madvise");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        a[1000]++;
        b[2000]++;
        printf("%d %ld %ld\n", i, a[1000], b[2000]);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    return 0;
}
