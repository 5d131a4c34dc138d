/* mpiring LOG: MPI ranks pass a counter around a ring over and over (rank 0 adds 1, every
 * other rank adds 1000). Rank 0 writes "lap N value V" to the file LOG after each lap (made
 * empty first; written at the file's offset, not appended), so with 2 ranks V is
 * (N + 1) * 1001 exactly when no message was lost or repeated. Built with
 * the flags `mpicc --showme` gives; run under `mpirun -np 2`. */
#include <mpi.h>
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    FILE *log = NULL;
    if (rank == 0 && (argc < 2 || !(log = fopen(argv[1], "w")))) MPI_Abort(MPI_COMM_WORLD, 2);
    long v = 0;
    for (long lap = 0; lap < 1000000; lap++) {
        if (rank == 0) {
            v++;
            MPI_Send(&v, 1, MPI_LONG, 1 % size, 0, MPI_COMM_WORLD);
            MPI_Recv(&v, 1, MPI_LONG, size - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            fprintf(log, "lap %ld value %ld\n", lap, v);
            fflush(log);
            struct timespec ts = { 0, 20000000 };
            nanosleep(&ts, NULL);
        } else {
            MPI_Recv(&v, 1, MPI_LONG, rank - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            v += 1000;
            MPI_Send(&v, 1, MPI_LONG, (rank + 1) % size, 0, MPI_COMM_WORLD);
        }
    }
    MPI_Finalize();
    return 0;
}
