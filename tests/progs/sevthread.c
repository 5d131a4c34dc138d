/* sevthread: a POSIX timer with SIGEV_THREAD notification (glibc runs it through a helper
 * thread of its own that blocks every signal, and starts a new thread for each expiry). Every
 * 20 ms the timer's function counts one more expiry and prints "fire N ok=K", where K is 1 when
 * the sigev_value reached it intact and timer_gettime on the timer_t still shows the period.
 * With an argument N, the program ends after N expiries. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static timer_t timer;
static volatile long fired;
static long limit = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;

static void expired(union sigval v) {
    struct itimerspec left;
    int ok = v.sival_ptr == &fired && timer_gettime(timer, &left) == 0 && left.it_interval.tv_nsec == 20000000;
    pthread_mutex_lock(&lock);
    long n = ++fired;
    printf("fire %ld ok=%d\n", n, ok);
    fflush(stdout);
    if (n == limit)
        pthread_cond_signal(&done);
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv) {
    if (argc > 1)
        limit = atol(argv[1]);
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = expired;
    sev.sigev_value.sival_ptr = (void *)&fired;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) {
        perror("timer_create");
        return 1;
    }
    struct itimerspec every = { { 0, 20000000 }, { 0, 20000000 } };
    timer_settime(timer, 0, &every, 0);
    pthread_mutex_lock(&lock);
    while (limit < 0 || fired < limit)
        pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    timer_delete(timer);
    printf("done\n");
    return 0;
}
