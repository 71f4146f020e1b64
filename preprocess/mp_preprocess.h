/* mp_preprocess — the preprocessing stage (SPEC §2-§4, §11): DICOM files and
 * labels.csv in, one patch store out, every file accounted for.
 *
 * Files are found under the input directory (every regular file: a file that is not
 * DICOM is a failed file, not an invisible one), sorted by path, and taken in rounds of
 * files_per_round; each round is split into contiguous runs, one per rank, and ends in a
 * collective write (mp_store), so memory per rank is bounded by the round and the store
 * holds patches in file order whatever the number of ranks.
 *
 * Every directory entry below the input that is not a directory is an input file;
 * directories reached again through a link are walked once.  Outcome of a file, first
 * match wins:
 *   failed:not_a_file               a dangling link, a FIFO, a socket or a device (not opened)
 *   discarded:duplicate             a second path (hard link, symlink) to a file listed
 *                                   earlier in path order: its patches are there once
 *   failed:not_dicom                the file cannot be read as DICOM at all (its element
 *                                   lengths are checked before GDCM parses it)
 *   discarded:view|sex|implant|presentation_lut|image_type
 *                                   the SPEC §2 filters on the image, in this order
 *   discarded:no_label              no labels.csv row for the image's exam (or patient)
 *   discarded:label_conflict        rows for that exam (or patient) give different scores
 *   discarded:birads                a score not in {0, 1, 2}
 *   discarded:decode_error          the attributes read but the pixel data does not, or
 *                                   it is not a one-frame grayscale image
 *   accepted                        windowed, then lesion (BI-RADS 0/2) or normal
 *                                   (BI-RADS 1) patches extracted
 */
#ifndef MP_PREPROCESS_H
#define MP_PREPROCESS_H

#include <mpi.h>

#include "mp_config.h"
#include "mp_dicom.h"

typedef struct {
  const char *input_dir, *labels_csv, *out_h5, *report_dir;
} mp_preprocess_args;

/* Run the stage (collective).  Rank 0 writes report_dir/preprocess.json,
 * report_dir/preprocess.md and report_dir/preprocess_files.csv.  Returns 0, or -1 after
 * logging why (a bad input FILE never makes it fail; a missing input directory, an
 * unreadable labels file or no site key do). */
int mp_preprocess_run(MPI_Comm comm, const mp_config *cfg, const mp_preprocess_args *a);

/* The SPEC §2 filters that look at the image alone (view, sex, implant, presentation LUT,
 * ImageType with cfg's preprocess.drop_image_types), as the stage applies them: NULL when
 * none applies, else the outcome the stage would give ("discarded:view", ...) with the
 * particulars in detail.  predict uses it, so that it scores only what training could see. */
const char *mp_preprocess_screen(const mp_dicom_info *in, const mp_config *cfg, char *detail, size_t dl);

#endif
