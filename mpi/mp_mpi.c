/* mp_mpi — MPI context, groups, sharding and gathers (see mp_mpi.h). */
#include "mp_mpi.h"

#include <hdf5.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_gpu.h"
#include "mp_log.h"

struct mp_ctx {
  MPI_Comm world, node;
  int rank, size, local_rank, local_size, nodes, thread_level;
  char host[MPI_MAX_PROCESSOR_NAME + 1];
};

mp_ctx *mp_mpi_init(int *argc, char ***argv) {
  int provided = 0;
  int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) mp_fatal_mpi(rc, "MPI_Init_thread", __FILE__, __LINE__);
  /* World errors come back to us too (MPI_Abort still works). */
  MP_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  mp_ctx *c = mp_calloc(1, sizeof *c);
  c->thread_level = provided;
  MP_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &c->world));
  MP_CHECK_MPI(MPI_Comm_set_errhandler(c->world, MPI_ERRORS_RETURN));
  MP_CHECK_MPI(MPI_Comm_rank(c->world, &c->rank));
  MP_CHECK_MPI(MPI_Comm_size(c->world, &c->size));
  MP_CHECK_MPI(MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &c->node));
  MP_CHECK_MPI(MPI_Comm_set_errhandler(c->node, MPI_ERRORS_RETURN));
  MP_CHECK_MPI(MPI_Comm_rank(c->node, &c->local_rank));
  MP_CHECK_MPI(MPI_Comm_size(c->node, &c->local_size));
  mp_gpu_set_local(c->local_rank); /* the GPU a device backend of this rank will use */
  /* nodes = number of node leaders (local rank 0) */
  int leader = c->local_rank == 0;
  MP_CHECK_MPI(MPI_Allreduce(&leader, &c->nodes, 1, MPI_INT, MPI_SUM, c->world));
  int hl = 0;
  MP_CHECK_MPI(MPI_Get_processor_name(c->host, &hl));
  c->host[hl] = '\0';
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (provided < MPI_THREAD_FUNNELED && c->rank == 0)
    MP_WARN("MPI provides thread level %d < MPI_THREAD_FUNNELED; OpenMP regions must not call MPI", provided);
  return c;
}

void mp_mpi_finalize(mp_ctx *c) {
  if (c) {
    MPI_Comm_free(&c->node);
    MPI_Comm_free(&c->world);
    mp_free(c);
  }
  MPI_Finalize();
}

MPI_Comm mp_mpi_comm(const mp_ctx *c) { return c->world; }
int mp_mpi_rank(const mp_ctx *c) { return c->rank; }
int mp_mpi_size(const mp_ctx *c) { return c->size; }
MPI_Comm mp_mpi_node_comm(const mp_ctx *c) { return c->node; }
int mp_mpi_local_rank(const mp_ctx *c) { return c->local_rank; }
int mp_mpi_local_size(const mp_ctx *c) { return c->local_size; }
int mp_mpi_nodes(const mp_ctx *c) { return c->nodes; }
const char *mp_mpi_host(const mp_ctx *c) { return c->host; }
int mp_mpi_thread_level(const mp_ctx *c) { return c->thread_level; }

/* ---- sharding --------------------------------------------------------------------- */
mp_range mp_shard_block(uint64_t n, int parts, int part) {
  MP_CHECK(parts > 0 && part >= 0 && part < parts, "part %d of %d", part, parts);
  uint64_t q = n / (uint64_t)parts, r = n % (uint64_t)parts, p = (uint64_t)part;
  mp_range g;
  g.begin = p * q + (p < r ? p : r);
  g.end = g.begin + q + (p < r ? 1 : 0);
  return g;
}

int mp_shard_block_owner(uint64_t n, int parts, uint64_t i) {
  MP_CHECK(parts > 0 && i < n, "item %llu of %llu", (unsigned long long)i, (unsigned long long)n);
  uint64_t q = n / (uint64_t)parts, r = n % (uint64_t)parts;
  uint64_t big = r * (q + 1); /* items held by the first r (larger) parts */
  if (i < big) return (int)(i / (q + 1));
  return (int)(r + (i - big) / q);
}

uint64_t mp_shard_rr_count(uint64_t n, int parts, int part) {
  MP_CHECK(parts > 0 && part >= 0 && part < parts, "part %d of %d", part, parts);
  uint64_t q = n / (uint64_t)parts, r = n % (uint64_t)parts;
  return q + ((uint64_t)part < r ? 1 : 0);
}

/* ---- groups ----------------------------------------------------------------------- */
void mp_group_split(MPI_Comm comm, int ngroups, mp_group *g) {
  int rank, size;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  MP_CHECK_MPI(MPI_Comm_size(comm, &size));
  MP_CHECK(ngroups >= 1 && ngroups <= size, "%d groups over %d ranks", ngroups, size);
  g->ngroups = ngroups;
  g->group = mp_shard_block_owner((uint64_t)size, ngroups, (uint64_t)rank);
  MP_CHECK_MPI(MPI_Comm_split(comm, g->group, rank, &g->comm));
  MP_CHECK_MPI(MPI_Comm_set_errhandler(g->comm, MPI_ERRORS_RETURN));
  MP_CHECK_MPI(MPI_Comm_rank(g->comm, &g->rank));
  MP_CHECK_MPI(MPI_Comm_size(g->comm, &g->size));
}

int mp_group_count(int size, int requested, int jobs) {
  if (requested > 0) return requested;
  int g = jobs < size ? jobs : size;
  if (g < 1) g = 1;
  while (size % g) g--;
  return g;
}

