/* client: a TCP client with its own reconnect logic. It connects to 127.0.0.1:argv[1], then
 * sends "ping N" lines and prints each answer as "reply N TEXT". When the connection fails
 * (reset, broken pipe, end of file) it prints "reconnect after ERROR" and connects again,
 * retrying every 20 ms; N goes on counting either way. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int connect_to(int port) {
    for (;;) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) return s;
        close(s);
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    signal(SIGPIPE, SIG_IGN);
    int port = atoi(argv[1]);
    int s = connect_to(port);
    for (long n = 0;; n++) {
        char line[64], reply[128];
        int len = snprintf(line, sizeof line, "ping %ld\n", n);
        const char *err = NULL;
        if (send(s, line, len, 0) != len) err = strerror(errno);
        size_t got = 0;
        while (!err && (got == 0 || reply[got - 1] != '\n')) {
            ssize_t k = recv(s, reply + got, sizeof reply - 1 - got, 0);
            if (k < 0) err = strerror(errno);
            else if (k == 0) err = "end of file";
            else got += k;
        }
        if (err) {
            printf("reconnect after %s\n", err);
            fflush(stdout);
            close(s);
            s = connect_to(port);
            n--;
            continue;
        }
        reply[got - 1] = 0;
        printf("reply %ld %s\n", n, reply);
        fflush(stdout);
        struct timespec ts = { 0, 20000000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
}
