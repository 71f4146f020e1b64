/* The patch store API on 2 ranks: rounds written collectively (ranks with nothing to
 * write included), patients deduplicated in first-appearance order across ranks, image
 * numbers per (patient, laterality, position), attributes; then read back through the
 * reader API (count, ranges, labels, tables, attributes) and the same file written by
 * one rank compared byte for byte in content. */
#include <math.h>

#include "mp_alloc.h"
#include "mp_build_config.h"
#include "mp_log.h"
#include "mp_mpi.h"
#include "mp_store.h"
#include "mp_test.h"

enum { B = 16 };
static mp_ctx *ctx;

static void view(mp_view_rec *v, const char *pseudo, char lat, const char *pos, int birads) {
  memset(v, 0, sizeof *v);
  snprintf(v->pseudonym, sizeof v->pseudonym, "%s", pseudo);
  v->laterality = lat;
  snprintf(v->position, sizeof v->position, "%s", pos);
  v->birads = (int8_t)birads;
  v->windowing = 1;
  v->modality = (int8_t)(birads % 3); /* 0 none, 1 rescale, 2 Modality LUT: each appears */
  v->rows = 100;
  v->cols = 80;
}

/* The global content: round 1 has views V0..V3 (V0,V1 from "rank A", V2,V3 from
 * "rank B"), round 2 has V4 only from rank B.  Patch i of view v has pixels v*10+i. */
typedef struct {
  mp_view_rec v[5];
  int np[5];
} content;

static void make_content(content *c) {
  view(&c->v[0], "P0000000000000000000a", 'L', "CC", 1);
  view(&c->v[1], "P0000000000000000000b", 'R', "MLO", 0);
  view(&c->v[2], "P0000000000000000000a", 'L', "CC", 1); /* same patient/lat/pos: image 1 */
  view(&c->v[3], "P0000000000000000000c", 'L', "MLO", 2);
  view(&c->v[4], "P0000000000000000000b", 'R', "MLO", 0);
  int np[5] = {3, 1, 0, 2, 2};
  memcpy(c->np, np, sizeof np);
}

/* Write views [v0, v1) of the content as this rank's part of a round. */
static void write_part(mp_store_writer *w, const content *c, int v0, int v1) {
  int n = 0;
  for (int v = v0; v < v1; v++) n += c->np[v];
  mp_patch_meta *m = mp_calloc((size_t)(n ? n : 1), sizeof *m);
  uint8_t *px = mp_malloc((size_t)(n ? n : 1) * B * B);
  int k = 0;
  for (int v = v0; v < v1; v++)
    for (int i = 0; i < c->np[v]; i++, k++) {
      m[k].view = (uint32_t)(v - v0);
      m[k].label = c->v[v].birads == 1 ? 0 : 1;
      m[k].origin[0] = v;
      m[k].origin[1] = i;
      for (int e = 0; e < 5; e++) m[k].ellipse[e] = m[k].label ? (float)(v + e) : NAN;
      memset(px + (size_t)k * B * B, v * 10 + i, B * B);
    }
  mp_store_write_round(w, v1 > v0 ? &c->v[v0] : NULL, v1 - v0, m, &px, (uint64_t)n);
  mp_free(m);
  mp_free(px);
}

static void write_store(const char *path, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  content c;
  make_content(&c);
  char err[256];
  mp_store_writer *w = mp_store_create(comm, path, B, 1, err, sizeof err);
  if (!w) fail_msg("%s", err);
  if (size == 1) {
    write_part(w, &c, 0, 4);
    write_part(w, &c, 4, 5);
  } else {
    write_part(w, &c, rank == 0 ? 0 : 2, rank == 0 ? 2 : 4);
    write_part(w, &c, rank == 0 ? 4 : 4, rank == 0 ? 4 : 5); /* rank 0: nothing this round */
  }
  assert_int_equal(mp_store_written_patches(w), 8);
  assert_int_equal(mp_store_written_views(w), 5);
  assert_int_equal(mp_store_written_patients(w), 3);
  mp_store_attr_int(w, "schema_version", MP_STORE_SCHEMA_VERSION);
  mp_store_attr_int(w, "patch_size", B);
  mp_store_attr_double(w, "param_min_ellipse_coverage", 0.999);
  mp_store_attr_string(w, "software", "mammopatch");
  mp_store_close_writer(w);
}

