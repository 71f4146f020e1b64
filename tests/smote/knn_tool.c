/* knn_tool — mp_knn on a raw float32 matrix, for tests/smote/check_knn.py.
 * Usage: [mpiexec -n K] knn_tool X.f32 N D DIST K OUT.txt [BACKEND]
 * Writes (rank 0) one line per row: k neighbour indices then k distances (%.17g), and
 * prints {"knn_seconds": T} (the mp_knn call alone, for bench/smote).  BACKEND (e.g. cuda,
 * strict): mp_knn_on with that backend's score blocks (tests/gpu/knn.sh), its creation outside
 * the timed call but the upload of X inside it, as in `smote features`. */
#include <stdio.h>
#include <stdlib.h>

#include "mp_alloc.h"
#include "mp_backend.h"
#include "mp_knn.h"

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (argc != 7 && argc != 8) {
    fprintf(stderr, "usage: knn_tool X.f32 N D l2|cosine|l1 K OUT.txt [BACKEND]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  mp_backend *be = NULL;
  if (argc == 8) {
    char err[512];
    be = mp_backend_create(argv[7], err, sizeof err);
    if (!be) {
      fprintf(stderr, "knn_tool: backend %s: %s\n", argv[7], err);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  size_t n = strtoull(argv[2], NULL, 10);
  int d = atoi(argv[3]), k = atoi(argv[5]), rank;
  mp_dist dist;
  if (mp_dist_parse(argv[4], &dist) != 0) MPI_Abort(MPI_COMM_WORLD, 2);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  float *x = mp_malloc(n * (size_t)d * sizeof *x);
  FILE *f = fopen(argv[1], "rb");
  if (!f || fread(x, sizeof *x, n * (size_t)d, f) != n * (size_t)d) MPI_Abort(MPI_COMM_WORLD, 2);
  fclose(f);
  uint32_t *nbr = mp_malloc(n * (size_t)k * sizeof *nbr);
  double *dd = mp_malloc(n * (size_t)k * sizeof *dd);
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  if (mp_knn_on(be, MPI_COMM_WORLD, x, n, d, dist, k, nbr, dd) != 0) MPI_Abort(MPI_COMM_WORLD, 3);
  double t = MPI_Wtime() - t0;
  if (rank == 0) {
    printf("{\"knn_seconds\": %.6f}\n", t);
    FILE *o = fopen(argv[6], "w");
    for (size_t i = 0; i < n; i++) {
      for (int j = 0; j < k; j++) fprintf(o, "%u ", nbr[i * k + j]);
      for (int j = 0; j < k; j++) fprintf(o, "%.17g ", dd[i * k + j]);
      fprintf(o, "\n");
    }
    fclose(o);
  }
  mp_free(x), mp_free(nbr), mp_free(dd);
  if (be) mp_backend_free(be);
  MPI_Finalize();
  return 0;
}
