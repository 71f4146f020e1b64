/* Tests of mp_gpu's placement logic, which needs no GPU: the device a rank picks (its
 * node-local rank mod the GPUs it sees, from mp_mpi_init's record or the launcher's
 * variables), and how ranks' GPU keys count as shared GPUs — the same UUID, or MIG slices
 * (own UUIDs) of one PCI device on one host; ranks that see no GPU; sharing within a rank
 * group (NCCL refuses) against sharing across groups only. */
#include <stdlib.h>
#include <string.h>

#include "mp_gpu.h"
#include "mp_test.h"

static void test_pick(void **state) {
  (void)state;
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK"), unsetenv("SLURM_LOCALID"), unsetenv("MPI_LOCALRANKID");
  mp_gpu_set_local(-1);
  assert_int_equal(mp_gpu_pick(4), 0); /* a standalone process */
  setenv("SLURM_LOCALID", "6", 1);
  assert_int_equal(mp_gpu_pick(4), 2);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1); /* Open MPI's variable first */
  assert_int_equal(mp_gpu_pick(4), 3);
  assert_int_equal(mp_gpu_pick(1), 0); /* a launcher that binds one GPU per rank: each rank's own */
  mp_gpu_set_local(5);                 /* mp_mpi_init's record first */
  assert_int_equal(mp_gpu_pick(4), 1);
  assert_int_equal(mp_gpu_pick(8), 5);
  assert_int_equal(mp_gpu_pick(1), 0);
  mp_gpu_set_local(-1);
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK"), unsetenv("SLURM_LOCALID");
}

/* a GPU key: uuid byte u, PCI bus on host h */
static mp_gpu_key key(int u, const char *h, int bus) {
  mp_gpu_key k;
  memset(&k, 0, sizeof k);
  k.uuid[0] = (unsigned char)u, k.uuid[15] = 0xab;
  snprintf(k.host, sizeof k.host, "%s", h);
  k.pci[1] = bus;
  k.present = 1;
  return k;
}

static void test_sharing(void **state) {
  (void)state;
  int gpus, shared, none;
  /* 4 ranks, 4 GPUs on 2 nodes (the same bus numbers on both hosts) */
  mp_gpu_key k[6] = {key(1, "a", 1), key(2, "a", 2), key(3, "b", 1), key(4, "b", 2)};
  assert_int_equal(mp_gpu_sharing(k, NULL, 4, &gpus, &shared, &none), 0);
  assert_int_equal(gpus, 4), assert_int_equal(shared, 0), assert_int_equal(none, 0);
  /* 4 ranks on one GPU, one group: sharing within it */
  for (int i = 0; i < 4; i++) k[i] = key(7, "a", 3);
  assert_int_equal(mp_gpu_sharing(k, NULL, 4, &gpus, &shared, &none), 1);
  assert_int_equal(gpus, 1), assert_int_equal(shared, 4), assert_int_equal(none, 0);
  /* ... in 4 groups of one: shared across groups only (NCCL unaffected) */
  const int g4[6] = {0, 1, 2, 3, 0, 0};
  assert_int_equal(mp_gpu_sharing(k, g4, 4, &gpus, &shared, &none), 0);
  assert_int_equal(gpus, 1), assert_int_equal(shared, 4);
  /* 6 ranks on 4 GPUs in 2 groups {0,1,2} {3,4,5}: ranks 4 and 5 wrap round onto the GPUs of
   * ranks 0 and 1 (other groups), while rank 2 and 3 hold GPUs of their own */
  k[0] = key(1, "a", 1), k[1] = key(2, "a", 2), k[2] = key(3, "a", 3), k[3] = key(4, "a", 4);
  k[4] = key(1, "a", 1), k[5] = key(2, "a", 2);
  const int g2[6] = {0, 0, 0, 1, 1, 1};
  assert_int_equal(mp_gpu_sharing(k, g2, 6, &gpus, &shared, &none), 0);
  assert_int_equal(gpus, 4), assert_int_equal(shared, 4), assert_int_equal(none, 0);
  const int g3[6] = {0, 0, 1, 1, 2, 2}; /* ranks 4, 5 in one group, on two GPUs: still fine */
  assert_int_equal(mp_gpu_sharing(k, g3, 6, &gpus, &shared, &none), 0);
  const int g1[6] = {0, 1, 1, 0, 0, 1}; /* ranks 0 and 4 in one group on one GPU */
  assert_int_equal(mp_gpu_sharing(k, g1, 6, &gpus, &shared, &none), 1);
  /* MIG: two slices of one GPU have UUIDs of their own but one PCI device on one host */
  k[0] = key(1, "a", 5), k[1] = key(2, "a", 5);
  assert_int_equal(mp_gpu_sharing(k, NULL, 2, &gpus, &shared, &none), 1);
  assert_int_equal(gpus, 1), assert_int_equal(shared, 2);
  k[1] = key(2, "b", 5); /* the same bus on another host: two GPUs */
  assert_int_equal(mp_gpu_sharing(k, NULL, 2, &gpus, &shared, &none), 0);
  assert_int_equal(gpus, 2), assert_int_equal(shared, 0);
  /* ranks that see no GPU count as none, never as sharing (their keys are all zero alike) */
  memset(&k[2], 0, sizeof k[2]), memset(&k[3], 0, sizeof k[3]);
  assert_int_equal(mp_gpu_sharing(k, NULL, 4, &gpus, &shared, &none), 0);
  assert_int_equal(gpus, 2), assert_int_equal(shared, 0), assert_int_equal(none, 2);
  assert_false(mp_gpu_key_same(&k[2], &k[3]));
  assert_int_equal(mp_gpu_sharing(k, NULL, 0, &gpus, &shared, &none), 0);
  assert_int_equal(gpus, 0), assert_int_equal(shared, 0), assert_int_equal(none, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_pick), cmocka_unit_test(test_sharing)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
