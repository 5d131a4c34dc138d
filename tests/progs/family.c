/* A parent and the child it forks, joined by a pipe: the child writes consecutive numbers into
 * the pipe (its own counter), the parent reads them and checks that none is missing or
 * repeated (its own counter), printing every hundredth. After LIMIT numbers the child exits with
 * status 7, and the parent reports what waitpid() said of it. Usage: family [LIMIT] [USEC] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long limit = argc > 1 ? atol(argv[1]) : 3000;
    long usec = argc > 2 ? atol(argv[2]) : 2000;
    int fds[2];
    if (pipe(fds) != 0) return 2;
    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) {
        close(fds[0]);
        for (long n = 1; n <= limit; n++) {
            if (write(fds[1], &n, sizeof n) != sizeof n) return 3;
            usleep(usec);
        }
        return 7;
    }
    close(fds[1]);
    printf("child %d\n", (int)child);
    fflush(stdout);
    long expect = 1, n;
    ssize_t got;
    while ((got = read(fds[0], &n, sizeof n)) == sizeof n) {
        if (n != expect) {
            printf("wrong: got %ld, expected %ld\n", n, expect);
            return 1;
        }
        if (n % 100 == 0) {
            printf("got %ld\n", n);
            fflush(stdout);
        }
        expect++;
    }
    int status = 0;
    pid_t w = waitpid(child, &status, 0);
    printf("waitpid %d: %s %d after %ld numbers\n", (int)w, WIFEXITED(status) ? "exit" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), expect - 1);
    return 0;
}
