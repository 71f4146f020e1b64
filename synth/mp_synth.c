/* mp_synth — the synthetic cohort: patients, exams, files, decoys, truth (see mp_synth.h).
 *
 * Each patient p is planned from uniforms at fixed positions of the sequence
 * (seed, MP_RNG_SYNTH, p): a decision always reads the same position whatever the
 * other decisions were, so changing one fraction in the configuration changes only
 * what depends on it.  Files are then rendered and written by the rank that holds p
 * (block sharding), and the CSV rows of all ranks are gathered to rank 0 in patient
 * order.
 *
 * Expected outcome of a file = the first SPEC §2 filter that discards it, in order:
 * view, sex, implant, presentation_lut, image_type, no_label/birads, decode_error;
 * else accepted.  Garbage files are failed:not_dicom. */
#include "mp_synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_build_config.h"
#include "mp_check.h"
#include "mp_dicom.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_mpi.h"
#include "mp_progress.h"
#include "mp_strbuf.h"
#if MP_HAVE_PNG
#include "mp_png.h"
#endif

#define MAX_FILES 16
#define SLOTS 64 /* image slots per patient in the pixel/codec RNG index */

void mp_synth_params_from_config(mp_synth_params *p, const mp_config *c) {
  memset(p, 0, sizeof *p);
  p->patients = (int)mp_config_int(c, "synth.patients");
  p->width = (int)mp_config_int(c, "synth.width");
  p->height = (int)mp_config_int(c, "synth.height");
  p->seed = (uint64_t)mp_config_int(c, "run.seed");
  p->birads0_frac = mp_config_real(c, "synth.birads0_frac");
  p->birads2_frac = mp_config_real(c, "synth.birads2_frac");
  p->birads345_frac = mp_config_real(c, "synth.birads345_frac");
  p->unlabeled_frac = mp_config_real(c, "synth.unlabeled_frac");
  p->male_frac = mp_config_real(c, "synth.male_frac");
  p->implant_frac = mp_config_real(c, "synth.implant_frac");
  p->inverse_lut_frac = mp_config_real(c, "synth.inverse_lut_frac");
  p->nonstandard_view_frac = mp_config_real(c, "synth.nonstandard_view_frac");
  p->cad_frac = mp_config_real(c, "synth.cad_frac");
  p->truncated_frac = mp_config_real(c, "synth.truncated_frac");
  p->garbage_frac = mp_config_real(c, "synth.garbage_frac");
  p->missing_view_frac = mp_config_real(c, "synth.missing_view_frac");
  p->two_exam_frac = mp_config_real(c, "synth.two_exam_frac");
  p->monochrome1_frac = mp_config_real(c, "synth.monochrome1_frac");
  p->jpegls_frac = mp_config_real(c, "synth.jpegls_frac");
  p->j2k_frac = mp_config_real(c, "synth.j2k_frac");
  p->annotated_frac = mp_config_real(c, "synth.annotated_frac");
  p->big_mark_frac = mp_config_real(c, "synth.big_mark_frac");
  p->calc_frac = mp_config_real(c, "synth.calc_frac");
  p->second_lesion_frac = mp_config_real(c, "synth.second_lesion_frac");
  p->black = (int)mp_config_int(c, "preprocess.black");
  p->white = (int)mp_config_int(c, "preprocess.white");
}

/* ---- plan ------------------------------------------------------------------------- */

typedef enum { F_IMAGE, F_CAD, F_GARBAGE } file_kind;

typedef struct {
  char rel[64]; /* path relative to the output directory */
  file_kind kind;
  int exam, slot, pixel_slot;
  char lat;
  const char *view;
  bool inverse_lut, truncated;
  mp_dicom_ts ts;
  int nlesions;
  mp_synth_lesion les[MP_SYNTH_MAX_LESIONS];
  char sop_uid[64], series_uid[64];
  const char *outcome_reason; /* NULL = accepted */
} plan_file;

typedef struct {
  int index;
  char id[16], name[64], birth[40];
  char sex;
  bool labelled, implant;
  int nexams;
  struct {
    int birads;
    bool mono1;
    char study_uid[64], date[40], accession[16];
  } exam[2];
  double density;
  int nfiles;
  plan_file files[MAX_FILES];
} plan_patient;

