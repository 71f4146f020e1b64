/* mp_preprocess — the preprocessing stage (see mp_preprocess.h). */
#include "mp_preprocess.h"

#include <ctype.h>
#include <dirent.h>
#ifdef __GLIBC__
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#endif
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <signal.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_dicom.h"
#include "mp_extract.h"
#include "mp_file.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_mpi.h"
#include "mp_progress.h"
#include "mp_pseudonym.h"
#include "mp_store.h"
#include "mp_strbuf.h"
#include "mp_window.h"

/* ---- outcomes --------------------------------------------------------------------------- */

/* The outcomes of mp_store_outcomes (store/mp_store.h), in its order: failures, then discards in
 * the order the filters apply (SPEC §2). */
enum {
  R_ACCEPTED,
  R_NOT_FILE,
  R_NOT_DICOM,
  R_DUPLICATE,
  R_VIEW,
  R_SEX,
  R_IMPLANT,
  R_LUT,
  R_IMAGE_TYPE,
  R_NO_LABEL,
  R_LABEL_CONFLICT,
  R_BIRADS,
  R_DECODE,
  NREASON,
  R_FAILED_FIRST = R_NOT_FILE,
  R_FAILED_LAST = R_NOT_DICOM,
  R_DISCARDED_FIRST = R_DUPLICATE,
  R_DISCARDED_LAST = R_DECODE
};
/* the keys and labels: mp_store_outcomes, in this order */
_Static_assert((int)NREASON == (int)MP_STORE_OUTCOMES, "one outcome per mp_store_outcomes entry");
#define reason_key(r) mp_store_outcomes[r].key
#define reason_label(r) mp_store_outcomes[r].label

/* ---- input files ------------------------------------------------------------------------- */

/* Every directory entry below the input that is not a directory becomes one input file with an
 * outcome: regular files are read; a dangling link, a FIFO, a socket or a device is failed
 * (not_a_file) without being opened (a FIFO would block); a second path to a file already
 * listed (a hard link, or a symlink to it) is discarded as a duplicate, so that no image's
 * patches enter the store twice.  Directories are walked once each, whatever links lead to
 * them (a link back up the tree is not followed round), in name order, so the listing is
 * the same on every file system. */
enum { F_REGULAR = 'f', F_NOT_FILE = 'n', F_DUPLICATE = 'd' };

typedef struct {
  char *path;
  char kind;       /* F_* */
  uint64_t dup_of; /* F_DUPLICATE: index (in the sorted list) of the path kept */
  uint64_t dev, ino;
} input_file;

typedef struct {
  input_file *f;
  size_t n, cap;
} file_list;

typedef struct {
  uint64_t *dev_ino; /* pairs: the directories walked */
  size_t n, cap;
} dir_set;

static void list_push(file_list *l, const char *p, char kind, uint64_t dev, uint64_t ino) {
  if (l->n == l->cap) l->f = mp_realloc(l->f, (l->cap = l->cap ? 2 * l->cap : 1024) * sizeof *l->f);
  l->f[l->n++] = (input_file){mp_strdup(p), kind, 0, dev, ino};
}

static void list_free(file_list *l) {
  for (size_t i = 0; i < l->n; i++) mp_free(l->f[i].path);
  mp_free(l->f);
  *l = (file_list){0};
}

/* true when (dev, ino) was walked already; else records it */
static bool dir_seen(dir_set *d, uint64_t dev, uint64_t ino) {
  for (size_t i = 0; i < d->n; i++)
    if (d->dev_ino[2 * i] == dev && d->dev_ino[2 * i + 1] == ino) return true;
  if (d->n == d->cap) d->dev_ino = mp_realloc(d->dev_ino, (d->cap = d->cap ? 2 * d->cap : 64) * 2 * sizeof *d->dev_ino);
  d->dev_ino[2 * d->n] = dev, d->dev_ino[2 * d->n + 1] = ino, d->n++;
  return false;
}

static int cmp_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static int walk(const char *dir, file_list *l, dir_set *seen, size_t *links_skipped, char *err, size_t errlen) {
  struct dirent **e = NULL;
  int n = scandir(dir, &e, NULL, cmp_name);
  if (n < 0) {
    snprintf(err, errlen, "cannot read directory '%s': %s", dir, strerror(errno));
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < n; i++) {
    const char *name = e[i]->d_name;
    if (rc == 0 && strcmp(name, ".") && strcmp(name, "..")) {
      char path[4096];
      if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        snprintf(err, errlen, "path longer than %zu bytes under '%s'", sizeof path - 1, dir);
        rc = -1;
      } else {
        struct stat sb;
        if (stat(path, &sb) != 0)
          list_push(l, path, F_NOT_FILE, 0, 0); /* dangling link, or unreadable */
        else if (S_ISDIR(sb.st_mode)) {
          if (dir_seen(seen, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino))
            ++*links_skipped;
          else
            rc = walk(path, l, seen, links_skipped, err, errlen);
        } else
          list_push(l, path, S_ISREG(sb.st_mode) ? F_REGULAR : F_NOT_FILE, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino);
      }
    }
    free(e[i]); /* scandir's own allocations */
  }
  free(e);
  return rc;
}

static int cmp_path(const void *a, const void *b) {
  return strcmp(((const input_file *)a)->path, ((const input_file *)b)->path);
}

static int cmp_inode(const void *a, const void *b) { /* on indices into the sorted list */
  const input_file *x = *(input_file *const *)a, *y = *(input_file *const *)b;
  if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
  if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
  return x < y ? -1 : x > y; /* the earlier path first */
}

/* Lists the input (rank 0): sorted by path, later paths to an already listed regular file
 * marked duplicates of the first. */
static int list_input(const char *dir, file_list *l, char *err, size_t errlen) {
  dir_set seen = {0};
  size_t links_skipped = 0;
  struct stat sb;
  if (stat(dir, &sb) == 0) dir_seen(&seen, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino);
  int rc = walk(dir, l, &seen, &links_skipped, err, errlen);
  mp_free(seen.dev_ino);
  if (rc) return rc;
  if (links_skipped)
    MP_WARN("preprocess: %zu director%s reached again through a link (walked once)", links_skipped,
            links_skipped == 1 ? "y" : "ies");
  qsort(l->f, l->n, sizeof *l->f, cmp_path);
  input_file **by = mp_malloc((l->n ? l->n : 1) * sizeof *by);
  size_t nr = 0;
  for (size_t i = 0; i < l->n; i++)
    if (l->f[i].kind == F_REGULAR) by[nr++] = &l->f[i];
  qsort(by, nr, sizeof *by, cmp_inode);
  for (size_t i = 1; i < nr; i++) {
    if (by[i]->dev != by[i - 1]->dev || by[i]->ino != by[i - 1]->ino) continue;
    input_file *first = by[i - 1]->kind == F_DUPLICATE ? &l->f[by[i - 1]->dup_of] : by[i - 1];
    by[i]->kind = F_DUPLICATE;
    by[i]->dup_of = (uint64_t)(first - l->f);
  }
  mp_free(by);
  return 0;
}

