/* quiet: counts SIGCHLD signals and children it can wait for, and prints them with a tick
 * number; a checkpoint must show it neither. The first argument sizes a random heap (MiB) so
 * that writing the image takes a while. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t sigchld;
static void on_chld(int sig) { (void)sig; sigchld++; }

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 64;
    uint64_t *heap = malloc(mib << 20), x = 88172645463325252ull;
    for (size_t i = 0; i < (mib << 20) / 8; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; heap[i] = x; }
    signal(SIGCHLD, on_chld);
    int waited = 0;
    for (int i = 0;; i++) {
        pid_t p = waitpid(-1, 0, WNOHANG);
        if (p > 0) waited++;
        int no_children = p == -1 && errno == ECHILD;
        printf("%d sigchld=%d waited=%d nochildren=%d\n", i, (int)sigchld, waited, no_children);
        fflush(stdout);
        usleep(5000);
    }
}
