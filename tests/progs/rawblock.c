/* rawblock: the program's only other thread blocks every signal with a raw rt_sigprocmask
 * system call (no libc wrapper, so no interposition sees it), then counts. What it waits on
 * between steps is the first argument:
 *   spin   nothing: it computes (a few hundred thousand steps of a hash chain) between lines;
 *   pipe   a blocking read() of one byte the main thread writes into a pipe every 5 ms;
 *   sleep  nanosleep for 5 ms (restarted with the time left when interrupted).
 * Each step it prints "step I x=X" (X a hash of everything so far), so its output is the same
 * in every run. With a second argument N it prints N steps and the program ends. With
 * RAWBLOCK_NODUMP set in its environment it makes itself not dumpable (PR_SET_DUMPABLE 0). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int mode; /* 0 spin, 1 pipe, 2 sleep */
static long steps = -1;
static int fds[2];
static volatile int finished;

static void *counter(void *a) {
    uint64_t all = ~0ULL;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 8);
    uint64_t x = 7;
    for (long i = 0; steps < 0 || i < steps; i++) {
        if (mode == 0) {
            for (int k = 0; k < 300000; k++)
                x = x * 6364136223846793005ULL + 1442695040888963407ULL + (x >> 29);
        } else if (mode == 1) {
            char c;
            ssize_t r;
            while ((r = read(fds[0], &c, 1)) < 0 && errno == EINTR) {}
            if (r != 1) {
                printf("read %zd\n", r);
                exit(1);
            }
            x = x * 31 + (unsigned char)c;
        } else {
            struct timespec ts = { 0, 5000000 };
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
            x = x * 31 + 3;
        }
        char line[64];
        int n = snprintf(line, sizeof line, "step %ld x=%llu\n", i, (unsigned long long)x);
        if (write(1, line, n) != n)
            exit(1);
    }
    finished = 1;
    return a;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: rawblock spin|pipe|sleep [STEPS]\n");
        return 2;
    }
    mode = !strcmp(argv[1], "pipe") ? 1 : !strcmp(argv[1], "sleep") ? 2 : 0;
    if (argc > 2)
        steps = atol(argv[2]);
    if (getenv("RAWBLOCK_NODUMP"))
        prctl(PR_SET_DUMPABLE, 0);
    if (pipe(fds) != 0)
        return 1;
    pthread_t t;
    pthread_create(&t, 0, counter, 0);
    for (unsigned char c = 1; !finished; c++) {
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, 0);
        if (mode == 1 && write(fds[1], &c, 1) != 1)
            return 1;
    }
    pthread_join(t, 0);
    printf("done\n");
    return 0;
}
