/* mp_store — the patch store (SPEC §4, schema version 1): one HDF5 file written
 * collectively by all ranks, read by train/eval/gan/smote.
 *
 *   /patches/pixels   uint8  [N, B, B]  chunked, deflate
 *   /patches/label    uint8  [N]        0 normal, 1 lesion
 *   /patches/view     uint32 [N]        row of /views
 *   /patches/origin   int32  [N, 2]     top-left (row, col) in the source image
 *   /patches/ellipse  float32 [N, 5]    lesions: fitted mark (cx, cy, a, b, angle rad); NaN for normals
 *   /views/patient    uint32 [V]        row of /patients
 *   /views/laterality string(1) [V]     L / R (U when the file has neither laterality tag)
 *   /views/position   string(3) [V]     CC / MLO
 *   /views/image      uint32 [V]        n-th image of this (patient, laterality, position)
 *   /views/birads     int8   [V]        exam BI-RADS
 *   /views/windowing  int8   [V]        0 VOI LUT, 1 window centre/width, 2 min-max
 *   /views/modality   int8   [V]        the modality transform before it: 0 none, 1 rescale
 *                                       slope/intercept, 2 the Modality LUT Sequence (-1: no
 *                                       DICOM image, e.g. a synthetic store's view)
 *   /views/rows, /views/cols uint32 [V] image size
 *   /patients/pseudonym string(21) [P]  keyed hash of PatientID (never the raw ID)
 *   attributes on /: schema_version, patch_size, every preprocessing parameter,
 *   software version, input file counts by outcome.
 *
 * Writing happens in rounds: each rank contributes the views and patches of its
 * contiguous run of the round's files; offsets are the exclusive prefix sums of the
 * per-rank counts, so the file holds everything in file order and is the same for any
 * number of ranks.  Views are written by the rank that made them.  Patches are
 * compressed and written in whole chunks of /patches/pixels, each by one rank: the
 * round's whole chunks are dealt to the ranks in equal contiguous shares and the
 * patches sent there first (point to point, into the block the rank extracted them
 * into), so compression — most of the writing — splits evenly whatever each rank
 * extracted, and no chunk is ever rewritten; the patches past the round's last whole
 * chunk wait for the next round (or the close).
 * With serial HDF5 only, writing needs a single rank; reading always works.
 */
#ifndef MP_STORE_H
#define MP_STORE_H

#include <mpi.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define MP_STORE_SCHEMA_VERSION 1
#define MP_PSEUDO_STRLEN 21

/* ---- input-file outcomes ------------------------------------------------------------ */
/* Every preprocessing input file ends in one of these, listed in the preprocessing report's
 * order (accepted; the failures; the discards in the order SPEC §2's filters apply): key
 * (the outcome in preprocess_files.csv and preprocess.json) and the report's label.  The
 * store's root attribute files_<key with ':' as '_'> counts each (a store made before an
 * outcome existed lacks its attribute: count 0).  Shared by preprocess, which writes them,
 * and the report, which reads them. */
enum { MP_STORE_OUTCOMES = 13 };
typedef struct {
  const char *key, *label;
} mp_store_outcome;
extern const mp_store_outcome mp_store_outcomes[MP_STORE_OUTCOMES];
/* The root attribute's name of outcome i into name (cap bytes). */
void mp_store_outcome_attr(int i, char *name, size_t cap);

/* ---- writing --------------------------------------------------------------------- */
typedef struct mp_store_writer mp_store_writer;

typedef struct {
  char pseudonym[MP_PSEUDO_STRLEN + 1];
  char laterality;  /* 'L', 'R' or 'U' */
  char position[4]; /* "CC", "MLO" */
  int8_t birads;
  int8_t windowing;
  int8_t modality; /* /views/modality: 0 none, 1 rescale, 2 Modality LUT Sequence, -1 no image */
  uint32_t rows, cols;
} mp_view_rec;

/* mp_patch_meta.view with this bit set: a /views row already written (absolute), e.g.
 * the one view record of a synthetic store referred to by every later round */
