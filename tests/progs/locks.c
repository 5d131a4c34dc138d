/* locks DIR [tree]: takes three file locks in DIR and counts, a line every 20 ms:
 *   flock.lck  flock(LOCK_EX)                                 (held by the open file description)
 *   posix.lck  fcntl(F_SETLK) write lock on bytes 100-199     (held by the process)
 *   ofd.lck    fcntl(F_OFD_SETLK) read lock from byte 10 on   (held by the open file description)
 * With "tree" it also takes flock(LOCK_EX) on DIR itself, then forks: the child (which shares
 * flock.lck's and DIR's descriptions, and so their locks) takes an fcntl write lock on the whole of child.lck, and both count ("p N",
 * "c N"). Prints "locked" (each process) once its locks are held. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static int open_in(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) { perror(path); exit(1); }
    return fd;
}

static void range_lock(int fd, int cmd, short type, off_t start, off_t len, const char *what) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    if (fcntl(fd, cmd, &fl) != 0) { perror(what); exit(1); }
}

static void count(const char *tag) {
    printf("%slocked\n", tag);
    fflush(stdout);
    for (long i = 0;; i++) {
        printf("%s%ld\n", tag, i);
        fflush(stdout);
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        while (nanosleep(&ts, &ts) != 0) {}
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: locks DIR [tree]\n"); return 2; }
    const char *dir = argv[1];
    int tree = argc > 2 && strcmp(argv[2], "tree") == 0;
    int f = open_in(dir, "flock.lck");
    if (flock(f, LOCK_EX | LOCK_NB) != 0) { perror("flock"); return 1; }
    range_lock(open_in(dir, "posix.lck"), F_SETLK, F_WRLCK, 100, 100, "F_SETLK");
    range_lock(open_in(dir, "ofd.lck"), F_OFD_SETLK, F_RDLCK, 10, 0, "F_OFD_SETLK");
    if (!tree) count("");
    /* The directory itself, locked through a description the child shares too. */
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    if (d < 0 || flock(d, LOCK_EX | LOCK_NB) != 0) { perror("flock (directory)"); return 1; }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        range_lock(open_in(dir, "child.lck"), F_SETLK, F_WRLCK, 0, 0, "F_SETLK (child)");
        count("c ");
    }
    count("p ");
}
