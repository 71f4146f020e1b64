/* mp_predict — `mammopatch predict` (see mp_predict.h). */
#include "mp_predict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_alloc.h"
#include "mp_build_config.h"
#include "mp_check.h"
#include "mp_dicom.h"
#include "mp_file.h"
#include "mp_imgops.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_models.h"
#include "mp_png.h"
#include "mp_preprocess.h"
#include "mp_pseudonym.h"
#include "mp_window.h"

enum { TILE = 128 }; /* the classifier's input (SPEC §6) = preprocessing's BLCK_SIZE */

typedef struct {
  int row, col;
  float prob;
} tile;

typedef struct {
  uint8_t *px; /* kept tiles' pixels, TILE*TILE each */
  tile *t;
  int n, cap;
} tiles;

/* Tiles at every multiple of `stride` (black beyond the image, as preprocessing's
 * padding), kept when at most half their pixels are <= black or >= white — with
 * stride = TILE exactly preprocessing's normal tiling (mp_tile_normals); a smaller
 * stride overlaps them so that every point of the breast lies near some tile's centre. */
static void make_tiles(const uint8_t *img, int W, int H, int stride, int black, int white, tiles *T) {
  uint8_t *b = mp_malloc(TILE * TILE);
  for (int r = 0; r < H; r += stride)
    for (int c = 0; c < W; c += stride) {
      for (int y = 0; y < TILE; y++)
        for (int x = 0; x < TILE; x++)
          b[y * TILE + x] = r + y < H && c + x < W ? img[(size_t)(r + y) * W + c + x] : 0;
      if (mp_extreme_fraction(b, TILE * TILE, black, white) > 0.5) continue;
      if (T->n == T->cap) {
        T->cap = T->cap ? 2 * T->cap : 256;
        T->px = mp_realloc(T->px, (size_t)T->cap * TILE * TILE);
        T->t = mp_realloc(T->t, (size_t)T->cap * sizeof *T->t);
      }
      memcpy(T->px + (size_t)T->n * TILE * TILE, b, TILE * TILE);
      T->t[T->n++] = (tile){r, c, 0};
    }
  mp_free(b);
}

/* colour map: dark red (p = 0) -> red -> orange -> yellow (p = 1); never white, so a
 * confident tile does not read as bright tissue */
static void hot(double p, double rgb[3]) {
  rgb[0] = fmin(1, 0.45 + 1.1 * p);
  rgb[1] = fmax(0, fmin(1, 1.6 * p - 0.6));
  rgb[2] = 0;
}

/* The overlay: image downscaled by an integer factor f (box mean), tiles tinted.  img is
 * the picture's base: the view with everything outside the breast blanked (predict_one). */
