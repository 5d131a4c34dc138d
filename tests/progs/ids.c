/* ids: what a process remembers about its own identity. At start it notes its PID and TID and
 * locks an ERRORCHECK and a RECURSIVE mutex (glibc stores the owner's TID in them). Each tick
 * prints "i pid0 tid0 getpid gettid /proc/self relock", where relock is what trylock of the
 * recursive mutex returns (0 for its owner); after the last tick it unlocks both mutexes and
 * prints "unlock ec=E rec=R" (0 when the caller still owns them). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    pthread_mutexattr_t a;
    pthread_mutex_t ec, rec;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&ec, &a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec, &a);
    pthread_mutex_lock(&ec);
    pthread_mutex_lock(&rec);
    pid_t pid0 = getpid(), tid0 = gettid();
    for (int i = 0; i < n; i++) {
        char self[64];
        ssize_t l = readlink("/proc/self", self, sizeof self - 1);
        self[l < 0 ? 0 : l] = 0;
        int relock = pthread_mutex_trylock(&rec);
        if (relock == 0) pthread_mutex_unlock(&rec);
        printf("%d %d %d %d %d %s %d\n", i, pid0, tid0, getpid(), gettid(), self, relock);
        fflush(stdout);
        struct timespec ts = { 0, 20000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    int e = pthread_mutex_unlock(&ec), r = pthread_mutex_unlock(&rec);
    printf("unlock ec=%d rec=%d\n", e, r);
    return 0;
}