/* Uniform in [0,1) at fixed position k of patient p's planning sequence. */
static double U(const mp_synth_params *sp, int p, int k) {
  uint64_t lo = mp_rng_at(sp->seed, MP_RNG_SYNTH, (uint64_t)p, 2ULL * (uint64_t)k);
  uint64_t hi = mp_rng_at(sp->seed, MP_RNG_SYNTH, (uint64_t)p, 2ULL * (uint64_t)k + 1);
  return (double)((lo | hi << 32) >> 11) * 0x1.0p-53;
}

/* "2.25.<decimal of a 128-bit number>" — the UUID-derived root of DICOM PS3.5 B.2,
 * from the counter-based RNG so UIDs are the same for any number of ranks. */
static void make_uid(char *out, uint64_t seed, int patient, int k) {
  uint32_t w[4];
  for (int i = 0; i < 4; i++) w[i] = mp_rng_at(seed, MP_RNG_SYNTH_UID, (uint64_t)patient, 4ULL * (uint64_t)k + (uint64_t)i);
  w[3] |= 0x80000000u; /* 39 digits, never a leading zero */
  char digits[48];
  int n = 0;
  while (w[0] | w[1] | w[2] | w[3]) { /* repeated division by 10, most significant word first */
    uint64_t rem = 0;
    for (int i = 3; i >= 0; i--) {
      uint64_t cur = (rem << 32) | w[i];
      w[i] = (uint32_t)(cur / 10);
      rem = cur % 10;
    }
    digits[n++] = (char)('0' + rem);
  }
  int o = snprintf(out, 64, "2.25.");
  for (int i = n - 1; i >= 0; i--) out[o++] = digits[i];
  out[o] = '\0';
}

static const char *view_names[4][2] = {{"L", "CC"}, {"R", "CC"}, {"L", "MLO"}, {"R", "MLO"}};

static mp_lesion_type pick_type(const mp_synth_params *sp, double u) {
  if (u < sp->calc_frac) return MP_LES_CALC;
  double v = (u - sp->calc_frac) / (1.0 - sp->calc_frac);
  return v < 0.25 ? MP_LES_ROUND : v < 0.5 ? MP_LES_OVAL : v < 0.75 ? MP_LES_IRREGULAR : MP_LES_SPICULATED;
}

static const char *expected(const plan_patient *pt, const plan_file *f) {
  if (f->kind == F_GARBAGE) return "failed:not_dicom";
  if (strcmp(f->view, "CC") != 0 && strcmp(f->view, "MLO") != 0) return "discarded:view";
  if (pt->sex != 'F') return "discarded:sex";
  if (pt->implant) return "discarded:implant";
  if (f->inverse_lut) return "discarded:presentation_lut";
  if (f->kind == F_CAD) return "discarded:image_type";
  if (!pt->labelled) return "discarded:no_label";
  int b = pt->exam[f->exam].birads;
  if (b < 0 || b > 2) return "discarded:birads";
  if (f->truncated) return "discarded:decode_error";
  return NULL;
}

