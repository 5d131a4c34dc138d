/* tmpfile: writes numbered records into an unlinked temporary file, then reads them all
 * back and checks them. Prints "PASS n" or "FAIL ...". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int n = argc > 2 ? atoi(argv[2]) : 150;
    char path[4096];
    snprintf(path, sizeof path, "%s/tmpXXXXXX", argv[1]);
    int fd = mkstemp(path);
    if (fd < 0 || unlink(path) != 0) { perror("mkstemp"); return 1; }
    for (int i = 0; i < n; i++) {
        char rec[32];
        int len = snprintf(rec, sizeof rec, "record %06d\n", i);
        if (write(fd, rec, len) != len) { perror("write"); return 1; }
        printf("%d\n", i);
        fflush(stdout);
        usleep(10000);
    }
    if (lseek(fd, 0, SEEK_SET) != 0) { perror("lseek"); return 1; }
    FILE *f = fdopen(fd, "r");
    char line[64];
    for (int i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "record %06d\n", i);
        if (!fgets(line, sizeof line, f) || strcmp(line, want) != 0) { printf("FAIL at %d\n", i); return 1; }
    }
    if (fgets(line, sizeof line, f)) { printf("FAIL trailing data\n"); return 1; }
    printf("PASS %d\n", n);
    return 0;
}
