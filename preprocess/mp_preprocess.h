/* mp_preprocess — the preprocessing stage (SPEC §2-§4, §11): DICOM files and
 * labels.csv in, one patch store out, every file accounted for.
 *
 * Files are found under the input directory (every regular file: a file that is not
 * DICOM is a failed file, not an invisible one), sorted by path, and taken in rounds of
 * files_per_round; each round is split into contiguous runs, one per rank, and ends in a
 * collective write (mp_store), so memory per rank is bounded by the round and the store
 * holds patches in file order whatever the number of ranks.
 *
 * Outcome of a file, first match wins:
 *   failed:not_dicom                the file cannot be read as DICOM at all
 *   discarded:view|sex|implant|presentation_lut|image_type|no_label|birads
 *                                   the SPEC §2 filters, in this order
 *   discarded:decode_error          the attributes read but the pixel data does not
 *   accepted                        windowed, then lesion (BI-RADS 0/2) or normal
 *                                   (BI-RADS 1) patches extracted
 */
#ifndef MP_PREPROCESS_H
#define MP_PREPROCESS_H

#include <mpi.h>

#include "mp_config.h"

typedef struct {
  const char *input_dir, *labels_csv, *out_h5, *report_dir;
} mp_preprocess_args;

/* Run the stage (collective).  Rank 0 writes report_dir/preprocess.json,
 * report_dir/preprocess.md and report_dir/preprocess_files.csv.  Returns 0, or -1 after
 * logging why (a bad input FILE never makes it fail; a missing input directory, an
 * unreadable labels file or no site key do). */
int mp_preprocess_run(MPI_Comm comm, const mp_config *cfg, const mp_preprocess_args *a);

#endif