static void plan(const mp_synth_params *sp, int p, plan_patient *pt) {
  static const char *last[] = {"DOE", "ROE", "SMITH", "NOWAK", "KOWALSKI", "MILLER", "GARCIA", "ROSSI"};
  static const char *first[] = {"JANE", "MARY", "ANNA", "LINDA", "MARIA", "SUSAN", "KAREN", "EVA"};
  memset(pt, 0, sizeof *pt);
  pt->index = p;
  snprintf(pt->id, sizeof pt->id, "MRN%07u", (unsigned)(((uint64_t)p * 7919u + 1000003u) % 10000000u));
  pt->labelled = U(sp, p, 0) >= sp->unlabeled_frac;
  int birads;
  if (U(sp, p, 1) < sp->birads345_frac) {
    birads = 3 + (int)(U(sp, p, 2) * 3);
  } else {
    double u = U(sp, p, 3);
    birads = u < sp->birads0_frac ? 0 : u < sp->birads0_frac + sp->birads2_frac ? 2 : 1;
  }
  pt->sex = U(sp, p, 4) < sp->male_frac ? 'M' : 'F';
  pt->implant = U(sp, p, 5) < sp->implant_frac;
  pt->nexams = U(sp, p, 6) < sp->two_exam_frac ? 2 : 1;
  pt->density = U(sp, p, 7);
  char lesion_side = U(sp, p, 8) < 0.5 ? 'L' : 'R';
  snprintf(pt->name, sizeof pt->name, "%s^%s", last[(int)(U(sp, p, 23) * 8)], first[(int)(U(sp, p, 24) * 8)]);
  snprintf(pt->birth, sizeof pt->birth, "%04d%02d%02d", 1940 + (int)(U(sp, p, 25) * 46),
           1 + (int)(U(sp, p, 26) * 12), 1 + (int)(U(sp, p, 27) * 28));
  int study_year = 2010 + (int)(U(sp, p, 28) * 10);
  for (int e = 0; e < pt->nexams; e++) {
    /* a second exam of the same patient carries a different score (SPEC §2's study_uid column) */
    pt->exam[e].birads = e == 0 ? birads : (birads == 1 ? 0 : 1);
    pt->exam[e].mono1 = U(sp, p, 21 + e) < sp->monochrome1_frac;
    make_uid(pt->exam[e].study_uid, sp->seed, p, e);
    snprintf(pt->exam[e].date, sizeof pt->exam[e].date, "%04d%02d%02d", study_year - e,
             1 + (int)(U(sp, p, 29) * 12), 1 + (int)(U(sp, p, 30) * 28));
    snprintf(pt->exam[e].accession, sizeof pt->exam[e].accession, "A%08u", (unsigned)(p * 2 + e));
  }

  int slot = 0;
  for (int e = 0; e < pt->nexams; e++) {
    int first_view = -1, present = 0;
    for (int v = 0; v < 4; v++) present += U(sp, p, 13 + 4 * e + v) >= sp->missing_view_frac;
    for (int v = 0; v < 4; v++) {
      bool here = U(sp, p, 13 + 4 * e + v) >= sp->missing_view_frac || (present == 0 && v == 0);
      if (!here) continue;
      plan_file *f = &pt->files[pt->nfiles++];
      f->kind = F_IMAGE;
      f->exam = e;
      f->slot = f->pixel_slot = slot++;
      f->lat = view_names[v][0][0];
      f->view = view_names[v][1];
      snprintf(f->rel, sizeof f->rel, "dicom/p%05d/e%d_%c%s.dcm", p, e, f->lat, f->view);
      if (first_view < 0) first_view = pt->nfiles - 1;
      int b = pt->exam[e].birads;
      if ((b == 0 || b == 2) && f->lat == lesion_side) {
        int base = 40 + f->slot * 12;
        f->nlesions = U(sp, p, base + 2) < sp->second_lesion_frac ? 2 : 1;
        for (int k = 0; k < f->nlesions; k++) {
          f->les[k].type = pick_type(sp, U(sp, p, base + 3 + 3 * k));
          f->les[k].annotated = U(sp, p, base + 4 + 3 * k) < sp->annotated_frac;
          f->les[k].big_mark = U(sp, p, base + 5 + 3 * k) < sp->big_mark_frac;
        }
      }
    }
    if (e == 0 && U(sp, p, 9) < sp->nonstandard_view_frac) { /* XCCL or ML */
      plan_file *f = &pt->files[pt->nfiles++];
      f->kind = F_IMAGE;
      f->exam = 0;
      f->slot = f->pixel_slot = slot++;
      f->lat = U(sp, p, 10) < 0.5 ? 'L' : 'R';
      f->view = U(sp, p, 11) < 0.5 ? "XCCL" : "ML";
      snprintf(f->rel, sizeof f->rel, "dicom/p%05d/e0_%c%s.dcm", p, f->lat, f->view);
    }
    if (e == 0 && U(sp, p, 12) < sp->cad_frac) { /* a secondary capture of the first view */
      plan_file *src = &pt->files[first_view];
      plan_file *f = &pt->files[pt->nfiles++];
      *f = *src;
      f->kind = F_CAD;
      f->slot = slot++;
      snprintf(f->rel, sizeof f->rel, "dicom/p%05d/e0_%c%s_cad.dcm", p, src->lat, src->view);
    }
  }
  if (U(sp, p, 31) < sp->garbage_frac) {
    plan_file *f = &pt->files[pt->nfiles++];
    memset(f, 0, sizeof *f);
    f->kind = F_GARBAGE;
    f->slot = slot++;
    f->lat = '-';
    f->view = "";
    snprintf(f->rel, sizeof f->rel, "dicom/p%05d/e0_junk.dcm", p);
  }
  MP_CHECK(pt->nfiles <= MAX_FILES && slot <= SLOTS, "patient %d planned %d files", p, pt->nfiles);

  for (int i = 0; i < pt->nfiles; i++) {
    plan_file *f = &pt->files[i];
    int base = 40 + f->slot * 12;
    f->inverse_lut = f->kind != F_GARBAGE && U(sp, p, base) < sp->inverse_lut_frac;
    make_uid(f->series_uid, sp->seed, p, 2 + 2 * f->slot);
    make_uid(f->sop_uid, sp->seed, p, 3 + 2 * f->slot);
    f->outcome_reason = expected(pt, f);
    /* truncate only files that would otherwise be accepted, so the outcome is clear */
    f->truncated = f->kind == F_IMAGE && !f->outcome_reason && U(sp, p, base + 1) < sp->truncated_frac;
    if (f->truncated) f->outcome_reason = expected(pt, f);
    double uc = (double)(mp_rng_at(sp->seed, MP_RNG_SYNTH_CODEC, (uint64_t)p * SLOTS + (uint64_t)f->slot, 0) >> 8) *
                0x1.0p-24;
    f->ts = uc < sp->jpegls_frac ? MP_TS_JPEGLS_LOSSLESS
            : uc < sp->jpegls_frac + sp->j2k_frac ? MP_TS_J2K_LOSSLESS
                                                   : MP_TS_EXPLICIT_LE;
    if (f->truncated || f->kind == F_GARBAGE) f->ts = MP_TS_EXPLICIT_LE;
  }
}

