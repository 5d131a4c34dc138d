/* turns: N threads (argv[1], default 4) take turns, round after round, each printing its own
 * count, kept in a thread-local variable: "round R thread T count C". The main thread starts a
 * round every 5 ms and waits until every thread has had its turn. After argv[2] rounds (default
 * 300) it lets the threads end, joins them and prints "done". The output is the same in every
 * run. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX 64
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int nthreads, round_no, turn = -1, done;
static __thread long mine;

static void *worker(void *arg) {
    int me = (int)(long)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (turn != me && !done) pthread_cond_wait(&changed, &lock);
        if (done) break;
        mine++;
        printf("round %d thread %d count %ld\n", round_no, me, mine);
        fflush(stdout);
        turn = me + 1 < nthreads ? me + 1 : -1;
        pthread_cond_broadcast(&changed);
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

int main(int argc, char **argv) {
    nthreads = argc > 1 ? atoi(argv[1]) : 4;
    int rounds = argc > 2 ? atoi(argv[2]) : 300;
    if (nthreads < 1 || nthreads > MAX) return 2;
    pthread_t t[MAX];
    for (long i = 0; i < nthreads; i++) pthread_create(&t[i], 0, worker, (void *)i);
    for (int r = 0; r < rounds; r++) {
        pthread_mutex_lock(&lock);
        round_no = r;
        turn = 0;
        pthread_cond_broadcast(&changed);
        while (turn != -1) pthread_cond_wait(&changed, &lock);
        pthread_mutex_unlock(&lock);
        struct timespec ts = { 0, 5000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    pthread_mutex_lock(&lock);
    done = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], 0);
    printf("done\n");
    return 0;
}
