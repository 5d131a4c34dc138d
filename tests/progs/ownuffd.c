/* ownuffd [raw-wp]: a program that uses userfaultfd itself. It ticks; on SIGUSR1 it registers
 * memory it mapped and wrote at the start with a userfaultfd of its own (which a checkpoint's
 * tracking may have registered already) and says whether that worked; then it keeps ticking,
 * checking that memory.
 * raw-wp: it registers that memory at once for (synchronous) write-protection, through the raw
 * system call rather than libc's ioctl, and writes a byte of each of its pages at every tick.
 * It never protects anything itself and nothing reads its userfaultfd: should anyone else
 * protect that memory, its next write waits for good and the ticks stop. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }

int main(int argc, char **argv) {
    size_t len = 64 * 4096;
    char *a = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < len; i++) a[i] = (char)(i * 7);
    signal(SIGUSR1, on_usr1);
    int uffd = -1, raw = argc > 1 && strcmp(argv[1], "raw-wp") == 0;
    if (raw) {
        uffd = syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
        struct uffdio_api api = { .api = UFFD_API };
        struct uffdio_register reg = { .range = { (unsigned long)a, len }, .mode = UFFDIO_REGISTER_MODE_WP };
        if (uffd < 0 || syscall(SYS_ioctl, uffd, UFFDIO_API, &api) || syscall(SYS_ioctl, uffd, UFFDIO_REGISTER, &reg)) {
            printf("register failed: %s\n", strerror(errno));
            return 1;
        }
    }
    for (int t = 0; t < 100000; t++) {
        if (raw)
            for (size_t o = 0; o < len; o += 4096) a[o] = (char)(o * 7);
        if (go && uffd < 0) {
            uffd = syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
            struct uffdio_api api = { .api = UFFD_API };
            struct uffdio_register reg = { .range = { (unsigned long)a, len }, .mode = UFFDIO_REGISTER_MODE_MISSING };
            if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) || ioctl(uffd, UFFDIO_REGISTER, &reg))
                printf("register failed: %s\n", strerror(errno));
            else
                printf("registered\n");
        }
        long sum = 0;
        for (size_t i = 0; i < len; i += 512) sum += a[i];
        a[(t * 4096) % len] = (char)((t * 4096) % len * 7);
        printf("tick %d %ld\n", t, sum);
        fflush(stdout);
        usleep(20000);
    }
    return 0;
}