/* ---- writing ---------------------------------------------------------------------- */

typedef struct {
  mp_strbuf labels, truth, lesions;
  uint8_t *preview[8];
  int npreview, pw, ph;
} rank_out;

static void write_garbage(const char *path, const mp_synth_params *sp, int p, char *err, size_t errlen, int *rc) {
  mp_rng r;
  mp_rng_init(&r, sp->seed, MP_RNG_SYNTH_PIXELS, (uint64_t)p * SLOTS + SLOTS - 1);
  size_t n = 2048 + mp_rng_below(&r, 14336);
  uint8_t *buf = mp_malloc(n);
  for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)mp_rng_u32(&r);
  if (mp_rng_below(&r, 2)) { /* half of them look like DICOM for 132 bytes */
    memset(buf, 0, 128);
    memcpy(buf + 128, "DICM", 4);
  }
  *rc = mp_write_file_atomic(path, buf, n, err, errlen);
  mp_free(buf);
}

/* Downscale by an integer factor (box filter) into an 8-bit preview using the window. */
static uint8_t *make_preview(const uint16_t *px, int W, int H, double wc, double ww, int f, int *pw, int *ph) {
  *pw = W / f;
  *ph = H / f;
  uint8_t *out = mp_malloc((size_t)*pw * (size_t)*ph);
  double lo = wc - ww / 2;
  for (int y = 0; y < *ph; y++)
    for (int x = 0; x < *pw; x++) {
      double s = 0;
      for (int dy = 0; dy < f; dy++)
        for (int dx = 0; dx < f; dx++) s += px[(size_t)(y * f + dy) * W + (size_t)(x * f + dx)];
      double v = (s / (f * f) - lo) / ww * 255.0;
      out[(size_t)y * *pw + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v));
    }
  return out;
}

