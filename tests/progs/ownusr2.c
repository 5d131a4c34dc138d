/* ownusr2: takes SIGUSR2 for itself (as the JVM does), through signal() or sigaction(). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void on_usr2(int sig) { (void)sig; got++; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "sigaction") == 0) {
        struct sigaction sa = {0};
        sa.sa_handler = on_usr2;
        sigaction(SIGUSR2, &sa, 0);
    } else {
        signal(SIGUSR2, on_usr2);
    }
    for (int i = 0;; i++) { printf("%d got=%d\n", i, (int)got); fflush(stdout); usleep(20000); }
}
