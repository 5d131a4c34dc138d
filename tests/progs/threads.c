/* threads: a multi-threaded program whose every thread keeps state the restart must preserve.
 * argv[1] workers (default 4) each count in a thread-local variable and, under a mutex, in a
 * shared total; each checks that gettid() is still the TID it started with and its name is
 * still "worker-i". One more thread blocks every signal and waits in sigtimedwait. The main
 * thread holds an ERRORCHECK mutex throughout and prints, every 20 ms,
 *   "tick T total=N ok=K moved=M"
 * where ok counts workers whose TID, name and thread-local count agree, and moved counts those
 * whose count grew in the last 10 ticks. Each tick the main thread also sends every worker
 * SIGUSR1 with pthread_kill; "kills=K" counts workers whose handler last ran in that worker.
 * Worker 0 holds a RECURSIVE mutex from its start until the end, worker 1 a ROBUST one.  After argv[2] ticks (default: forever) it joins every
 * worker, unlocks the mutex and prints "done unlock=E rec=R robust=B" (0s: each still owned
 * its mutex). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX 128
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t held;
static long total;
static volatile long counts[MAX];
static volatile int healthy[MAX];
static volatile int stop;
static __thread long mine;
static pthread_mutex_t rec;
static volatile int rec_unlock = -1, robust_unlock = -1;
static pthread_mutex_t robust;
static volatile int killed_right[MAX];
static pthread_t workers[MAX];
static pid_t worker_tids[MAX];

static void on_usr1(int s) {
    (void)s;
    for (int i = 0; i < MAX; i++)
        if (worker_tids[i] == gettid()) killed_right[i] = 1;
}

static void *worker(void *arg) {
    long i = (long)arg;
    char want[16], name[16];
    snprintf(want, sizeof want, "worker-%ld", i);
    pthread_setname_np(pthread_self(), want);
    pid_t tid0 = gettid();
    worker_tids[i] = tid0;
    if (i == 0) { pthread_mutex_lock(&rec); pthread_mutex_lock(&rec); }
    if (i == 1) pthread_mutex_lock(&robust);
    while (!stop) {
        pthread_mutex_lock(&lock);
        total++;
        mine++;
        pthread_mutex_unlock(&lock);
        counts[i] = mine;
        pthread_getname_np(pthread_self(), name, sizeof name);
        healthy[i] = gettid() == tid0 && strcmp(name, want) == 0 && mine == counts[i];
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, 0);
    }
    if (i == 1) robust_unlock = pthread_mutex_unlock(&robust);
    if (i == 0) {
        pthread_mutex_unlock(&rec); /* the recursive lock was taken twice: once at start... */
        rec_unlock = pthread_mutex_unlock(&rec); /* ...and once more just below */
    }
    return 0;
}

static void *blocker(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, 0);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    struct timespec ts = { 0, 10000000 };
    while (!stop) sigtimedwait(&usr1, 0, &ts);
    return 0;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    long ticks = argc > 2 ? atol(argv[2]) : -1;
    if (n > MAX) n = MAX;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&held, &a);
    pthread_mutex_lock(&held);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec, &a);
    pthread_mutexattr_t ra;
    pthread_mutexattr_init(&ra);
    pthread_mutexattr_settype(&ra, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutexattr_setrobust(&ra, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &ra);
    signal(SIGUSR1, on_usr1);
    pthread_t t[MAX + 1];
    for (long i = 0; i < n; i++) pthread_create(&t[i], 0, worker, (void *)i);
    for (long i = 0; i < n; i++) workers[i] = t[i];
    pthread_create(&t[n], 0, blocker, 0);
    static long last[10][MAX];
    for (long tick = 0; ticks < 0 || tick < ticks; tick++) {
        struct timespec ts = { 0, 20000000 };
        while (nanosleep(&ts, &ts) != 0) {}
        int ok = 0, moved = 0, kills = 0;
        long *then = last[tick % 10];
        for (int i = 0; i < n; i++) {
            ok += healthy[i];
            moved += counts[i] > then[i];
            then[i] = counts[i];
            kills += killed_right[i];
            killed_right[i] = 0;
            if (worker_tids[i]) pthread_kill(workers[i], SIGUSR1);
        }
        pthread_mutex_lock(&lock);
        long tot = total;
        pthread_mutex_unlock(&lock);
        printf("tick %ld total=%ld ok=%d moved=%d kills=%d\n", tick, tot, ok, moved, kills);
        fflush(stdout);
    }
    stop = 1;
    for (int i = 0; i <= n; i++) pthread_join(t[i], 0);
    printf("done unlock=%d rec=%d robust=%d\n", pthread_mutex_unlock(&held), rec_unlock, robust_unlock);
    return 0;
}
