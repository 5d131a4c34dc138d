/* A program for `ckpt checkpoint PID` to attach to (started without ckpt): it prints the
 * numbers 0 to TICKS-1, one a line, 5 ms apart, then exits. With THREADS 1 it has workers
 * that wait in every way a thread can be found waiting, and each tick hands every one of
 * them a token it must answer before the number is printed: two in pthread_cond_wait
 * (futex), one in read() on a pipe, one in nanosleep, two that never enter the kernel, and
 * one with every signal blocked on an alternate signal stack of its own. (Not sigtimedwait:
 * the kernel ends it with EINTR after any stop, SIGSTOP or ptrace, as signal(7) says.)
 * A call that fails prints ERROR on stdout; one cut short (EINTR) says so on stderr and is
 * made again, as a program that takes signals would.
 *   attached [TICKS] [THREADS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static unsigned long round_no;
static int answered;
static int to_reader[2], from_reader[2];
static volatile unsigned long spun[2], slept, waited;

static void fail(const char *what, int e) { printf("ERROR %s: %s\n", what, strerror(e)); }

/* nanosleep for `ms`, made again with the time left if cut short. */
static void sleep_ms(long ms) {
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&t, &t) != 0) {
        if (errno != EINTR) { fail("nanosleep", errno); return; }
        fprintf(stderr, "EINTR nanosleep\n");
    }
}

static void *waiter(void *arg) {
    (void)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (round_no == seen) {
            int r = pthread_cond_wait(&go, &mu);
            if (r) fail("pthread_cond_wait", r);
        }
        seen = round_no;
        answered++;
        pthread_cond_signal(&done);
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    for (;;) {
        char c;
        ssize_t r = read(to_reader[0], &c, 1);
        if (r < 0 && errno == EINTR) { fprintf(stderr, "EINTR read\n"); continue; }
        if (r != 1) { fail("read", r < 0 ? errno : EIO); continue; }
        if (write(from_reader[1], &c, 1) != 1) fail("write", errno);
    }
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    for (;;) {
        sleep_ms(1);
        __atomic_add_fetch(&slept, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void *spinner(void *arg) {
    volatile unsigned long *n = arg;
    for (;;) __atomic_add_fetch(n, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* Every signal blocked, an alternate stack of its own (which must still be its own after a
 * restart), sleeping 1 ms at a time. */
static void *masked(void *arg) {
    (void)arg;
    static char altstack[64 * 1024];
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) fail("sigaltstack", errno);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        sleep_ms(1);
        stack_t now;
        if (sigaltstack(NULL, &now) != 0 || now.ss_sp != altstack || now.ss_size != sizeof altstack) fail("sigaltstack changed", EINVAL);
        __atomic_add_fetch(&waited, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* Waits until `*n` moves. */
static void moves(volatile unsigned long *n) {
    unsigned long was = __atomic_load_n(n, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(n, __ATOMIC_SEQ_CST) == was) sleep_ms(1);
}

int main(int argc, char **argv) {
    long ticks = argc > 1 ? atol(argv[1]) : 1000000000L;
    int threads = argc > 2 && atoi(argv[2]) > 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (threads) {
        pthread_t t;
        if (pipe(to_reader) || pipe(from_reader)) { fail("pipe", errno); return 1; }
        pthread_create(&t, NULL, waiter, NULL);
        pthread_create(&t, NULL, waiter, NULL);
        pthread_create(&t, NULL, reader, NULL);
        pthread_create(&t, NULL, sleeper, NULL);
        pthread_create(&t, NULL, spinner, (void *)&spun[0]);
        pthread_create(&t, NULL, spinner, (void *)&spun[1]);
        pthread_create(&t, NULL, masked, NULL);
    }
    for (long n = 0; n < ticks; n++) {
        if (threads) {
            pthread_mutex_lock(&mu);
            round_no++;
            answered = 0;
            pthread_cond_broadcast(&go);
            while (answered < 2) pthread_cond_wait(&done, &mu);
            pthread_mutex_unlock(&mu);
            char c = 'x';
            if (write(to_reader[1], &c, 1) != 1) fail("write", errno);
            ssize_t r;
            while ((r = read(from_reader[0], &c, 1)) < 0 && errno == EINTR) fprintf(stderr, "EINTR read\n");
            if (r != 1) fail("read", r < 0 ? errno : EIO);
            moves(&spun[0]);
            moves(&spun[1]);
            moves(&slept);
            moves(&waited);
        }
        printf("%ld\n", n);
        sleep_ms(5);
    }
    return 0;
}
