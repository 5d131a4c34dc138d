/* tcppair MODE: a TCP connection on loopback whose two ends are both in the checkpointed
 * program, on an ephemeral port of a listener it keeps open (first line: "port N").
 *
 * MODE "fork": a parent and its forked child ping-pong a counter over the connection. Each
 * message is "SEQ\n"; each side checks that it gets exactly the number it expects (a byte lost
 * or repeated ends it with "BAD ..." and status 1). The parent prints "round N" for each round
 * trip (N from 1), and both sides check getsockname/getpeername still match what they were.
 *
 * MODE "self": one process holds both ends. Each round it writes record N ("SEQ N ..." padded
 * to 100 bytes) on end A and record N-2 is read from end B (two records stay queued A to B),
 * and the same the other way; it prints "round N".
 *
 * MODE "full": one process holds both ends; first end A is filled until a write would block
 * (B's receive queue full, A holding bytes not sent yet), "filled K" printed with K the bytes
 * written, then each round B reads one 4096-byte record and A writes one more, "round N" with
 * the record's number read, and how many bytes A still holds unsent ("round N unsent U").
 * Every record carries its number in each of its 4-byte words. "full N" ends after round N
 * ("done after N rounds").
 *
 * MODE "fullfork": as "full", across a fork: the child holds end A and fills it, then writes
 * one more record each time the parent, reading end B, sends it a 4-byte acknowledgement back
 * over the connection; the parent prints "round N" for record N, the child "sender unsent U".
 *
 * MODE "shut": one process holds both ends; end A writes records 1 to 20 and shuts down its
 * sending side (SHUT_WR); each round end B reads one record (at round 21 it must find the end
 * of stream: "end of stream after 20"), and a record goes from B to A, which stays open. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) {
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0) {}
}

static void bad(const char *what) {
    printf("BAD %s (errno %d)\n", what, errno);
    fflush(stdout);
    exit(1);
}

/* A listener on 127.0.0.1 (ephemeral port), a connection to it and the accepted end. */
/* With rcvbuf > 0, end B's receive buffer is set to it (through the listener, whose accepted
 * sockets inherit it). */
static void connection(int *lst, int *a, int *b, int rcvbuf) {
    struct sockaddr_in at = { .sin_family = AF_INET };
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof at;
    *lst = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0 && setsockopt(*lst, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf)) bad("SO_RCVBUF");
    if (bind(*lst, (struct sockaddr *)&at, sizeof at) || listen(*lst, 4) || getsockname(*lst, (struct sockaddr *)&at, &len)) bad("listen");
    printf("port %d\n", ntohs(at.sin_port));
    fflush(stdout);
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*a, (struct sockaddr *)&at, sizeof at)) bad("connect");
    *b = accept(*lst, NULL, NULL);
    if (*b < 0) bad("accept");
}

static void read_exact(int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0) bad(k == 0 ? "end of stream" : "read");
        got += k;
    }
}

static void write_exact(int fd, const char *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, buf + done, n - done);
        if (k <= 0) bad("write");
        done += k;
    }
}

/* The addresses of `fd` as text, to compare before and after. */
static void names(int fd, char *out, size_t n) {
    struct sockaddr_in me, peer;
    socklen_t l1 = sizeof me, l2 = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&me, &l1) || getpeername(fd, (struct sockaddr *)&peer, &l2)) bad("names");
    snprintf(out, n, "%d-%d", ntohs(me.sin_port), ntohs(peer.sin_port));
}

static void check_names(int fd, const char *then) {
    char now[64];
    names(fd, now, sizeof now);
    if (strcmp(now, then)) {
        printf("BAD addresses %s became %s\n", then, now);
        exit(1);
    }
}

static void forked(void) {
    int lst, a, b;
    connection(&lst, &a, &b, 0);
    pid_t child = fork();
    if (child == 0) {
        close(a);
        char then[64], line[32];
        names(b, then, sizeof then);
        for (long want = 1;; want += 2) {
            read_exact(b, line, 16);
            if (strtol(line, NULL, 10) != want) { printf("BAD child got %.15s wanted %ld\n", line, want); fflush(stdout); exit(1); }
            check_names(b, then);
            snprintf(line, sizeof line, "%015ld\n", want + 1);
            write_exact(b, line, 16);
        }
    }
    close(b);
    char then[64], line[32];
    names(a, then, sizeof then);
    for (long n = 1;; n++) {
        snprintf(line, sizeof line, "%015ld\n", 2 * n - 1);
        write_exact(a, line, 16);
        read_exact(a, line, 16);
        if (strtol(line, NULL, 10) != 2 * n) { printf("BAD parent got %.15s wanted %ld\n", line, 2 * n); exit(1); }
        check_names(a, then);
        printf("round %ld\n", n);
        fflush(stdout);
        nap(20);
    }
}

static void record(char *r, long n) {
    memset(r, '.', 100);
    snprintf(r, 100, "SEQ %ld ", n);
    r[99] = '\n';
}

static void expect(int fd, long n, const char *side) {
    char got[100], want[100];
    read_exact(fd, got, 100);
    record(want, n);
    if (memcmp(got, want, 100)) { printf("BAD %s got %.20s wanted %ld\n", side, got, n); fflush(stdout); exit(1); }
}

