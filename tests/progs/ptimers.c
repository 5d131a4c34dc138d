/* ptimers: POSIX timers the program holds across the checkpoint. One signals the process
 * (SIGRTMIN, sigev_value 0x1234), one a worker thread only (SIGEV_THREAD_ID, SIGRTMIN+1,
 * value 0x5678). The handlers count a firing only when si_value is right and, for the thread
 * timer, when it arrives in that thread. Each tick prints "tick T proc=P thread=Q left=OK"
 * (OK is 1 when timer_gettime still works on both timer_t values). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile long proc_fired, thread_fired;
static volatile pid_t worker_tid;

static void on_proc(int s, siginfo_t *si, void *u) { (void)s; (void)u; if (si->si_value.sival_int == 0x1234) proc_fired++; }
static void on_thread(int s, siginfo_t *si, void *u) { (void)s; (void)u; if (si->si_value.sival_int == 0x5678 && gettid() == worker_tid) thread_fired++; }

static void *worker(void *a) {
    worker_tid = gettid();
    for (;;) pause();
    return a;
}

int main(int argc, char **argv) {
    long ticks = argc > 1 ? atol(argv[1]) : -1;
    struct sigaction sa = {0};
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sa.sa_sigaction = on_proc;
    sigaction(SIGRTMIN, &sa, 0);
    sa.sa_sigaction = on_thread;
    sigaction(SIGRTMIN + 1, &sa, 0);
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    while (!worker_tid) usleep(1000);
    timer_t tp, tt;
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN;
    sev.sigev_value.sival_int = 0x1234;
    timer_create(CLOCK_MONOTONIC, &sev, &tp);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGRTMIN + 1;
    sev.sigev_value.sival_int = 0x5678;
    sev._sigev_un._tid = worker_tid;
    timer_create(CLOCK_MONOTONIC, &sev, &tt);
    struct itimerspec every = { { 0, 5000000 }, { 0, 5000000 } };
    timer_settime(tp, 0, &every, 0);
    timer_settime(tt, 0, &every, 0);
    for (long tick = 0; ticks < 0 || tick < ticks; tick++) {
        struct timespec ts = { 0, 20000000 };
        while (nanosleep(&ts, &ts) != 0) {}
        struct itimerspec l1, l2;
        int ok = timer_gettime(tp, &l1) == 0 && timer_gettime(tt, &l2) == 0 && l1.it_interval.tv_nsec == 5000000;
        printf("tick %ld proc=%ld thread=%ld left=%d\n", tick, proc_fired, thread_fired, ok);
        fflush(stdout);
    }
    return 0;
}
