/* libtick: a shared library for the tests of libraries mapped from their files at restart.
 * TICK_STEP is set when it is built (a rebuilt library with another step is "changed"). */
#ifndef TICK_STEP
#define TICK_STEP 1
#endif
long tick(long n) { return n + TICK_STEP; }
