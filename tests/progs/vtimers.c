/* vtimers: ITIMER_VIRTUAL and ITIMER_PROF, which count the process's own CPU time, and a POSIX
 * timer on CLOCK_PROCESS_CPUTIME_ID (SIGRTMIN+2), with a handler each. The program burns CPU
 * and prints "i virtual=V prof=P posix=X" every so often; every count must keep growing after
 * a restart (the timers are armed again, with what was left). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t vcount, pcount, xcount;
static void on_posix(int sig) { (void)sig; xcount++; }
static void on_vtalrm(int sig) { (void)sig; vcount++; }
static void on_prof(int sig) { (void)sig; pcount++; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    signal(SIGVTALRM, on_vtalrm);
    signal(SIGPROF, on_prof);
    struct itimerval every = { { 0, 5000 }, { 0, 5000 } };
    setitimer(ITIMER_VIRTUAL, &every, 0);
    setitimer(ITIMER_PROF, &every, 0);
    signal(SIGRTMIN + 2, on_posix);
    struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 2 };
    timer_t cpu;
    struct itimerspec often = { { 0, 5000000 }, { 0, 5000000 } };
    if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &cpu) || timer_settime(cpu, 0, &often, 0)) { perror("timer"); return 1; }
    volatile unsigned long spin = 0;
    for (int i = 0; i < n; i++) {
        for (unsigned long k = 0; k < 20000000; k++) spin += k;
        printf("%d virtual=%d prof=%d posix=%d\n", i, (int)vcount, (int)pcount, (int)xcount);
        fflush(stdout);
    }
    return 0;
}
