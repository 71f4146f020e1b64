/* mp_mpi — the MPI context of a mammopatch process, rank groups, sharding helpers and
 * rank-0 gathers.
 *
 * One mp_ctx per process: MPI_Init_thread (MPI_THREAD_FUNNELED: only the main thread
 * calls MPI; OpenMP threads compute), a private duplicate of MPI_COMM_WORLD, the
 * node-local communicator (MPI_Comm_split_type SHARED: local rank picks the GPU), and
 * MPI_ERRORS_RETURN on every communicator we own so MP_CHECK_MPI reports errors with
 * context instead of MPI's anonymous abort.  HDF5's automatic error printing is turned
 * off here as well (MP_CHECK_H5 prints the stack once).
 */
#ifndef MP_MPI_H
#define MP_MPI_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct mp_ctx mp_ctx;

mp_ctx *mp_mpi_init(int *argc, char ***argv);
/* Frees the context and calls MPI_Finalize. */
void mp_mpi_finalize(mp_ctx *ctx);

MPI_Comm mp_mpi_comm(const mp_ctx *ctx); /* our duplicate of MPI_COMM_WORLD */
int mp_mpi_rank(const mp_ctx *ctx);
int mp_mpi_size(const mp_ctx *ctx);
MPI_Comm mp_mpi_node_comm(const mp_ctx *ctx);
int mp_mpi_local_rank(const mp_ctx *ctx); /* rank on this node */
int mp_mpi_local_size(const mp_ctx *ctx); /* ranks on this node */
int mp_mpi_nodes(const mp_ctx *ctx);      /* number of distinct nodes */
const char *mp_mpi_host(const mp_ctx *ctx);
int mp_mpi_thread_level(const mp_ctx *ctx); /* what MPI_Init_thread provided */

/* ---- rank groups (the GAN sweep, the repeats) -------------------------------------- */
typedef struct {
  MPI_Comm comm; /* the group's communicator (MPI_ERRORS_RETURN) */
  int group;     /* which group this rank belongs to, 0..ngroups-1 */
  int ngroups;
  int rank, size; /* within the group */
} mp_group;

/* Split comm into ngroups groups of consecutive ranks (sizes differ by at most one;
 * 1 <= ngroups <= size).  Collective over comm. */
void mp_group_split(MPI_Comm comm, int ngroups, mp_group *out);
void mp_group_free(mp_group *g);
/* How many groups to run `jobs` independent jobs on `size` ranks: `requested` when > 0,
 * else the largest divisor of size that is <= jobs (equal groups, none idle).  The
 * caller checks that a requested count divides size when it needs equal groups. */
int mp_group_count(int size, int requested, int jobs);
/* A barrier over comm that does not spin while it waits: MPI_Ibarrier polled with sleeps
 * growing from 0.1 ms to 20 ms.  For rank groups that finished their jobs while others
 * still work (an experiment's or a sweep's last jobs): a blocking collective busy-polls
 * (Open MPI), which takes a core from the groups still training wherever ranks share
 * cores, and burns one per idle rank everywhere else.  Collective over comm. */
void mp_barrier_quiet(MPI_Comm comm);

/* ---- sharding --------------------------------------------------------------------- */
typedef struct {
  uint64_t begin, end; /* [begin, end) */
} mp_range;

/* Contiguous block of n items for `part` of `parts`: the first n % parts parts get one
 * more.  Parts tile [0, n) in order. */
mp_range mp_shard_block(uint64_t n, int parts, int part);
/* Which part owns item i under mp_shard_block. */
int mp_shard_block_owner(uint64_t n, int parts, uint64_t i);
/* Round-robin: item i belongs to part i % parts; how many items `part` gets. */
uint64_t mp_shard_rr_count(uint64_t n, int parts, int part);

/* ---- gathers and broadcasts ------------------------------------------------------- */
/* Every rank of comm contributes doc (may be NULL = JSON null); the root receives a
 * cJSON array in rank order (caller frees with cJSON_Delete), other ranks NULL.
 * Collective. */
cJSON *mp_gather_json(MPI_Comm comm, int root, const cJSON *doc);

/* Every rank of comm contributes len bytes of text; the root receives them
 * concatenated in rank order (mp_malloc'd, NUL-terminated, length in *outlen if
 * non-NULL; caller frees with mp_free), other ranks NULL.  With block sharding this
 * puts per-item rows back in item order.  Collective. */
char *mp_gather_text(MPI_Comm comm, int root, const char *text, size_t len, size_t *outlen);

/* Broadcast a string from root (*s on root; on others *s is replaced by an
 * mp_malloc'd copy, freed by the caller with mp_free).  A NULL on root arrives as NULL.
 * Collective. */
void mp_bcast_string(MPI_Comm comm, int root, char **s);

/* Gather every rank's peak heap bytes (mp_alloc) and log, on rank 0, the maximum,
 * the rank that holds it, the mean and the minimum.  Returns the maximum (on every
 * rank).  Collective. */
uint64_t mp_mpi_report_memory(MPI_Comm comm, const char *stage);

#endif
