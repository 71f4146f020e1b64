/* mp_store — the parallel HDF5 patch store (see mp_store.h). */
#include "mp_store.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_json.h" /* mp_version */

/* ---- replicated patient / image bookkeeping ------------------------------------------ */

/* Open-addressing table: key -> value, keys copied.  Every rank feeds it the same keys
 * in the same order (the allgathered views of each round), so indices agree. */
typedef struct {
  char **keys;
  uint32_t *vals;
  size_t cap, n;
} strmap;

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
  return h;
}

static uint32_t *strmap_slot(strmap *m, const char *key, bool *found) {
  if ((m->n + 1) * 2 > m->cap) { /* grow and rehash */
    size_t oc = m->cap;
    char **ok = m->keys;
    uint32_t *ov = m->vals;
    m->cap = oc ? oc * 2 : 1024;
    m->keys = mp_calloc(m->cap, sizeof *m->keys);
    m->vals = mp_calloc(m->cap, sizeof *m->vals);
    for (size_t i = 0; i < oc; i++)
      if (ok[i]) {
        size_t j = fnv1a(ok[i]) & (m->cap - 1);
        while (m->keys[j]) j = (j + 1) & (m->cap - 1);
        m->keys[j] = ok[i];
        m->vals[j] = ov[i];
      }
    mp_free(ok);
    mp_free(ov);
  }
  size_t j = fnv1a(key) & (m->cap - 1);
  while (m->keys[j] && strcmp(m->keys[j], key) != 0) j = (j + 1) & (m->cap - 1);
  *found = m->keys[j] != NULL;
  if (!*found) {
    m->keys[j] = mp_strdup(key);
    m->vals[j] = 0;
    m->n++;
  }
  return &m->vals[j];
}

static void strmap_free(strmap *m) {
  for (size_t i = 0; i < m->cap; i++) mp_free(m->keys[i]);
  mp_free(m->keys);
  mp_free(m->vals);
  memset(m, 0, sizeof *m);
}

/* ---- writer ---------------------------------------------------------------------------- */

enum { D_PIX, D_LABEL, D_VIEW, D_ORIGIN, D_ELLIPSE, V_PATIENT, V_LAT, V_POS, V_IMAGE, V_BIRADS, V_WIN, V_MOD, V_ROWS, V_COLS, ND };

/* One patch's /patches row values (all but the pixels) as they travel between ranks. */
typedef struct {
  uint32_t view; /* absolute /views row */
  int32_t origin[2];
  float ellipse[5];
  uint8_t label, pad[3];
} patch_row;

/* A growable pair of buffers: n patches of pixels and their rows. */
typedef struct {
  uint8_t *pix;
  patch_row *row;
  uint64_t cap;
} patch_buf;

struct mp_store_writer {
  MPI_Comm comm;
  int rank, size, B;
  hid_t file, dxpl, ds[ND], t_lat, t_pos, t_pseudo;
  MPI_Datatype t_pix, t_row; /* one patch's pixels; one patch_row */
  uint64_t npatches, nviews; /* taken so far (npatches includes the carry) */
  /* /patches is written in whole chunks of PIX_CHUNK rows, each chunk compressed by
   * exactly one rank: a round's patches past its last whole chunk (the carry, fewer
   * than PIX_CHUNK) wait on the last rank and lead the next round (or close). */
  uint64_t nwritten, ncarry; /* rows in the file; carried patches (same on every rank) */
  patch_buf carry;           /* the last rank's */
  patch_row *recv_row;       /* the rows of this rank's share of a round (its pixels are assembled
                              * in the caller's block) */
  uint64_t recv_cap;
  patch_row *send_rows;      /* this rank's new rows, converted for sending */
  uint64_t send_cap;
  strmap patients, images;
  char (*pseudo)[MP_PSEUDO_STRLEN + 1]; /* patients in order of first appearance */
  size_t npseudo, cap_pseudo;
};

static hid_t str_type(size_t n) {
  hid_t t = MP_H5(H5Tcopy(H5T_C_S1));
  MP_CHECK_H5(H5Tset_size(t, n));
  MP_CHECK_H5(H5Tset_strpad(t, H5T_STR_NULLPAD));
  return t;
}

/* Rows per chunk of /patches/pixels: the unit in which the patches are compressed and
 * written, and so the unit of the ranks' shares of each round. */
enum { PIX_CHUNK = 64 };

/* An extendible 1-D, 2-D or 3-D dataset starting empty: dims = {0, tail...}. */
static hid_t make_ds(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *tail, hsize_t chunk0,
                     int deflate) {
  hsize_t dims[3] = {0, 0, 0}, maxd[3] = {H5S_UNLIMITED, 0, 0}, chunk[3] = {chunk0, 0, 0};
  for (int i = 1; i < rank; i++) dims[i] = maxd[i] = chunk[i] = tail[i - 1];
  hid_t sp = MP_H5(H5Screate_simple(rank, dims, maxd));
  hid_t dcpl = MP_H5(H5Pcreate(H5P_DATASET_CREATE));
  MP_CHECK_H5(H5Pset_chunk(dcpl, rank, chunk));
  if (deflate > 0) MP_CHECK_H5(H5Pset_deflate(dcpl, (unsigned)deflate));
  hid_t ds = MP_H5(H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
  H5Pclose(dcpl);
  H5Sclose(sp);
  return ds;
}

mp_store_writer *mp_store_create(MPI_Comm comm, const char *path, int B, int deflate, char *err, size_t errlen) {
  mp_store_writer *w = mp_calloc(1, sizeof *w);
  w->comm = comm;
  w->B = B;
  MP_CHECK_MPI(MPI_Comm_rank(comm, &w->rank));
  MP_CHECK_MPI(MPI_Comm_size(comm, &w->size));
  hid_t fapl = MP_H5(H5Pcreate(H5P_FILE_ACCESS));
  w->dxpl = MP_H5(H5Pcreate(H5P_DATASET_XFER));
#ifdef H5_HAVE_PARALLEL
  /* One rank writes through HDF5's POSIX driver: no MPI-IO layer, and its chunk path
   * compresses and writes a chunk at a time with the same buffers, where the collective
   * filtered path holds every chunk of a write (10% less writing time on 30 full-field
   * views).  The datasets are the same either way (h5diff). */
  if (w->size > 1) {
    MP_CHECK_H5(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL));
    MP_CHECK_H5(H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE));
  }