static int generate_patient(const mp_synth_params *sp, const char *outdir, int p, rank_out *ro, bool preview,
                            mp_synth_stats *st, uint16_t *pixels, uint16_t *stored) {
  plan_patient pt;
  plan(sp, p, &pt);
  char dir[4096], path[4096], err[1024];
  snprintf(dir, sizeof dir, "%s/dicom/p%05d", outdir, p);
  if (mp_mkdir_p(dir, err, sizeof err) != 0) {
    MP_ERROR("%s", err);
    return -1;
  }
  if (pt.labelled)
    for (int e = 0; e < pt.nexams; e++)
      mp_strbuf_printf(&ro->labels, "%s,%s,%d\n", pt.id, pt.exam[e].study_uid, pt.exam[e].birads);
  const size_t npix = (size_t)sp->width * (size_t)sp->height;
  for (int i = 0; i < pt.nfiles; i++) {
    plan_file *f = &pt.files[i];
    snprintf(path, sizeof path, "%s/%s", outdir, f->rel);
    int rc = 0;
    double t0 = mp_now();
    const char *outcome = f->outcome_reason ? f->outcome_reason : "accepted";
    if (f->kind == F_GARBAGE) {
      write_garbage(path, sp, p, err, sizeof err, &rc);
      if (rc) {
        MP_ERROR("%s", err);
        return -1;
      }
      mp_strbuf_printf(&ro->truth, "%s,,,,,,,,,,,,,%s,0\n", f->rel, outcome);
      st->files++;
      continue;
    }
    mp_synth_view v;
    memset(&v, 0, sizeof v);
    v.width = sp->width;
    v.height = sp->height;
    v.laterality = f->lat;
    v.view = f->view;
    v.density = pt.density;
    v.seed = sp->seed;
    v.index = (uint64_t)p * SLOTS + (uint64_t)f->pixel_slot;
    v.nlesions = f->nlesions;
    memcpy(v.les, f->les, sizeof v.les);
    v.black = sp->black;
    v.white = sp->white;
    mp_synth_render(&v, pixels);
    double t1 = mp_now();
    st->render_seconds += t1 - t0;

    bool mono1 = pt.exam[f->exam].mono1;
    const uint16_t *out = pixels;
    double wc = v.window_center;
    if (mono1) { /* stored values inverted; the window follows them */
      for (size_t k = 0; k < npix; k++) stored[k] = (uint16_t)(4095 - pixels[k]);
      out = stored;
      wc = 4095.0 - wc;
    }
    char sex[2] = {pt.sex, '\0'};
    char lat[2] = {f->lat, '\0'};
    mp_dicom_image im = {
        .sop_class_uid = f->kind == F_CAD ? MP_SOP_SECONDARY_CAPTURE : MP_SOP_MG_PRESENTATION,
        .sop_instance_uid = f->sop_uid,
        .study_uid = pt.exam[f->exam].study_uid,
        .series_uid = f->series_uid,
        .patient_id = pt.id,
        .patient_name = pt.name,
        .patient_birth_date = pt.birth,
        .patient_sex = sex,
        .study_date = pt.exam[f->exam].date,
        .study_time = "093000",
        .accession_number = pt.exam[f->exam].accession,
        .view_position = f->view,
        .image_laterality = lat,
        .implant_present = pt.implant ? "YES" : "NO",
        .presentation_lut = f->inverse_lut ? "INVERSE" : "IDENTITY",
        .image_type = f->kind == F_CAD ? "DERIVED\\SECONDARY" : "ORIGINAL\\PRIMARY",
        .photometric = mono1 ? "MONOCHROME1" : "MONOCHROME2",
        .manufacturer = "mammopatch synth",
        .series_description = f->kind == F_CAD ? "CAD secondary capture" : "synthetic mammogram",
        .window_center = wc,
        .window_width = v.window_width,
        .rows = sp->height,
        .cols = sp->width,
        .bits_stored = 12,
        .pixels = out,
        .ts = f->ts,
    };
    if (mp_dicom_write(path, &im, err, sizeof err)) {
      MP_ERROR("%s: %s", f->rel, err);
      return -1;
    }
    struct stat sb;
    if (stat(path, &sb) == 0) {
      if (f->truncated) { /* keep the header, cut the pixel data short */
        off_t keep = sb.st_size * 55 / 100;
        if (truncate(path, keep) != 0) {
          MP_ERROR("cannot truncate '%s': %s", path, strerror(errno));
          return -1;
        }
        st->bytes += (uint64_t)keep;
      } else {
        st->bytes += (uint64_t)sb.st_size;
      }
    }
    st->write_seconds += mp_now() - t1;
    st->files++;
    st->images++;

    int placed = 0;
    for (int k = 0; k < v.nlesions; k++) {
      const mp_synth_lesion *l = &v.les[k];
      if (!l->placed) continue;
      placed++;
      if (l->annotated)
        mp_strbuf_printf(&ro->lesions, "%s,%d,%s,%.2f,%.2f,%.2f,1,%.2f,%.2f,%.2f,%.2f,%.2f,%d,%.4f\n", f->rel, placed - 1,
                         mp_lesion_type_name(l->type), l->cx, l->cy, l->size, l->ex, l->ey, l->ea, l->eb,
                         l->eangle * 180.0 / M_PI, l->clean_crop ? 1 : 0, l->crop_extreme_frac);
      else
        mp_strbuf_printf(&ro->lesions, "%s,%d,%s,%.2f,%.2f,%.2f,0,,,,,,0,\n", f->rel, placed - 1,
                         mp_lesion_type_name(l->type), l->cx, l->cy, l->size);
    }
    char birads[8] = ""; /* empty when the patient has no label */
    if (pt.labelled) snprintf(birads, sizeof birads, "%d", pt.exam[f->exam].birads);
    mp_strbuf_printf(&ro->truth, "%s,%s,%s,%s,%c,%s,%s,%s,%s,%c,%s,%s,%s,%s,%d\n", f->rel, pt.id,
                     pt.exam[f->exam].study_uid, f->sop_uid, f->lat, f->view, birads,
                     mono1 ? "MONOCHROME1" : "MONOCHROME2", mp_dicom_ts_name(f->ts), pt.sex, pt.implant ? "YES" : "NO",
                     f->inverse_lut ? "INVERSE" : "IDENTITY",
                     f->kind == F_CAD ? "DERIVED\\SECONDARY" : "ORIGINAL\\PRIMARY", outcome, placed);
    if (preview && ro->npreview < 8 && f->kind == F_IMAGE) {
      int fct = sp->width / 192 > 1 ? sp->width / 192 : 1;
      ro->preview[ro->npreview++] = make_preview(pixels, sp->width, sp->height, v.window_center, v.window_width, fct,
                                                 &ro->pw, &ro->ph);
    }
  }
  return 0;
}