/* The listing from rank 0 to every rank: a count, then (kind, index of the kept path,
 * path + NUL) per file, so that any byte a file name may hold (a newline) travels. */
static void bcast_list(MPI_Comm comm, file_list *l) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  uint64_t hdr[2] = {l->n, 0};
  mp_strbuf b = {0};
  if (rank == 0) {
    for (size_t i = 0; i < l->n; i++) {
      mp_strbuf_printf(&b, "%c%llu:", l->f[i].kind, (unsigned long long)l->f[i].dup_of);
      mp_strbuf_append(&b, l->f[i].path, strlen(l->f[i].path) + 1);
    }
    hdr[1] = b.len;
  }
  MP_CHECK_MPI(MPI_Bcast(hdr, 2, MPI_UINT64_T, 0, comm));
  char *buf = rank == 0 ? b.s : mp_malloc(hdr[1] + 1);
  for (uint64_t off = 0; off < hdr[1];) { /* in pieces below 2^31 bytes */
    int len = (int)(hdr[1] - off < (1u << 30) ? hdr[1] - off : (1u << 30));
    MP_CHECK_MPI(MPI_Bcast(buf + off, len, MPI_CHAR, 0, comm));
    off += (uint64_t)len;
  }
  if (rank != 0) {
    const char *p = buf;
    for (uint64_t i = 0; i < hdr[0]; i++) {
      char kind = *p++;
      char *colon;
      uint64_t dup = strtoull(p, &colon, 10);
      p = colon + 1;
      list_push(l, p, kind, 0, 0);
      l->f[l->n - 1].dup_of = dup;
      p += strlen(p) + 1;
    }
    MP_CHECK(l->n == hdr[0] && (size_t)(p - buf) == hdr[1], "file listing: %zu of %llu files parsed", l->n,
             (unsigned long long)hdr[0]);
    mp_free(buf);
  }
  mp_strbuf_free(&b);
}

/* One CSV field, quoted (RFC 4180) when it holds a comma, a quote or a line break: file
 * names may. */
static void csv_field(mp_strbuf *b, const char *v) {
  if (!strpbrk(v, ",\"\r\n")) {
    mp_strbuf_append(b, v, strlen(v));
    return;
  }
  mp_strbuf_append(b, "\"", 1);
  for (const char *q = v; *q; q++) {
    if (*q == '"') mp_strbuf_append(b, "\"", 1);
    mp_strbuf_append(b, q, 1);
  }
  mp_strbuf_append(b, "\"", 1);
}

/* The file a rank is reading, named if the process dies in it: GDCM asserts (aborts) on some
 * malformed files that the structure check does not foresee, and a batch that dies must at
 * least say which file to take out.  The handler only writes (async-signal-safe) and
 * re-raises the signal with its default action, so the job still ends as it would have. */
static const char *volatile g_reading;
static int g_rank;

