/* watches: 300 inotify watches, on the directories argv[1]/0 .. argv[1]/299 (watch descriptor
 * N + 1 for directory N). Prints "ready", then "event DIR NAME" for each file created in one
 * of them, DIR found from the event's watch descriptor. */
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int in = inotify_init1(IN_CLOEXEC);
    char p[4096];
    for (int i = 0; i < 300; i++) {
        snprintf(p, sizeof p, "%s/%d", argv[1], i);
        mkdir(p, 0755);
        if (inotify_add_watch(in, p, IN_CREATE) != i + 1) { perror("inotify_add_watch"); return 1; }
    }
    printf("ready\n");
    fflush(stdout);
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n <= 0) return 1;
        for (char *at = buf; at < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)at;
            printf("event %d %s\n", e->wd - 1, e->len ? e->name : "");
            fflush(stdout);
            at += sizeof *e + e->len;
        }
    }
}