/* Rank 0: up to 8 preview tiles side by side, 4 per row. */
static void write_preview(const char *outdir, rank_out *ro) {
#if MP_HAVE_PNG
  if (ro->npreview == 0) return;
  int cols = ro->npreview < 4 ? ro->npreview : 4, rows = (ro->npreview + 3) / 4, gap = 4;
  int W = cols * ro->pw + (cols - 1) * gap, H = rows * ro->ph + (rows - 1) * gap;
  uint8_t *m = mp_calloc((size_t)W * (size_t)H, 1);
  for (int i = 0; i < ro->npreview; i++) {
    int ox = (i % 4) * (ro->pw + gap), oy = (i / 4) * (ro->ph + gap);
    for (int y = 0; y < ro->ph; y++) memcpy(m + (size_t)(oy + y) * W + ox, ro->preview[i] + (size_t)y * ro->pw, (size_t)ro->pw);
  }
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/preview.png", outdir);
  if (mp_png_write(path, m, W, H, 1, err, sizeof err))
    MP_WARN("preview not written: %s", err);
  else
    MP_INFO("preview montage of %d views: %s", ro->npreview, path);
  mp_free(m);
#else
  (void)outdir;
  (void)ro;
  MP_WARN("--preview needs libpng, which this build lacks");
#endif
}

static int write_text(const char *outdir, const char *name, const char *header, const char *body, size_t len) {
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/%s", outdir, name);
  mp_strbuf b = {0};
  mp_strbuf_printf(&b, "%s\n", header);
  mp_strbuf_append(&b, body, len);
  int rc = mp_write_file_atomic(path, b.s, b.len, err, sizeof err);
  if (rc) MP_ERROR("%s", err);
  mp_strbuf_free(&b);
  return rc;
}

