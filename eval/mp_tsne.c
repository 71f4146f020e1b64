/* mp_tsne — exact t-SNE (see mp_tsne.h).
 *
 * Layout of the work, n points:
 *   - distances: the upper triangle of sum_k (x_ik - x_jk)^2, four rows against one at a
 *     time (each x_j row read once per four), then mirrored: exact for integer data, no
 *     Gram-matrix cancellation, and no BLAS needed (mp_eval is built without it);
 *   - P: one n x n matrix, rows searched in parallel (each row's distances copied aside
 *     first, then overwritten by its conditional distribution), symmetrised in place;
 *   - each gradient call: one pass over the full rows of P (row i by one thread: fixed
 *     order, so the result does not depend on the thread count) accumulating
 *     sum_j w_ij, sum_j p_ij w_ij (y_i - y_j) and sum_j w_ij^2 (y_i - y_j) with
 *     w_ij = 1 / (1 + |y_i - y_j|^2); then Z = sum of the row sums (serial) and
 *     grad_i = 4 (a p-term - w^2-term / Z), which is 4 sum_j (a p_ij - q_ij) w_ij (y_i - y_j)
 *     whenever no q_ij = w_ij / Z falls under the DBL_EPSILON floor.  The smallest w_ij
 *     (from the largest distance, tracked in the pass) says exactly when one does (only
 *     compact clusters ~1e6 units and more apart would); then a second, plain pass
 *     applies the floor pair by pair.  The KL, needed only every 50 iterations and at the
 *     end, is sum a p log(a p) - sum a p log w + (sum a p) log Z over i != j, the first
 *     and last sums computed once per exaggeration a, the middle one over the upper
 *     triangle.
 */
#include "mp_tsne.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_rng.h"

enum {
  SEARCH_STEPS = 100,   /* binary-search steps per point */
  ITER_CHECK = 50,      /* KL / gradient-norm check period */
  NO_PROGRESS_ITER = 300 /* second stage: stop after this many iterations without a lower KL */
};
#define PERPLEXITY_TOL 1e-5 /* |entropy - log(perplexity)| in nats */
#define ZERO_SUM_FLOOR 1e-8 /* a row whose exponentials all underflow */
#define MIN_GAIN 0.01
#define MIN_GRAD_NORM 1e-7
#define INIT_SCALE 1e-4
/* q_ij floor (scikit-learn: MACHINE_EPSILON, also applied to alpha p_ij inside the KL's
 * logarithm).  tests/eval/tsne.cmake builds a copy of this file with a large floor so that
 * the floored path, which real layouts practically never reach, is checked as well. */
#ifndef MP_TSNE_Q_FLOOR
#define MP_TSNE_Q_FLOOR DBL_EPSILON
#endif
/* below this many points the per-iteration loops run on one thread: a parallel region
 * costs more than it saves there, and a busy node makes spinning threads very costly */
#define PAR_MIN_N 512

void mp_tsne_defaults(mp_tsne_opts *o) {
  memset(o, 0, sizeof *o);
  o->perplexity = 30;
  o->iterations = 1000;
  o->exaggeration_iters = 250;
  o->exaggeration = 12;
  o->learning_rate = 0; /* auto */
  o->seed = 0;
}

static int check_input(const double *x, int n, int d, double perplexity, char *err, size_t errlen) {
  if (n < 5) {
    snprintf(err, errlen, "t-SNE needs at least 5 points (got %d)", n);
    return -1;
  }
  if (d < 1) {
    snprintf(err, errlen, "t-SNE needs a feature dimension >= 1 (got %d)", d);
    return -1;
  }
  if (!(perplexity > 0) || !(perplexity < n - 1)) {
    snprintf(err, errlen,
             "t-SNE perplexity %g must be > 0 and < n - 1 = %d (the number of other points); "
             "lower it for this set (n / 3 is a common choice)",
             perplexity, n - 1);
    return -1;
  }
  size_t total = (size_t)n * (size_t)d;
  for (size_t k = 0; k < total; k++)
    if (!isfinite(x[k])) {
      snprintf(err, errlen, "t-SNE input is not finite at point %zu, feature %zu (%g)", k / (size_t)d,
               k % (size_t)d, x[k]);
      return -1;
    }
  return 0;
}

