/* holdwriter PID: holds the image writer of process PID's next checkpoint before the writer has
 * run a single instruction of its own, as a loaded machine may. libckpt starts a writer from a
 * short-lived intermediate (a vfork-style child of the program) which forks it; this process
 * traces the program's main thread with PTRACE_O_TRACEVFORK and PTRACE_O_TRACEFORK, so both are
 * traced from birth. The program and the intermediate go on (every signal passed on as it
 * came); the writer stays in its first stop. Prints "tracing PID", then "held WRITER" once the
 * writer is held. Killing this process lets everything go: the kernel detaches a dead tracer's
 * tracees, and the writer runs. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX 256
/* New processes whose first stop comes before their parent's event says what they are. */
static pid_t early[MAX];
static int nearly;
/* New processes to let go at their first stop (intermediates), and to hold (writers). */
static pid_t go[MAX], hold[MAX];
static int ngo, nhold;

static int take(pid_t *set, int *n, pid_t p) {
    for (int i = 0; i < *n; i++)
        if (set[i] == p) {
            set[i] = set[--*n];
            return 1;
        }
    return 0;
}

static void put(pid_t *set, int *n, pid_t p) {
    if (*n < MAX) set[(*n)++] = p;
}

static void held(pid_t w) {
    printf("held %d\n", (int)w);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: holdwriter PID\n");
        return 2;
    }
    pid_t prog = atoi(argv[1]);
    if (ptrace(PTRACE_SEIZE, prog, 0, PTRACE_O_TRACEVFORK | PTRACE_O_TRACEFORK) != 0) {
        perror("holdwriter: PTRACE_SEIZE");
        return 1;
    }
    printf("tracing %d\n", (int)prog);
    fflush(stdout);
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, __WALL);
        if (p < 0) {
            if (errno == EINTR) continue;
            perror("holdwriter: waitpid");
            return 1;
        }
        if (!WIFSTOPPED(st)) continue; /* an intermediate that exited, or the program */
        int event = st >> 16, sig = WSTOPSIG(st);
        if (event == PTRACE_EVENT_VFORK || event == PTRACE_EVENT_FORK) {
            unsigned long child = 0;
            ptrace(PTRACE_GETEVENTMSG, p, 0, &child);
            /* A fork made by anything but the program is a writer (its intermediate's). */
            int writer = event == PTRACE_EVENT_FORK && p != prog;
            if (take(early, &nearly, (pid_t)child)) {
                if (writer)
                    held((pid_t)child);
                else
                    ptrace(PTRACE_CONT, (pid_t)child, 0, 0);
            } else if (writer) {
                put(hold, &nhold, (pid_t)child);
            } else {
                put(go, &ngo, (pid_t)child);
            }
            ptrace(PTRACE_CONT, p, 0, 0);
        } else if (p != prog && event == PTRACE_EVENT_STOP) {
            /* A new process's first stop. */
            if (take(hold, &nhold, p))
                held(p);
            else if (take(go, &ngo, p))
                ptrace(PTRACE_CONT, p, 0, 0);
            else
                put(early, &nearly, p);
        } else if (event == PTRACE_EVENT_STOP) {
            ptrace(PTRACE_CONT, p, 0, 0);
        } else {
            /* A signal on its way: delivered as it came. */
            ptrace(PTRACE_CONT, p, 0, sig);
        }
    }
}
