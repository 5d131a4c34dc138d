/* posixmq: a POSIX message queue held open across a checkpoint. Makes /ckpt-mq-PID (8
 * messages of at most 64 bytes, mode 0640) and queues four messages of three priorities,
 * prints "queue NAME", then counts ("i N"). At the end it reads the queue's attributes and
 * takes every message, and prints
 *   "final max=8 size=64 cur=4 nonblock=1 msgs=5:high,3:mid,1:low0,1:low1"
 * then removes the queue. "posixmq unlink NAME" only removes queue NAME (for cleaning up). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { printf("error %s: %s\n", what, strerror(errno)); fflush(stdout); exit(1); }

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "unlink") == 0) return mq_unlink(argv[2]) == 0 ? 0 : 1;
    int n = argc > 1 ? atoi(argv[1]) : 300;
    char name[64];
    snprintf(name, sizeof name, "/ckpt-mq-%d", (int)getpid());
    struct mq_attr a = { 0, 8, 64, 0 };
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0640, &a);
    if (q < 0) die("mq_open");
    const char *texts[4] = { "low0", "high", "low1", "mid" };
    unsigned prios[4] = { 1, 5, 1, 3 };
    for (int i = 0; i < 4; i++)
        if (mq_send(q, texts[i], strlen(texts[i]), prios[i]) != 0) die("mq_send");
    printf("queue %s\n", name);
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        printf("i %d\n", i);
        fflush(stdout);
        struct timespec ts = { 0, 10000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
    if (mq_getattr(q, &a) != 0) die("mq_getattr");
    printf("final max=%ld size=%ld cur=%ld nonblock=%d msgs=", a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs, (a.mq_flags & O_NONBLOCK) != 0);
    char buf[64];
    unsigned prio;
    ssize_t len;
    for (int first = 1; (len = mq_receive(q, buf, sizeof buf, &prio)) >= 0; first = 0)
        printf("%s%u:%.*s", first ? "" : ",", prio, (int)len, buf);
    printf("\n");
    fflush(stdout);
    mq_unlink(name);
    return 0;
}