static void died_reading(int sig) {
  const char *p = g_reading;
  if (p) {
    char r[16];
    int n = 0, v = g_rank;
    char d[12];
    do d[n++] = (char)('0' + v % 10), v /= 10; while (v && n < 11);
    int k = 0;
    while (n) r[k++] = d[--n];
    r[k] = '\0';
    static const char a[] = "[mammopatch rank ", b[] = "] preprocess: the process died (signal) while reading '",
                      c[] = "': a file the DICOM library cannot survive; move it out of the input and rerun\n";
    (void)!write(2, a, sizeof a - 1);
    (void)!write(2, r, strlen(r));
    (void)!write(2, b, sizeof b - 1);
    (void)!write(2, p, strlen(p));
    (void)!write(2, c, sizeof c - 1);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

/* ---- labels.csv ------------------------------------------------------------------------- */

/* A label's BI-RADS: the score when the field is an integer, else one of these (below any
 * score a file could hold, so that "-1" in the file is a score outside {0, 1, 2}, not "none") */
enum { LB_NONE = INT_MIN, LB_CONFLICT, LB_TEXT };

typedef struct {
  char *key;    /* "patient_id\x1fstudy_uid"; the study part empty when the row gives none */
  int birads;   /* or LB_CONFLICT: rows with this key disagree; LB_TEXT: not an integer */
  char raw[24]; /* the field as written (shortened), for the report */
} label_entry;

typedef struct {
  label_entry *exam; /* sorted by key, one entry per key */
  size_t nexam;
  size_t empty_id_rows; /* rows without a patient_id: skipped */
  bool has_study;
} labels_t;

static int cmp_label(const void *a, const void *b) { return strcmp(((const label_entry *)a)->key, ((const label_entry *)b)->key); }

/* Split one CSV line into at most max fields (double quotes honoured), trimmed. */
static int csv_fields(char *line, char **f, int max) {
  int n = 0;
  char *p = line;
  while (n < max) {
    while (*p == ' ' || *p == '\t') p++;
    char *start = p, *o = p;
    bool q = *p == '"';
    if (q) p++, start = o = p;
    while (*p && (q ? !(*p == '"' && p[1] != '"') : *p != ',')) {
      if (q && *p == '"') p++; /* "" inside quotes */
      *o++ = *p++;
    }
    if (q && *p == '"') p++;
    while (*p && *p != ',') p++;
    char *end = o;
    while (end > start && (end[-1] == ' ' || end[-1] == '\r' || end[-1] == '\n' || end[-1] == '\t')) end--;
    char save = *p;
    *end = '\0';
    f[n++] = start;
    if (save != ',') break;
    p++;
  }
  return n;
}

static int parse_labels(char *text, labels_t *L, char *err, size_t errlen) {
  memset(L, 0, sizeof *L);
  if (!strncmp(text, "\xEF\xBB\xBF", 3)) text += 3; /* a UTF-8 byte-order mark (spreadsheet exports) */
  char *save = NULL, *line = strtok_r(text, "\n", &save);
  if (!line) {
    snprintf(err, errlen, "labels file is empty");
    return -1;
  }
  char *h[64];
  int nh = csv_fields(line, h, 64), cp = -1, cb = -1, cs = -1;
  for (int i = 0; i < nh; i++) {
    if (!strcasecmp(h[i], "patient_id")) cp = i;
    if (!strcasecmp(h[i], "birads")) cb = i;
    if (!strcasecmp(h[i], "study_uid")) cs = i;
  }
  if (cp < 0 || cb < 0) {
    snprintf(err, errlen, "labels file needs the columns patient_id and birads (found: %s)", nh ? h[0] : "");
    return -1;
  }
  L->has_study = cs >= 0;
  size_t cap = 1024;
  L->exam = mp_malloc(cap * sizeof *L->exam);
  int lineno = 1;
  while ((line = strtok_r(NULL, "\n", &save))) {
    lineno++;
    char *f[64];
    int nf = csv_fields(line, f, 64);
    if (nf == 1 && !*f[0]) continue; /* blank line */
    if (nf <= cp || nf <= cb || (cs >= 0 && nf <= cs)) {
      snprintf(err, errlen, "labels file line %d: %d fields, expected at least %d", lineno, nf,
               (cp > cb ? cp : cb) + 1);
      return -1;
    }
    char *end;
    errno = 0;
    long b = strtol(f[cb], &end, 10);
    bool integer = *f[cb] && !*end && errno == 0 && b > INT_MIN + 2 && b < INT_MAX;
    if (!*f[cp]) { /* no image is matched to it (an image without a PatientID has no label) */
      L->empty_id_rows++;
      continue;
    }
    char key[512];
    snprintf(key, sizeof key, "%s\x1f%s", f[cp], cs >= 0 ? f[cs] : "");
    if (L->nexam == cap) L->exam = mp_realloc(L->exam, (cap *= 2) * sizeof *L->exam);
    label_entry *e = &L->exam[L->nexam++];
    e->key = mp_strdup(key);
    e->birads = integer ? (int)b : LB_TEXT;
    snprintf(e->raw, sizeof e->raw, "%s", f[cb]);
  }
  qsort(L->exam, L->nexam, sizeof *L->exam, cmp_label);
  /* one entry per key: rows that repeat a key must agree (a patient listed twice without
   * study UIDs, or one exam twice), else the key's label is a conflict */
  size_t n = 0;
  for (size_t i = 0; i < L->nexam; i++) {
    if (n && !strcmp(L->exam[n - 1].key, L->exam[i].key)) {
      if (L->exam[n - 1].birads != L->exam[i].birads || strcmp(L->exam[n - 1].raw, L->exam[i].raw))
        L->exam[n - 1].birads = LB_CONFLICT;
      mp_free(L->exam[i].key);
    } else {
      L->exam[n++] = L->exam[i];
    }
  }
  L->nexam = n;
  return 0;
}

static void free_labels(labels_t *L) {
  for (size_t i = 0; i < L->nexam; i++) mp_free(L->exam[i].key);
  mp_free(L->exam);
}

/* The label of (patient, study): the row of that exam when the labels have study UIDs and
 * one names it, else the patient's row without a study UID; NULL when neither exists.
 * *other_exams: the patient has rows for other exams only. */
static const label_entry *lookup_label(const labels_t *L, const char *pid, const char *study, bool *other_exams) {
  char key[512];
  label_entry k = {key, 0, ""}, *e;
  *other_exams = false;
  if (L->has_study && *study) {
    snprintf(key, sizeof key, "%s\x1f%s", pid, study);
    if ((e = bsearch(&k, L->exam, L->nexam, sizeof *L->exam, cmp_label))) return e;
  }
  snprintf(key, sizeof key, "%s\x1f", pid);
  if ((e = bsearch(&k, L->exam, L->nexam, sizeof *L->exam, cmp_label))) return e;
  size_t lo = 0, hi = L->nexam, kl = strlen(key); /* the first key after "pid\x1f": its exams */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(L->exam[mid].key, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  *other_exams = lo < L->nexam && !strncmp(L->exam[lo].key, key, kl);
  return NULL;
}

/* ---- image type list ------------------------------------------------------------------ */

/* Does ImageType `it` start with the backslash-separated components of `pat`? */
static bool image_type_matches(const char *it, const char *pat, size_t patlen) {
  size_t i = 0;
  for (; i < patlen; i++) {
    if (!it[i] || toupper((unsigned char)it[i]) != toupper((unsigned char)pat[i])) return false;
  }
  return it[i] == '\0' || it[i] == '\\';
}

static bool image_type_dropped(const char *it, const char *list) {
  for (const char *p = list; *p;) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len && image_type_matches(it, p, len)) return true;
    if (!bar) break;
    p = bar + 1;
  }
  return false;
}

/* ---- one round's buffers --------------------------------------------------------------- */

typedef struct {
  int B;
  mp_view_rec *views;
  int nviews, cap_views;
  mp_patch_meta *meta;
  uint8_t *pixels;
  uint64_t np, cap_p;
  int cur_view; /* view the next patches belong to */
} round_buf;

/* Room for n more patches.  Grown geometrically, and before a view by the most patches
 * the view can give (normal tiling), so that patches are appended without the buffer
 * moving mid-view: a round's buffer is tens of MB, and every move copies it into fresh
 * pages. */
static void round_reserve(round_buf *r, uint64_t n) {
  if (r->np + n <= r->cap_p) return;
  uint64_t cap = r->cap_p ? 2 * r->cap_p : 256;
  if (cap < r->np + n) cap = r->np + n;
  r->cap_p = cap;
  r->meta = mp_realloc(r->meta, r->cap_p * sizeof *r->meta);
  r->pixels = mp_realloc(r->pixels, r->cap_p * (size_t)r->B * r->B);
}

static void patch_cb(void *user, const uint8_t *px, size_t stride, int label, int row, int col, const mp_ellipse *e) {
  round_buf *r = user;
  size_t ps = (size_t)r->B * r->B;
  round_reserve(r, 1);
  mp_patch_meta *m = &r->meta[r->np];
  memset(m, 0, sizeof *m);
  m->view = (uint32_t)r->cur_view;
  m->label = (uint8_t)label;
  m->origin[0] = row;
  m->origin[1] = col;
  if (e) {
    m->ellipse[0] = (float)e->cx;
    m->ellipse[1] = (float)e->cy;
    m->ellipse[2] = (float)e->a;
    m->ellipse[3] = (float)e->b;
    m->ellipse[4] = (float)e->angle;
  } else {
    for (int k = 0; k < 5; k++) m->ellipse[k] = NAN;
  }
  if (stride == (size_t)r->B) memcpy(r->pixels + r->np * ps, px, ps);
  else
    for (int y = 0; y < r->B; y++) memcpy(r->pixels + r->np * ps + (size_t)y * r->B, px + (size_t)y * stride, (size_t)r->B);
  r->np++;
}

/* ---- the stage ------------------------------------------------------------------------- */

/* Everything mp_window_table reads (compared bytewise: the struct is zeroed first). */
typedef struct {
  int valid, bits, is_signed, method, bits_stored, has_rescale, has_window, invert;
  char voi_function[20];
  int32_t lo, hi;
  double slope, intercept, center, width;
  int voi_first, voi_entries, voi_bits;
  uint64_t voi_hash;
  int mlut_first, mlut_entries;
  uint64_t mlut_hash;
} lut_key;

static uint64_t table_hash(const uint16_t *t, int n) { /* FNV-1a over the entries */
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < n; i++) h = (h ^ t[i]) * 1099511628211ULL;
  return h;
}

