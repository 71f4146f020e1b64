/* `mammopatch info` — what this build can do and where its ranks run: the build
 * configuration, the libraries found, each backend as a run would record it (its engine
 * line: CPU or card, library versions, precision), the MPI layout (ranks, nodes,
 * node-local ranks), and the GPUs each rank sees.  With --json FILE the same as a JSON
 * document. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_build_config.h"
#include "mp_backend.h"
#include "mp_check.h"
#include "mp_cli.h"
#include "mp_gpu.h"
#include "mp_json.h"
#include "mp_log.h"

static void mp_info_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch info [--json FILE]\n\n"
         "Print the build configuration (libraries and backends compiled in), each backend as a\n"
         "run records it (CPU or GPU, library versions; cuda in train.precision), the MPI layout\n"
         "(ranks, nodes, ranks per node) and the GPUs each rank sees.\n\n"
         "  --json FILE        also write it all as JSON (with provenance)\n\n%s",
         mp_common_help);
}

/* Each backend of this build on this rank as a run would record it (describe(NULL): engine,
 * device, library versions; cuda in train.precision), or why it cannot run here. */
static cJSON *mp_info_engines(const mp_config *cfg) {
  cJSON *e = cJSON_CreateArray();
  char list[64];
  snprintf(list, sizeof list, "%s", mp_backend_list());
  for (char *save = NULL, *n = strtok_r(list, " ", &save); n; n = strtok_r(NULL, " ", &save)) {
    char name[48], err[512] = "", line[640];
    mp_backend_name_cfg(cfg, n, name, sizeof name);
    if (mp_backend_device_absent(name)) {
      snprintf(line, sizeof line, "%s: no GPU visible to this rank", n);
    } else {
      mp_backend *be = mp_backend_create(name, err, sizeof err);
      if (be) snprintf(line, sizeof line, "%s", be->iface->describe(be, NULL, NULL));
      else snprintf(line, sizeof line, "%s: cannot run here: %s", n, err);
      mp_backend_free(be);
    }
    cJSON_AddItemToArray(e, cJSON_CreateString(line));
  }
  return e;
}

static cJSON *mp_info_rank(const mp_session *s) {
  cJSON *r = cJSON_CreateObject();
  cJSON_AddNumberToObject(r, "rank", s->rank);
  cJSON_AddStringToObject(r, "host", mp_mpi_host(s->mpi));
  cJSON_AddNumberToObject(r, "local_rank", mp_mpi_local_rank(s->mpi));
  cJSON_AddNumberToObject(r, "local_size", mp_mpi_local_size(s->mpi));
  cJSON *gpus = cJSON_AddArrayToObject(r, "gpus");
#if MP_HAVE_CUDA
  int n = mp_gpu_count();
  for (int i = 0; i < n; i++) {
    char d[256];
    mp_gpu_describe(i, d, sizeof d);
    cJSON_AddItemToArray(gpus, cJSON_CreateString(d));
  }
  /* the one the cuda backend uses here (index into gpus), and what the launcher made visible */
  if (n > 0) cJSON_AddNumberToObject(r, "gpu_used", mp_gpu_pick(n));
  const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
  if (cvd) cJSON_AddStringToObject(r, "cuda_visible_devices", cvd);
#else
  (void)gpus;
#endif
  cJSON_AddItemToObject(r, "engines", mp_info_engines(s->cfg));
  return r;
}

static cJSON *mp_info_build(void) {
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "build_type", MP_BUILD_TYPE);
  cJSON_AddStringToObject(b, "compiler", MP_C_COMPILER);
  cJSON_AddStringToObject(b, "sanitizers", MP_SANITIZERS);
  char mpiv[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpiv, &len);
  mpiv[len] = '\0';
  char *nl = strchr(mpiv, '\n');
  if (nl) *nl = '\0';
  cJSON_AddStringToObject(b, "mpi", mpiv);
  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  char h5[64];
  snprintf(h5, sizeof h5, "%u.%u.%u", maj, min, rel);
  cJSON_AddStringToObject(b, "hdf5", h5);
  cJSON_AddBoolToObject(b, "hdf5_parallel", MP_HDF5_PARALLEL);
  cJSON *dep = cJSON_AddObjectToObject(b, "dependencies");
  cJSON_AddBoolToObject(dep, "gdcm", MP_HAVE_GDCM);
  cJSON_AddBoolToObject(dep, "onednn", MP_HAVE_DNNL);
  cJSON_AddBoolToObject(dep, "lapacke", MP_HAVE_LAPACKE);
  cJSON_AddBoolToObject(dep, "png", MP_HAVE_PNG);
  cJSON_AddBoolToObject(dep, "cuda", MP_HAVE_CUDA);
  cJSON_AddBoolToObject(dep, "cudnn", MP_HAVE_CUDNN);
  cJSON_AddBoolToObject(dep, "cublas", MP_HAVE_CUBLAS);
  cJSON_AddBoolToObject(dep, "nccl", MP_HAVE_NCCL);
  if (MP_HAVE_CUDA) cJSON_AddStringToObject(dep, "cuda_version", MP_CUDA_VERSION);
  return b;
}