void mp_barrier_quiet(MPI_Comm comm) {
  MPI_Request req;
  MP_CHECK_MPI(MPI_Ibarrier(comm, &req));
  long ns = 100000;
  for (;;) {
    int done = 0;
    MP_CHECK_MPI(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
    ns = ns < 10000000 ? 2 * ns : 20000000;
  }
}

void mp_group_free(mp_group *g) {
  if (g->comm != MPI_COMM_NULL) MPI_Comm_free(&g->comm);
  g->comm = MPI_COMM_NULL;
}

/* ---- gathers ---------------------------------------------------------------------- */
/* Gatherv of variable-length byte runs; returns the concatenation (root only) and,
 * through lens/displs (root only, caller frees), where each rank's run starts. */
static char *mp_gatherv_bytes(MPI_Comm comm, int root, const char *buf, size_t len, int **lens_out,
                              int **displs_out, size_t *total_out) {
  int rank, size;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  MP_CHECK_MPI(MPI_Comm_size(comm, &size));
  MP_CHECK(len < INT_MAX, "%zu bytes are too many to gather in one call", len);
  int n = (int)len, *lens = NULL, *displs = NULL;
  char *all = NULL;
  if (rank == root) {
    lens = mp_calloc((size_t)size, sizeof *lens);
    displs = mp_calloc((size_t)size, sizeof *displs);
  }
  MP_CHECK_MPI(MPI_Gather(&n, 1, MPI_INT, lens, 1, MPI_INT, root, comm));
  long long total = 0;
  if (rank == root) {
    for (int r = 0; r < size; r++) {
      displs[r] = (int)total;
      total += lens[r];
      MP_CHECK(total < INT_MAX, "gathered data exceed 2 GiB");
    }
    all = mp_malloc((size_t)total + 1);
    all[total] = '\0';
  }
  MP_CHECK_MPI(MPI_Gatherv(buf, n, MPI_CHAR, all, lens, displs, MPI_CHAR, root, comm));
  if (rank == root) {
    *lens_out = lens;
    *displs_out = displs;
    *total_out = (size_t)total;
  }
  return all;
}

char *mp_gather_text(MPI_Comm comm, int root, const char *text, size_t len, size_t *outlen) {
  int *lens = NULL, *displs = NULL;
  size_t total = 0;
  char *all = mp_gatherv_bytes(comm, root, text ? text : "", text ? len : 0, &lens, &displs, &total);
  mp_free(lens);
  mp_free(displs);
  if (all && outlen) *outlen = total;
  return all;
}

cJSON *mp_gather_json(MPI_Comm comm, int root, const cJSON *doc) {
  int rank, size;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  MP_CHECK_MPI(MPI_Comm_size(comm, &size));
  char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
  MP_CHECK(!doc || text, "cannot serialise a JSON document for the gather");
  int *lens = NULL, *displs = NULL;
  size_t total = 0;
  char *all = mp_gatherv_bytes(comm, root, text ? text : "null", text ? strlen(text) : 4, &lens, &displs, &total);
  if (text) cJSON_free(text);
  if (rank != root) return NULL;
  cJSON *arr = cJSON_CreateArray();
  for (int r = 0; r < size; r++) {
    char save = all[displs[r] + lens[r]];
    all[displs[r] + lens[r]] = '\0';
    cJSON *item = cJSON_Parse(all + displs[r]);
    all[displs[r] + lens[r]] = save;
    MP_CHECK(item, "rank %d sent JSON that does not parse", r);
    cJSON_AddItemToArray(arr, item);
  }
  mp_free(all);
  mp_free(lens);
  mp_free(displs);
  return arr;
}

void mp_bcast_string(MPI_Comm comm, int root, char **s) {
  int rank;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  long long len = -1;
  if (rank == root && *s) len = (long long)strlen(*s);
  MP_CHECK_MPI(MPI_Bcast(&len, 1, MPI_LONG_LONG, root, comm));
  MP_CHECK(len < INT_MAX, "string of %lld bytes is too large to broadcast", len);
  if (rank != root) *s = len < 0 ? NULL : mp_malloc((size_t)len + 1);
  if (len < 0) return;
  MP_CHECK_MPI(MPI_Bcast(*s, (int)len, MPI_CHAR, root, comm));
  if (rank != root) (*s)[len] = '\0'; /* the root's string may be read-only */
}

uint64_t mp_mpi_report_memory(MPI_Comm comm, const char *stage) {
  int rank, size;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  MP_CHECK_MPI(MPI_Comm_size(comm, &size));
  unsigned long long mine = mp_alloc_get_stats().peak;
  unsigned long long *all = rank == 0 ? mp_calloc((size_t)size, sizeof *all) : NULL;
  MP_CHECK_MPI(MPI_Gather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, 0, comm));
  unsigned long long max = 0;
  if (rank == 0) {
    unsigned long long min = all[0];
    int at = 0;
    double sum = 0;
    for (int r = 0; r < size; r++) {
      if (all[r] > max) max = all[r], at = r;
      if (all[r] < min) min = all[r];
      sum += (double)all[r];
    }
    char a[32], b[32], c[32];
    MP_INFO("%s: peak heap per rank: max %s (rank %d), mean %s, min %s over %d ranks", stage,
            mp_format_bytes(max, a, sizeof a), at, mp_format_bytes((uint64_t)(sum / size), b, sizeof b),
            mp_format_bytes(min, c, sizeof c), size);
    mp_free(all);
  }
  MP_CHECK_MPI(MPI_Bcast(&max, 1, MPI_UNSIGNED_LONG_LONG, 0, comm));
  return max;
}
