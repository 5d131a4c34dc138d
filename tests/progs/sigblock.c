/* sigblock MODE N: a counter that blocks every signal, as script(1) does, and prints
 * "i x mask=ok" N times, then "done x". The mask is read back with sigprocmask's old set each
 * time: "mask=ok" says it is still exactly the one the program set (every signal but those
 * the kernel never blocks), before and after a checkpoint and a restart.
 *   fd    blocks with sigprocmask, waits 10 ms at a time in poll on a signalfd for SIGTERM and
 *         SIGCHLD (a SIGTERM ends it with "term").
 *   wait  blocks with sigprocmask, ticks on a 10 ms interval timer, each SIGALRM taken with
 *         sigwaitinfo on the full set; any other signal is printed and ends it (exit 1).
 *   raw   blocks with the rt_sigprocmask system call itself (as static code or a Go runtime
 *         would), past libc, and sleeps 10 ms at a time.
 *   traced  as raw, traced (PTRACE_SEIZE) by a child of its own that does nothing else, so
 *         that no other tracer can attach to it.
 *   tree  forks a child that runs as raw, and waits for it.
 *   workers  first runs 600 threads one after the other, each blocking every signal with
 *         pthread_sigmask and ending (a server's short-lived workers), then goes on as fd.
 * sigblock exec PROG ARGS...: blocks every signal with the system call, then runs PROG, which
 *   starts with every signal blocked. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static sigset_t asked;

/* Whether the mask libc reports is the one asked for (SIGKILL and SIGSTOP cannot be blocked;
 * glibc keeps its two internal signals for itself). */
static int mask_ok(void) {
    sigset_t now;
    if (sigprocmask(SIG_BLOCK, NULL, &now) != 0) return 0;
    for (int s = 1; s <= 64; s++) {
        if (s == SIGKILL || s == SIGSTOP || s == 32 || s == 33) continue;
        if (sigismember(&now, s) != sigismember(&asked, s)) {
            fprintf(stderr, "signal %d: blocked %d, asked %d\n", s, sigismember(&now, s), sigismember(&asked, s));
            return 0;
        }
    }
    return 1;
}

static void on_winch(int sig) { (void)sig; }

static void *worker(void *arg) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    return arg;
}

/* Whether blocking and unblocking SIGUSR2 alone reads back as asked, and SIGWINCH's handler
 * still shows the full sa_mask it was given (modes that go through libc). */
static int view_ok(void) {
    sigset_t one, now;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    sigprocmask(SIG_BLOCK, NULL, &now);
    int ok = !sigismember(&now, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &one, NULL);
    sigprocmask(SIG_BLOCK, NULL, &now);
    ok = ok && sigismember(&now, SIGUSR2);
    struct sigaction sa;
    sigaction(SIGWINCH, NULL, &sa);
    for (int s = 1; s <= 64; s++)
        if (s != SIGKILL && s != SIGSTOP && s != 32 && s != 33 && sigismember(&sa.sa_mask, s) != 1) ok = 0;
    if (!ok) fprintf(stderr, "sigblock: the masks read back are not the ones set\n");
    return ok;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "fd";
    int n = argc > 2 ? atoi(argv[2]) : 300;
    sigfillset(&asked);
    if (!strcmp(mode, "exec") && argc > 2) {
        uint64_t all = ~0ull;
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
        execvp(argv[2], argv + 2);
        perror("execvp");
        return 2;
    }
    if (!strcmp(mode, "tree")) {
        pid_t child = fork();
        if (child < 0) return 2;
        if (child > 0) {
            int st;
            while (waitpid(child, &st, 0) != child) {}
            printf("child ended %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            return 0;
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* not left running if the test fails */
        mode = "raw";
    }
    int sfd = -1;
    if (!strcmp(mode, "workers")) {
        for (int i = 0; i < 600; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0) return 2;
        }
        mode = "fd";
    }
    if (!strcmp(mode, "traced")) {
        int ready[2];
        if (pipe(ready) != 0) return 2;
        pid_t parent = getpid();
        if (fork() == 0) {
            /* Gone with the program, so that the program can be reaped (a tracer sees its
             * death first). */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            char ok = ptrace(PTRACE_SEIZE, parent, 0, 0) == 0 ? 'y' : 'n';
            if (write(ready[1], &ok, 1) != 1) _exit(2);
            for (;;) pause();
        }
        char ok = 0;
        if (read(ready[0], &ok, 1) != 1 || ok != 'y') { fprintf(stderr, "sigblock: not traced\n"); return 2; }
    }
    if (!strcmp(mode, "raw") || !strcmp(mode, "traced")) {
        uint64_t all = ~0ull;
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
    } else {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_winch;
        sigfillset(&sa.sa_mask);
        sigaction(SIGWINCH, &sa, NULL);
        sigprocmask(SIG_SETMASK, &asked, NULL);
    }
    if (!strcmp(mode, "fd")) {
        sigset_t want;
        sigemptyset(&want);
        sigaddset(&want, SIGTERM);
        sigaddset(&want, SIGCHLD);
        sfd = signalfd(-1, &want, SFD_CLOEXEC);
        if (sfd < 0) { perror("signalfd"); return 2; }
    } else if (!strcmp(mode, "wait")) {
        struct itimerval it = { { 0, 10000 }, { 0, 10000 } };
        setitimer(ITIMER_REAL, &it, NULL);
    }
    int through_libc = sfd >= 0 || !strcmp(mode, "wait");
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        printf("%d %llu mask=%s\n", i, (unsigned long long)x, mask_ok() && (!through_libc || view_ok()) ? "ok" : "changed");
        fflush(stdout);
        if (sfd >= 0) {
            struct pollfd p = { sfd, POLLIN, 0 };
            if (poll(&p, 1, 10) > 0) {
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGTERM) { puts("term"); return 0; }
            }
        } else if (!strcmp(mode, "wait")) {
            siginfo_t si;
            int s = sigwaitinfo(&asked, &si);
            if (s != SIGALRM) { printf("signal %d\n", s); fflush(stdout); return 1; }
        } else {
            struct timespec ts = { 0, 10000000 };
            while (nanosleep(&ts, &ts) != 0) {}
        }
    }
    printf("done %llu\n", (unsigned long long)x);
    return 0;
}