#define MP_STORE_VIEW_ABSOLUTE 0x80000000u
typedef struct {
  uint32_t view;       /* index into this rank's views of the round (or MP_STORE_VIEW_ABSOLUTE | row) */
  uint8_t label;
  int32_t origin[2];   /* row, col */
  float ellipse[5];
} mp_patch_meta;

/* Create path (collective over comm).  NULL with err on failure (same on all ranks). */
mp_store_writer *mp_store_create(MPI_Comm comm, const char *path, int patch_size, int deflate, char *err,
                                 size_t errlen);
/* One round (collective): this rank's views and patches, *pixels npatches * B * B
 * bytes in a block from mp_malloc (NULL allowed when npatches is 0).  On several ranks
 * the store assembles this rank's share of the round in that same block: it may grow it
 * (mp_realloc, *pixels updated) and leaves its contents undefined; the caller keeps the
 * block (reuse it for the next round) and frees it.  Views are in the file on return;
 * up to one chunk's worth of the patches may wait (held by the last rank) until the
 * next round or mp_store_close_writer. */
void mp_store_write_round(mp_store_writer *w, const mp_view_rec *views, int nviews, const mp_patch_meta *meta,
                          uint8_t **pixels, uint64_t npatches);
/* Root attributes (collective; every rank passes the same value). */
void mp_store_attr_int(mp_store_writer *w, const char *name, long long v);
void mp_store_attr_double(mp_store_writer *w, const char *name, double v);
void mp_store_attr_string(mp_store_writer *w, const char *name, const char *v);
/* Totals so far (patches: taken, including any still waiting to be written). */
uint64_t mp_store_written_patches(const mp_store_writer *w);
uint64_t mp_store_written_views(const mp_store_writer *w);
uint64_t mp_store_written_patients(const mp_store_writer *w);
/* Write the waiting patches and /patients, and close (collective). */
void mp_store_close_writer(mp_store_writer *w);

/* ---- reading ----------------------------------------------------------------------- */
typedef struct mp_store mp_store;

typedef struct {
  uint64_t nviews, npatients;
  uint32_t *view_patient, *view_image, *view_rows, *view_cols;
  char *view_laterality;  /* [nviews] */
  char (*view_position)[4];
  int8_t *view_birads, *view_windowing;
  int8_t *view_modality; /* /views/modality; -2 for every view of a store written before it existed */
  char (*pseudonym)[MP_PSEUDO_STRLEN + 1];
} mp_store_tables;

/* Open read-only (any HDF5 build, one process).  NULL with err when the file is
 * missing or not a schema-1 patch store. */
mp_store *mp_store_open(const char *path, char *err, size_t errlen);
void mp_store_close(mp_store *s);
uint64_t mp_store_count(const mp_store *s);
int mp_store_patch_size(const mp_store *s);
/* Patches [begin, begin+count): any output may be NULL.  0, or -1 when out of range. */
int mp_store_read(mp_store *s, uint64_t begin, uint64_t count, uint8_t *pixels, uint8_t *labels, uint32_t *views,
                  int32_t *origins);
/* All labels (N) — for samplers and splits. */
int mp_store_read_labels(mp_store *s, uint8_t *labels);
/* All /patches/view (N). */
int mp_store_read_views(mp_store *s, uint32_t *views);
/* The pixels of patches idx[0..n) (ascending) into out (n x B x B), read in runs of
 * consecutive indices (a split's patches are mostly such runs: one patient's views are
 * adjacent). */
int mp_store_read_pixels_at(mp_store *s, const uint64_t *idx, uint64_t n, uint8_t *out);
/* The views and patients tables (free with mp_store_tables_free). */
int mp_store_read_tables(mp_store *s, mp_store_tables *t);
void mp_store_tables_free(mp_store_tables *t);
/* Root attributes as a JSON object (provenance for reports). */
cJSON *mp_store_attributes(mp_store *s);

#endif
