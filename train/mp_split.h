/* mp_split — the patient-level split of SPEC §5.
 *
 * Two patient lists, each in store order (the /patients row): patients contributing at
 * least one lesion patch, and patients contributing only normal patches.  Each list is
 * shuffled with the counter-based RNG keyed by (split seed, MP_RNG_SPLIT, list) and cut
 * 50/25/25 into train / validation / test.  A patient therefore never crosses parts, the
 * split depends only on the store's content and the seed (not on the number of ranks),
 * and repeat r of an experiment uses seed s + r.
 */
#ifndef MP_SPLIT_H
#define MP_SPLIT_H

#include <stddef.h>
#include <stdint.h>

enum { MP_PART_TRAIN = 0, MP_PART_VAL = 1, MP_PART_TEST = 2, MP_PART_NONE = 255 };

/* Sizes of the three parts of a list of n: train = round(n/2), validation = round(n/4)
 * (each at least 1 when n >= 3), test = the rest. */
void mp_split_sizes(uint64_t n, uint64_t sizes[3]);

/* part[p] for every patient p < npatients: MP_PART_* (MP_PART_NONE for a patient with
 * no patch).  has_lesion[p] / has_patch[p]: 0 or 1. */
void mp_split_patients(uint64_t npatients, const uint8_t *has_patch, const uint8_t *has_lesion, uint64_t seed,
                       uint8_t *part);

/* The split of a patch store's patients: from every patch's label and view and the views
 * table, fills part (npatients) and, when non-NULL, has_lesion (npatients). */
void mp_split_store_patients(const uint32_t *view_patient, uint64_t npatients, const uint8_t *labels,
                             const uint32_t *views, uint64_t n, uint64_t seed, uint8_t *part, uint8_t *has_lesion);

/* The store indices (ascending) of the patches in part `part` (MP_PART_*) of the split with
 * this seed, with label `label` (0 or 1; -1: any): *idx (mp_malloc'd, caller frees) and
 * their count in *n.  0, or -1 with err when the store's tables cannot be read. */
struct mp_store;
int mp_split_select(struct mp_store *st, uint64_t seed, int part, int label, uint64_t **idx, uint64_t *n, char *err,
                    size_t errlen);

#endif
