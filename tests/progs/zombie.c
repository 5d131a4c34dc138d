/* A parent, a worker child sharing an anonymous MAP_SHARED page with it (a process-shared
 * mutex and a counter the worker increments), and a child that exits at once with status 5
 * and stays a zombie until the parent has printed REAP_AT lines. The parent prints
 * "counter N" as it sees the shared counter, reaps the zombie ("zombie PID exit 5"), then
 * stops the worker and reaps it ("worker PID exit 0"). Usage: zombie [REAP_AT] [LINES] */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared { pthread_mutex_t m; long counter; int stop; };

int main(int argc, char **argv) {
    int reap_at = argc > 1 ? atoi(argv[1]) : 150;
    int lines = argc > 2 ? atoi(argv[2]) : 200;
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) return 2;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&s->m, &a);
    pid_t zombie = fork();
    if (zombie == 0) _exit(5);
    pid_t worker = fork();
    if (worker == 0) {
        for (;;) {
            pthread_mutex_lock(&s->m);
            int stop = s->stop;
            if (!stop) s->counter++;
            pthread_mutex_unlock(&s->m);
            if (stop) return 0;
            usleep(1000);
        }
    }
    printf("zombie %d worker %d\n", (int)zombie, (int)worker);
    fflush(stdout);
    long last = -1;
    for (int i = 1; i <= lines; i++) {
        pthread_mutex_lock(&s->m);
        long c = s->counter;
        pthread_mutex_unlock(&s->m);
        if (c < last) { printf("counter went back: %ld after %ld\n", c, last); return 1; }
        last = c;
        printf("counter %ld\n", c);
        fflush(stdout);
        if (i == reap_at) {
            int st;
            pid_t w = waitpid(zombie, &st, 0);
            printf("zombie %d exit %d\n", (int)w, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            fflush(stdout);
        }
        usleep(20000);
    }
    pthread_mutex_lock(&s->m);
    s->stop = 1;
    pthread_mutex_unlock(&s->m);
    int st;
    pid_t w = waitpid(worker, &st, 0);
    printf("worker %d exit %d, counter %ld\n", (int)w, WIFEXITED(st) ? WEXITSTATUS(st) : -1, s->counter);
    return 0;
}