/* D (n x n) = squared Euclidean distances, zero diagonal, exactly symmetric. */
static void sq_distances(const double *x, int n, int d, double *D) {
  const size_t N = (size_t)n, dd = (size_t)d;
  const int nblk = (n + 3) / 4;
#pragma omp parallel for schedule(dynamic, 1)
  for (int b = 0; b < nblk; b++) {
    const int i0 = 4 * b, m = n - i0 < 4 ? n - i0 : 4;
    const double *r0 = x + (size_t)i0 * dd;
    const double *r1 = m > 1 ? r0 + dd : r0, *r2 = m > 2 ? r0 + 2 * dd : r0, *r3 = m > 3 ? r0 + 3 * dd : r0;
    for (int j = i0 + 1; j < n; j++) {
      const double *xj = x + (size_t)j * dd;
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int k = 0; k < d; k++) {
        const double v = xj[k];
        const double t0 = r0[k] - v, t1 = r1[k] - v, t2 = r2[k] - v, t3 = r3[k] - v;
        s0 += t0 * t0;
        s1 += t1 * t1;
        s2 += t2 * t2;
        s3 += t3 * t3;
      }
      const double s[4] = {s0, s1, s2, s3};
      for (int r = 0; r < m && i0 + r < j; r++) D[(size_t)(i0 + r) * N + (size_t)j] = s[r];
    }
  }
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    D[(size_t)i * N + (size_t)i] = 0;
    for (int j = 0; j < i; j++) D[(size_t)i * N + (size_t)j] = D[(size_t)j * N + (size_t)i];
  }
}

/* Row i's conditional distribution p_j|i (into p; p_i|i = 0) from its squared distances
 * dist, by the binary search on the precision described in mp_tsne.h.  Sums in index
 * order, as scikit-learn's _binary_search_perplexity. */
static void conditional_row(const double *dist, int i, int n, double target_entropy, double *p) {
  double beta = 1, beta_min = -INFINITY, beta_max = INFINITY;
  for (int step = 0; step < SEARCH_STEPS; step++) {
    double sum = 0;
    for (int j = 0; j < n; j++) {
      p[j] = j == i ? 0.0 : exp(-dist[j] * beta);
      sum += p[j];
    }
    if (sum == 0.0) sum = ZERO_SUM_FLOOR;
    double sum_dp = 0;
    for (int j = 0; j < n; j++) {
      p[j] /= sum;
      sum_dp += dist[j] * p[j];
    }
    const double diff = log(sum) + beta * sum_dp - target_entropy;
    if (fabs(diff) <= PERPLEXITY_TOL) break;
    if (diff > 0) { /* too flat: sharpen */
      beta_min = beta;
      beta = beta_max == INFINITY ? beta * 2 : (beta + beta_max) / 2;
    } else {
      beta_max = beta;
      beta = beta_min == -INFINITY ? beta / 2 : (beta + beta_min) / 2;
    }
  }
}

/* P of already checked input, into p (n x n). */
static void joint_p(const double *x, int n, int d, double perplexity, double *p) {
  const size_t N = (size_t)n;
  sq_distances(x, n, d, p);
  const double target = log(perplexity);
#pragma omp parallel
  {
    double *row = mp_malloc(N * sizeof *row);
#pragma omp for schedule(dynamic, 8)
    for (int i = 0; i < n; i++) {
      memcpy(row, p + (size_t)i * N, N * sizeof *row);
      conditional_row(row, i, n, target, p + (size_t)i * N);
    }
    mp_free(row);
  }
  /* symmetrise: thread i owns row i right of the diagonal and column i below it */
#pragma omp parallel for schedule(dynamic, 16)
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      const double v = p[(size_t)i * N + (size_t)j] + p[(size_t)j * N + (size_t)i];
      p[(size_t)i * N + (size_t)j] = p[(size_t)j * N + (size_t)i] = v;
    }
  double sum = 0;
  for (size_t k = 0; k < N * N; k++) sum += p[k];
  sum = fmax(sum, DBL_EPSILON);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double *v = p + (size_t)i * N + (size_t)j;
      *v = i == j ? 0.0 : fmax(*v / sum, DBL_EPSILON);
    }
}

