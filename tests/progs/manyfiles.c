/* More descriptors or shared file mappings than fit the restorer's old fixed tables (4096):
 *
 *   manyfiles fds N DIR ROUNDS    N descriptors, each on its own file DIR/fI holding "I\n"
 *   manyfiles maps N DIR ROUNDS   N MAP_SHARED mappings, each of its own file DIR/mI (the
 *                                 descriptors closed once mapped)
 *   manyfiles forkfds N DIR ROUNDS  as fds, and then a child (forked) checks them too, sharing
 *                                 each open file description: every round it moves each
 *                                 offset, and the parent finds it moved
 *   manyfiles nulls N DIR ROUNDS  N descriptors on /dev/null, not checked (more than an image
 *                                 holds: the checkpoint must refuse them)
 *
 * Every round checks each of them and prints "round R ok": a descriptor must still be open on
 * its file (the inode its path has, its bytes, its offset at their end); a mapping must hold
 * what its file holds, its own value (written through it in an earlier round), and a value
 * written through it now must be what the file holds then (it maps the file, not a copy). A
 * failure is one line and exit 1.
 * RLIMIT_NOFILE is raised here, as a program that needs this many descriptors does itself.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int n;
static const char *dir;
static int *fds;
static volatile uint64_t **maps;

static void path_of(char *buf, size_t len, char kind, int i) {
    snprintf(buf, len, "%s/%c%d", dir, kind, i);
}

#define STEP 1000003u
/* The value mapping `i` is given in round `round` (never 0; below STEP rounds). */
static uint64_t value(int i, int round) {
    return (uint64_t)i * STEP + (uint64_t)round + 1;
}

/* Each descriptor on its file, `back` bytes before the file's end; with `move`, then moved to
 * `move` bytes before it (a restart refuses an offset past the end: the file got shorter). */
static int check_fds(int round, int back, int move) {
    char path[4096], want[32], got[32];
    for (int i = 0; i < n; i++) {
        struct stat a, b;
        path_of(path, sizeof path, 'f', i);
        int len = snprintf(want, sizeof want, "%d\n", i);
        if (fstat(fds[i], &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            printf("round %d: descriptor %d is not on %s\n", round, fds[i], path);
            return 1;
        }
        if (pread(fds[i], got, sizeof got, 0) != len || memcmp(got, want, len) != 0) {
            printf("round %d: descriptor %d does not read what %s held\n", round, fds[i], path);
            return 1;
        }
        if (lseek(fds[i], 0, SEEK_CUR) != len - back) {
            printf("round %d: descriptor %d is not %d bytes before the end of %s\n", round, fds[i], back, path);
            return 1;
        }
        if (move)
            lseek(fds[i], len - move, SEEK_SET);
    }
    return 0;
}

/* What the file behind mapping `i` holds in its first 8 bytes (1 if it cannot be read). */
static uint64_t in_file(int i) {
    char path[4096];
    uint64_t v = 1;
    path_of(path, sizeof path, 'm', i);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, &v, sizeof v, 0) != sizeof v)
        v = 1;
    if (fd >= 0)
        close(fd);
    return v;
}

static int check_maps(int round) {
    for (int i = 0; i < n; i++) {
        /* What the mapping holds is what its file holds (the program killed after the
         * checkpoint may have written later rounds' values there: a MAP_SHARED mapping is the
         * file's, not saved in the image), and it is this mapping's own value. */
        uint64_t was = *maps[i];
        if (was != in_file(i) || (round > 0 && (was == 0 || (was - 1) / STEP != (uint64_t)i))) {
            printf("round %d: mapping %d does not hold what its file m%d holds\n", round, i, i);
            return 1;
        }
        *maps[i] = value(i, round);
        if (in_file(i) != value(i, round)) {
            printf("round %d: mapping %d does not write to its file m%d\n", round, i, i);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: manyfiles fds|forkfds|maps|nulls N DIR ROUNDS\n");
        return 2;
    }
    int use_maps = strcmp(argv[1], "maps") == 0, nulls = strcmp(argv[1], "nulls") == 0;
    int forked = strcmp(argv[1], "forkfds") == 0;
    n = atoi(argv[2]);
    dir = argv[3];
    int rounds = atoi(argv[4]);
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    rlim_t need = (rlim_t)n + 64;
    if (lim.rlim_cur < need) {
        lim.rlim_cur = need;
        if (lim.rlim_max < need)
            lim.rlim_max = need;
        if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
            perror("setrlimit(RLIMIT_NOFILE)");
            return 1;
        }
    }
    fds = calloc(n, sizeof *fds);
    maps = calloc(n, sizeof *maps);
    char path[4096];
    for (int i = 0; i < n; i++) {
        path_of(path, sizeof path, use_maps ? 'm' : 'f', i);
        int fd = nulls ? open("/dev/null", O_RDONLY) : open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            perror(path);
            return 1;
        }
        if (use_maps) {
            void *a;
            if (ftruncate(fd, 4096) != 0 || (a = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
                perror(path);
                return 1;
            }
            maps[i] = a;
            close(fd);
        } else {
            if (!nulls)
                dprintf(fd, "%d\n", i);
            fds[i] = fd;
        }
    }
    /* The child answers each of the parent's rounds ('k': all well) once it has checked every
     * descriptor and moved its offset to 1 or 2 bytes before the end (by round). */
    int go[2], back[2];
    pid_t child = -1;
    if (forked) {
        if (pipe(go) != 0 || pipe(back) != 0 || (child = fork()) < 0) {
            perror("pipe or fork");
            return 1;
        }
        if (child == 0) {
            close(go[1]);
            close(back[0]);
            char c;
            for (int round = 0; read(go[0], &c, 1) == 1; round++) {
                int bad = check_fds(round, round == 0 ? 0 : 1 + (round - 1) % 2, 1 + round % 2);
                if (write(back[1], bad ? "x" : "k", 1) != 1)
                    _exit(1);
            }
            _exit(0);
        }
        close(go[0]);
        close(back[1]);
    }
    for (int round = 0; round < rounds; round++) {
        if (forked) {
            char c = 0;
            if (write(go[1], "g", 1) != 1 || read(back[0], &c, 1) != 1 || c != 'k') {
                printf("round %d: the child found a descriptor off its file\n", round);
                return 1;
            }
        }
        if (!nulls && (use_maps ? check_maps(round) : check_fds(round, forked ? 1 + round % 2 : 0, 0)))
            return 1;
        printf("round %d ok\n", round);
        fflush(stdout);
        usleep(50000);
    }
    if (forked) {
        int st;
        close(go[1]);
        if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("the child did not end well\n");
            return 1;
        }
    }
    return 0;
}