static int write_heatmap(const char *path, const uint8_t *img, int W, int H, const tiles *T, int stride, double thr,
                         int hottest, int max_side, int *ow, int *oh, char *err, size_t errlen) {
  int f = 1;
  while ((W + f - 1) / f > max_side || (H + f - 1) / f > max_side) f++;
  int w = (W + f - 1) / f, h = (H + f - 1) / f;
  double *tint = mp_malloc((size_t)w * h * 4 * sizeof *tint); /* r g b alpha */
  memset(tint, 0, (size_t)w * h * 4 * sizeof *tint);
  uint8_t *rgb = mp_malloc((size_t)w * h * 3);
  for (int i = 0; i < T->n; i++) {
    double c[3];
    hot(T->t[i].prob, c);
    double alpha = 0.15 + 0.55 * T->t[i].prob;
    int m = (TILE - stride) / 2; /* the tile's centre stride x stride cell */
    int y0 = (T->t[i].row + m) / f, x0 = (T->t[i].col + m) / f, y1 = (T->t[i].row + m + stride) / f,
        x1 = (T->t[i].col + m + stride) / f;
    for (int y = y0; y < y1 && y < h; y++)
      for (int x = x0; x < x1 && x < w; x++) {
        double *q = tint + ((size_t)y * w + x) * 4;
        q[0] = c[0], q[1] = c[1], q[2] = c[2], q[3] = alpha;
      }
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double s = 0;
      int n = 0;
      for (int yy = y * f; yy < (y + 1) * f && yy < H; yy++)
        for (int xx = x * f; xx < (x + 1) * f && xx < W; xx++) s += img[(size_t)yy * W + xx], n++;
      double g = s / n / 255.0;
      const double *q = tint + ((size_t)y * w + x) * 4;
      for (int k = 0; k < 3; k++) rgb[((size_t)y * w + x) * 3 + k] = (uint8_t)lrint(255 * ((1 - q[3]) * g + q[3] * q[k]));
    }
  /* outlines: positive tiles red, the hottest cyan (drawn last, 2 px) */
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < T->n; i++) {
      if (pass == 0 ? T->t[i].prob < thr : i != hottest) continue;
      const uint8_t col[3] = {pass ? 0 : 255, pass ? 255 : 0, pass ? 255 : 0};
      int y0 = T->t[i].row / f, x0 = T->t[i].col / f, y1 = (T->t[i].row + TILE) / f - 1,
          x1 = (T->t[i].col + TILE) / f - 1;
      if (y1 >= h) y1 = h - 1;
      if (x1 >= w) x1 = w - 1;
      for (int th = 0; th <= pass; th++)
        for (int y = y0; y <= y1; y++)
          for (int x = x0; x <= x1; x++)
            if (y == y0 + th || y == y1 - th || x == x0 + th || x == x1 - th) memcpy(rgb + ((size_t)y * w + x) * 3, col, 3);
    }
  *ow = w, *oh = h;
  int rc = 0;
#if MP_HAVE_PNG
  rc = mp_png_write(path, rgb, w, h, 3, err, errlen);
#else
  (void)path;
  snprintf(err, errlen, "this build has no libpng: no heatmap");
  rc = -1;
#endif
  mp_free(tint), mp_free(rgb);
  return rc;
}

