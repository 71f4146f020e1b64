/* mp_texture — power-law (1/f^beta) random fields for fibroglandular tissue.
 *
 * Mammographic parenchyma has a power spectrum close to 1/f^beta with beta ≈ 3
 * (Burgess et al. 2001), which is what makes it hard to see lesions in.  We synthesise
 * it spectrally: random Gaussian coefficients scaled by f^(-beta/2), zero DC, inverse
 * 2-D FFT.  The spectrum is not made Hermitian, so the inverse transform is complex; its
 * real and imaginary parts are two independent real fields with the same spectrum.
 *
 * The FFT is a plain iterative radix-2 transform in double precision (the fields are at
 * most 1024 x 1024, generated once per view).  No FFT library is among the suite's
 * dependencies and this is all it needs. */
#include <complex.h>
#include <math.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_synth.h"

/* In-place radix-2 FFT of n (power of two) complex values spaced `stride` apart.
 * sign -1 forward, +1 inverse (unnormalised). */
static void fft1(double complex *x, int n, int stride, int sign) {
  for (int i = 1, j = 0; i < n; i++) { /* bit reversal */
    int bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      double complex t = x[(size_t)i * stride];
      x[(size_t)i * stride] = x[(size_t)j * stride];
      x[(size_t)j * stride] = t;
    }
  }
  for (int len = 2; len <= n; len <<= 1) {
    double ang = sign * 2.0 * M_PI / len;
    double complex wl = cos(ang) + I * sin(ang);
    for (int i = 0; i < n; i += len) {
      double complex w = 1.0;
      for (int k = 0; k < len / 2; k++) {
        double complex u = x[(size_t)(i + k) * stride];
        double complex v = x[(size_t)(i + k + len / 2) * stride] * w;
        x[(size_t)(i + k) * stride] = u + v;
        x[(size_t)(i + k + len / 2) * stride] = u - v;
        w *= wl;
      }
    }
  }
}

static void fft2(double complex *x, int n, int sign) {
  for (int r = 0; r < n; r++) fft1(x + (size_t)r * n, n, 1, sign);
  for (int c = 0; c < n; c++) fft1(x + c, n, n, sign);
}

/* signed frequency of index k on an n-point grid */
static int freq(int k, int n) { return k <= n / 2 ? k : k - n; }

static void normalise(float *f, size_t m) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < m; i++) {
    s += f[i];
    s2 += (double)f[i] * f[i];
  }
  double mean = s / (double)m, sd = sqrt(fmax(s2 / (double)m - mean * mean, 1e-30));
  for (size_t i = 0; i < m; i++) f[i] = (float)((f[i] - mean) / sd);
}

void mp_synth_powerlaw(float *a, float *b, int n, double beta, mp_rng *r) {
  MP_CHECK(n >= 4 && (n & (n - 1)) == 0, "power-law field size %d is not a power of two", n);
  size_t m = (size_t)n * (size_t)n;
  double complex *x = mp_malloc(m * sizeof *x);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double fy = freq(i, n), fx = freq(j, n);
      double f = sqrt(fx * fx + fy * fy);
      double re = mp_rng_normal(r), im = mp_rng_normal(r); /* always drawn: fixed stream use */
      x[(size_t)i * n + j] = f > 0 ? (re + I * im) * pow(f, -beta / 2.0) : 0.0;
    }
  fft2(x, n, +1);
  for (size_t k = 0; k < m; k++) a[k] = (float)creal(x[k]);
  normalise(a, m);
  if (b) {
    for (size_t k = 0; k < m; k++) b[k] = (float)cimag(x[k]);
    normalise(b, m);
  }
  mp_free(x);
}

double mp_synth_spectral_slope(const float *f, int n, double fmin, double fmax) {
  size_t m = (size_t)n * (size_t)n;
  double complex *x = mp_malloc(m * sizeof *x);
  for (size_t k = 0; k < m; k++) x[k] = f[k];
  fft2(x, n, -1);
  int nb = n / 2;
  double *pow_sum = mp_calloc((size_t)nb + 1, sizeof *pow_sum);
  long *cnt = mp_calloc((size_t)nb + 1, sizeof *cnt);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double fy = freq(i, n), fx = freq(j, n);
      int bin = (int)lround(sqrt(fx * fx + fy * fy));
      if (bin < 1 || bin > nb) continue;
      double c = cabs(x[(size_t)i * n + j]);
      pow_sum[bin] += c * c;
      cnt[bin]++;
    }
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int k = 0;
  for (int bin = 1; bin <= nb; bin++) {
    if (bin < fmin || bin > fmax || !cnt[bin]) continue;
    double lx = log((double)bin), ly = log(pow_sum[bin] / (double)cnt[bin]);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
    k++;
  }
  mp_free(x);
  mp_free(pow_sum);
  mp_free(cnt);
  return k >= 2 ? (k * sxy - sx * sy) / (k * sxx - sx * sx) : NAN;
}
