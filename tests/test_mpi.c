/* MPI tests (run on 2 ranks): the context, node-local ranks, JSON gather in rank
 * order, string broadcast, rank groups, the memory report, and MP_CHECK_MPI on the
 * success path.  Both ranks run every test (the collectives need them). */
#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_log.h"
#include "mp_mpi.h"
#include "mp_test.h"

static mp_ctx *ctx;

static void test_context(void **state) {
  (void)state;
  int wr, ws;
  MPI_Comm_rank(MPI_COMM_WORLD, &wr);
  MPI_Comm_size(MPI_COMM_WORLD, &ws);
  assert_int_equal(mp_mpi_rank(ctx), wr);
  assert_int_equal(mp_mpi_size(ctx), ws);
  assert_int_equal(ws, 2);
  /* our communicator is a duplicate, not MPI_COMM_WORLD itself */
  int cmp;
  MPI_Comm_compare(mp_mpi_comm(ctx), MPI_COMM_WORLD, &cmp);
  assert_int_equal(cmp, MPI_CONGRUENT);
  /* errors return to the caller on our communicators */
  MPI_Errhandler eh;
  MPI_Comm_get_errhandler(mp_mpi_comm(ctx), &eh);
  assert_true(eh == MPI_ERRORS_RETURN);
  MPI_Errhandler_free(&eh);
  /* one node here: local rank = world rank */
  assert_int_equal(mp_mpi_nodes(ctx), 1);
  assert_int_equal(mp_mpi_local_size(ctx), 2);
  assert_int_equal(mp_mpi_local_rank(ctx), wr);
  assert_true(strlen(mp_mpi_host(ctx)) > 0);
  assert_true(mp_mpi_thread_level(ctx) >= MPI_THREAD_SINGLE);
}

static void test_gather_json(void **state) {
  (void)state;
  int rank = mp_mpi_rank(ctx);
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddNumberToObject(doc, "rank", rank);
  /* documents of different sizes per rank */
  cJSON *list = cJSON_AddArrayToObject(doc, "items");
  for (int i = 0; i < 100 * (rank + 1); i++) cJSON_AddItemToArray(list, cJSON_CreateNumber(i));
  cJSON *all = mp_gather_json(mp_mpi_comm(ctx), 0, doc);
  cJSON_Delete(doc);
  if (rank == 0) {
    assert_int_equal(cJSON_GetArraySize(all), 2);
    for (int r = 0; r < 2; r++) {
      cJSON *it = cJSON_GetArrayItem(all, r);
      assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "rank")), r);
      assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(it, "items")), 100 * (r + 1));
    }
    cJSON_Delete(all);
  } else {
    assert_null(all);
  }
  /* to a non-zero root, with a NULL contribution */
  cJSON *mine = rank == 0 ? NULL : cJSON_CreateString("from rank 1");
  all = mp_gather_json(mp_mpi_comm(ctx), 1, mine);
  cJSON_Delete(mine);
  if (rank == 1) {
    assert_int_equal(cJSON_GetArraySize(all), 2);
    assert_true(cJSON_IsNull(cJSON_GetArrayItem(all, 0)));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(all, 1)), "from rank 1");
    cJSON_Delete(all);
  } else {
    assert_null(all);
  }
}

static void test_bcast_string(void **state) {
  (void)state;
  int rank = mp_mpi_rank(ctx);
  char *s = rank == 0 ? "[train]\nlr = 1e-4\n" : NULL;
  mp_bcast_string(mp_mpi_comm(ctx), 0, &s);
  assert_string_equal(s, "[train]\nlr = 1e-4\n");
  if (rank != 0) mp_free(s);
  char *none = NULL;
  mp_bcast_string(mp_mpi_comm(ctx), 0, &none);
  assert_null(none);
}

static void test_groups(void **state) {
  (void)state;
  int rank = mp_mpi_rank(ctx);
  mp_group g;
  mp_group_split(mp_mpi_comm(ctx), 2, &g);
  assert_int_equal(g.ngroups, 2);
  assert_int_equal(g.group, rank);
  assert_int_equal(g.size, 1);
  assert_int_equal(g.rank, 0);
  mp_group_free(&g);
  assert_true(g.comm == MPI_COMM_NULL);
  mp_group_split(mp_mpi_comm(ctx), 1, &g);
  assert_int_equal(g.group, 0);
  assert_int_equal(g.size, 2);
  assert_int_equal(g.rank, rank);
  /* the group communicator works */
  int sum = 0, one = 1;
  MP_CHECK_MPI(MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, g.comm));
  assert_int_equal(sum, 2);
  mp_group_free(&g);
}

static void test_memory_report(void **state) {
  (void)state;
  int rank = mp_mpi_rank(ctx);
  mp_alloc_reset_peak();
  uint64_t base = mp_alloc_get_stats().peak;
  void *p = mp_malloc(rank == 1 ? 3u << 20 : 1u << 20);
  mp_free(p);
  uint64_t max = mp_mpi_report_memory(mp_mpi_comm(ctx), "test");
  /* rank 1 allocated the most; every rank gets the same maximum */
  uint64_t mine = mp_alloc_get_stats().peak, other = 0;
  MPI_Allreduce(&mine, &other, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  assert_int_equal(max, other);
  assert_true(max >= base + (3u << 20));
}

int main(int argc, char **argv) {
  ctx = mp_mpi_init(&argc, &argv);
  mp_log_init(mp_mpi_rank(ctx), mp_mpi_size(ctx), MP_LOG_INFO, false);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_context),     cmocka_unit_test(test_gather_json), cmocka_unit_test(test_bcast_string),
      cmocka_unit_test(test_groups),      cmocka_unit_test(test_memory_report),
  };
  int rc = mp_test_run_mpi("mpi", tests, sizeof tests / sizeof tests[0], ctx);
  mp_mpi_finalize(ctx);
  return rc;
}
