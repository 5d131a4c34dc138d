/* waits: threads caught by the checkpoint inside blocking calls, each of which must return as
 * the program expects after the restart. One thread loops on poll() with a 30 ms timeout on a
 * pipe nobody writes, one on pthread_cond_timedwait (the main thread signals the condition
 * every tick), one on nanosleep(20 ms), and a churn thread creates and joins a short-lived
 * thread over and over (so threads start and exit during the checkpoint). Each tick the main
 * thread prints "tick T poll=P cond=C sleep=S churn=J" with each loop's count. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile long polls, conds, sleeps, churns;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static long signalled;
static int fds[2];

static void *poller(void *a) {
    (void)a;
    for (;;) {
        struct pollfd p = { fds[0], POLLIN, 0 };
        poll(&p, 1, 30);
        polls++;
    }
    return 0;
}

static void *waiter(void *a) {
    (void)a;
    long seen = 0;
    pthread_mutex_lock(&m);
    for (;;) {
        while (signalled == seen) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += 1;
            pthread_cond_timedwait(&c, &m, &dl);
        }
        seen = signalled;
        conds++;
    }
    return 0;
}

static void *sleeper(void *a) {
    (void)a;
    for (;;) {
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, 0);
        sleeps++;
    }
    return 0;
}

static void *nothing(void *a) { return a; }

static void *churner(void *a) {
    (void)a;
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, 0, nothing, 0) == 0) pthread_join(t, 0);
        churns++;
    }
    return 0;
}

int main(int argc, char **argv) {
    long ticks = argc > 1 ? atol(argv[1]) : -1;
    if (pipe(fds) != 0) return 1;
    pthread_t t;
    pthread_create(&t, 0, poller, 0);
    pthread_create(&t, 0, waiter, 0);
    pthread_create(&t, 0, sleeper, 0);
    pthread_create(&t, 0, churner, 0);
    for (long tick = 0; ticks < 0 || tick < ticks; tick++) {
        struct timespec ts = { 0, 30000000 };
        while (nanosleep(&ts, &ts) != 0) {}
        pthread_mutex_lock(&m);
        signalled++;
        pthread_cond_signal(&c);
        pthread_mutex_unlock(&m);
        printf("tick %ld poll=%ld cond=%ld sleep=%ld churn=%ld\n", tick, polls, conds, sleeps, churns);
        fflush(stdout);
    }
    return 0;
}
