/* leaderblocks: a counter whose leader thread blocks every signal with the rt_sigprocmask
 * system call (past libc), as glibc's pthread_kill does for a moment, and sleeps; another
 * thread prints 0, 1, 2, ... every 3 ms and takes the checkpoint signal. libckpt's thread
 * stopper must then hold the leader with ptrace for every checkpoint. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void *counter(void *arg) {
    (void)arg;
    for (long i = 0;; i++) {
        printf("%ld\n", i);
        fflush(stdout);
        struct timespec ts = { 0, 3000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    return 0;
}

int main(void) {
    pthread_t t;
    if (pthread_create(&t, 0, counter, 0) != 0) return 1;
    sigset_t all;
    sigfillset(&all);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 8);
    for (;;) {
        struct timespec ts = { 0, 10000000 };
        syscall(SYS_nanosleep, &ts, NULL);
    }
}
