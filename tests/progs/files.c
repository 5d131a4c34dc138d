/* files: reads an input file line by line (stdio, buffered) and appends "n: line" to a log
 * opened O_APPEND, through a descriptor kept open; also keeps /dev/null, a directory and a
 * dup'ed descriptor open, an empty pipe (restored) and a netlink socket (not restored). Prints each
 * line number on stdout. At the end prints "done N". */
#include <fcntl.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    FILE *in = fopen(argv[1], "r");
    int log = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    int null = open("/dev/null", O_WRONLY);
    int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int dup_log = dup(log);
    int pipefd[2];
    if (pipe(pipefd) != 0) { perror("pipe"); return 1; } /* kept open, never used */
    if (socket(AF_NETLINK, SOCK_RAW, 0) < 0) { perror("socket"); return 1; } /* not restorable */
    if (!in || log < 0 || null < 0 || dir < 0 || dup_log < 0) { perror("open"); return 1; }
    long delay = argc > 3 ? atol(argv[3]) : 10000;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, in)) {
        n++;
        char out[300];
        int len = snprintf(out, sizeof out, "%d: %s", n, line);
        if (write(n % 2 ? log : dup_log, out, len) != len) { perror("write"); return 1; }
        if (write(null, out, len) != len) { perror("write null"); return 1; }
        if (fcntl(dir, F_GETFD) != FD_CLOEXEC) { printf("FAIL cloexec\n"); return 1; }
        if ((fcntl(log, F_GETFL) & O_APPEND) == 0) { printf("FAIL append\n"); return 1; }
        printf("%d\n", n);
        fflush(stdout);
        usleep(delay);
    }
    printf("done %d\n", n);
    return 0;
}
