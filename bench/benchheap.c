/* benchheap: the benchmark's target. Fills a heap (random, zero or half of each), starts
 * argv[3] idle threads (default none) and forks argv[4] more processes (default none; each has
 * its copy of the heap, sleeps, and prints "resumed child" when it finds itself restored: its
 * start time changed), then spins
 * reading the clock and remembering the longest stall: SIGUSR1 makes it print that ("gap NS")
 * and start over; SIGHUP makes it write 64 MiB of the heap anew and print "rewritten"; when it finds itself restored it prints "resumed". A restored process keeps its
 * PID (in a PID namespace below myrestart, whose init becomes its parent) or, restored with new
 * IDs, gets myrestart's: either its parent or its PID changes. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t report, rewrite;
static void on_usr1(int sig) { (void)sig; report = 1; }
static void on_hup(int sig) { (void)sig; rewrite = 1; }
static void *idle(void *a) { for (;;) { struct timespec t = { 0, 10000000 }; nanosleep(&t, 0); } return a; }
/* Field 22 of /proc/self/stat: when this process started (a restored one is a new process). */
static unsigned long long start_time(void) {
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long v = 0;
    for (int field = 2; p && *p; p++) if (*p == ' ' && ++field == 22) { v = strtoull(p + 1, 0, 10); break; }
    return v;
}
static uint64_t now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }

int main(int argc, char **argv) {
    size_t bytes = (argc > 1 ? strtoull(argv[1], 0, 10) : 64) << 20;
    const char *fill = argc > 2 ? argv[2] : "random";
    uint64_t *heap = malloc(bytes), x = 88172645463325252ull;
    size_t words = bytes / 8, random_words = strcmp(fill, "zero") == 0 ? 0 : strcmp(fill, "half") == 0 ? words / 2 : words;
    for (size_t i = 0; i < random_words; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; heap[i] = x; }
    memset(heap + random_words, 0, (words - random_words) * 8);
    int threads = argc > 3 ? atoi(argv[3]) : 0; /* idle threads, as a pool would have */
    for (int i = 0; i < threads; i++) { pthread_t t; pthread_create(&t, 0, idle, 0); }
    int procs = argc > 4 ? atoi(argv[4]) : 0;
    for (int i = 0; i < procs; i++) {
        if (fork() == 0) {
            unsigned long long born = start_time(), now_born;
            for (;;) {
                struct timespec t = { 0, 1000000 };
                nanosleep(&t, 0);
                if ((now_born = start_time()) != born) { born = now_born; printf("resumed child %llu\n", (unsigned long long)heap[words / 3]); fflush(stdout); }
            }
        }
    }
    signal(SIGUSR1, on_usr1);
    signal(SIGHUP, on_hup);
    pid_t me = getpid(), parent = getppid();
    printf("ready\n"); fflush(stdout);
    uint64_t last = now(), gap = 0;
    for (;;) {
        uint64_t t = now();
        if (t - last > gap) gap = t - last;
        last = t;
        if (rewrite) {
            /* SIGHUP: 64 MiB written anew, in 1 MiB pieces spread over the heap (for the
             * incremental checkpoint that follows). */
            rewrite = 0;
            size_t piece = (1 << 20) / 8, pieces = 64, stride = words / pieces;
            for (size_t k = 0; k < pieces && stride >= piece; k++)
                for (size_t i = 0; i < piece; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; heap[k * stride + i] = x; }
            printf("rewritten\n"); fflush(stdout); gap = 0; last = now();
        }
        if (report) { report = 0; printf("gap %llu\n", (unsigned long long)gap); fflush(stdout); gap = 0; last = now(); }
        if (getpid() != me || getppid() != parent) { me = getpid(); parent = getppid(); printf("resumed %llu\n", (unsigned long long)heap[words / 3]); fflush(stdout); gap = 0; last = now(); }
    }
}
