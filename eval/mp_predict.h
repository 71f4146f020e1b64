/* mp_predict — `mammopatch predict`: the localized explanation of SPEC §1 for one or more
 * DICOM mammograms.
 *
 * Each image is read and windowed exactly as preprocessing does (GDCM, modality
 * rescale, VOI LUT / window / min-max, MONOCHROME1 inverted), tiled as preprocessing
 * tiles normal images (black padding to multiples of 128, 128 x 128 blocks, blocks with
 * more than half their pixels <= preprocess.black or >= preprocess.white dropped), and
 * every kept tile is scored by the classifier (eval mode).  The view is predicted
 * "lesion" when any tile's probability reaches the threshold (eval.threshold), as the
 * view-level roll-up of SPEC §10.
 *
 * Outputs per image i (1-based, in argument order) under OUT/view-<i>/:
 *   heatmap.png     the windowed mammogram (downscaled so its longer side is at most
 *                   predict.max_side), the breast only (mp_largest_region_u8: burned-in
 *                   text apart from it, which may hold a name or a date, is blanked),
 *                   with each scored tile tinted by its probability
 *                   (dark red -> yellow, more opaque when higher), tiles at or above the
 *                   threshold outlined in red, the hottest tile in cyan
 *   predict.json    model, threshold, decision, the hottest tile, every tile's row,
 *                   column and probability, image size and windowing method
 * and OUT/predict.json listing every image (rank 0).  An unreadable image is reported
 * (failed, with the reason) and the others go on.  Images are dealt to ranks round-robin.
 * No patient name, ID or date is written: an image is named by its position and its
 * file's base name.
 */
#ifndef MP_PREDICT_H
#define MP_PREDICT_H

#include <mpi.h>

#include "mp_config.h"

typedef struct {
  const char *model_dir; /* a train directory (its best/ is used) or a directory with block1.h5 + rest.h5 */
  const char *const *inputs;
  int ninputs;
  const char *out_dir;
} mp_predict_args;

/* Collective.  MP_EXIT_OK when every image was scored, MP_EXIT_FAILURE when one could
 * not be (the rest are still written) or the model cannot be loaded. */
int mp_predict_run(MPI_Comm comm, const mp_config *cfg, const mp_predict_args *a);

#endif