static void lut_key_of(lut_key *k, int bits, int is_signed, mp_window_method m, int32_t lo, int32_t hi,
                       const mp_dicom_info *in, const mp_dicom_luts *luts) {
  memset(k, 0, sizeof *k);
  k->valid = 1;
  k->bits = bits;
  k->is_signed = is_signed;
  k->method = (int)m;
  k->bits_stored = in->bits_stored;
  k->has_rescale = in->has_rescale;
  k->slope = in->rescale_slope;
  k->intercept = in->rescale_intercept;
  if (mp_window_uses_modality_lut(in, luts)) {
    k->mlut_first = in->modality_lut_first;
    k->mlut_entries = in->modality_lut_entries;
    k->mlut_hash = table_hash(luts->modality, in->modality_lut_entries);
  }
  k->invert = strcmp(in->photometric, "MONOCHROME1") == 0;
  if (m == MP_WIN_MINMAX) {
    k->lo = lo;
    k->hi = hi;
  } else if (m == MP_WIN_WINDOW) {
    k->has_window = 1;
    memcpy(k->voi_function, in->voi_function, sizeof k->voi_function);
    k->center = in->window_center;
    k->width = in->window_width;
  } else {
    k->voi_first = in->voi_lut_first;
    k->voi_entries = in->voi_lut_entries;
    k->voi_bits = in->voi_lut_bits;
    k->voi_hash = table_hash(luts->voi, in->voi_lut_entries);
  }
}

typedef struct {
  const mp_config *cfg;
  mp_extract_params ex;
  labels_t labels;
  mp_site_key key;
  bool pseudonym_files; /* privacy.file_names = pseudonym */
  const char *drop_types;
  /* this rank's counters */
  uint64_t reasons[NREASON];
  uint64_t windowing[3];
  uint64_t modality_lut; /* views whose modality transform was their Modality LUT Sequence */
  uint64_t normal, lesion, lesion_by_birads[3];
  mp_lesion_stats lst;
  double t_read, t_window, t_extract, t_write, t_wait;
  /* the last windowing table and what it was made from: an archive's views mostly share
   * one (the same modality, window and bit depth), and a 65,536-entry table costs ~1 ms */
  uint8_t lut[65536];
  lut_key lut_for;
} stage;

/* How outputs name an input file: its path relative to the input directory, or with
 * privacy.file_names = pseudonym the keyed pseudonym of that relative path (F...). */
static void file_name(const stage *S, const char *input_dir, const char *path, char *out, size_t cap) {
  size_t inlen = strlen(input_dir);
  const char *rel = strncmp(path, input_dir, inlen) == 0 && path[inlen] == '/' ? path + inlen + 1 : path;
  if (S->pseudonym_files) {
    char ps[MP_PSEUDONYM_LEN + 1];
    mp_pseudonym_file(&S->key, rel, ps);
    snprintf(out, cap, "%s", ps);
  } else {
    snprintf(out, cap, "%s", rel);
  }
}

/* The SPEC §2 filters on the image's own attributes, in their order (the labels come after):
 * R_ACCEPTED when none applies. */
static int screen(const mp_dicom_info *in, const char *drop_types, char *detail, size_t dl) {
  if (strcmp(in->view_position, "CC") && strcmp(in->view_position, "MLO")) {
    snprintf(detail, dl, "ViewPosition '%s'", in->view_position);
    return R_VIEW;
  }
  if (strcmp(in->patient_sex, "F")) {
    snprintf(detail, dl, "PatientSex '%s'", in->patient_sex);
    return R_SEX;
  }
  if (!strcasecmp(in->implant, "YES")) return R_IMPLANT;
  if (!strcasecmp(in->lut_shape, "INVERSE")) return R_LUT;
  if (image_type_dropped(in->image_type, drop_types)) {
    snprintf(detail, dl, "ImageType '%s'", in->image_type);
    return R_IMAGE_TYPE;
  }
  return R_ACCEPTED;
}

const char *mp_preprocess_screen(const mp_dicom_info *in, const mp_config *cfg, char *detail, size_t dl) {
  detail[0] = '\0';
  int r = screen(in, mp_config_str(cfg, "preprocess.drop_image_types"), detail, dl);
  return r == R_ACCEPTED ? NULL : reason_key(r);
}

static int classify(stage *S, const mp_dicom_info *in, int *birads, char *detail, size_t dl) {
  int r = screen(in, S->drop_types, detail, dl);
  if (r != R_ACCEPTED) return r;
  if (!in->patient_id[0]) {
    snprintf(detail, dl, "no PatientID");
    return R_NO_LABEL;
  }
  bool others;
  const label_entry *e = lookup_label(&S->labels, in->patient_id, in->study_uid, &others);
  if (!e) {
    if (others) snprintf(detail, dl, "this exam is not in the labels (the patient's other exams are)");
    return R_NO_LABEL;
  }
  if (e->birads == LB_CONFLICT) {
    snprintf(detail, dl, "labels.csv rows for this %s give different BI-RADS", S->labels.has_study ? "exam" : "patient");
    return R_LABEL_CONFLICT;
  }
  if (e->birads < 0 || e->birads > 2) {
    snprintf(detail, dl, "BI-RADS '%s'", e->raw);
    return R_BIRADS;
  }
  *birads = e->birads;
  return R_ACCEPTED;
}