static void check_store(const char *path) {
  char err[256];
  mp_store *s = mp_store_open(path, err, sizeof err);
  if (!s) fail_msg("%s", err);
  assert_int_equal(mp_store_count(s), 8);
  assert_int_equal(mp_store_patch_size(s), B);
  uint8_t px[8 * B * B], lab[8];
  uint32_t vw[8];
  int32_t org[16];
  assert_int_equal(mp_store_read(s, 0, 8, px, lab, vw, org), 0);
  /* file order: view 0 (3 patches), view 1 (1), view 3 (2), view 4 (2) */
  static const uint32_t want_view[8] = {0, 0, 0, 1, 3, 3, 4, 4};
  static const uint8_t want_px[8] = {0, 1, 2, 10, 30, 31, 40, 41};
  for (int i = 0; i < 8; i++) {
    assert_int_equal(vw[i], want_view[i]);
    assert_int_equal(px[i * B * B], want_px[i]);
    assert_int_equal(px[i * B * B + B * B - 1], want_px[i]);
    assert_int_equal(org[2 * i], (int)want_view[i]);
  }
  assert_int_equal(lab[0], 0);
  assert_int_equal(lab[3], 1);
  uint8_t one[B * B], l1;
  assert_int_equal(mp_store_read(s, 6, 1, one, &l1, NULL, NULL), 0);
  assert_int_equal(one[0], 40);
  assert_int_equal(mp_store_read(s, 7, 2, one, NULL, NULL, NULL), -1); /* out of range */
  uint8_t all[8];
  assert_int_equal(mp_store_read_labels(s, all), 0);
  assert_memory_equal(all, lab, 8);
  mp_store_tables t;
  mp_store_read_tables(s, &t);
  assert_int_equal(t.nviews, 5);
  assert_int_equal(t.npatients, 3);
  static const uint32_t want_pat[5] = {0, 1, 0, 2, 1}, want_img[5] = {0, 0, 1, 0, 1};
  for (int v = 0; v < 5; v++) {
    assert_int_equal(t.view_patient[v], want_pat[v]);
    assert_int_equal(t.view_image[v], want_img[v]);
    assert_int_equal(t.view_modality[v], t.view_birads[v] % 3); /* each view's own, in order */
  }
  assert_int_equal(t.view_laterality[1], 'R');
  assert_string_equal(t.view_position[1], "MLO");
  assert_int_equal(t.view_birads[3], 2);
  assert_int_equal(t.view_rows[0], 100);
  assert_string_equal(t.pseudonym[2], "P0000000000000000000c");
  mp_store_tables_free(&t);
  cJSON *a = mp_store_attributes(s);
  assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(a, "patch_size")), B);
  assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(a, "param_min_ellipse_coverage")) == 0.999);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(a, "software")), "mammopatch");
  cJSON_Delete(a);
  mp_store_close(s);
  /* not a store */
  assert_null(mp_store_open("/nonexistent.h5", err, sizeof err));
}

/* Write a store on every rank (collectively), check it on rank 0, then write the same
 * content from rank 0 alone and check that too. */
