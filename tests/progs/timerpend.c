/* timerpend: timer expiries pending at the checkpoint keep their siginfo. Two one-shot POSIX
 * timers expire at once while their signals are blocked: one to the process (SIGRTMIN,
 * sigev_value 42), one to the main thread (SIGEV_THREAD_ID, SIGRTMIN+1, sigev_value 7). The
 * program then ticks ("tick T" every 20 ms); at tick argv[1] it takes both signals with
 * sigwaitinfo and prints, for each, its si_code (-2 is SI_TIMER), whether si_timerid names its
 * timer, and its sigev_value. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static timer_t make(int sig, int value, int to_thread) {
    struct sigevent sev = {0};
    sev.sigev_notify = to_thread ? SIGEV_THREAD_ID : SIGEV_SIGNAL;
    sev.sigev_signo = sig;
    sev.sigev_value.sival_int = value;
    sev._sigev_un._tid = gettid();
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &sev, &t) != 0) {
        perror("timer_create");
        exit(1);
    }
    struct itimerspec once = { { 0, 0 }, { 0, 1000000 } };
    timer_settime(t, 0, &once, 0);
    return t;
}

int main(int argc, char **argv) {
    long at = argc > 1 ? atol(argv[1]) : 30;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN);
    sigaddset(&s, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &s, 0);
    timer_t to_process = make(SIGRTMIN, 42, 0);
    timer_t to_thread = make(SIGRTMIN + 1, 7, 1);
    for (;;) {
        sigset_t p;
        sigpending(&p);
        if (sigismember(&p, SIGRTMIN) && sigismember(&p, SIGRTMIN + 1))
            break;
        usleep(1000);
    }
    for (long tick = 0; tick < at; tick++) {
        struct timespec ts = { 0, 20000000 };
        while (nanosleep(&ts, &ts) != 0) {}
        printf("tick %ld\n", tick);
        fflush(stdout);
    }
    for (int i = 0; i < 2; i++) {
        siginfo_t si;
        int sig = sigwaitinfo(&s, &si);
        timer_t mine = sig == SIGRTMIN ? to_process : to_thread;
        printf("signal %s code=%d timer=%d value=%d\n", sig == SIGRTMIN ? "process" : "thread", si.si_code,
               si.si_timerid == (int)(long)mine, si.si_value.sival_int);
    }
    return 0;
}