/* One file: outcome, and for accepted files its view and patches into rb. */
static int process_file(stage *S, const char *path, round_buf *rb, char *detail, size_t dl, int *np_out) {
  double t0 = mp_now();
  mp_dicom_info in;
  char err[512];
  *np_out = 0;
  detail[0] = '\0';
  mp_dicom_file *f = mp_dicom_open(path, &in, err, sizeof err);
  if (!f) {
    snprintf(detail, dl, "%s", err);
    S->t_read += mp_now() - t0;
    return R_NOT_DICOM;
  }
  int birads = -1;
  int r = classify(S, &in, &birads, detail, dl);
  const void *data = NULL;
  int bits = 0, is_signed = 0, by_rows = 0;
  if (r == R_ACCEPTED) {
    if (in.frames > 1) {
      snprintf(detail, dl, "decode_error: %d frames (a mammogram has one)", in.frames);
      r = R_DECODE;
    } else if (!(by_rows = mp_dicom_rows(f, &bits, &is_signed)) &&
               mp_dicom_decode(f, &data, &bits, &is_signed, err, sizeof err) != 0) {
      snprintf(detail, dl, "decode_error: %s", err);
      r = R_DECODE;
    }
  }
  S->t_read += mp_now() - t0;
  if (r != R_ACCEPTED) {
    mp_dicom_close(f);
    return r;
  }
  double t1 = mp_now();
  int W = in.cols, H = in.rows;
  uint8_t *img = mp_imgops_scratch(MP_SCRATCH_IMAGE, (size_t)W * H);
  mp_window_method wm;
  const mp_dicom_luts luts = mp_dicom_luts_of(f); /* valid until mp_dicom_close */
  const int modality_lut = mp_window_uses_modality_lut(&in, &luts);
  if (by_rows) {
    /* native pixels in bands of rows read straight into a small buffer and windowed from
     * there (cache-resident): no frame-sized buffer, one less pass over 27 MB */
    const int band = 128;
    const size_t row_samples = (size_t)W, sb = (size_t)bits / 8;
    void *buf = mp_imgops_scratch(MP_SCRATCH_BAND, (size_t)band * row_samples * sb);
    wm = mp_window_method_for(&in, &luts);
    int32_t lo = INT32_MAX, hi = INT32_MIN;
    for (int pass = wm == MP_WIN_MINMAX ? 0 : 1; pass < 2 && r == R_ACCEPTED; pass++) {
      if (pass == 1) {
        lut_key k;
        lut_key_of(&k, bits, is_signed, wm, lo, hi, &in, &luts);
        if (memcmp(&k, &S->lut_for, sizeof k) != 0) {
          mp_window_table(bits, is_signed, &in, &luts, wm, lo, hi, S->lut);
          S->lut_for = k;
        }
      }
      for (int y = 0; y < H; y += band) {
        int n = H - y < band ? H - y : band;
        if (mp_dicom_read_rows(f, y, n, buf, err, sizeof err) != 0) {
          snprintf(detail, dl, "decode_error: %s", err);
          r = R_DECODE;
          break;
        }
        if (pass == 0) mp_window_range(buf, bits, is_signed, (size_t)n * row_samples, &in, &lo, &hi);
        else mp_window_apply(buf, bits, is_signed, (size_t)n * row_samples, S->lut, img + (size_t)y * W);
      }
    }
  } else {
    wm = mp_window_to_u8(data, bits, is_signed, (size_t)W * H, &in, &luts, img);
  }
  mp_dicom_close(f);
  double t2 = mp_now();
  S->t_window += t2 - t1;
  if (r != R_ACCEPTED) return r;
  S->windowing[wm]++;
  S->modality_lut += modality_lut;

  if (rb->nviews == rb->cap_views) rb->views = mp_realloc(rb->views, (size_t)(rb->cap_views = rb->cap_views ? 2 * rb->cap_views : 64) * sizeof *rb->views);
  mp_view_rec *v = &rb->views[rb->nviews];
  memset(v, 0, sizeof *v);
  mp_pseudonym(&S->key, in.patient_id, v->pseudonym);
  const char *lat = in.image_laterality[0] ? in.image_laterality : in.laterality;
  v->laterality = (lat[0] == 'L' || lat[0] == 'R') ? lat[0] : 'U';
  memcpy(v->position, in.view_position, strlen(in.view_position) < 3 ? strlen(in.view_position) : 3); /* CC or MLO */
  v->birads = (int8_t)birads;
  v->windowing = (int8_t)wm;
  v->modality = (int8_t)(modality_lut ? 2 : in.has_rescale ? 1 : 0); /* as mp_window_to_u8 applied it */
  v->rows = (uint32_t)H;
  v->cols = (uint32_t)W;
  rb->cur_view = rb->nviews++;
  int k;
  if (birads == 1) {
    round_reserve(rb, (uint64_t)((W + S->ex.blck - 1) / S->ex.blck) * (uint64_t)((H + S->ex.blck - 1) / S->ex.blck));
    k = mp_extract_normals(img, W, H, &S->ex, patch_cb, rb);
    S->normal += (uint64_t)k;
  } else {
    k = mp_extract_lesions(img, W, H, &S->ex, patch_cb, rb, &S->lst);
    S->lesion += (uint64_t)k;
    S->lesion_by_birads[birads] += (uint64_t)k;
  }
  S->t_extract += mp_now() - t2;
  *np_out = k;
  return R_ACCEPTED;
}

static void write_attrs(mp_store_writer *w, const mp_config *cfg, const mp_extract_params *ex, const uint64_t *reasons,
                        uint64_t files, const char *key_fingerprint) {
  mp_store_attr_string(w, "site_key_fingerprint", key_fingerprint);
  size_t n;
  const mp_cfg_key *schema = mp_config_schema(cfg, &n);
  for (size_t i = 0; i < n; i++) { /* every preprocessing parameter, as configured */
    if (strncmp(schema[i].key, "preprocess.", 11)) continue;
    char name[128];
    snprintf(name, sizeof name, "param_%s", schema[i].key + 11);
    if (schema[i].type == MP_CFG_INT)
      mp_store_attr_int(w, name, mp_config_int(cfg, schema[i].key));
    else if (schema[i].type == MP_CFG_REAL)
      mp_store_attr_double(w, name, mp_config_real(cfg, schema[i].key));
    else if (schema[i].type == MP_CFG_STRING || schema[i].type == MP_CFG_CHOICE)
      mp_store_attr_string(w, name, mp_config_str(cfg, schema[i].key));
  }
  mp_store_attr_double(w, "effective_min_contour_area", ex->min_contour_area);
  mp_store_attr_double(w, "effective_min_ellipse_area", ex->min_ellipse_area);
  mp_store_attr_int(w, "files_found", (long long)files);
  for (int r = 0; r < NREASON; r++) {
    char name[64];
    mp_store_outcome_attr(r, name, sizeof name);
    mp_store_attr_int(w, name, (long long)reasons[r]);
  }
}

static int preprocess_run(MPI_Comm comm, const mp_config *cfg, const mp_preprocess_args *a);

#ifdef __GLIBC__
/* Grow the heap by `bytes` once, ask for transparent huge pages on it (the kernel's THP
 * mode is often "madvise": only on request) and give it back to malloc, which keeps it
 * (no trim, no mmap): the stage's per-file buffers then sit on 2 MiB pages, so first
 * touching the ~160 MB a rank works in costs ~80 page faults instead of ~40,000. */
static void huge_heap(size_t bytes) {
  char *blk = malloc(bytes);
  if (!blk) return;
  const uintptr_t hp = (uintptr_t)2 << 20;
  uintptr_t a0 = ((uintptr_t)blk + hp - 1) & ~(hp - 1), a1 = ((uintptr_t)blk + bytes) & ~(hp - 1);
  if (a1 > a0) madvise((void *)a0, a1 - a0, MADV_HUGEPAGE); /* advice only: failure changes nothing */
  free(blk);
}
#endif

