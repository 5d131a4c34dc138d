/* alarm: its own SIGALRM handler, driven by setitimer every 10 ms. Prints the tick count every
 * 10 ticks; if the timer or the handler were lost on restart it would hang or die. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;
static void on_alarm(int sig) { (void)sig; ticks++; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 400;
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, 0);
    struct itimerval it = { {0, 10000}, {0, 10000} };
    setitimer(ITIMER_REAL, &it, 0);
    int last = -1;
    while (ticks < n) {
        pause();
        int t = ticks;
        if (t / 10 != last) { last = t / 10; printf("ticks %d\n", last * 10); fflush(stdout); }
    }
    printf("done\n");
    return 0;
}
