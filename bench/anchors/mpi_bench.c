/* Open MPI anchor for `strand bench collective`: MPI_Allreduce (float sum)
 * over the same sizes, reported like strand (JSON lines; time_us is the
 * slowest rank's median). Build and run (TCP over loopback, no shared
 * memory, as the issue asks):
 *
 *   mpicc -O2 -o /tmp/mpi_bench bench/anchors/mpi_bench.c
 *   mpirun --allow-run-as-root --oversubscribe -np 2 --bind-to none \
 *       --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo /tmp/mpi_bench 4096 67108864 2
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    long min = argc > 1 ? atol(argv[1]) : 4096, max = argc > 2 ? atol(argv[2]) : 64L << 20;
    long factor = argc > 3 ? atol(argv[3]) : 2;
    double budget = argc > 4 ? atof(argv[4]) : 0.3;
    for (long size = min; size <= max; size *= factor) {
        long count = size / 4;
        float *x = malloc(count * sizeof(float)), *y = malloc(count * sizeof(float));
        for (long i = 0; i < count; i++) x[i] = (float)(rank % 3 + i % 3);
        MPI_Allreduce(x, y, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        int bad = 0;
        for (long i = 0; i < count; i++) {
            float want = 0;
            for (int r = 0; r < n; r++) want += (float)(r % 3 + i % 3);
            if (y[i] != want) { bad = 1; break; }
        }
        double t0 = MPI_Wtime();
        for (int k = 0; k < 2; k++) MPI_Allreduce(x, y, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double warm[2] = {(MPI_Wtime() - t0) / 2, bad}, wmax[2];
        MPI_Allreduce(warm, wmax, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        int iters = (int)(budget / (wmax[0] > 1e-7 ? wmax[0] : 1e-7));
        if (iters < 5) iters = 5;
        if (iters > 2000) iters = 2000;
        double *times = malloc(iters * sizeof(double));
        for (int k = 0; k < iters; k++) {
            double s = MPI_Wtime();
            MPI_Allreduce(x, y, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            times[k] = MPI_Wtime() - s;
        }
        qsort(times, iters, sizeof(double), cmp);
        double med = times[iters / 2], mmax;
        MPI_Allreduce(&med, &mmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (rank == 0) {
            double alg = count * 4.0 / mmax / 1e9;
            printf("{\"impl\": \"openmpi-tcp\", \"op\": \"allreduce\", \"nproc\": %d, \"dtype\": \"f32\", \"size_bytes\": %ld, "
                   "\"count\": %ld, \"iters\": %d, \"time_us\": %.3f, \"algbw_gbps\": %.6f, \"busbw_gbps\": %.6f, \"ok\": %s}\n",
                   n, count * 4, count, iters, mmax * 1e6, alg, alg * 2.0 * (n - 1) / n, wmax[1] == 0 ? "true" : "false");
            fflush(stdout);
        }
        free(x); free(y); free(times);
    }
    MPI_Finalize();
    return 0;
}