int mp_preprocess_run(MPI_Comm comm, const mp_config *cfg, const mp_preprocess_args *a) {
#ifdef __GLIBC__
  /* GDCM allocates (and zero-fills) a fresh buffer for every file's pixel data, and the
   * per-file image buffers are as large: keep freed large blocks in the heap instead of
   * unmapping them, so the next file reuses warm pages rather than faulting in tens of
   * MB of new ones (page faults cost ~7 us each on a paravirtualised VM).  glibc refuses
   * an mmap threshold above 32 MiB (a 13.6-megapixel float image is 54 MB), so mmap is
   * off for this stage's allocations (M_MMAP_MAX 0) and the heap is not trimmed; glibc's
   * defaults come back afterwards (a pipeline goes on to train in the same process). */
  if (!mallopt(M_MMAP_MAX, 0)) MP_WARN("mallopt(M_MMAP_MAX, 0) refused: large buffers are mapped per file");
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  huge_heap(256u << 20);
  int rc = preprocess_run(comm, cfg, a);
  mallopt(M_MMAP_MAX, 65536);          /* glibc's default */
  mallopt(M_TRIM_THRESHOLD, 128 << 10); /* glibc's default */
  malloc_trim(0);
  return rc;
#else
  return preprocess_run(comm, cfg, a);
#endif
}