static void self(void) {
    int lst, a, b;
    connection(&lst, &a, &b, 0);
    int one = 1;
    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char r[100], then_a[64], then_b[64];
    names(a, then_a, sizeof then_a);
    names(b, then_b, sizeof then_b);
    for (long n = 1;; n++) {
        record(r, n);
        write_exact(a, r, 100);
        record(r, -n);
        write_exact(b, r, 100);
        if (n > 2) {
            expect(b, n - 2, "b");
            expect(a, -(n - 2), "a");
        }
        check_names(a, then_a);
        check_names(b, then_b);
        printf("round %ld\n", n);
        fflush(stdout);
        nap(20);
    }
}

static void full(long last) {
    int lst, a, b;
    /* B's receive buffer set, not left to the kernel's tuning: a full queue in the default
     * 128 KiB (on loopback each segment costs about twice its bytes) may never leave room for
     * a window again once a round frees 4 KiB, and A's writes then wait on zero-window probes
     * whose interval doubles each time (seen with kernel 6.18: stuck at round 13). */
    connection(&lst, &a, &b, 1 << 20);
    fcntl(a, F_SETFL, O_NONBLOCK);
    static unsigned rec[1024];
    long written = 0, next = 1, partial = 0;
    /* Fill with whole records where possible; a partial one is finished blocking below. */
    for (;;) {
        for (int i = 0; i < 1024; i++) rec[i] = (unsigned)next;
        ssize_t k = write(a, (char *)rec + partial, 4096 - partial);
        if (k < 0 && errno == EAGAIN) break;
        if (k <= 0) bad("fill");
        written += k;
        partial += k;
        if (partial == 4096) { partial = 0; next++; }
    }
    printf("filled %ld\n", written);
    fflush(stdout);
    int flags = fcntl(a, F_GETFL);
    fcntl(a, F_SETFL, flags & ~O_NONBLOCK);
    for (long n = 1;; n++) {
        static unsigned got[1024];
        read_exact(b, (char *)got, 4096);
        for (int i = 0; i < 1024; i++)
            if (got[i] != (unsigned)n) { printf("BAD record %ld word %d is %u\n", n, i, got[i]); fflush(stdout); exit(1); }
        /* The next bytes of the stream: the rest of the partial record, or a new one. */
        for (int i = 0; i < 1024; i++) rec[i] = (unsigned)next;
        write_exact(a, (char *)rec + partial, 4096 - partial);
        partial = 0;
        next++;
        int unsent = 0;
        ioctl(a, SIOCOUTQNSD, &unsent);
        printf("round %ld unsent %d\n", n, unsent);
        fflush(stdout);
        if (n == last) {
            printf("done after %ld rounds\n", n);
            exit(0);
        }
        nap(20);
    }
}

static void fill(int a, long *next, long *partial) {
    static unsigned rec[1024];
    fcntl(a, F_SETFL, O_NONBLOCK);
    for (;;) {
        for (int i = 0; i < 1024; i++) rec[i] = (unsigned)*next;
        ssize_t k = write(a, (char *)rec + *partial, 4096 - *partial);
        if (k < 0 && errno == EAGAIN) break;
        if (k <= 0) bad("fill");
        *partial += k;
        if (*partial == 4096) { *partial = 0; (*next)++; }
    }
    fcntl(a, F_SETFL, fcntl(a, F_GETFL) & ~O_NONBLOCK);
}

static void fullfork(void) {
    int lst, a, b;
    connection(&lst, &a, &b, 0);
    if (fork() == 0) {
        close(b);
        long next = 1, partial = 0;
        static unsigned rec[1024];
        fill(a, &next, &partial);
        for (;;) {
            char ack[4];
            read_exact(a, ack, 4);
            for (int i = 0; i < 1024; i++) rec[i] = (unsigned)next;
            write_exact(a, (char *)rec + partial, 4096 - partial);
            partial = 0;
            next++;
            int unsent = 0;
            ioctl(a, SIOCOUTQNSD, &unsent);
            printf("sender unsent %d\n", unsent);
            fflush(stdout);
        }
    }
    close(a);
    for (long n = 1;; n++) {
        static unsigned got[1024];
        read_exact(b, (char *)got, 4096);
        for (int i = 0; i < 1024; i++)
            if (got[i] != (unsigned)n) { printf("BAD record %ld word %d is %u\n", n, i, got[i]); fflush(stdout); exit(1); }
        write_exact(b, "ack!", 4);
        printf("round %ld\n", n);
        fflush(stdout);
        nap(20);
    }
}

static void shut(void) {
    int lst, a, b;
    connection(&lst, &a, &b, 0);
    char r[100];
    for (long n = 1; n <= 20; n++) {
        record(r, n);
        write_exact(a, r, 100);
    }
    if (shutdown(a, SHUT_WR)) bad("shutdown");
    for (long n = 1;; n++) {
        if (n <= 20) expect(b, n, "b");
        if (n == 21) {
            char c;
            if (read(b, &c, 1) != 0) bad("no end of stream");
            printf("end of stream after 20\n");
        }
        /* The other way stays open. */
        record(r, -n);
        write_exact(b, r, 100);
        expect(a, -n, "a");
        printf("round %ld\n", n);
        fflush(stdout);
        nap(20);
    }
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && !strcmp(argv[1], "fork")) forked();
    if (argc > 1 && !strcmp(argv[1], "self")) self();
    if (argc > 1 && !strcmp(argv[1], "full")) full(argc > 2 ? atol(argv[2]) : 0);
    if (argc > 1 && !strcmp(argv[1], "shut")) shut();
    if (argc > 1 && !strcmp(argv[1], "fullfork")) fullfork();
    return 2;
}
