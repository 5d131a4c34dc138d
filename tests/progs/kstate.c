/* kstate: kernel state that must survive a restart, checked from inside the program.
 * Each tick prints "i" and name=value pairs; every value is 1 (or the expected text) when the
 * state is as it was at startup. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define GLIBC_RSEQ 1
#else
/* glibc before 2.35 registers no rseq area for its threads: there is none to keep. */
#define GLIBC_RSEQ 0
#endif
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; }
static char altstack[65536];
static char cmdline0[4096];
static ssize_t cmdline0_len;

static ssize_t read_file(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, len);
    close(fd);
    return n;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    const char *dir = argc > 2 ? argv[2] : "/";
    if (chdir(dir) != 0) { perror("chdir"); return 1; }
    umask(027);
    prctl(PR_SET_NAME, "kstate-x");
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, 0);
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    sigaltstack(&ss, 0);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, 0);
    cmdline0_len = read_file("/proc/self/cmdline", cmdline0, sizeof cmdline0);
    void *robust0; size_t robust0_len;
    syscall(SYS_get_robust_list, 0, &robust0, &robust0_len);
    void *last_brk = sbrk(0);

    for (int i = 0; i < n; i++) {
        /* rseq: registering the same area again fails with EBUSY exactly when it is registered. */
#if GLIBC_RSEQ
        struct rseq *area = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
        long r = syscall(SYS_rseq, area, 32, 0, 0x53053053);
        int rseq_ok = __rseq_size == 0 || (r == -1 && errno == EBUSY);
#else
        int rseq_ok = 1;
#endif
        int *tidp = 0;
        prctl(PR_GET_TID_ADDRESS, &tidp);
        int tid_ok = tidp && *tidp == (int)syscall(SYS_gettid);
        void *robust; size_t robust_len;
        syscall(SYS_get_robust_list, 0, &robust, &robust_len);
        int robust_ok = robust == robust0 && robust_len == robust0_len;
        mode_t um = umask(027);
        char cwd[512] = "";
        getcwd(cwd, sizeof cwd);
        char name[17] = "";
        prctl(PR_GET_NAME, name);
        stack_t cur;
        sigaltstack(0, &cur);
        int alt_ok = cur.ss_sp == altstack && cur.ss_size == sizeof altstack;
        sigset_t now;
        sigprocmask(SIG_BLOCK, 0, &now);
        int mask_ok = sigismember(&now, SIGUSR1) && !sigismember(&now, SIGUSR2);
        struct sigaction cur_sa;
        sigaction(SIGTERM, 0, &cur_sa);
        int term_ok = cur_sa.sa_handler == on_term;
        int brk_ok = sbrk(0) == last_brk;
        char cmdline[4096];
        ssize_t cl = read_file("/proc/self/cmdline", cmdline, sizeof cmdline);
        int cmdline_ok = cl == cmdline0_len && memcmp(cmdline, cmdline0, cl) == 0;
        int cpu = sched_getcpu();
#if GLIBC_RSEQ
        int cpu_ok = cpu >= 0 && (__rseq_size == 0 || (int)area->cpu_id == cpu);
#else
        int cpu_ok = cpu >= 0;
#endif
        printf("%d rseq=%d tid=%d robust=%d umask=%03o cwd=%s name=%s alt=%d mask=%d term=%d brk=%d cmdline=%d cpu=%d\n",
               i, rseq_ok, tid_ok, robust_ok, um, cwd, name, alt_ok, mask_ok, term_ok, brk_ok, cmdline_ok, cpu_ok);
        fflush(stdout);
        last_brk = sbrk(0);
        usleep(20000);
    }
    return 0;
}
