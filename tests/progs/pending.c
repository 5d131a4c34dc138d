/* pending: signals pending at the checkpoint must still be pending after it. Every thread blocks
 * SIGUSR1 and SIGHUP; the main thread sends SIGUSR1 to the worker thread alone and SIGHUP to the
 * process, then ticks ("tick T"). At tick argv[1] the worker unblocks SIGUSR1 and the main
 * thread SIGHUP, and the program prints "worker usr1=A main hup=B" (1 = delivered there). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_in_worker, hup_in_main, go;
static pid_t worker_tid, main_tid;

static void on_usr1(int s) { (void)s; if (gettid() == worker_tid) usr1_in_worker = 1; }
static void on_hup(int s) { (void)s; if (gettid() == main_tid) hup_in_main = 1; }

static void *worker(void *a) {
    worker_tid = gettid();
    while (!go) usleep(1000);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &s, 0);
    for (;;) pause();
    return a;
}

int main(int argc, char **argv) {
    long at = argc > 1 ? atol(argv[1]) : 30;
    main_tid = gettid();
    signal(SIGUSR1, on_usr1);
    signal(SIGHUP, on_hup);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &s, 0);
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    while (!worker_tid) usleep(1000);
    pthread_kill(t, SIGUSR1);
    kill(getpid(), SIGHUP);
    for (long tick = 0;; tick++) {
        struct timespec ts = { 0, 20000000 };
        while (nanosleep(&ts, &ts) != 0) {}
        if (tick == at) {
            go = 1;
            sigset_t h;
            sigemptyset(&h);
            sigaddset(&h, SIGHUP);
            pthread_sigmask(SIG_UNBLOCK, &h, 0);
            usleep(50000);
            printf("worker usr1=%d main hup=%d\n", (int)usr1_in_worker, (int)hup_in_main);
            fflush(stdout);
            return 0;
        }
        printf("tick %ld\n", tick);
        fflush(stdout);
    }
}
