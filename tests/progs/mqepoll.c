/* mqepoll LIMIT: a POSIX message queue (/ckpt-mqe-PID) registered in an epoll instance for
 * input; counts to LIMIT ("tick I"), then sends itself a message and prints "ready N" with
 * what epoll_wait (no wait) reports, then removes the queue. "mqepoll unlink NAME" only removes
 * queue NAME. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "unlink") == 0) return mq_unlink(argv[2]) == 0 ? 0 : 1;
    long limit = argc > 1 ? atol(argv[1]) : 100;
    char name[64];
    snprintf(name, sizeof name, "/ckpt-mqe-%d", getpid());
    struct mq_attr a = { 0, 4, 32, 0 };
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &a);
    if (q < 0) { perror("mq_open"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 77 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, q, &ev) != 0) { perror("epoll_ctl"); return 1; }
    printf("queue %s\n", name);
    for (long i = 0; i < limit; i++) {
        printf("tick %ld\n", i);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, 0);
    }
    mq_send(q, "x", 1, 0);
    struct epoll_event got[2];
    int n = epoll_wait(ep, got, 2, 0);
    printf("ready %d data %llu\n", n, n > 0 ? (unsigned long long)got[0].data.u64 : 0ULL);
    mq_unlink(name);
    return 0;
}