static int preprocess_run(MPI_Comm comm, const mp_config *cfg, const mp_preprocess_args *a) {
  int rank, size;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  MP_CHECK_MPI(MPI_Comm_size(comm, &size));
  double t_start = mp_now();
  stage S;
  memset(&S, 0, sizeof S);
  S.cfg = cfg;
  mp_extract_params_from_config(&S.ex, cfg);
  S.drop_types = mp_config_str(cfg, "preprocess.drop_image_types");
  S.pseudonym_files = strcmp(mp_config_str(cfg, "privacy.file_names"), "pseudonym") == 0;
  char err[1024] = "";

  /* rank 0 lists the files, reads the labels and the site key; everyone gets them */
  char *labels_text = NULL, *keybuf = NULL;
  file_list files = {0};
  int ok = 1;
  if (rank == 0) {
    mp_site_key k;
    if (list_input(a->input_dir, &files, err, sizeof err) != 0) {
      ok = 0;
    } else if (!(labels_text = mp_read_file(a->labels_csv, NULL, err, sizeof err))) {
      ok = 0;
    } else if (mp_site_key_load(&k, mp_config_str(cfg, "privacy.site_key_file"), err, sizeof err) != 0) {
      ok = 0;
    } else {
      keybuf = mp_malloc(2 * k.len + 1); /* hex, so it travels as a string */
      for (size_t i = 0; i < k.len; i++) snprintf(keybuf + 2 * i, 3, "%02x", k.key[i]);
      mp_site_key_clear(&k);
    }
    if (!ok) MP_ERROR("preprocess: %s", err);
  }
  MP_CHECK_MPI(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
  if (!ok) {
    mp_free(labels_text);
    list_free(&files);
    return -1;
  }
  bcast_list(comm, &files);
  mp_bcast_string(comm, 0, &labels_text);
  mp_bcast_string(comm, 0, &keybuf);
  {
    uint8_t kb[MP_SITE_KEY_MAX];
    size_t kl = strlen(keybuf) / 2;
    for (size_t i = 0; i < kl; i++) {
      unsigned v;
      sscanf(keybuf + 2 * i, "%2x", &v);
      kb[i] = (uint8_t)v;
    }
    memset(keybuf, 0, strlen(keybuf));
    MP_CHECK(mp_site_key_set(&S.key, kb, kl, err, sizeof err) == 0, "%s", err);
    memset(kb, 0, sizeof kb);
  }
  mp_free(keybuf);
  int lrc = parse_labels(labels_text, &S.labels, err, sizeof err);
  mp_free(labels_text);
  if (lrc == 0 && rank == 0 && S.labels.empty_id_rows)
    MP_WARN("preprocess: %s: %zu row%s without a patient_id skipped", a->labels_csv, S.labels.empty_id_rows,
            S.labels.empty_id_rows == 1 ? "" : "s");
  if (lrc != 0) {
    if (rank == 0) MP_ERROR("preprocess: %s: %s", a->labels_csv, err);
    list_free(&files);
    return -1;
  }

  mp_store_writer *w = mp_store_create(comm, a->out_h5, S.ex.blck, (int)mp_config_int(cfg, "preprocess.deflate"), err,
                                       sizeof err);
  if (!w) {
    if (rank == 0) MP_ERROR("preprocess: %s", err);
    free_labels(&S.labels);
    return -1;
  }
  /* the per-file audit trail, written by rank 0 round by round */
  char path[4096];
  FILE *audit = NULL;
  if (rank == 0) {
    snprintf(path, sizeof path, "%s/preprocess_files.csv", a->report_dir);
    audit = fopen(path, "w");
    if (!audit) MP_WARN("cannot write %s: %s", path, strerror(errno));
    else fprintf(audit, "file,outcome,patches,detail\n");
  }
  long long fpr = mp_config_int(cfg, "preprocess.files_per_round");
  /* 8 files per rank by default: a rank's round (at most 8 views' patches, ~80 MB
   * peak heap on full-field views) stays bounded, and the wait at the round's collective
   * write for its slowest run — views differ in cost — stays small: at 4 per rank the
   * waits were 3-5x longer (0.05-0.14 s vs 0.01-0.03 s over 30 views on 2 ranks) */
  size_t per_round = fpr > 0 ? (size_t)fpr : (size_t)(8 * size);
  MP_INFO("preprocess: %zu files under %s, %d rank%s, %zu files per round; labels for %zu exams", files.n,
          a->input_dir, size, size == 1 ? "" : "s", per_round, S.labels.nexam);
  g_rank = rank;
  struct sigaction sa_dying = {0}, old_abrt, old_segv; /* the old ones (Open MPI's) restored after */
  sa_dying.sa_handler = died_reading;
  sigaction(SIGABRT, &sa_dying, &old_abrt);
  sigaction(SIGSEGV, &sa_dying, &old_segv);
  mp_progress *prog = mp_progress_start("preprocess", files.n);
  round_buf rb = {.B = S.ex.blck};
  for (size_t r0 = 0; r0 < files.n; r0 += per_round) {
    size_t rn = files.n - r0 < per_round ? files.n - r0 : per_round;
    mp_range mine = mp_shard_block(rn, size, rank);
    rb.nviews = 0;
    rb.np = 0;
    mp_strbuf rows = {0};
    for (uint64_t i = mine.begin; i < mine.end; i++) {
      const input_file *f = &files.f[r0 + i];
      const char *p = f->path;
      char detail[4700], name[4200];
      int np = 0, r;
      file_name(&S, a->input_dir, p, name, sizeof name);
      if (f->kind == F_DUPLICATE) {
        char kept[4200];
        file_name(&S, a->input_dir, files.f[f->dup_of].path, kept, sizeof kept);
        snprintf(detail, sizeof detail, "the same file as %s", kept);
        r = R_DUPLICATE;
      } else if (f->kind == F_NOT_FILE) {
        struct stat sb;
        if (stat(p, &sb) != 0)
          snprintf(detail, sizeof detail, "%s", errno == ENOENT ? "dangling link" : strerror(errno));
        else
          snprintf(detail, sizeof detail, "%s", S_ISFIFO(sb.st_mode)    ? "a FIFO"
                                                : S_ISSOCK(sb.st_mode) ? "a socket"
                                                : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device"
                                                                                               : "not a regular file");
        r = R_NOT_FILE;
      } else {
        g_reading = name;
        r = process_file(&S, p, &rb, detail, sizeof detail, &np);
        g_reading = NULL;
      }
      S.reasons[r]++;
      for (char *q = detail; *q; q++)
        if (*q == ',' || *q == '\n' || *q == '\r' || *q == '"') *q = ';';
      csv_field(&rows, name);
      mp_strbuf_printf(&rows, ",%s,%d,%s\n", reason_key(r), np, detail);
    }
    double t = mp_now();
    MP_CHECK_MPI(MPI_Barrier(comm)); /* separates waiting for the round's slowest rank from writing */
    double tb = mp_now();
    S.t_wait += tb - t;
    mp_store_write_round(w, rb.views, rb.nviews, rb.meta, &rb.pixels, rb.np);
    if (rb.pixels && rb.meta) { /* the store may have grown the pixel block (it assembles this rank's share there) */
      uint64_t cp = mp_alloc_size(rb.pixels) / ((size_t)rb.B * rb.B), cm = mp_alloc_size(rb.meta) / sizeof *rb.meta;
      rb.cap_p = cp < cm ? cp : cm;
    }
    S.t_write += mp_now() - tb;
    size_t tl = 0;
    char *text = mp_gather_text(comm, 0, mp_strbuf_str(&rows), rows.len, &tl);
    mp_strbuf_free(&rows);
    if (rank == 0 && audit) fwrite(text, 1, tl, audit);
    mp_free(text);
    mp_progress_update(prog, r0 + rn);
  }
  mp_progress_finish(prog);
  sigaction(SIGABRT, &old_abrt, NULL);
  sigaction(SIGSEGV, &old_segv, NULL);
  mp_imgops_scratch_free();
  if (audit) fclose(audit);
  mp_free(rb.views);
  mp_free(rb.meta);
  mp_free(rb.pixels);

  /* totals */
  uint64_t reasons[NREASON], windowing[3], counts[5], lc[9], modality_lut;
  MP_CHECK_MPI(MPI_Allreduce(S.reasons, reasons, NREASON, MPI_UINT64_T, MPI_SUM, comm));
  MP_CHECK_MPI(MPI_Allreduce(S.windowing, windowing, 3, MPI_UINT64_T, MPI_SUM, comm));
  MP_CHECK_MPI(MPI_Allreduce(&S.modality_lut, &modality_lut, 1, MPI_UINT64_T, MPI_SUM, comm));
  uint64_t mc[5] = {S.normal, S.lesion, S.lesion_by_birads[0], S.lesion_by_birads[2], 0};
  MP_CHECK_MPI(MPI_Allreduce(mc, counts, 5, MPI_UINT64_T, MPI_SUM, comm));
  uint64_t ml[9] = {(uint64_t)S.lst.contours, (uint64_t)S.lst.too_few_points, (uint64_t)S.lst.fit_failed,
                    (uint64_t)S.lst.small_contour, (uint64_t)S.lst.small_ellipse, (uint64_t)S.lst.low_coverage,
                    (uint64_t)S.lst.outside, (uint64_t)S.lst.extreme, (uint64_t)S.lst.kept};
  MP_CHECK_MPI(MPI_Allreduce(ml, lc, 9, MPI_UINT64_T, MPI_SUM, comm));
  double times[4] = {S.t_read, S.t_window, S.t_extract, S.t_write}, tsum[4]; /* write excludes waiting */
  MP_CHECK_MPI(MPI_Allreduce(times, tsum, 4, MPI_DOUBLE, MPI_SUM, comm));
  /* per rank: busy (read + window + extract), waiting for the slowest rank of each
   * round, and the collective writes: the load-balance picture */
  double mine3[3] = {S.t_read + S.t_window + S.t_extract, S.t_wait, S.t_write};
  double *per = rank == 0 ? mp_malloc((size_t)size * 3 * sizeof *per) : NULL;
  MP_CHECK_MPI(MPI_Gather(mine3, 3, MPI_DOUBLE, per, 3, MPI_DOUBLE, 0, comm));
  write_attrs(w, cfg, &S.ex, reasons, files.n, S.key.fingerprint);
  uint64_t nviews = mp_store_written_views(w), npat = mp_store_written_patients(w);
  mp_store_close_writer(w);
  double seconds = mp_now() - t_start;
  uint64_t peak = mp_mpi_report_memory(comm, "preprocess");
  MP_INFO("preprocess: %llu normal and %llu lesion patches from %llu views of %llu patients in %.1f s",
          (unsigned long long)counts[0], (unsigned long long)counts[1], (unsigned long long)nviews,
          (unsigned long long)npat, seconds);

  int rc = 0;
  if (rank == 0) {
    /* patients contributing each class, from the store itself */
    uint64_t pl = 0, pn = 0;
    mp_store *s = mp_store_open(a->out_h5, err, sizeof err);
    if (s) {
      mp_store_tables t;
      mp_store_read_tables(s, &t);
      uint64_t n = mp_store_count(s);
      uint8_t *lab = mp_malloc(n + 1);
      uint32_t *vw = mp_malloc((n + 1) * 4);
      mp_store_read(s, 0, n, NULL, lab, vw, NULL);
      uint8_t *has = mp_calloc(t.npatients + 1, 1);
      for (uint64_t i = 0; i < n; i++) has[t.view_patient[vw[i]]] |= (uint8_t)(lab[i] ? 2 : 1);
      for (uint64_t p = 0; p < t.npatients; p++) {
        pl += (has[p] & 2) != 0;
        pn += has[p] == 1;
      }
      mp_free(has);
      mp_free(lab);
      mp_free(vw);
      mp_store_tables_free(&t);
      mp_store_close(s);
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "provenance", mp_json_provenance(cfg, size));
    cJSON_AddStringToObject(doc, "dicom_library", mp_dicom_library_version());
    cJSON_AddStringToObject(doc, "site_key_fingerprint", S.key.fingerprint);
    cJSON *fi = cJSON_AddObjectToObject(doc, "files");
    cJSON_AddNumberToObject(fi, "found", (double)files.n);
    uint64_t acc = reasons[R_ACCEPTED], disc = 0, fail = 0;
    for (int r = R_DISCARDED_FIRST; r <= R_DISCARDED_LAST; r++) disc += reasons[r];
    for (int r = R_FAILED_FIRST; r <= R_FAILED_LAST; r++) fail += reasons[r];
    cJSON_AddNumberToObject(fi, "accepted", (double)acc);
    cJSON_AddNumberToObject(fi, "discarded", (double)disc);
    cJSON_AddNumberToObject(fi, "failed", (double)fail);
    cJSON *by = cJSON_AddObjectToObject(fi, "by_outcome");
    for (int r = 0; r < NREASON; r++) cJSON_AddNumberToObject(by, reason_key(r), (double)reasons[r]);
    cJSON *wi = cJSON_AddObjectToObject(doc, "windowing");
    for (int m = 0; m < 3; m++) cJSON_AddNumberToObject(wi, mp_window_method_name((mp_window_method)m), (double)windowing[m]);
    cJSON_AddNumberToObject(wi, "modality_lut", (double)modality_lut); /* of those, through a Modality LUT first */
    cJSON *pa = cJSON_AddObjectToObject(doc, "patches");
    cJSON_AddNumberToObject(pa, "normal", (double)counts[0]);
    cJSON_AddNumberToObject(pa, "lesion", (double)counts[1]);
    cJSON_AddNumberToObject(pa, "lesion_birads0", (double)counts[2]);
    cJSON_AddNumberToObject(pa, "lesion_birads2", (double)counts[3]);
    cJSON_AddNumberToObject(pa, "views", (double)nviews);
    cJSON_AddNumberToObject(pa, "patients", (double)npat);
    cJSON_AddNumberToObject(pa, "patients_with_lesion_patches", (double)pl);
    cJSON_AddNumberToObject(pa, "patients_with_only_normal_patches", (double)pn);
    cJSON *ls = cJSON_AddObjectToObject(doc, "lesion_contours");
    static const char *lnames[9] = {"contours", "too_few_points", "fit_failed", "small_contour", "small_ellipse",
                                    "low_coverage", "crop_outside_image", "crop_extreme", "kept"};
    for (int k = 0; k < 9; k++) cJSON_AddNumberToObject(ls, lnames[k], (double)lc[k]);
    cJSON *st = cJSON_AddObjectToObject(doc, "stats");
    cJSON_AddNumberToObject(st, "files", (double)files.n);
    cJSON_AddNumberToObject(st, "seconds", seconds);
    cJSON_AddNumberToObject(st, "images_per_second", seconds > 0 ? files.n / seconds : 0);
    cJSON_AddNumberToObject(st, "ranks", size);
    cJSON_AddNumberToObject(st, "peak_heap_bytes_max", (double)peak);
    cJSON_AddNumberToObject(st, "read_seconds_sum", tsum[0]);
    cJSON_AddNumberToObject(st, "window_seconds_sum", tsum[1]);
    cJSON_AddNumberToObject(st, "extract_seconds_sum", tsum[2]);
    cJSON_AddNumberToObject(st, "write_seconds_sum", tsum[3]);
    cJSON *pr = cJSON_AddArrayToObject(st, "per_rank");
    for (int r = 0; r < size; r++) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "rank", r);
      cJSON_AddNumberToObject(o, "busy_seconds", per[3 * r]);
      cJSON_AddNumberToObject(o, "wait_seconds", per[3 * r + 1]);
      cJSON_AddNumberToObject(o, "write_seconds", per[3 * r + 2]);
      cJSON_AddItemToArray(pr, o);
    }
    snprintf(path, sizeof path, "%s/preprocess.json", a->report_dir);
    if (mp_json_write_file(path, doc, err, sizeof err)) {
      MP_ERROR("%s", err);
      rc = -1;
    }
    cJSON_Delete(doc);

    /* the Markdown table, in the form of the thesis's Table 3.2 */
    mp_strbuf md = {0};
    mp_strbuf_printf(&md, "# Preprocessing\n\nmammopatch %s (git %s), %d rank%s, %.1f s.\n\n", mp_version(),
                     mp_version_git(), size, size == 1 ? "" : "s", seconds);
    mp_strbuf_printf(&md, "## Images discarded per criterion (Table 3.2 form)\n\n| criterion | discarded | remaining |\n|---|---:|---:|\n");
    uint64_t remaining = files.n;
    mp_strbuf_printf(&md, "| files found | | %llu |\n", (unsigned long long)remaining);
    for (int r = R_ACCEPTED + 1; r < NREASON; r++) {
      remaining -= reasons[r];
      mp_strbuf_printf(&md, "| %s | %llu | %llu |\n", reason_label(r), (unsigned long long)reasons[r],
                       (unsigned long long)remaining);
    }
    mp_strbuf_printf(&md, "\n## Patches (§3.1.3 form)\n\n| | count |\n|---|---:|\n");
    mp_strbuf_printf(&md, "| normal patches (BI-RADS 1 images) | %llu |\n", (unsigned long long)counts[0]);
    mp_strbuf_printf(&md, "| lesion patches | %llu |\n", (unsigned long long)counts[1]);
    mp_strbuf_printf(&md, "| lesion patches from BI-RADS 0 | %llu |\n", (unsigned long long)counts[2]);
    mp_strbuf_printf(&md, "| lesion patches from BI-RADS 2 | %llu |\n", (unsigned long long)counts[3]);
    mp_strbuf_printf(&md, "| normal : lesion | %.0f : 1 |\n", counts[1] ? (double)counts[0] / counts[1] : 0.0);
    mp_strbuf_printf(&md, "| views (accepted images) | %llu |\n", (unsigned long long)nviews);
    mp_strbuf_printf(&md, "| patients | %llu |\n", (unsigned long long)npat);
    mp_strbuf_printf(&md, "| patients with lesion patches | %llu |\n", (unsigned long long)pl);
    mp_strbuf_printf(&md, "| patients with only normal patches | %llu |\n", (unsigned long long)pn);
    mp_strbuf_printf(&md, "\nWindowing: %llu VOI LUT, %llu window centre/width, %llu min-max",
                     (unsigned long long)windowing[0], (unsigned long long)windowing[1], (unsigned long long)windowing[2]);
    if (modality_lut)
      mp_strbuf_printf(&md, "; %llu of these views went through their Modality LUT Sequence first",
                       (unsigned long long)modality_lut);
    mp_strbuf_printf(&md, ".\n");
    mp_strbuf_printf(&md, "\nLesion contours: %llu found; dropped: %llu too few points, %llu fit failed, %llu contour area, "
                     "%llu ellipse area, %llu coverage, %llu crop outside the image, %llu extreme pixels; %llu kept.\n",
                     (unsigned long long)lc[0], (unsigned long long)lc[1], (unsigned long long)lc[2],
                     (unsigned long long)lc[3], (unsigned long long)lc[4], (unsigned long long)lc[5],
                     (unsigned long long)lc[6], (unsigned long long)lc[7], (unsigned long long)lc[8]);
    snprintf(path, sizeof path, "%s/preprocess.md", a->report_dir);
    if (mp_write_file_atomic(path, md.s, md.len, err, sizeof err)) {
      MP_ERROR("%s", err);
      rc = -1;
    }
    mp_strbuf_free(&md);
  }
  mp_free(per);
  MP_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, comm));
  free_labels(&S.labels);
  mp_site_key_clear(&S.key);
  list_free(&files);
  return rc;
}
