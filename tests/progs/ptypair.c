/* A parent that holds the master of a pseudo-terminal and a child that runs on its slave, as
 * under script(1): the child leads a session whose controlling terminal the slave is (its stdin,
 * stdout and stderr), prints a count, and answers the lines it reads; the parent relays the
 * master's output to its own stdout, line by line, and writes into the master the lines the
 * test leaves in DIR/say. Files in DIR steer them: DIR/hold, the parent stops reading the master
 * (the child's lines queue up in the pty); DIR/deaf, the child stops reading its input (the
 * parent's lines queue up). The child writes its count and mode to DIR/progress too (once deaf,
 * only once), so that a test knows what is queued. The line "info" makes the child print its
 * terminal as it sees it; "quit" ends it, and then the parent, with the child's exit status.
 * With a second argument "job" the child is a shell of sorts: the counter runs in a
 * grandchild, in a process group of its own that is the terminal's foreground. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static char dir[4096];

static int exists(const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void progress(const char *what, long n) {
    char p[4200], tmp[4200];
    snprintf(p, sizeof p, "%s/progress", dir);
    snprintf(tmp, sizeof tmp, "%s/progress.tmp", dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%s %ld\n", what, n);
    fclose(f);
    rename(tmp, p);
}

static void info(void) {
    struct termios t;
    struct winsize w;
    tcgetattr(0, &t);
    ioctl(0, TIOCGWINSZ, &w);
    printf("info tty=%d%d%d fg=%d ctty=%d leader=%d lflag=%o iflag=%o oflag=%o erase=%d rows=%d cols=%d\n",
           isatty(0), isatty(1), isatty(2), tcgetpgrp(0) == getpgrp(), tcgetsid(0) == getsid(0), getsid(0) == getpid(),
           (unsigned)t.c_lflag, (unsigned)t.c_iflag, (unsigned)t.c_oflag, t.c_cc[VERASE], w.ws_row, w.ws_col);
    printf("ttyname %s\n", ttyname(0) ? ttyname(0) : "none");
    fflush(stdout);
}

static int counter(void);

/* The session leader on the slave; with `job`, like a shell, it runs the counter in a process
 * group of its own that it makes the terminal's foreground, and waits for it. */
static int child(const char *slave, int job) {
    setsid();
    int s = open(slave, O_RDWR);
    if (s < 0 || ioctl(s, TIOCSCTTY, 0) != 0) { perror("slave"); return 1; }
    dup2(s, 0); dup2(s, 1); dup2(s, 2);
    if (s > 2) close(s);
    if (!job) return counter();
    pid_t j = fork();
    if (j == 0) {
        setpgid(0, 0);
        while (tcgetpgrp(0) != getpid()) usleep(1000);
        return counter();
    }
    setpgid(j, j);
    signal(SIGTTOU, SIG_IGN);
    tcsetpgrp(0, j);
    int st;
    while (waitpid(j, &st, 0) < 0) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static int counter(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    char line[256];
    int deaf = 0;
    for (long n = 1;; n++) {
        printf("count %ld\n", n);
        fflush(stdout);
        int was_deaf = deaf;
        deaf = exists("deaf");
        /* Once deaf it says so once and leaves the file alone: the test checkpoints then, and a
         * descriptor open on progress.tmp at that moment would name a file renamed away (gone)
         * by the restart. */
        if (!(deaf && was_deaf)) progress(deaf ? "deaf" : "count", n);
        struct pollfd p = { 0, POLLIN, 0 };
        if (!deaf && poll(&p, 1, 5) == 1) {
            ssize_t k = read(0, line, sizeof line - 1);
            if (k <= 0) continue;
            line[k] = 0;
            line[strcspn(line, "\n")] = 0;
            if (!strcmp(line, "info")) info();
            else if (!strcmp(line, "quit")) return 0;
            else { printf("child got: %s\n", line); fflush(stdout); }
        } else if (deaf) {
            usleep(5000);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    snprintf(dir, sizeof dir, "%s", argv[1]);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) { perror("ptmx"); return 1; }
    char slave[64];
    snprintf(slave, sizeof slave, "%s", ptsname(m));
    /* A terminal of its own kind: no echo, ^H to erase, 37x111. */
    int s = open(slave, O_RDWR | O_NOCTTY);
    struct termios t;
    tcgetattr(s, &t);
    t.c_lflag &= ~(ECHO | ECHOE | ECHOK);
    t.c_cc[VERASE] = 8;
    tcsetattr(s, TCSANOW, &t);
    struct winsize w = { 37, 111, 0, 0 };
    ioctl(m, TIOCSWINSZ, &w);
    close(s);
    pid_t c = fork();
    if (c == 0) { close(m); return child(slave, argc > 2 && !strcmp(argv[2], "job")); }
    printf("child %d\n", c);
    fflush(stdout);
    char buf[4096], acc[8192];
    size_t have = 0;
    int holding = 0, st;
    for (;;) {
        int hold = exists("hold");
        if (hold != holding) { printf("parent %s\n", hold ? "holding" : "relaying"); fflush(stdout); holding = hold; }
        if (exists("say")) {
            char p[4200], msg[256];
            snprintf(p, sizeof p, "%s/say", dir);
            FILE *f = fopen(p, "r");
            if (f && fgets(msg, sizeof msg, f)) {
                fclose(f);
                unlink(p);
                write(m, msg, strlen(msg));
                msg[strcspn(msg, "\n")] = 0;
                printf("parent wrote %s\n", msg);
                fflush(stdout);
            } else if (f) fclose(f);
        }
        struct pollfd p = { m, POLLIN, 0 };
        if (hold || poll(&p, 1, 5) < 1) { if (hold) usleep(5000); continue; }
        ssize_t k = read(m, buf, sizeof buf);
        if (k <= 0) {
            /* EIO: no slave is open, before the child has opened it or once it has ended. */
            if (waitpid(c, &st, WNOHANG) == c) break;
            usleep(5000);
            continue;
        }
        for (ssize_t i = 0; i < k; i++) {
            if (buf[i] == '\r') continue;
            if (have < sizeof acc) acc[have++] = buf[i];
            if (buf[i] == '\n') { fwrite(acc, 1, have, stdout); fflush(stdout); have = 0; }
        }
    }
    printf("parent: child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 0;
}
