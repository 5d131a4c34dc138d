/* A parent and its child on a terminal, each counting and saying when SIGINT reached it:
 * "parent tick N", "child tick N", "parent SIGINT", "child SIGINT". Runs until killed. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t got_int;
static void on_int(int sig) { (void)sig; got_int = 1; }

static void run(const char *who) {
    for (long n = 0;; n++) {
        if (got_int) {
            got_int = 0;
            printf("%s SIGINT\n", who);
        }
        if (n % 10 == 0) printf("%s tick %ld\n", who, n / 10);
        fflush(stdout);
        usleep(20000);
    }
}

int main(void) {
    struct sigaction sa = { .sa_handler = on_int };
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = fork();
    run(child == 0 ? "child" : "parent");
}