static void two_ranks_then_one(const char *name, void (*write)(const char *, MPI_Comm), void (*check)(const char *)) {
  int rank = mp_mpi_rank(ctx);
  char p2[256], p1[256];
  /* both ranks need the same name: rank 0 makes the directory, broadcasts it */
  char dir[64] = "";
  if (rank == 0) snprintf(dir, sizeof dir, "%s", mp_test_tmpdir());
  MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
  snprintf(p2, sizeof p2, "%s/%s2.h5", dir, name);
  snprintf(p1, sizeof p1, "%s/%s1.h5", dir, name);
  write(p2, mp_mpi_comm(ctx));
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    check(p2);
    write(p1, MPI_COMM_SELF); /* the same content from one rank */
    check(p1);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

/* A serial HDF5 (GPU node images) opens the store for reading and writes it from one rank
 * only: the multi-rank writes are skipped there, with a message. */
static void skip_unless_parallel_hdf5(void) {
  if (MP_HDF5_PARALLEL || mp_mpi_size(ctx) == 1) return;
  if (mp_mpi_rank(ctx) == 0) print_message("serial HDF5: writing one store from %d ranks needs a parallel HDF5; skipped\n", mp_mpi_size(ctx));
  skip();
}

static void test_two_ranks_then_one(void **state) {
  (void)state;
  skip_unless_parallel_hdf5();
  two_ranks_then_one("store", write_store, check_store);
}

/* Rounds that cross chunk boundaries (64 patches) unevenly: patch g (file order) has
 * pixels (g * 7 + j) & 255 and origin (g, -g).  Per round, rank 0's and rank 1's counts;
 * one rank writes each round's sum.  Every patch must come back in place: through the
 * carried partial chunks, rounds where one rank or both have nothing, and the close. */
static const int rounds[][2] = {{100, 0}, {30, 90}, {0, 0}, {1, 64}, {0, 129}, {200, 3}, {2, 0}};
enum { NROUNDS = sizeof rounds / sizeof rounds[0] };

static void write_many(const char *path, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  char err[256];
  mp_store_writer *w = mp_store_create(comm, path, B, 1, err, sizeof err);
  if (!w) fail_msg("%s", err);
  uint64_t g0 = 0;
  for (int r = 0; r < NROUNDS; r++) {
    int n = size == 1 ? rounds[r][0] + rounds[r][1] : rounds[r][rank];
    uint64_t g = g0 + (size == 1 || rank == 0 ? 0 : (uint64_t)rounds[r][0]);
    mp_patch_meta *m = mp_calloc((size_t)n + 1, sizeof *m);
    uint8_t *px = mp_malloc(((size_t)n + 1) * B * B);
    for (int i = 0; i < n; i++, g++) {
      m[i] = (mp_patch_meta){MP_STORE_VIEW_ABSOLUTE | 0, (uint8_t)(g % 3 == 0), {(int32_t)g, -(int32_t)g}, {0}};
      for (int j = 0; j < B * B; j++) px[(size_t)i * B * B + j] = (uint8_t)((g * 7 + (uint64_t)j) & 255);
    }
    mp_view_rec v;
    view(&v, "P0000000000000000000a", 'L', "CC", 1);
    bool first = r == 0 && rank == 0;
    mp_store_write_round(w, first ? &v : NULL, first ? 1 : 0, m, &px, (uint64_t)n);
    g0 += (uint64_t)(rounds[r][0] + rounds[r][1]);
    assert_int_equal(mp_store_written_patches(w), g0);
    mp_free(m);
    mp_free(px);
  }
  mp_store_close_writer(w);
}

static void check_many(const char *path) {
  char err[256];
  mp_store *s = mp_store_open(path, err, sizeof err);
  if (!s) fail_msg("%s", err);
  uint64_t n = 0;
  for (int r = 0; r < NROUNDS; r++) n += (uint64_t)(rounds[r][0] + rounds[r][1]);
  assert_int_equal(mp_store_count(s), n);
  uint8_t *px = mp_malloc(n * B * B), *lab = mp_malloc(n);
  uint32_t *vw = mp_malloc(n * 4);
  int32_t *org = mp_malloc(n * 8);
  assert_int_equal(mp_store_read(s, 0, n, px, lab, vw, org), 0);
  for (uint64_t g = 0; g < n; g++) {
    assert_int_equal(org[2 * g], (int)g);
    assert_int_equal(org[2 * g + 1], -(int)g);
    assert_int_equal(lab[g], g % 3 == 0);
    assert_int_equal(vw[g], 0);
    for (int j = 0; j < B * B; j++)
      if (px[g * B * B + j] != (uint8_t)((g * 7 + (uint64_t)j) & 255))
        fail_msg("patch %llu pixel %d: %d", (unsigned long long)g, j, px[g * B * B + j]);
  }
  mp_free(px);
  mp_free(lab);
  mp_free(vw);
  mp_free(org);
  mp_store_close(s);
}

static void test_chunk_shares(void **state) {
  (void)state;
  skip_unless_parallel_hdf5();
  two_ranks_then_one("many", write_many, check_many);
}

int main(int argc, char **argv) {
  ctx = mp_mpi_init(&argc, &argv);
  mp_log_init(mp_mpi_rank(ctx), mp_mpi_size(ctx), MP_LOG_INFO, false);
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_two_ranks_then_one), cmocka_unit_test(test_chunk_shares)};
  int rc = mp_test_run_mpi("store", tests, sizeof tests / sizeof tests[0], ctx);
  mp_mpi_finalize(ctx);
  return rc;
}