/* One image: its predict.json document, or NULL with the reason in err. */
static cJSON *predict_one(const mp_config *cfg, mp_net *b1, mp_net *rest, int eb, const char *path, const char *name,
                          const char *dir, double thr, const char *thr_from, bool *discarded, char *err, size_t errlen) {
  *discarded = false;
  mp_dicom_info in;
  mp_dicom_file *f = mp_dicom_open(path, &in, err, errlen);
  if (!f) return NULL;
  const void *data = NULL;
  int bits = 0, is_signed = 0;
  if (in.frames > 1) {
    snprintf(err, errlen, "decode_error: %d frames (a mammogram has one)", in.frames);
    mp_dicom_close(f);
    return NULL;
  }
  if (in.samples_per_pixel != 1) {
    snprintf(err, errlen, "decode_error: %d samples per pixel (a mammogram is greyscale)", in.samples_per_pixel);
    mp_dicom_close(f);
    return NULL;
  }
  /* what preprocessing would discard for the image itself, the model never saw: no score */
  char why[300];
  const char *out = mp_preprocess_screen(&in, cfg, why, sizeof why);
  if (out) {
    snprintf(err, errlen, "not scored: preprocessing discards it (%s%s%s)", out, why[0] ? ": " : "", why);
    *discarded = true;
    mp_dicom_close(f);
    return NULL;
  }
  if (mp_dicom_decode(f, &data, &bits, &is_signed, err, errlen) != 0) {
    mp_dicom_close(f);
    return NULL;
  }
  int W = in.cols, H = in.rows;
  uint8_t *img = mp_malloc((size_t)W * H);
  const mp_dicom_luts luts = mp_dicom_luts_of(f);
  mp_window_method wm = mp_window_to_u8(data, bits, is_signed, (size_t)W * H, &in, &luts, img);
  const char *modality = mp_window_uses_modality_lut(&in, &luts) ? "modality_lut" : in.has_rescale ? "rescale" : "none";
  mp_dicom_close(f);
  /* tiles as preprocessing's normal tiling */
  tiles T = {0};
  const int stride = (int)mp_config_int(cfg, "predict.stride");
  make_tiles(img, W, H, stride, (int)mp_config_int(cfg, "preprocess.black"), (int)mp_config_int(cfg, "preprocess.white"),
             &T);
  float *x = mp_malloc((size_t)eb * TILE * TILE * sizeof *x);
  for (int i = 0; i < T.n; i += eb) {
    int k = T.n - i < eb ? T.n - i : eb;
    const uint8_t *p = T.px + (size_t)i * TILE * TILE;
    for (size_t e = 0; e < (size_t)k * TILE * TILE; e++) x[e] = (float)p[e] / 127.5f - 1.0f;
    const float *y = mp_net_forward(rest, mp_net_forward(b1, x, k, false, 0), k, false, 0);
    for (int j = 0; j < k; j++) T.t[i + j].prob = (float)(1.0 / (1.0 + exp(-(double)y[j])));
  }
  mp_free(x);
  int hottest = -1, positive = 0;
  for (int i = 0; i < T.n; i++) {
    if (hottest < 0 || T.t[i].prob > T.t[hottest].prob) hottest = i;
    positive += T.t[i].prob >= thr;
  }
  cJSON *d = cJSON_CreateObject();
  cJSON_AddStringToObject(d, "input", name);
  cJSON_AddNumberToObject(d, "rows", H);
  cJSON_AddNumberToObject(d, "cols", W);
  cJSON_AddStringToObject(d, "laterality", in.image_laterality[0] ? in.image_laterality : in.laterality);
  cJSON_AddStringToObject(d, "view_position", in.view_position);
  cJSON_AddStringToObject(d, "modality_transform", modality); /* before the windowing: as preprocessing */
  cJSON_AddStringToObject(d, "windowing", mp_window_method_name(wm));
  cJSON_AddNumberToObject(d, "patch_size", TILE);
  cJSON_AddNumberToObject(d, "stride", stride);
  cJSON_AddNumberToObject(d, "threshold", thr);
  cJSON_AddStringToObject(d, "threshold_from", thr_from);
  /* no tile of tissue (all background or markers): nothing was scored, so no decision */
  cJSON_AddStringToObject(d, "decision", T.n == 0 ? "undetermined" : positive ? "lesion" : "normal");
  cJSON_AddStringToObject(d, "decision_rule", "lesion when any tile's probability >= threshold (SPEC §10 view roll-up)");
  cJSON_AddNumberToObject(d, "tiles_scored", T.n);
  cJSON_AddNumberToObject(d, "tiles_positive", positive);
  if (hottest >= 0) {
    cJSON *ho = cJSON_AddObjectToObject(d, "hottest");
    cJSON_AddNumberToObject(ho, "row", T.t[hottest].row);
    cJSON_AddNumberToObject(ho, "col", T.t[hottest].col);
    cJSON_AddNumberToObject(ho, "probability", T.t[hottest].prob);
  } else
    cJSON_AddNullToObject(d, "hottest");
  cJSON *arr = cJSON_AddArrayToObject(d, "tiles");
  for (int i = 0; i < T.n; i++) {
    double v[3] = {T.t[i].row, T.t[i].col, T.t[i].prob};
    cJSON_AddItemToArray(arr, cJSON_CreateDoubleArray(v, 3));
  }
  cJSON_AddStringToObject(d, "tiles_format", "[row, col, probability]: top-left corner of each 128 x 128 tile");
  char png[4400];
  int ow = 0, oh = 0;
  snprintf(png, sizeof png, "%s/heatmap.png", dir);
  int max_side = (int)mp_config_int(cfg, "predict.max_side");
  /* the picture shows the breast only (its largest region above preprocess.black, holes
   * included): burned-in text apart from it (a marker, a name or a date on the film) never
   * reaches the PNG.  The tiles were scored on the whole view, as before. */
  uint8_t *base = mp_malloc((size_t)W * H);
  const size_t breast = mp_largest_region_u8(img, W, H, (int)mp_config_int(cfg, "preprocess.black"), base);
  for (size_t i = 0; i < (size_t)W * H; i++) base[i] = base[i] ? img[i] : 0;
  if (write_heatmap(png, base, W, H, &T, stride, thr, hottest, max_side, &ow, &oh, err, errlen) == 0) {
    cJSON *hm = cJSON_AddObjectToObject(d, "heatmap");
    cJSON_AddStringToObject(hm, "file", "heatmap.png");
    cJSON_AddNumberToObject(hm, "width", ow);
    cJSON_AddNumberToObject(hm, "height", oh);
    cJSON_AddNumberToObject(hm, "scale", (double)ow / W);
    cJSON_AddStringToObject(hm, "outside_breast", "blanked (burned-in text apart from the breast is not shown)");
    cJSON_AddNumberToObject(hm, "breast_fraction", (double)breast / ((double)W * H));
  } else {
    MP_WARN("%s: %s", name, err);
    err[0] = 0;
  }
  mp_free(T.px), mp_free(T.t), mp_free(img), mp_free(base);
  return d;
}

