/* A parent and its child joined by a pipe, for checkpoints of a tree started without ckpt: the
 * child writes numbered lines into the pipe, one every USEC microseconds, checking each time
 * that its parent is still the process that forked it; the parent prints each line it reads,
 * checking that none is missing or repeated; after LIMIT lines the child exits with status 7
 * and the parent says whether waitpid() on the PID fork() gave it found it so.
 * Usage: pipepair LIMIT USEC [CHILD]: with CHILD (a path: a build of this program, static or
 * not) the child runs that program (`CHILD child FD LIMIT USEC`) rather than this one's copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int child(int fd, long limit, long usec) {
    pid_t parent = getppid();
    char line[64];
    for (long n = 1; n <= limit; n++) {
        int len = getppid() == parent ? snprintf(line, sizeof line, "%ld\n", n) : snprintf(line, sizeof line, "ERROR parent %d, was %d\n", (int)getppid(), (int)parent);
        if (write(fd, line, len) != len) return 3;
        usleep(usec);
    }
    return 7;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "child") == 0) return child(atoi(argv[2]), atol(argv[3]), atol(argv[4]));
    long limit = argc > 1 ? atol(argv[1]) : 300;
    long usec = argc > 2 ? atol(argv[2]) : 3000;
    int fds[2];
    if (pipe(fds) != 0) return 2;
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        close(fds[0]);
        if (argc > 3) {
            char fd[16], l[32], u[32];
            snprintf(fd, sizeof fd, "%d", fds[1]);
            snprintf(l, sizeof l, "%ld", limit);
            snprintf(u, sizeof u, "%ld", usec);
            execl(argv[3], argv[3], "child", fd, l, u, "x", (char *)0);
            return 4;
        }
        return child(fds[1], limit, usec);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    char line[64];
    long expect = 1;
    while (fgets(line, sizeof line, in)) {
        if (atol(line) != expect) {
            printf("ERROR got %s", line);
            fflush(stdout);
            return 1;
        }
        printf("%ld\n", expect++);
        fflush(stdout);
    }
    int status = 0;
    pid_t w = waitpid(pid, &status, 0);
    printf("%s: child %s %d after %ld lines\n", w == pid ? "waitpid found it" : "ERROR waitpid", WIFEXITED(status) ? "exited" : "killed",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), expect - 1);
    return 0;
}
