/* mp_split — patient-level splits (see mp_split.h). */
#include "mp_split.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_store.h"
#include "mp_rng.h"

void mp_split_sizes(uint64_t n, uint64_t s[3]) {
  s[0] = (uint64_t)llround((double)n * 0.5);
  s[1] = (uint64_t)llround((double)n * 0.25);
  if (n >= 3) { /* every part non-empty for tiny cohorts */
    if (s[1] == 0) s[1] = 1;
    if (s[0] + s[1] >= n) s[0] = n - s[1] - 1;
  }
  if (s[0] + s[1] > n) s[1] = n - s[0];
  s[2] = n - s[0] - s[1];
}

void mp_split_store_patients(const uint32_t *view_patient, uint64_t np, const uint8_t *labels, const uint32_t *views,
                             uint64_t n, uint64_t seed, uint8_t *part, uint8_t *has_lesion) {
  uint8_t *has = mp_calloc(np ? np : 1, 1), *les = mp_calloc(np ? np : 1, 1);
  for (uint64_t i = 0; i < n; i++) {
    uint32_t p = view_patient[views[i]];
    has[p] = 1;
    if (labels[i]) les[p] = 1;
  }
  mp_split_patients(np, has, les, seed, part);
  if (has_lesion) memcpy(has_lesion, les, np);
  mp_free(has);
  mp_free(les);
}

void mp_split_patients(uint64_t np, const uint8_t *has_patch, const uint8_t *has_lesion, uint64_t seed,
                       uint8_t *part) {
  memset(part, MP_PART_NONE, np);
  uint32_t *list = mp_malloc((np ? np : 1) * sizeof *list);
  for (int which = 0; which < 2; which++) { /* 0: lesion patients, 1: normal-only patients */
    size_t n = 0;
    for (uint64_t p = 0; p < np; p++)
      if (has_patch[p] && (has_lesion[p] != 0) == (which == 0)) list[n++] = (uint32_t)p;
    mp_rng r;
    mp_rng_init(&r, seed, MP_RNG_SPLIT, (uint64_t)which);
    mp_rng_shuffle_u32(&r, list, n);
    uint64_t s[3];
    mp_split_sizes(n, s);
    for (size_t i = 0; i < n; i++) part[list[i]] = i < s[0] ? MP_PART_TRAIN : i < s[0] + s[1] ? MP_PART_VAL : MP_PART_TEST;
  }
  mp_free(list);
}

int mp_split_select(mp_store *st, uint64_t seed, int part, int label, uint64_t **idx, uint64_t *count, char *err,
                    size_t errlen) {
  uint64_t n = mp_store_count(st);
  uint8_t *lab = mp_malloc(n + 1);
  uint32_t *view = mp_malloc((n + 1) * sizeof *view);
  mp_store_tables tb;
  if (mp_store_read_labels(st, lab) || mp_store_read_views(st, view) || mp_store_read_tables(st, &tb)) {
    snprintf(err, errlen, "cannot read the patch store's tables");
    mp_free(lab), mp_free(view);
    return -1;
  }
  uint8_t *pt = mp_malloc(tb.npatients + 1);
  mp_split_store_patients(tb.view_patient, tb.npatients, lab, view, n, seed, pt, NULL);
  uint64_t m = 0, *out = mp_malloc((n + 1) * sizeof *out);
  for (uint64_t i = 0; i < n; i++)
    if (pt[tb.view_patient[view[i]]] == part && (label < 0 || lab[i] == label)) out[m++] = i;
  *idx = out, *count = m;
  mp_free(lab), mp_free(view), mp_free(pt);
  mp_store_tables_free(&tb);
  return 0;
}