static void add_model_sha(cJSON *d, const char *const wfile[2], char sha[2][65]) {
  cJSON *m = cJSON_AddObjectToObject(d, "model_sha256");
  for (int w = 0; w < 2; w++) cJSON_AddStringToObject(m, wfile[w], sha[w]);
}

int mp_predict_run(MPI_Comm comm, const mp_config *cfg, const mp_predict_args *a) {
  int rank, K;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  char err[1024] = "", model[4300], path[4400];
  struct stat sb;
  snprintf(path, sizeof path, "%s/best/block1.h5", a->model_dir);
  if (stat(path, &sb) == 0) snprintf(model, sizeof model, "%s/best", a->model_dir);
  else snprintf(model, sizeof model, "%s", a->model_dir);
  const int eb = (int)mp_config_int(cfg, "eval.batch");
  mp_backend *be = mp_backend_create_cfg(cfg, err, sizeof err);
  mp_net *b1 = NULL, *rest = NULL;
  int rc = be ? 0 : -1;
  if (be) {
    mp_model_classifier(be, eb, 0, 0.0f, &b1, &rest);
    snprintf(path, sizeof path, "%s/block1.h5", model);
    rc = mp_net_load(b1, path, NULL, err, sizeof err);
    snprintf(path, sizeof path, "%s/rest.h5", model);
    if (!rc) rc = mp_net_load(rest, path, NULL, err, sizeof err);
  }
  if (!rc && mp_mkdir_p(a->out_dir, err, sizeof err) != 0) rc = -1;
  /* the model's identity beside its path: the SHA-256 of its weight files (sha256sum's digits),
   * so that a prediction names the exact weights even after the directory was moved or retrained */
  char sha[2][65] = {"", ""};
  static const char *const wfile[2] = {"block1.h5", "rest.h5"};
  for (int w = 0; w < 2 && !rc && rank == 0; w++) {
    snprintf(path, sizeof path, "%s/%s", model, wfile[w]);
    if (mp_sha256_file(path, sha[w], err, sizeof err) != 0) rc = -1;
  }
  MP_CHECK_MPI(MPI_Bcast(sha, (int)sizeof sha, MPI_CHAR, 0, comm));
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, comm));
  if (rc) {
    MP_ERROR("%s", err[0] ? err : "cannot load the model on another rank");
    mp_net_free(b1), mp_net_free(rest);
    if (be) mp_backend_free(be);
    return MP_EXIT_FAILURE;
  }
  cJSON *compute = mp_backend_compute_json(be, NULL, comm); /* rank 0: the summary's "compute" */
  char engine[512]; /* this rank's line, for each of its images' predict.json */
  snprintf(engine, sizeof engine, "%s", be->iface->describe(be, NULL, NULL));
  /* the decision threshold: eval.threshold when it is given (file or --set), else the one the
   * model's own evaluation used (MODEL/eval.json: e.g. the validation-MCC threshold), so that
   * predict decides a view as eval did; else eval.threshold's default */
  double thr = mp_config_real(cfg, "eval.threshold");
  char thr_from[300] = "eval.threshold (default)";
  if (mp_config_origin(cfg, "eval.threshold") != MP_CFG_FROM_DEFAULT) {
    snprintf(thr_from, sizeof thr_from, "eval.threshold (given)");
  } else {
    snprintf(path, sizeof path, "%s/eval.json", a->model_dir);
    cJSON *ev = stat(path, &sb) == 0 ? mp_json_read_file(path, NULL, 0) : NULL;
    const cJSON *th = cJSON_GetObjectItem(ev, "threshold"), *tv = cJSON_GetObjectItem(th, "value"),
                *tc = cJSON_GetObjectItem(th, "chosen");
    if (cJSON_IsNumber(tv) && tv->valuedouble > 0 && tv->valuedouble < 1) {
      thr = tv->valuedouble;
      snprintf(thr_from, sizeof thr_from, "the model's evaluation (eval.json: %s)",
               cJSON_IsString(tc) ? tc->valuestring : "its threshold");
    }
    cJSON_Delete(ev);
  }
  if (rank == 0) MP_INFO("predict: threshold %.6g, from %s", thr, thr_from);
  /* how outputs name each image: its file name, or with privacy.file_names = pseudonym the
   * keyed pseudonym of the path as given (mammopatch pseudonym --file PATH) */
  char (*names)[4200] = mp_malloc((size_t)(a->ninputs > 0 ? a->ninputs : 1) * sizeof *names);
  {
    const bool pseud = strcmp(mp_config_str(cfg, "privacy.file_names"), "pseudonym") == 0;
    mp_site_key key;
    int krc = pseud ? mp_site_key_load(&key, mp_config_str(cfg, "privacy.site_key_file"), err, sizeof err) : 0;
    MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &krc, 1, MPI_INT, MPI_MIN, comm));
    if (krc) {
      MP_ERROR("privacy.file_names = pseudonym: %s", err[0] ? err : "no site key on another rank");
      mp_free(names);
      cJSON_Delete(compute);
      mp_net_free(b1), mp_net_free(rest);
      mp_backend_free(be);
      return MP_EXIT_USAGE;
    }
    for (int i = 0; i < a->ninputs; i++) {
      const char *base = strrchr(a->inputs[i], '/');
      if (pseud) {
        char ps[MP_PSEUDONYM_LEN + 1];
        mp_pseudonym_file(&key, a->inputs[i], ps);
        snprintf(names[i], sizeof names[i], "%s", ps);
      } else {
        snprintf(names[i], sizeof names[i], "%s", base ? base + 1 : a->inputs[i]);
      }
    }
    if (pseud) mp_site_key_clear(&key);
  }
  int failed = 0;
  for (int i = rank; i < a->ninputs; i += K) {
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/view-%d", a->out_dir, i + 1);
    cJSON *d = NULL;
    bool discarded = false;
    if (mp_mkdir_p(dir, err, sizeof err) == 0)
      d = predict_one(cfg, b1, rest, eb, a->inputs[i], names[i], dir, thr, thr_from, &discarded, err, sizeof err);
    if (!d) { /* failed, or out of the model's scope: either way not scored, and the exit status says so */
      d = cJSON_CreateObject();
      cJSON_AddStringToObject(d, "input", names[i]);
      cJSON_AddStringToObject(d, "status", discarded ? "discarded" : "failed");
      cJSON_AddStringToObject(d, "error", err);
      failed++;
      fprintf(stderr, "[mammopatch rank %d] predict: image %d (%s) %s: %s\n", rank, i + 1, names[i],
              discarded ? "discarded" : "failed", err);
    } else
      cJSON_AddStringToObject(d, "status", "ok");
    cJSON_AddItemToObject(d, "provenance", mp_json_provenance(cfg, K));
    cJSON_AddStringToObject(d, "engine", engine); /* what scored this image */
    cJSON_AddStringToObject(d, "model", model);
    add_model_sha(d, wfile, sha);
    snprintf(path, sizeof path, "%s/predict.json", dir);
    if (mp_json_write_file(path, d, err, sizeof err) != 0) {
      fprintf(stderr, "[mammopatch rank %d] %s\n", rank, err);
      failed++;
    }
    cJSON_Delete(d);
  }
  MP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, comm));
  if (rank == 0) {
    /* the summary, from the per-image documents (OUT is shared by the ranks) */
    cJSON *s = cJSON_CreateObject();
    cJSON_AddItemToObject(s, "provenance", mp_json_provenance(cfg, K));
    if (compute) cJSON_AddItemToObject(s, "compute", compute), compute = NULL;
    cJSON_AddStringToObject(s, "model", model);
    add_model_sha(s, wfile, sha);
    cJSON *arr = cJSON_AddArrayToObject(s, "images");
    for (int i = 0; i < a->ninputs; i++) {
      snprintf(path, sizeof path, "%s/view-%d/predict.json", a->out_dir, i + 1);
      cJSON *d = mp_json_read_file(path, err, sizeof err), *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "index", i + 1);
      char rel[32];
      snprintf(rel, sizeof rel, "view-%d", i + 1);
      cJSON_AddStringToObject(o, "dir", rel);
      static const char *const keys[] = {"input", "status", "error", "decision", "tiles_scored", "tiles_positive",
                                         "hottest"};
      for (size_t k = 0; d && k < sizeof keys / sizeof *keys; k++)
        if (cJSON_GetObjectItem(d, keys[k]))
          cJSON_AddItemToObject(o, keys[k], cJSON_Duplicate(cJSON_GetObjectItem(d, keys[k]), 1));
      if (!d) cJSON_AddStringToObject(o, "status", "missing");
      if (d && cJSON_GetObjectItem(d, "decision")) {
        const cJSON *h = cJSON_GetObjectItem(d, "hottest");
        if (cJSON_IsObject(h))
          MP_INFO("image %d (%s): %s; %d tiles, hottest p = %.3f at (%d, %d)", i + 1,
                  cJSON_GetObjectItem(d, "input")->valuestring, cJSON_GetObjectItem(d, "decision")->valuestring,
                  (int)cJSON_GetObjectItem(d, "tiles_scored")->valuedouble,
                  cJSON_GetObjectItem(h, "probability")->valuedouble, (int)cJSON_GetObjectItem(h, "row")->valuedouble,
                  (int)cJSON_GetObjectItem(h, "col")->valuedouble);
        else
          MP_WARN("image %d (%s): undetermined: no tile of tissue to score", i + 1,
                  cJSON_GetObjectItem(d, "input")->valuestring);
      }
      cJSON_AddItemToArray(arr, o);
      cJSON_Delete(d);
    }
    snprintf(path, sizeof path, "%s/predict.json", a->out_dir);
    if (mp_json_write_file(path, s, err, sizeof err) != 0) MP_ERROR("%s", err), failed++;
    cJSON_Delete(s);
    MP_INFO("predict: %d image%s, %d not scored (failed or discarded); %s", a->ninputs, a->ninputs == 1 ? "" : "s",
            failed, path);
  }
  MP_CHECK_MPI(MPI_Bcast(&failed, 1, MPI_INT, 0, comm));
  cJSON_Delete(compute);
  mp_free(names);
  mp_net_free(b1), mp_net_free(rest);
  mp_backend_free(be);
  return failed ? MP_EXIT_FAILURE : MP_EXIT_OK;
}
