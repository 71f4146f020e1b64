/* A program that fails on purpose, for test_fatal.sh: each mode exercises one path of
 * the fatal machinery.  Usage: mp_fatal_helper MODE
 *   mpi      rank 1 sends to a rank that does not exist -> MP_CHECK_MPI -> MPI_Abort(10)
 *   h5       every rank opens a missing HDF5 file -> MP_CHECK_H5 -> MPI_Abort(11)
 *   check    rank 0 fails an MP_CHECK invariant -> MPI_Abort(3)
 *   alloc    rank 0 asks for an impossible allocation -> MPI_Abort(4)
 *   nompi    MP_CHECK fails before MPI is initialised -> exit(3)
 *   ok       nothing fails -> 0 */
#include <stdint.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_mpi.h"

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "ok";
  if (strcmp(mode, "nompi") == 0) {
    int answer = 41;
    MP_CHECK(answer == 42, "answer is %d", answer);
  }
  mp_ctx *ctx = mp_mpi_init(&argc, &argv);
  int rank = mp_mpi_rank(ctx), size = mp_mpi_size(ctx);
  if (strcmp(mode, "mpi") == 0 && rank == 1) {
    int x = 1;
    MP_CHECK_MPI(MPI_Send(&x, 1, MPI_INT, size + 5, 0, mp_mpi_comm(ctx)));
  } else if (strcmp(mode, "h5") == 0) {
    MP_CHECK_H5(H5Fopen("/nonexistent/patches.h5", H5F_ACC_RDONLY, H5P_DEFAULT));
  } else if (strcmp(mode, "check") == 0 && rank == 0) {
    MP_CHECK(size < 0, "size is %d", size);
  } else if (strcmp(mode, "alloc") == 0 && rank == 0) {
    void *p = mp_malloc(SIZE_MAX / 2);
    mp_free(p);
  }
  /* the other ranks wait here and are taken down by the abort */
  MPI_Barrier(mp_mpi_comm(ctx));
  mp_mpi_finalize(ctx);
  return 0;
}