int mp_tsne_joint_p(const double *x, int n, int d, double perplexity, double *p, char *err, size_t errlen) {
  if (check_input(x, n, d, perplexity, err, errlen)) return -1;
  joint_p(x, n, d, perplexity, p);
  return 0;
}

/* ---- optimisation -------------------------------------------------------------------- */

typedef struct {
  int n;
  const double *P;
  double alpha;            /* the exaggeration the next two sums are for */
  double sum_ap, sum_aplogap; /* sum over i != j of alpha p_ij and alpha p_ij log max(alpha p_ij, floor) */
  double *y0, *y1;         /* the layout, one array per coordinate */
  double *g0, *g1;         /* gradient */
  double *u0, *u1;         /* last update */
  double *k0, *k1;         /* gains */
  double *rows;            /* per-row partial sums, 7 x n */
} tsne_state;

enum { R_Z, R_AX, R_AY, R_RX, R_RY, R_MAXD2, R_LOGW, R_COUNT };

/* Sums over j in [j0, j1) for row i (see the file comment); acc[R_MAXD2] is a maximum. */
static inline void pair_sums(double yi0, double yi1, const double *y0, const double *y1, const double *p, int j0,
                             int j1, double acc[R_COUNT]) {
  double z = 0, ax = 0, ay = 0, rx = 0, ry = 0, mx = 0;
#pragma omp simd reduction(+ : z, ax, ay, rx, ry) reduction(max : mx)
  for (int j = j0; j < j1; j++) {
    const double dx = yi0 - y0[j], dy = yi1 - y1[j];
    const double d2 = dx * dx + dy * dy;
    const double w = 1.0 / (1.0 + d2);
    const double pw = p[j] * w, ww = w * w;
    z += w;
    ax += pw * dx;
    ay += pw * dy;
    rx += ww * dx;
    ry += ww * dy;
    mx = mx > d2 ? mx : d2;
  }
  acc[R_Z] += z;
  acc[R_AX] += ax;
  acc[R_AY] += ay;
  acc[R_RX] += rx;
  acc[R_RY] += ry;
  acc[R_MAXD2] = fmax(acc[R_MAXD2], mx);
}

/* The constant sums of the KL for exaggeration alpha, per row then in row order. */
static void kl_constants(tsne_state *s, double alpha) {
  const int n = s->n;
  const size_t N = (size_t)n;
  double *part = s->rows;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_N)
  for (int i = 0; i < n; i++) {
    double sp = 0, spl = 0;
    for (int j = 0; j < n; j++) {
      if (j == i) continue;
      const double v = alpha * s->P[(size_t)i * N + (size_t)j];
      sp += v;
      spl += v * log(fmax(v, MP_TSNE_Q_FLOOR));
    }
    part[i] = sp;
    part[N + (size_t)i] = spl;
  }
  s->alpha = alpha;
  s->sum_ap = s->sum_aplogap = 0;
  for (int i = 0; i < n; i++) s->sum_ap += part[i], s->sum_aplogap += part[N + (size_t)i];
}

