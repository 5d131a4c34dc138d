/* cowpages: memory a parent and its child share since fork, and memory one of them changed.
 * The parent fills a buffer of MIB MiB and forks; then the child rewrites one page in 8 and the
 * parent one page in 5. Each prints "parent|child ready SUM" (SUM: a checksum of its buffer)
 * and waits. When it finds itself restored (its start time changed) it prints "... resumed SUM"
 * over its buffer as it is then; the child exits 7, the parent reaps it and prints
 * "waitpid: exit N". Usage: cowpages MIB */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static uint64_t sum(const uint64_t *w, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ w[i]) * 1099511628211ull;
    return h;
}

static void rewrite(uint64_t *w, size_t words, size_t every, uint64_t salt) {
    for (size_t page = 0; page * 512 < words; page += every)
        for (size_t i = 0; i < 512 && page * 512 + i < words; i++) w[page * 512 + i] ^= salt + i;
}

int main(int argc, char **argv) {
    size_t bytes = (argc > 1 ? strtoull(argv[1], 0, 10) : 32) << 20, words = bytes / 8;
    uint64_t *w = aligned_alloc(4096, bytes), x = 88172645463325252ull; /* pages are pages */
    if (!w) return 2;
    for (size_t i = 0; i < words; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; w[i] = x; }
    pid_t child = fork();
    if (child < 0) return 2;
    const char *who = child == 0 ? "child" : "parent";
    rewrite(w, words, child == 0 ? 8 : 5, child == 0 ? 0x1111 : 0x2222);
    unsigned long long born = start_time(); /* before "ready": a checkpoint may come at once */
    printf("%s ready %llu\n", who, (unsigned long long)sum(w, words));
    fflush(stdout);
    while (start_time() == born) { struct timespec t = { 0, 1000000 }; nanosleep(&t, 0); }
    printf("%s resumed %llu\n", who, (unsigned long long)sum(w, words));
    fflush(stdout);
    if (child == 0) return 7;
    int st;
    if (waitpid(child, &st, 0) != child) { printf("waitpid failed\n"); return 3; }
    printf("waitpid: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
