/* rlimits: resource limits the program set for itself. It lowers its RLIMIT_NOFILE and
 * RLIMIT_STACK soft limits and raises RLIMIT_CORE's to its hard limit, then prints
 * "i nofile=S/H stack=S/H core=S/H" as getrlimit reports them now. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static void show(int i) {
    struct rlimit n, s, c;
    getrlimit(RLIMIT_NOFILE, &n);
    getrlimit(RLIMIT_STACK, &s);
    getrlimit(RLIMIT_CORE, &c);
    printf("%d nofile=%llu/%llu stack=%llu/%llu core=%llu/%llu\n", i, (unsigned long long)n.rlim_cur, (unsigned long long)n.rlim_max,
           (unsigned long long)s.rlim_cur, (unsigned long long)s.rlim_max, (unsigned long long)c.rlim_cur, (unsigned long long)c.rlim_max);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = 200;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_STACK, &r);
    r.rlim_cur = 4 << 20;
    setrlimit(RLIMIT_STACK, &r);
    getrlimit(RLIMIT_CORE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_CORE, &r);
    for (int i = 0; i < n; i++) {
        show(i);
        struct timespec ts = { 0, 10000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    return 0;
}