/* The floored form, pair by pair: gradient into g0/g1 and (want_error) the KL. */
static double objective_floored(tsne_state *s, double alpha, double Z, int want_error) {
  const int n = s->n;
  const size_t N = (size_t)n;
  double *part = s->rows + (size_t)R_LOGW * N;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_N)
  for (int i = 0; i < n; i++) {
    const double *p = s->P + (size_t)i * N;
    double gx = 0, gy = 0, kl = 0;
    for (int j = 0; j < n; j++) {
      if (j == i) continue;
      const double dx = s->y0[i] - s->y0[j], dy = s->y1[i] - s->y1[j];
      const double w = 1.0 / (1.0 + dx * dx + dy * dy);
      const double q = fmax(w / Z, MP_TSNE_Q_FLOOR), ap = alpha * p[j];
      gx += (ap - q) * w * dx;
      gy += (ap - q) * w * dy;
      if (want_error) kl += ap * log(fmax(ap, MP_TSNE_Q_FLOOR) / q);
    }
    s->g0[i] = 4 * gx;
    s->g1[i] = 4 * gy;
    part[i] = kl;
  }
  if (!want_error) return NAN;
  double kl = 0;
  for (int i = 0; i < n; i++) kl += part[i];
  return kl;
}

/* Gradient of KL(alpha P || Q) at the current layout into g0/g1; returns the KL when
 * want_error, else NaN (as scikit-learn's _kl_divergence with compute_error). */
static double objective(tsne_state *s, double alpha, int want_error) {
  if (want_error && alpha != s->alpha) kl_constants(s, alpha);
  const int n = s->n;
  const size_t N = (size_t)n;
  double *rows = s->rows;
#pragma omp parallel for schedule(dynamic, 16) if (n >= PAR_MIN_N)
  for (int i = 0; i < n; i++) {
    const double *p = s->P + (size_t)i * N;
    const double yi0 = s->y0[i], yi1 = s->y1[i];
    double acc[R_COUNT] = {0};
    pair_sums(yi0, yi1, s->y0, s->y1, p, 0, i, acc);
    pair_sums(yi0, yi1, s->y0, s->y1, p, i + 1, n, acc);
    if (want_error) { /* sum_{j > i} p_ij log w_ij */
      double lw = 0;
      for (int j = i + 1; j < n; j++) {
        const double dx = yi0 - s->y0[j], dy = yi1 - s->y1[j];
        lw += p[j] * log(1.0 / (1.0 + dx * dx + dy * dy));
      }
      acc[R_LOGW] = lw;
    }
    for (int r = 0; r < R_COUNT; r++) rows[(size_t)r * N + (size_t)i] = acc[r];
  }
  double Z = 0, maxd2 = 0;
  for (int i = 0; i < n; i++) {
    Z += rows[(size_t)R_Z * N + (size_t)i];
    maxd2 = fmax(maxd2, rows[(size_t)R_MAXD2 * N + (size_t)i]);
  }
  if ((1.0 / (1.0 + maxd2)) / Z < MP_TSNE_Q_FLOOR) return objective_floored(s, alpha, Z, want_error);
  for (int i = 0; i < n; i++) {
    s->g0[i] = 4 * (alpha * rows[(size_t)R_AX * N + (size_t)i] - rows[(size_t)R_RX * N + (size_t)i] / Z);
    s->g1[i] = 4 * (alpha * rows[(size_t)R_AY * N + (size_t)i] - rows[(size_t)R_RY * N + (size_t)i] / Z);
  }
  if (!want_error) return NAN;
  double logw = 0;
  for (int i = 0; i < n; i++) logw += rows[(size_t)R_LOGW * N + (size_t)i];
  return s->sum_aplogap - alpha * 2 * logw + s->sum_ap * log(Z);
}

/* One parameter's delta-bar-delta step; returns the gain-scaled gradient. */
static inline double step(double *y, double *u, double *gain, double g, double momentum, double lr) {
  *gain = *u * g < 0.0 ? *gain + 0.2 : *gain * 0.8;
  if (*gain < MIN_GAIN) *gain = MIN_GAIN;
  g *= *gain;
  *u = momentum * *u - lr * g;
  *y += *u;
  return g;
}

/* One stage: iterations it .. n_iter - 1 from zero updates and unit gains (scikit-learn's
 * _gradient_descent).  *error: the KL of the last gradient call that computed it.
 * Returns the last iteration index run (it when none ran). */