#else
  if (w->size > 1) {
    snprintf(err, errlen, "this HDF5 is serial: writing the patch store needs one rank (or a parallel HDF5)");
    H5Pclose(fapl);
    H5Pclose(w->dxpl);
    mp_free(w);
    return NULL;
  }
#endif
  w->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  int ok = w->file >= 0, all = 0;
  MP_CHECK_MPI(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm));
  if (!all) {
    snprintf(err, errlen, "cannot create the patch store '%s'", path);
    if (w->file >= 0) H5Fclose(w->file);
    H5Pclose(w->dxpl);
    mp_free(w);
    return NULL;
  }
  /* the writer's own communicator: its point-to-point pixel exchange cannot meet the
   * caller's messages */
  MP_CHECK_MPI(MPI_Comm_dup(comm, &w->comm));
  hid_t gp = MP_H5(H5Gcreate2(w->file, "patches", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  hid_t gv = MP_H5(H5Gcreate2(w->file, "views", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  hid_t gq = MP_H5(H5Gcreate2(w->file, "patients", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Gclose(gq);
  w->t_lat = str_type(1);
  w->t_pos = str_type(3);
  w->t_pseudo = str_type(MP_PSEUDO_STRLEN);
  hsize_t pix[2] = {(hsize_t)B, (hsize_t)B}, two[1] = {2}, five[1] = {5};
  MP_CHECK_MPI(MPI_Type_contiguous(B * B, MPI_BYTE, &w->t_pix));
  MP_CHECK_MPI(MPI_Type_commit(&w->t_pix));
  MP_CHECK_MPI(MPI_Type_contiguous((int)sizeof(patch_row), MPI_BYTE, &w->t_row));
  MP_CHECK_MPI(MPI_Type_commit(&w->t_row));
  /* PIX_CHUNK patches (1 MiB at B = 128) per chunk: one chunk per patch would mean a
   * million chunks at thesis scale */
  w->ds[D_PIX] = make_ds(gp, "pixels", H5T_NATIVE_UINT8, 3, pix, PIX_CHUNK, deflate);
  w->ds[D_LABEL] = make_ds(gp, "label", H5T_NATIVE_UINT8, 1, NULL, 4096, deflate);
  w->ds[D_VIEW] = make_ds(gp, "view", H5T_NATIVE_UINT32, 1, NULL, 4096, deflate);
  w->ds[D_ORIGIN] = make_ds(gp, "origin", H5T_NATIVE_INT32, 2, two, 4096, deflate);
  w->ds[D_ELLIPSE] = make_ds(gp, "ellipse", H5T_NATIVE_FLOAT, 2, five, 4096, deflate);
  w->ds[V_PATIENT] = make_ds(gv, "patient", H5T_NATIVE_UINT32, 1, NULL, 1024, deflate);
  w->ds[V_LAT] = make_ds(gv, "laterality", w->t_lat, 1, NULL, 1024, deflate);
  w->ds[V_POS] = make_ds(gv, "position", w->t_pos, 1, NULL, 1024, deflate);
  w->ds[V_IMAGE] = make_ds(gv, "image", H5T_NATIVE_UINT32, 1, NULL, 1024, deflate);
  w->ds[V_BIRADS] = make_ds(gv, "birads", H5T_NATIVE_INT8, 1, NULL, 1024, deflate);
  w->ds[V_WIN] = make_ds(gv, "windowing", H5T_NATIVE_INT8, 1, NULL, 1024, deflate);
  w->ds[V_MOD] = make_ds(gv, "modality", H5T_NATIVE_INT8, 1, NULL, 1024, deflate);
  w->ds[V_ROWS] = make_ds(gv, "rows", H5T_NATIVE_UINT32, 1, NULL, 1024, deflate);
  w->ds[V_COLS] = make_ds(gv, "cols", H5T_NATIVE_UINT32, 1, NULL, 1024, deflate);
  H5Gclose(gp);
  H5Gclose(gv);
  /* the identification every store carries, whoever writes it (preprocess, gan sample) */
  mp_store_attr_int(w, "schema_version", MP_STORE_SCHEMA_VERSION);
  mp_store_attr_int(w, "patch_size", B);
  mp_store_attr_string(w, "software", "mammopatch");
  mp_store_attr_string(w, "software_version", mp_version());
  mp_store_attr_string(w, "software_git", mp_version_git());
  return w;
}

/* Grow ds to `total` rows and write `count` rows at `offset` from buf (collective:
 * ranks with nothing select nothing).  `row` elements of `type` per row. */
static void append(mp_store_writer *w, hid_t ds, hid_t type, uint64_t total, uint64_t offset, uint64_t count,
                   const void *buf) {
  hid_t fs0 = MP_H5(H5Dget_space(ds));
  int rank = H5Sget_simple_extent_ndims(fs0);
  hsize_t dims[3];
  H5Sget_simple_extent_dims(fs0, dims, NULL);
  H5Sclose(fs0);
  dims[0] = total;
  MP_CHECK_H5(H5Dset_extent(ds, dims));
  hid_t fs = MP_H5(H5Dget_space(ds));
  hsize_t start[3] = {offset, 0, 0}, cnt[3] = {count, dims[1], dims[2]};
  hid_t ms = MP_H5(H5Screate_simple(rank, cnt, NULL));
  static const uint8_t dummy[64];
  if (count > 0) {
    MP_CHECK_H5(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL));
  } else {
    MP_CHECK_H5(H5Sselect_none(fs));
    MP_CHECK_H5(H5Sselect_none(ms));
    buf = dummy;
  }
  MP_CHECK_H5(H5Dwrite(ds, type, ms, fs, w->dxpl, buf));
  H5Sclose(ms);
  H5Sclose(fs);
}

static void patch_buf_reserve(patch_buf *b, uint64_t n, size_t pixbytes) {
  if (n <= b->cap) return;
  b->cap = n + n / 4;
  b->pix = mp_realloc(b->pix, b->cap * pixbytes);
  b->row = mp_realloc(b->row, b->cap * sizeof *b->row);
}

/* [a0, a1) ∩ [b0, b1) as (start, length); length 0 when they do not meet */
static uint64_t overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1, uint64_t *start) {
  uint64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
  *start = lo;
  return hi > lo ? hi - lo : 0;
}

static int count_int(uint64_t n) {
  MP_CHECK(n <= INT32_MAX, "%llu patches in one exchange (an MPI count is an int): lower preprocess.files_per_round",
           (unsigned long long)n);
  return (int)n;
}

/* Collective: rows [at, at + n) of /patches (every dataset) from pix and rows, the
 * datasets grown to `total` rows. */
static void write_rows(mp_store_writer *w, uint64_t at, uint64_t n, uint64_t total, const uint8_t *pix,
                       const patch_row *rows) {
  uint8_t *lab = mp_malloc(n + 1);
  uint32_t *vw = mp_malloc((n + 1) * 4);
  int32_t *org = mp_malloc((n + 1) * 8);
  float *ell = mp_malloc((n + 1) * 20);
  for (uint64_t i = 0; i < n; i++) {
    const patch_row *r = &rows[i];
    lab[i] = r->label;
    vw[i] = r->view;
    org[2 * i] = r->origin[0];
    org[2 * i + 1] = r->origin[1];
    memcpy(ell + 5 * i, r->ellipse, 20);
  }
  append(w, w->ds[D_PIX], H5T_NATIVE_UINT8, total, at, n, pix);
  append(w, w->ds[D_LABEL], H5T_NATIVE_UINT8, total, at, n, lab);
  append(w, w->ds[D_VIEW], H5T_NATIVE_UINT32, total, at, n, vw);
  append(w, w->ds[D_ORIGIN], H5T_NATIVE_INT32, total, at, n, org);
  append(w, w->ds[D_ELLIPSE], H5T_NATIVE_FLOAT, total, at, n, ell);
  mp_free(lab);
  mp_free(vw);
  mp_free(org);
  mp_free(ell);
}

/* One rank: no exchange.  The carry completed to a whole chunk (or to the end when
 * final) is written from the carry buffer, the following whole chunks straight from
 * the caller's buffer, and the rest becomes the carry: whole chunks still, and the
 * round's patches are not copied. */
static void write_patches_one(mp_store_writer *w, const patch_row *rows, const uint8_t *pixels, uint64_t np,
                              bool final) {
  const uint64_t C = PIX_CHUNK, c = w->ncarry, T = c + np, Wc = final ? T : T - T % C;
  const size_t pb = (size_t)w->B * w->B;
  uint64_t used = 0; /* of the new patches */
  if (Wc > 0 && c > 0) {
    uint64_t head = Wc < C ? Wc : C; /* >= c: Wc > 0 means T >= C > c, or final */
    used = head - c;
    patch_buf_reserve(&w->carry, head, pb);
    if (used > 0) {
      memcpy(w->carry.pix + c * pb, pixels, used * pb);
      memcpy(w->carry.row + c, rows, used * sizeof *rows);
    }
    write_rows(w, w->nwritten, head, w->nwritten + Wc, w->carry.pix, w->carry.row);
  }
  if (Wc > c + used) { /* whole chunks straight from the caller */
    uint64_t n = Wc - c - used;
    write_rows(w, w->nwritten + c + used, n, w->nwritten + Wc, pixels + used * pb, rows + used);
    used += n;
  } else if (Wc == 0) {
    used = 0;
  }
  uint64_t keep = np - used, base = Wc > 0 ? 0 : c; /* the new carry: old carry (if nothing was written) + rest */
  patch_buf_reserve(&w->carry, base + keep, pb);
  if (keep > 0) {
    memcpy(w->carry.pix + base * pb, pixels + used * pb, keep * pb);
    memcpy(w->carry.row + base, rows + used, keep * sizeof *rows);
  }
  w->nwritten += Wc;
  w->ncarry = base + keep;
  w->npatches = w->nwritten + w->ncarry;
}

/* Pixels between ranks: sc[d] patches from sbuf + sd[d] to rank d, rc[d] patches from
 * rank d into rbuf + rd[d] (in patches).  Point to point rather than MPI_Alltoallv:
 * sbuf and rbuf may be one block (disjoint regions of it), which a collective's send
 * and receive buffers may not be, and a rank exchanges with its neighbours only. */
static void exchange_pixels(mp_store_writer *w, const uint8_t *sbuf, const int *sc, const int *sd, uint8_t *rbuf,
                            const int *rc, const int *rd, int tag) {
  const size_t pb = (size_t)w->B * w->B;
  MPI_Request *req = mp_malloc(2 * (size_t)w->size * sizeof *req);
  int n = 0;
  for (int d = 0; d < w->size; d++)
    if (rc[d] > 0) MP_CHECK_MPI(MPI_Irecv(rbuf + (size_t)rd[d] * pb, rc[d], w->t_pix, d, tag, w->comm, &req[n++]));
  for (int d = 0; d < w->size; d++)
    if (sc[d] > 0) MP_CHECK_MPI(MPI_Isend(sbuf + (size_t)sd[d] * pb, sc[d], w->t_pix, d, tag, w->comm, &req[n++]));
  MP_CHECK_MPI(MPI_Waitall(n, req, MPI_STATUSES_IGNORE));
  mp_free(req);
}

/* Collective: this rank's np new patches (rows and pixels) follow the carry and the
 * lower ranks' patches.  The round's sequence S = carry + every rank's patches in rank
 * order is cut at its last whole chunk (at its end when `final`); the whole chunks are
 * dealt to the ranks as contiguous shares of chunks, sent there (exchange_pixels) and
 * written collectively, so that each chunk is compressed by one rank only and the ranks
 * compress equal shares whatever their patch counts; the rest becomes the carry on the
 * last rank.  The file content does not depend on the number of ranks.
 *
 * The pixels arrive in *buf (np patches; an mp_malloc'ed block, or NULL when np is 0)
 * and the rank's share is assembled in that same block: the patches the rank keeps stay
 * where they are (or move up once, when patches from lower ranks must precede them) and
 * the received ones land beside them, in places no outgoing patch occupies.  A round's
 * pixels are thus not copied to a second round-sized buffer, and no second such buffer
 * is faulted in.  *buf may be grown (mp_realloc); its contents are undefined on return.
 * The rows, 36 bytes a patch, travel through w->recv_row. */
static void write_patches(mp_store_writer *w, const patch_row *rows, uint8_t **buf, uint64_t np, bool final) {
  if (w->size == 1) {
    write_patches_one(w, rows, *buf, np, final);
    return;
  }
  const int P = w->size, L = P - 1, me = w->rank;
  const uint64_t C = PIX_CHUNK;
  const size_t pb = (size_t)w->B * w->B;
  unsigned long long mine = np, *cnt = mp_malloc((size_t)P * sizeof *cnt);
  MP_CHECK_MPI(MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, cnt, 1, MPI_UNSIGNED_LONG_LONG, w->comm));
  /* positions in S: carry [0, c), rank s's patches [first[s], first[s] + cnt[s]) */
  uint64_t c = w->ncarry, T = c, *first = mp_malloc((size_t)P * sizeof *first);
  for (int s = 0; s < P; s++) {
    first[s] = T;
    T += cnt[s];
  }
  uint64_t Wc = final ? T : T - T % C, K = (Wc + C - 1) / C;
  /* rank d receives S[lo(d), hi(d)): its share of the K chunks; the last rank also the tail */
#define SHARE_LO(d) (C * (K * (uint64_t)(d) / (uint64_t)P) < Wc ? C * (K * (uint64_t)(d) / (uint64_t)P) : Wc)
#define SHARE_HI(d) ((d) == L ? T : SHARE_LO((d) + 1))
  const uint64_t lo = SHARE_LO(me), hi = SHARE_HI(me), f = first[me];
  /* Where S[lo, hi) is assembled in *buf: from patch Z on.  The rank keeps its own
   * S[a, b) (own offsets a - f ...), preceded in the share by `before` patches from the
   * carry and lower ranks.  Outgoing patches are own patches outside [a, b); incoming
   * ones go before the kept run (only when the rank's first patch is kept: then the own
   * patches move up by `shift` to make room) or after it (only when its last patch is
   * kept), or, when nothing is kept, after all own patches. */
  const uint64_t a = lo > f ? lo : f, b = hi < f + np ? hi : f + np;
  uint64_t shift = 0, Z = np;
  if (b > a) {
    const uint64_t ko = a - f, before = a - lo; /* before > 0 only when ko == 0 */
    if (ko >= before) {
      Z = ko - before;
    } else {
      shift = before - ko;
      Z = 0;
    }
  }
  const uint64_t need = shift + np > Z + (hi - lo) ? shift + np : Z + (hi - lo);
  if (need > 0 && (!*buf || mp_alloc_size(*buf) < need * pb)) *buf = mp_realloc(*buf, need * pb);
  if (shift > 0 && np > 0) memmove(*buf + shift * pb, *buf, np * pb);
  if (hi - lo > w->recv_cap) {
    w->recv_cap = hi - lo;
    w->recv_row = mp_realloc(w->recv_row, w->recv_cap * sizeof *w->recv_row);
  }
  /* counts and displacements: pixels (p*, in patches of *buf) and rows (r*, from rows into recv_row) */
  int *psc = mp_calloc((size_t)P * 8, sizeof *psc), *psd = psc + P, *prc = psd + P, *prd = prc + P, *rsc = prd + P,
      *rsd = rsc + P, *rrc = rsd + P, *rrd = rrc + P;
  static uint8_t none[sizeof(patch_row)]; /* a valid address for empty buffers */
#define NZ(p) ((p) ? (void *)(p) : (void *)none)
  uint64_t at, k;
  /* the carry first (it leads S): from the last rank to whoever's share holds it */
  if (c > 0) {
    for (int d = 0; d < P && me == L; d++) {
      k = overlap(0, c, SHARE_LO(d), SHARE_HI(d), &at);
      psc[d] = count_int(k);
      psd[d] = count_int(at);
    }
    k = overlap(0, c, lo, hi, &at);
    prc[L] = rrc[L] = count_int(k);
    prd[L] = count_int(Z + at - lo);
    rrd[L] = count_int(at - lo);
    exchange_pixels(w, w->carry.pix, psc, psd, *buf, prc, prd, 1);
    MP_CHECK_MPI(MPI_Alltoallv(NZ(w->carry.row), psc, psd, w->t_row, NZ(w->recv_row), rrc, rrd, w->t_row, w->comm));
  }
  /* then every rank's new patches: the pixels it keeps stay put (no self send); all rows travel */
  for (int d = 0; d < P; d++) {
    k = overlap(f, f + np, SHARE_LO(d), SHARE_HI(d), &at);
    rsc[d] = count_int(k);
    rsd[d] = count_int(k ? at - f : 0);
    psc[d] = d == me ? 0 : rsc[d];
    psd[d] = count_int(k ? shift + at - f : 0);
    k = overlap(first[d], first[d] + cnt[d], lo, hi, &at);
    rrc[d] = count_int(k);
    rrd[d] = count_int(k ? at - lo : 0);
    prc[d] = d == me ? 0 : rrc[d];
    prd[d] = count_int(k ? Z + at - lo : 0);
  }
  MP_CHECK(rrc[me] == (int)(b > a ? b - a : 0), "patch exchange: keeps %d of %llu", rrc[me],
           (unsigned long long)(b > a ? b - a : 0));
  exchange_pixels(w, *buf, psc, psd, *buf, prc, prd, 2);
  MP_CHECK_MPI(MPI_Alltoallv(NZ(rows), rsc, rsd, w->t_row, NZ(w->recv_row), rrc, rrd, w->t_row, w->comm));
#undef NZ
#undef SHARE_HI
#undef SHARE_LO
  const uint8_t *share = *buf ? *buf + Z * pb : NULL;
  /* write S[lo, min(hi, Wc)) at rows nwritten + lo */
  if (Wc > 0) {
    uint64_t end = hi < Wc ? hi : Wc;
    write_rows(w, w->nwritten + lo, end > lo ? end - lo : 0, w->nwritten + Wc, share, w->recv_row);
  }
  /* the tail S[Wc, T) is the last rank's new carry */
  if (me == L && T > Wc) {
    uint64_t from = Wc - lo;
    patch_buf_reserve(&w->carry, T - Wc, pb);
    memcpy(w->carry.pix, share + from * pb, (T - Wc) * pb);
    memcpy(w->carry.row, w->recv_row + from, (T - Wc) * sizeof *w->carry.row);
  }
  w->nwritten += Wc;
  w->ncarry = T - Wc;
  w->npatches = w->nwritten + w->ncarry;
  mp_free(cnt);
  mp_free(first);
  mp_free(psc);
}

void mp_store_write_round(mp_store_writer *w, const mp_view_rec *views, int nviews, const mp_patch_meta *meta,
                          uint8_t **pixels, uint64_t np) {
  /* 1. every rank learns every view of the round, in rank (= file) order */
  int *counts = mp_malloc((size_t)w->size * sizeof *counts), *displs = mp_malloc((size_t)w->size * sizeof *displs);
  int nb = nviews * (int)sizeof(mp_view_rec);
  MP_CHECK_MPI(MPI_Allgather(&nb, 1, MPI_INT, counts, 1, MPI_INT, w->comm));
  int total_bytes = 0, my_first = 0;
  for (int r = 0; r < w->size; r++) {
    displs[r] = total_bytes;
    if (r == w->rank) my_first = total_bytes / (int)sizeof(mp_view_rec);
    total_bytes += counts[r];
  }
  int vtotal = total_bytes / (int)sizeof(mp_view_rec);
  mp_view_rec *all = mp_malloc((size_t)(vtotal ? vtotal : 1) * sizeof *all);
  MP_CHECK_MPI(MPI_Allgatherv(views, nb, MPI_BYTE, all, counts, displs, MPI_BYTE, w->comm));
  /* 2. patient and image indices, identically on every rank */
  uint32_t *vpat = mp_malloc((size_t)(vtotal ? vtotal : 1) * sizeof *vpat);
  uint32_t *vimg = mp_malloc((size_t)(vtotal ? vtotal : 1) * sizeof *vimg);
  for (int i = 0; i < vtotal; i++) {
    bool found;
    uint32_t *p = strmap_slot(&w->patients, all[i].pseudonym, &found);
    if (!found) {
      if (w->npseudo == w->cap_pseudo) {
        w->cap_pseudo = w->cap_pseudo ? 2 * w->cap_pseudo : 256;
        w->pseudo = mp_realloc(w->pseudo, w->cap_pseudo * sizeof *w->pseudo);
      }
      memcpy(w->pseudo[w->npseudo], all[i].pseudonym, sizeof w->pseudo[0]);
      *p = (uint32_t)w->npseudo++;
    }
    vpat[i] = *p;
    char key[64];
    snprintf(key, sizeof key, "%s/%c/%s", all[i].pseudonym, all[i].laterality, all[i].position);
    uint32_t *c = strmap_slot(&w->images, key, &found);
    vimg[i] = found ? *c : 0;
    *c = vimg[i] + 1;
  }
  /* 3. views: this rank's rows at nviews_so_far + my_first */
  uint64_t vbase = w->nviews + (uint64_t)my_first, vnew = w->nviews + (uint64_t)vtotal;
  size_t nv = (size_t)nviews;
  char *lat = mp_malloc(nv + 1), *pos = mp_malloc(3 * nv + 1);
  int8_t *bir = mp_malloc(nv + 1), *win = mp_malloc(nv + 1), *mod = mp_malloc(nv + 1);
  uint32_t *rows = mp_malloc((nv + 1) * 4), *cols = mp_malloc((nv + 1) * 4);
  for (size_t i = 0; i < nv; i++) {
    lat[i] = views[i].laterality;
    memset(pos + 3 * i, 0, 3);
    memcpy(pos + 3 * i, views[i].position, strnlen(views[i].position, 3));
    bir[i] = views[i].birads;
    win[i] = views[i].windowing;
    mod[i] = views[i].modality;
    rows[i] = views[i].rows;
    cols[i] = views[i].cols;
  }
  if (vtotal > 0) {
    append(w, w->ds[V_PATIENT], H5T_NATIVE_UINT32, vnew, vbase, nv, vpat + my_first);
    append(w, w->ds[V_LAT], w->t_lat, vnew, vbase, nv, lat);
    append(w, w->ds[V_POS], w->t_pos, vnew, vbase, nv, pos);
    append(w, w->ds[V_IMAGE], H5T_NATIVE_UINT32, vnew, vbase, nv, vimg + my_first);
    append(w, w->ds[V_BIRADS], H5T_NATIVE_INT8, vnew, vbase, nv, bir);
    append(w, w->ds[V_WIN], H5T_NATIVE_INT8, vnew, vbase, nv, win);
    append(w, w->ds[V_MOD], H5T_NATIVE_INT8, vnew, vbase, nv, mod);
    append(w, w->ds[V_ROWS], H5T_NATIVE_UINT32, vnew, vbase, nv, rows);
    append(w, w->ds[V_COLS], H5T_NATIVE_UINT32, vnew, vbase, nv, cols);
  }
  mp_free(lat);
  mp_free(pos);
  mp_free(bir);
  mp_free(win);
  mp_free(mod);
  mp_free(rows);
  mp_free(cols);
  /* 4. patches: this rank's follow the carry and the lower ranks' (file order) */
  patch_row *rows4 = w->send_rows;
  if (np > w->send_cap) {
    w->send_cap = np;
    rows4 = w->send_rows = mp_realloc(w->send_rows, np * sizeof *w->send_rows);
  }
  for (uint64_t i = 0; i < np; i++) {
    patch_row *o = &rows4[i];
    memset(o, 0, sizeof *o);
    o->label = meta[i].label;
    o->view = meta[i].view & MP_STORE_VIEW_ABSOLUTE ? meta[i].view & ~MP_STORE_VIEW_ABSOLUTE
                                                   : (uint32_t)(vbase + meta[i].view);
    o->origin[0] = meta[i].origin[0];
    o->origin[1] = meta[i].origin[1];
    memcpy(o->ellipse, meta[i].ellipse, sizeof o->ellipse);
  }
  write_patches(w, rows4, pixels, np, false);
  w->nviews = vnew;
  mp_free(all);
  mp_free(vpat);
  mp_free(vimg);
  mp_free(counts);
  mp_free(displs);
}

static void attr_write(mp_store_writer *w, const char *name, hid_t type, const void *v) {
  if (H5Aexists(w->file, name) > 0) MP_CHECK_H5(H5Adelete(w->file, name));
  hid_t sp = MP_H5(H5Screate(H5S_SCALAR));
  hid_t a = MP_H5(H5Acreate2(w->file, name, type, sp, H5P_DEFAULT, H5P_DEFAULT));
  MP_CHECK_H5(H5Awrite(a, type, v));
  H5Aclose(a);
  H5Sclose(sp);
}

void mp_store_attr_int(mp_store_writer *w, const char *name, long long v) { attr_write(w, name, H5T_NATIVE_LLONG, &v); }
void mp_store_attr_double(mp_store_writer *w, const char *name, double v) { attr_write(w, name, H5T_NATIVE_DOUBLE, &v); }
void mp_store_attr_string(mp_store_writer *w, const char *name, const char *v) {
  hid_t t = str_type(strlen(v) ? strlen(v) : 1);
  attr_write(w, name, t, strlen(v) ? v : " ");
  H5Tclose(t);
}

uint64_t mp_store_written_patches(const mp_store_writer *w) { return w->npatches; }
uint64_t mp_store_written_views(const mp_store_writer *w) { return w->nviews; }
uint64_t mp_store_written_patients(const mp_store_writer *w) { return w->npseudo; }

void mp_store_close_writer(mp_store_writer *w) {
  uint8_t *pix = NULL; /* where this rank's share of the carry lands */
  write_patches(w, NULL, &pix, 0, true); /* the carry, with the last (partial) chunk */
  mp_free(pix);
  hsize_t n = w->npseudo;
  hid_t sp = MP_H5(H5Screate_simple(1, &n, NULL));
  hid_t gq = MP_H5(H5Gopen2(w->file, "patients", H5P_DEFAULT));
  hid_t ds = MP_H5(H5Dcreate2(gq, "pseudonym", w->t_pseudo, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  /* every rank holds the same table: rank 0 writes it, the others take part selecting nothing */
  char *buf = mp_calloc(n ? n : 1, MP_PSEUDO_STRLEN);
  for (size_t i = 0; i < n; i++) memcpy(buf + i * MP_PSEUDO_STRLEN, w->pseudo[i], MP_PSEUDO_STRLEN);
  hid_t ms = MP_H5(H5Screate_simple(1, &n, NULL));
  if (w->rank != 0) {
    MP_CHECK_H5(H5Sselect_none(sp));
    MP_CHECK_H5(H5Sselect_none(ms));
  }
  if (n > 0) MP_CHECK_H5(H5Dwrite(ds, w->t_pseudo, ms, sp, w->dxpl, buf)); /* an empty table has no storage */
  mp_free(buf);
  H5Sclose(ms);
  H5Dclose(ds);
  H5Sclose(sp);
  H5Gclose(gq);
  for (int i = 0; i < ND; i++) H5Dclose(w->ds[i]);
  H5Tclose(w->t_lat);
  H5Tclose(w->t_pos);
  H5Tclose(w->t_pseudo);
  H5Pclose(w->dxpl);
  MP_CHECK_H5(H5Fclose(w->file));
  strmap_free(&w->patients);
  strmap_free(&w->images);
  mp_free(w->pseudo);
  mp_free(w->carry.pix);
  mp_free(w->carry.row);
  mp_free(w->recv_row);
  mp_free(w->send_rows);
  MPI_Type_free(&w->t_pix);
  MPI_Type_free(&w->t_row);
  MP_CHECK_MPI(MPI_Comm_free(&w->comm));
  mp_free(w);
}

/* ---- reader ------------------------------------------------------------------------------ */

struct mp_store {
  hid_t file, pix, label, view, origin;
  uint64_t n;
  int B;
};

mp_store *mp_store_open(const char *path, char *err, size_t errlen) {
  hid_t f;
  H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } /* reported below, not on HDF5's stack */
  H5E_END_TRY;
  if (f < 0) {
    snprintf(err, errlen, "cannot open '%s' as HDF5", path);
    return NULL;
  }
  long long ver = -1;
  if (H5Aexists(f, "schema_version") > 0) {
    hid_t a = H5Aopen(f, "schema_version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_LLONG, &ver);
    H5Aclose(a);
  }
  if (ver != MP_STORE_SCHEMA_VERSION || H5Lexists(f, "patches", H5P_DEFAULT) <= 0) {
    snprintf(err, errlen, "'%s' is not a mammopatch patch store of schema %d", path, MP_STORE_SCHEMA_VERSION);
    H5Fclose(f);
    return NULL;
  }
  mp_store *s = mp_calloc(1, sizeof *s);
  s->file = f;
  s->pix = MP_H5(H5Dopen2(f, "/patches/pixels", H5P_DEFAULT));
  s->label = MP_H5(H5Dopen2(f, "/patches/label", H5P_DEFAULT));
  s->view = MP_H5(H5Dopen2(f, "/patches/view", H5P_DEFAULT));
  s->origin = MP_H5(H5Dopen2(f, "/patches/origin", H5P_DEFAULT));
  hid_t sp = MP_H5(H5Dget_space(s->pix));
  hsize_t d[3];
  H5Sget_simple_extent_dims(sp, d, NULL);
  H5Sclose(sp);
  s->n = d[0];
  s->B = (int)d[1];
  return s;
}

void mp_store_close(mp_store *s) {
  if (!s) return;
  H5Dclose(s->pix);
  H5Dclose(s->label);
  H5Dclose(s->view);
  H5Dclose(s->origin);
  H5Fclose(s->file);
  mp_free(s);
}

uint64_t mp_store_count(const mp_store *s) { return s->n; }
int mp_store_patch_size(const mp_store *s) { return s->B; }

static void read_rows(hid_t ds, hid_t type, uint64_t begin, uint64_t count, void *buf) {
  hid_t fs = MP_H5(H5Dget_space(ds));
  int rank = H5Sget_simple_extent_ndims(fs);
  hsize_t dims[3];
  H5Sget_simple_extent_dims(fs, dims, NULL);
  hsize_t start[3] = {begin, 0, 0}, cnt[3] = {count, dims[1], dims[2]};
  MP_CHECK_H5(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL));
  hid_t ms = MP_H5(H5Screate_simple(rank, cnt, NULL));
  MP_CHECK_H5(H5Dread(ds, type, ms, fs, H5P_DEFAULT, buf));
  H5Sclose(ms);
  H5Sclose(fs);
}

int mp_store_read(mp_store *s, uint64_t begin, uint64_t count, uint8_t *pixels, uint8_t *labels, uint32_t *views,
                  int32_t *origins) {
  if (begin > s->n || count > s->n - begin) return -1;
  if (count == 0) return 0;
  if (pixels) read_rows(s->pix, H5T_NATIVE_UINT8, begin, count, pixels);
  if (labels) read_rows(s->label, H5T_NATIVE_UINT8, begin, count, labels);
  if (views) read_rows(s->view, H5T_NATIVE_UINT32, begin, count, views);
  if (origins) read_rows(s->origin, H5T_NATIVE_INT32, begin, count, origins);
  return 0;
}

int mp_store_read_labels(mp_store *s, uint8_t *labels) { return mp_store_read(s, 0, s->n, NULL, labels, NULL, NULL); }

int mp_store_read_views(mp_store *s, uint32_t *views) { return mp_store_read(s, 0, s->n, NULL, NULL, views, NULL); }

int mp_store_read_pixels_at(mp_store *s, const uint64_t *idx, uint64_t n, uint8_t *out) {
  size_t px = (size_t)mp_store_patch_size(s) * (size_t)mp_store_patch_size(s);
  for (uint64_t i = 0; i < n;) {
    uint64_t j = i + 1;
    while (j < n && idx[j] == idx[j - 1] + 1 && j - i < 4096) j++;
    if (mp_store_read(s, idx[i], j - i, out + i * px, NULL, NULL, NULL) != 0) return -1;
    i = j;
  }
  return 0;
}

static uint64_t ds_len(hid_t f, const char *name) {
  hid_t ds = MP_H5(H5Dopen2(f, name, H5P_DEFAULT));
  hid_t sp = MP_H5(H5Dget_space(ds));
  hsize_t d[3];
  H5Sget_simple_extent_dims(sp, d, NULL);
  H5Sclose(sp);
  H5Dclose(ds);
  return d[0];
}

static void read_all(hid_t f, const char *name, hid_t type, void *buf, uint64_t n) {
  if (n == 0) return;
  hid_t ds = MP_H5(H5Dopen2(f, name, H5P_DEFAULT));
  MP_CHECK_H5(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
  H5Dclose(ds);
}

int mp_store_read_tables(mp_store *s, mp_store_tables *t) {
  memset(t, 0, sizeof *t);
  uint64_t v = ds_len(s->file, "/views/patient"), p = ds_len(s->file, "/patients/pseudonym");
  t->nviews = v;
  t->npatients = p;
  size_t vv = v ? v : 1, pp = p ? p : 1;
  t->view_patient = mp_malloc(vv * 4);
  t->view_image = mp_malloc(vv * 4);
  t->view_rows = mp_malloc(vv * 4);
  t->view_cols = mp_malloc(vv * 4);
  t->view_laterality = mp_calloc(vv, 1);
  t->view_position = mp_calloc(vv, sizeof *t->view_position);
  t->view_birads = mp_malloc(vv);
  t->view_windowing = mp_malloc(vv);
  t->view_modality = mp_malloc(vv);
  t->pseudonym = mp_calloc(pp, sizeof *t->pseudonym);
  read_all(s->file, "/views/patient", H5T_NATIVE_UINT32, t->view_patient, v);
  read_all(s->file, "/views/image", H5T_NATIVE_UINT32, t->view_image, v);
  read_all(s->file, "/views/rows", H5T_NATIVE_UINT32, t->view_rows, v);
  read_all(s->file, "/views/cols", H5T_NATIVE_UINT32, t->view_cols, v);
  read_all(s->file, "/views/birads", H5T_NATIVE_INT8, t->view_birads, v);
  read_all(s->file, "/views/windowing", H5T_NATIVE_INT8, t->view_windowing, v);
  if (H5Lexists(s->file, "/views/modality", H5P_DEFAULT) > 0)
    read_all(s->file, "/views/modality", H5T_NATIVE_INT8, t->view_modality, v);
  else
    memset(t->view_modality, -2, vv); /* a store written before the dataset existed */
  hid_t t1 = str_type(1), t3 = str_type(3), tp = str_type(MP_PSEUDO_STRLEN);
  read_all(s->file, "/views/laterality", t1, t->view_laterality, v);
  char *pos = mp_calloc(vv, 3), *ps = mp_calloc(pp, MP_PSEUDO_STRLEN);
  read_all(s->file, "/views/position", t3, pos, v);
  read_all(s->file, "/patients/pseudonym", tp, ps, p);
  for (uint64_t i = 0; i < v; i++) memcpy(t->view_position[i], pos + 3 * i, 3);
  for (uint64_t i = 0; i < p; i++) memcpy(t->pseudonym[i], ps + MP_PSEUDO_STRLEN * i, MP_PSEUDO_STRLEN);
  mp_free(pos);
  mp_free(ps);
  H5Tclose(t1);
  H5Tclose(t3);
  H5Tclose(tp);
  return 0;
}

void mp_store_tables_free(mp_store_tables *t) {
  mp_free(t->view_patient);
  mp_free(t->view_image);
  mp_free(t->view_rows);
  mp_free(t->view_cols);
  mp_free(t->view_laterality);
  mp_free(t->view_position);
  mp_free(t->view_birads);
  mp_free(t->view_windowing);
  mp_free(t->view_modality);
  mp_free(t->pseudonym);
  memset(t, 0, sizeof *t);
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  cJSON *o = data;
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) return 0;
  hid_t t = H5Aget_type(a);
  H5T_class_t c = H5Tget_class(t);
  if (c == H5T_INTEGER) {
    long long v = 0;
    H5Aread(a, H5T_NATIVE_LLONG, &v);
    cJSON_AddNumberToObject(o, name, (double)v);
  } else if (c == H5T_FLOAT) {
    double v = 0;
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    cJSON_AddNumberToObject(o, name, v);
  } else if (c == H5T_STRING && !H5Tis_variable_str(t)) {
    size_t n = H5Tget_size(t);
    char *buf = mp_calloc(n + 1, 1);
    H5Aread(a, t, buf);
    cJSON_AddStringToObject(o, name, buf);
    mp_free(buf);
  }
  H5Tclose(t);
  H5Aclose(a);
  return 0;
}

cJSON *mp_store_attributes(mp_store *s) {
  cJSON *o = cJSON_CreateObject();
  hsize_t idx = 0;
  H5Aiterate2(s->file, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, o);
  return o;
}

/* ---- input-file outcomes ------------------------------------------------------------ */
const mp_store_outcome mp_store_outcomes[MP_STORE_OUTCOMES] = {
    {"accepted", "accepted"},
    {"failed:not_a_file", "not a regular file (dangling link, FIFO, socket, device)"},
    {"failed:not_dicom", "not readable as DICOM"},
    {"discarded:duplicate", "the same file as an earlier path (a link)"},
    {"discarded:view", "ViewPosition not CC or MLO"},
    {"discarded:sex", "PatientSex not F"},
    {"discarded:implant", "BreastImplantPresent YES"},
    {"discarded:presentation_lut", "PresentationLUTShape INVERSE"},
    {"discarded:image_type", "ImageType dropped"},
    {"discarded:no_label", "no label"},
    {"discarded:label_conflict", "conflicting labels"},
    {"discarded:birads", "BI-RADS not in {0, 1, 2}"},
    {"discarded:decode_error", "pixel data unreadable"},
};

void mp_store_outcome_attr(int i, char *name, size_t cap) {
  snprintf(name, cap, "files_%s", mp_store_outcomes[i].key);
  for (char *p = name; *p; p++)
    if (*p == ':') *p = '_';
}
