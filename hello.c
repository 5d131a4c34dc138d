/* hello.c: the brief's test program. Prints a dot every second, forever. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    for (;;) {
        printf(".");
        fflush(stdout);
        sleep(1);
    }
}
