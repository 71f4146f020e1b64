/* mp_check — the check-macro family and the fatal path.
 *
 * Every library call whose failure we cannot recover from goes through one of these
 * macros.  On failure they print the failing statement, the library's own message,
 * file:line, MPI rank/size and host, then end the whole job: MPI_Abort on
 * MPI_COMM_WORLD when MPI is running (so mpiexec/srun and Slurm see a non-zero exit
 * code), plain exit() otherwise.  Each family has its own exit code so a job log alone
 * says which library failed.
 *
 * Bad *input* (a broken DICOM, a wrong config value) must never come here: callers
 * count and report it and carry on, or refuse with a message and MP_EXIT_USAGE.
 *
 * The GPU families (MP_CHECK_CUDA, ...) live in the headers of their modules so that
 * this header compiles on machines without CUDA.
 */
#ifndef MP_CHECK_H
#define MP_CHECK_H

#include <mpi.h>
#include <hdf5.h>

/* Exit codes seen by the shell / Slurm.  0 success; 1 a run that finished but
 * failed its goal (e.g. a test); 2 usage or configuration error. */
enum {
  MP_EXIT_OK = 0,
  MP_EXIT_FAILURE = 1,
  MP_EXIT_USAGE = 2,
  MP_EXIT_FATAL = 3, /* MP_CHECK / mp_fatal: an internal invariant or system call */
  MP_EXIT_ALLOC = 4, /* out of memory */
  MP_EXIT_MPI = 10,
  MP_EXIT_H5 = 11,
  MP_EXIT_CUDA = 12,
  MP_EXIT_CUDNN = 13,
  MP_EXIT_CUBLAS = 14,
  MP_EXIT_NCCL = 15,
  MP_EXIT_DNNL = 16,
  MP_EXIT_INTERRUPTED = 75, /* stopped by SIGTERM/SIGUSR1 after a checkpoint: resume it (EX_TEMPFAIL) */
};

#if defined(__GNUC__)
#define MP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MP_PRINTF(a, b)
#endif

/* Print "FATAL ... file:line [rank r/n on host]: <message>" to stderr and end the job
 * with `code` (MPI_Abort when MPI is initialized and not finalized, else exit). */
_Noreturn void mp_fatal_at(int code, const char *file, int line, const char *fmt, ...) MP_PRINTF(4, 5);

/* Library-specific back ends of the macros below (they add the library's message). */
_Noreturn void mp_fatal_mpi(int rc, const char *stmt, const char *file, int line);
_Noreturn void mp_fatal_h5(long long rc, const char *stmt, const char *file, int line);

/* Describe the process as "rank r/n on host" (or "no MPI on host") into buf. */
void mp_check_whoami(char *buf, int len);

#define mp_fatal(code, ...) mp_fatal_at((code), __FILE__, __LINE__, __VA_ARGS__)

/* Generic invariant check: MP_CHECK(n > 0, "n = %d", n).  The condition's text is an
 * argument, not part of the format (it may hold a '%'). */
_Noreturn void mp_check_failed(const char *file, int line, const char *cond, const char *fmt, ...) MP_PRINTF(4, 5);
#define MP_CHECK(cond, ...)                                                         \
  do {                                                                              \
    if (!(cond)) mp_check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__);           \
  } while (0)

/* MPI calls return MPI_SUCCESS or an error code (the communicators we use have
 * MPI_ERRORS_RETURN set by mp_mpi_init, so errors come back here). */
#define MP_CHECK_MPI(stmt)                                                          \
  do {                                                                              \
    int mp_check_rc_ = (stmt);                                                      \
    if (mp_check_rc_ != MPI_SUCCESS) mp_fatal_mpi(mp_check_rc_, #stmt, __FILE__, __LINE__); \
  } while (0)

/* HDF5 calls return a negative herr_t/hid_t on failure.  The HDF5 error stack is
 * printed before the job ends (automatic printing is turned off by mp_mpi_init so the
 * stack appears once, here). */
#define MP_CHECK_H5(stmt)                                                           \
  do {                                                                              \
    long long mp_check_rc_ = (long long)(stmt);                                     \
    if (mp_check_rc_ < 0) mp_fatal_h5(mp_check_rc_, #stmt, __FILE__, __LINE__);      \
  } while (0)

/* Like MP_CHECK_H5 but yields the value: hid_t f = MP_H5(H5Fopen(...)); */
#define MP_H5(expr) ((hid_t)mp_h5_checked_((long long)(expr), #expr, __FILE__, __LINE__))
static inline long long mp_h5_checked_(long long v, const char *stmt, const char *file, int line) {
  if (v < 0) mp_fatal_h5(v, stmt, file, line);
  return v;
}

#endif
