/* mp_check — the fatal path behind the check macros (see mp_check.h). */
#include "mp_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void mp_check_whoami(char *buf, int len) {
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) {
    int rank = -1, size = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    snprintf(buf, (size_t)len, "rank %d/%d on %s", rank, size, host);
  } else {
    snprintf(buf, (size_t)len, "no MPI on %s", host);
  }
}

/* Ends the job.  MPI_Abort takes every rank down and hands `code` to mpiexec. */
static _Noreturn void mp_die(int code) {
  fflush(stdout);
  fflush(stderr);
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
  exit(code);
}

static void mp_vreport(const char *file, int line, const char *fmt, va_list ap) {
  char who[320], msg[2048];
  mp_check_whoami(who, sizeof who);
  vsnprintf(msg, sizeof msg, fmt, ap);
  /* one fprintf so lines from different ranks do not interleave mid-line */
  fprintf(stderr, "mammopatch: FATAL at %s:%d [%s]: %s\n", file, line, who, msg);
}

static void mp_report(const char *file, int line, const char *fmt, ...) MP_PRINTF(3, 4);
static void mp_report(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mp_vreport(file, line, fmt, ap);
  va_end(ap);
}

_Noreturn void mp_fatal_at(int code, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mp_vreport(file, line, fmt, ap);
  va_end(ap);
  mp_die(code);
}

_Noreturn void mp_check_failed(const char *file, int line, const char *cond, const char *fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  mp_report(file, line, "check failed: %s -- %s", cond, msg);
  mp_die(MP_EXIT_FATAL);
}

_Noreturn void mp_fatal_mpi(int rc, const char *stmt, const char *file, int line) {
  char err[MPI_MAX_ERROR_STRING + 1] = "";
  int len = 0;
  if (MPI_Error_string(rc, err, &len) != MPI_SUCCESS) snprintf(err, sizeof err, "unknown MPI error");
  err[len < MPI_MAX_ERROR_STRING ? len : MPI_MAX_ERROR_STRING] = '\0';
  mp_report(file, line, "MP_CHECK_MPI(%s) failed: %s (error %d)", stmt, err, rc);
  mp_die(MP_EXIT_MPI);
}

/* H5Ewalk callback: remember the innermost (first) description for our one-line message. */
static herr_t mp_h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
  char *out = data;
  if (n == 0 && e->desc) snprintf(out, 512, "%s (in %s)", e->desc, e->func_name ? e->func_name : "?");
  return 0;
}

_Noreturn void mp_fatal_h5(long long rc, const char *stmt, const char *file, int line) {
  char desc[512] = "no HDF5 error message";
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, mp_h5_walk, desc);
  mp_report(file, line, "MP_CHECK_H5(%s) failed: returned %lld: %s", stmt, rc, desc);
  H5Eprint2(H5E_DEFAULT, stderr);
  mp_die(MP_EXIT_H5);
}