static int descend(tsne_state *s, int it, int n_iter, double momentum, int patience, double alpha, double lr,
                   double *error) {
  const int n = s->n;
  for (int i = 0; i < n; i++) {
    s->u0[i] = s->u1[i] = 0;
    s->k0[i] = s->k1[i] = 1;
  }
  double best = DBL_MAX;
  int best_iter = it, last = it;
  *error = DBL_MAX;
  for (int i = it; i < n_iter; i++) {
    last = i;
    const int check = (i + 1) % ITER_CHECK == 0;
    *error = objective(s, alpha, check || i == n_iter - 1);
    double gsq = 0;
    for (int k = 0; k < n; k++) {
      const double a = step(&s->y0[k], &s->u0[k], &s->k0[k], s->g0[k], momentum, lr);
      const double b = step(&s->y1[k], &s->u1[k], &s->k1[k], s->g1[k], momentum, lr);
      gsq += a * a + b * b;
    }
    if (check) {
      if (*error < best) {
        best = *error;
        best_iter = i;
      } else if (i - best_iter > patience) {
        break;
      }
      if (sqrt(gsq) <= MIN_GRAD_NORM) break;
    }
  }
  return last;
}

double mp_tsne(const double *x, int n, int d, const mp_tsne_opts *o, double *y, char *err, size_t errlen) {
  if (check_input(x, n, d, o->perplexity, err, errlen)) return -1;
  if (o->iterations < 0 || o->exaggeration_iters < 0 || o->exaggeration_iters > o->iterations) {
    snprintf(err, errlen, "t-SNE needs iterations >= 0 and 0 <= exaggeration_iters <= iterations (got %d and %d)",
             o->iterations, o->exaggeration_iters);
    return -1;
  }
  if (!(o->exaggeration > 0) || !isfinite(o->exaggeration) || !isfinite(o->learning_rate)) {
    snprintf(err, errlen, "t-SNE needs a finite exaggeration > 0 and a finite learning rate (got %g and %g)",
             o->exaggeration, o->learning_rate);
    return -1;
  }
  const size_t N = (size_t)n;
  double *P = mp_malloc(N * N * sizeof *P);
  joint_p(x, n, d, o->perplexity, P);

  tsne_state s = {.n = n, .P = P, .alpha = NAN};
  double *buf = mp_malloc(8 * N * sizeof *buf);
  s.y0 = buf, s.y1 = buf + N, s.g0 = buf + 2 * N, s.g1 = buf + 3 * N;
  s.u0 = buf + 4 * N, s.u1 = buf + 5 * N, s.k0 = buf + 6 * N, s.k1 = buf + 7 * N;
  s.rows = mp_malloc((size_t)R_COUNT * N * sizeof *s.rows);

  for (int i = 0; i < n; i++) {
    mp_rng r;
    mp_rng_init(&r, o->seed, MP_RNG_TSNE, (uint64_t)i);
    s.y0[i] = INIT_SCALE * mp_rng_normal(&r);
    s.y1[i] = INIT_SCALE * mp_rng_normal(&r);
  }
  const double lr = o->learning_rate > 0 ? o->learning_rate : fmax((double)n / o->exaggeration / 4.0, 50.0);

  /* stage 1: exaggerated P, momentum 0.5; stage 2 from the iteration after its last */
  double kl;
  const int ex = o->exaggeration_iters;
  int start = ex;
  if (ex > 0) start = descend(&s, 0, ex, 0.5, ex, o->exaggeration, lr, &kl) + 1;
  if (start < o->iterations)
    descend(&s, start, o->iterations, 0.8, NO_PROGRESS_ITER, 1.0, lr, &kl);
  else
    kl = objective(&s, 1.0, 1);

  int finite = isfinite(kl);
  for (int i = 0; i < n; i++) {
    y[2 * (size_t)i] = s.y0[i];
    y[2 * (size_t)i + 1] = s.y1[i];
    finite = finite && isfinite(s.y0[i]) && isfinite(s.y1[i]);
  }
  mp_free(s.rows);
  mp_free(buf);
  mp_free(P);
  if (!finite) {
    snprintf(err, errlen, "t-SNE diverged (non-finite layout or KL); lower the learning rate (%g)", lr);
    return -1;
  }
  return kl;
}