static void mp_info_print(const cJSON *doc, int size, int nodes) {
  const cJSON *b = cJSON_GetObjectItem(doc, "build");
  const cJSON *d = cJSON_GetObjectItem(b, "dependencies");
  printf("mammopatch %s (git %s)\n", mp_version(), mp_version_git());
  const char *san = cJSON_GetStringValue(cJSON_GetObjectItem(b, "sanitizers"));
  printf("  build       %s, %s%s%s\n", cJSON_GetStringValue(cJSON_GetObjectItem(b, "build_type")),
         cJSON_GetStringValue(cJSON_GetObjectItem(b, "compiler")), san && *san ? ", sanitizers " : "",
         san && *san ? san : "");
  printf("  MPI         %s\n", cJSON_GetStringValue(cJSON_GetObjectItem(b, "mpi")));
  printf("  HDF5        %s (%s)\n", cJSON_GetStringValue(cJSON_GetObjectItem(b, "hdf5")),
         cJSON_IsTrue(cJSON_GetObjectItem(b, "hdf5_parallel")) ? "parallel" : "serial");
  static const char *names[][2] = {{"gdcm", "GDCM (DICOM)"},      {"onednn", "oneDNN"},  {"lapacke", "LAPACKE/OpenBLAS"},
                                   {"png", "libpng"},             {"cuda", "CUDA"},      {"cudnn", "cuDNN"},
                                   {"cublas", "cuBLAS"},          {"nccl", "NCCL"}};
  printf("  libraries  ");
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    printf(" %s:%s", names[i][1], cJSON_IsTrue(cJSON_GetObjectItem(d, names[i][0])) ? "yes" : "no");
  /* the backends as a run records them (rank 0's; a rank whose differ is listed below) */
  const cJSON *ranks = cJSON_GetObjectItem(doc, "ranks"), *e0 = cJSON_GetObjectItem(cJSON_GetArrayItem(ranks, 0), "engines"), *l;
  int first = 1;
  cJSON_ArrayForEach(l, e0) printf("%s%s\n", first ? "\n  engines     " : "              ", cJSON_GetStringValue(l)), first = 0;
  if (first) printf("\n");
  printf("  layout      %d rank%s on %d node%s\n", size, size == 1 ? "" : "s", nodes, nodes == 1 ? "" : "s");
  const cJSON *r;
  cJSON_ArrayForEach(r, ranks) {
    const cJSON *g = cJSON_GetObjectItem(r, "gpus");
    printf("    rank %-4d %s (local %d of %d), GPUs: %d", (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "rank")),
           cJSON_GetStringValue(cJSON_GetObjectItem(r, "host")),
           (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "local_rank")),
           (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "local_size")), cJSON_GetArraySize(g));
    const cJSON *gi;
    cJSON_ArrayForEach(gi, g) printf(" [%s]", cJSON_GetStringValue(gi));
    const cJSON *used = cJSON_GetObjectItem(r, "gpu_used"), *cvd = cJSON_GetObjectItem(r, "cuda_visible_devices");
    if (used) printf(", uses GPU %d", (int)cJSON_GetNumberValue(used));
    if (cvd) printf(" (CUDA_VISIBLE_DEVICES=%s)", cJSON_GetStringValue(cvd));
    printf("\n");
    const cJSON *er = cJSON_GetObjectItem(r, "engines");
    if (!cJSON_Compare(er, e0, 1)) cJSON_ArrayForEach(gi, er) printf("              engine: %s\n", cJSON_GetStringValue(gi));
  }
}

int mp_cmd_info(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  const char *json = NULL;
  static const struct option opts[] = {{"json", required_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'j') json = optarg;
    else if (c == 'h') {
      if (mp_launcher_rank() == 0) mp_info_help();
      mp_common_opts_free(&o);
      return MP_EXIT_OK;
    } else {
      mp_common_opts_free(&o);
      return MP_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    return mp_cli_usage(&o, "mammopatch info: unexpected argument '%s'\n", argv[optind]);
  }
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;

  cJSON *mine = mp_info_rank(&s);
  cJSON *ranks = mp_gather_json(s.comm, 0, mine);
  cJSON_Delete(mine);
  int status = MP_EXIT_OK;
  if (s.rank == 0) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "provenance", mp_json_provenance(s.cfg, s.size));
    cJSON_AddItemToObject(doc, "build", mp_info_build());
    cJSON_AddNumberToObject(doc, "nodes", mp_mpi_nodes(s.mpi));
    cJSON_AddItemToObject(doc, "ranks", ranks);
    mp_info_print(doc, s.size, mp_mpi_nodes(s.mpi));
    if (json) {
      char err[512];
      if (mp_json_write_file(json, doc, err, sizeof err)) {
        MP_ERROR("%s", err);
        status = MP_EXIT_FAILURE;
      }
    }
    cJSON_Delete(doc);
  }
  MP_CHECK_MPI(MPI_Bcast(&status, 1, MPI_INT, 0, s.comm));
  mp_session_end(&s);
  return status;
}