int mp_synth_run(MPI_Comm comm, const mp_synth_params *sp, const char *outdir, bool preview, mp_synth_stats *stats) {
  int rank, size;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  MP_CHECK_MPI(MPI_Comm_size(comm, &size));
  double t0 = mp_now();
  memset(stats, 0, sizeof *stats);
  int ok = 1;
  if (rank == 0) {
    char d[4096], err[512];
    snprintf(d, sizeof d, "%s/dicom", outdir);
    if (mp_mkdir_p(d, err, sizeof err) != 0) {
      MP_ERROR("%s", err);
      ok = 0;
    }
  }
  MP_CHECK_MPI(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
  if (!ok) return -1;

  mp_range mine = mp_shard_block((uint64_t)sp->patients, size, rank);
  rank_out ro;
  memset(&ro, 0, sizeof ro);
  const size_t npix = (size_t)sp->width * (size_t)sp->height;
  uint16_t *pixels = mp_malloc(npix * sizeof *pixels), *stored = mp_malloc(npix * sizeof *stored);
  mp_synth_stats local = {0};
  /* rank 0 reports progress for its share: block shards are equal to within one */
  mp_progress *prog = mp_progress_start("synth (rank 0 share)", mine.end - mine.begin);
  int failed = 0;
  for (uint64_t p = mine.begin; p < mine.end && !failed; p++) {
    failed = generate_patient(sp, outdir, (int)p, &ro, preview && rank == 0, &local, pixels, stored) != 0;
    mp_progress_add(prog, 1);
  }
  mp_progress_finish(prog);
  mp_free(pixels);
  mp_free(stored);
  local.seconds = mp_now() - t0;

  int any_failed = 0;
  MP_CHECK_MPI(MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, comm));
  size_t ll = 0, tl = 0, sl = 0;
  char *labels = mp_gather_text(comm, 0, mp_strbuf_str(&ro.labels), ro.labels.len, &ll);
  char *truth = mp_gather_text(comm, 0, mp_strbuf_str(&ro.truth), ro.truth.len, &tl);
  char *les = mp_gather_text(comm, 0, mp_strbuf_str(&ro.lesions), ro.lesions.len, &sl);
  mp_strbuf_free(&ro.labels);
  mp_strbuf_free(&ro.truth);
  mp_strbuf_free(&ro.lesions);

  double sums[5] = {(double)local.files, (double)local.images, (double)local.bytes, local.render_seconds,
                    local.write_seconds};
  double tot[5];
  MP_CHECK_MPI(MPI_Allreduce(sums, tot, 5, MPI_DOUBLE, MPI_SUM, comm));
  MP_CHECK_MPI(MPI_Allreduce(&local.seconds, &stats->seconds, 1, MPI_DOUBLE, MPI_MAX, comm));
  stats->files = (uint64_t)tot[0];
  stats->images = (uint64_t)tot[1];
  stats->bytes = (uint64_t)tot[2];
  stats->render_seconds = tot[3];
  stats->write_seconds = tot[4];

  int rc = any_failed ? -1 : 0;
  if (rank == 0 && !any_failed) {
    for (const char *q = truth; q && *q; q = strchr(q, '\n') + 1) {
      const char *comma = q;
      for (int c = 0; c < 13; c++) comma = strchr(comma, ',') + 1;
      if (!strncmp(comma, "accepted", 8)) stats->by_outcome_accepted++;
      else if (!strncmp(comma, "discarded", 9)) stats->by_outcome_discarded++;
      else stats->by_outcome_failed++;
    }
    rc |= write_text(outdir, "labels.csv", "patient_id,study_uid,birads", labels, ll);
    rc |= write_text(outdir, "truth.csv",
                     "file,patient_id,study_uid,sop_uid,laterality,view,birads,photometric,transfer_syntax,sex,"
                     "implant,lut_shape,image_type,outcome,lesions",
                     truth, tl);
    rc |= write_text(outdir, "truth_lesions.csv",
                     "file,lesion,type,cx,cy,size,annotated,ell_cx,ell_cy,ell_a,ell_b,ell_angle_deg,clean_crop,"
                     "crop_extreme_frac",
                     les, sl);
    if (preview) write_preview(outdir, &ro);
  }
  for (int i = 0; i < ro.npreview; i++) mp_free(ro.preview[i]);
  mp_free(labels);
  mp_free(truth);
  mp_free(les);
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, comm));
  uint64_t counts[3] = {stats->by_outcome_accepted, stats->by_outcome_discarded, stats->by_outcome_failed};
  MP_CHECK_MPI(MPI_Bcast(counts, 3, MPI_UINT64_T, 0, comm));
  stats->by_outcome_accepted = counts[0];
  stats->by_outcome_discarded = counts[1];
  stats->by_outcome_failed = counts[2];
  return rc ? -1 : 0;
}
