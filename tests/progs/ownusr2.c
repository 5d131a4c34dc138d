/* ownusr2: takes SIGUSR2 for itself (as the JVM does), through signal() or sigaction(), and
 * counts the signals its handler gets: it prints `I got=N` every 20 ms (and ` default` once
 * SIGUSR2's action reads back as the default). With `sigaction` its handler takes the siginfo
 * too (SA_SIGINFO) and checks that it is the one the signal came with; with `resethand` it is
 * installed for one signal only (SA_RESETHAND). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got, wrong;
static void on_usr2(int sig) { got += sig == SIGUSR2; }
static void on_usr2_info(int sig, siginfo_t *si, void *uc) {
    got += sig == SIGUSR2;
    wrong += si == 0 || uc == 0 || si->si_signo != SIGUSR2 || si->si_code != SI_USER;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "resethand") == 0) {
        /* Once: the first SIGUSR2 reaches the handler, which is then reset to the default. */
        struct sigaction sa = {0};
        sa.sa_handler = on_usr2;
        sa.sa_flags = SA_RESETHAND;
        sigaction(SIGUSR2, &sa, 0);
    } else if (argc > 1 && strcmp(argv[1], "sigaction") == 0) {
        struct sigaction sa = {0}, old;
        sa.sa_sigaction = on_usr2_info;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGUSR2, &sa, 0);
        /* It reads back what it installed. */
        if (sigaction(SIGUSR2, 0, &old) != 0 || old.sa_sigaction != on_usr2_info || !(old.sa_flags & SA_SIGINFO)) {
            printf("sigaction reads back another action\n");
            return 1;
        }
    } else {
        if (signal(SIGUSR2, on_usr2) != SIG_DFL || signal(SIGUSR2, on_usr2) != on_usr2) {
            printf("signal reads back another handler\n");
            return 1;
        }
    }
    for (int i = 0;; i++) {
        struct sigaction now;
        sigaction(SIGUSR2, 0, &now);
        printf("%d got=%d%s%s\n", i, (int)got, wrong ? " wrong siginfo" : "", now.sa_handler == SIG_DFL ? " default" : "");
        fflush(stdout);
        usleep(20000);
    }
}
