/* mp_nmse.h — the normalised mean squared error the backend tests hold results to:
 * sum (a - ref)^2 / sum ref^2 (over 1 when ref is all zero), infinite when any difference is
 * not finite (a NaN left in an output fails every tolerance).  C and C++. */
#ifndef MP_NMSE_H
#define MP_NMSE_H

#include <math.h>
#include <stddef.h>

static inline double mp_nmse(const float *a, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double e = (double)a[i] - ref[i];
    num += e * e;
    den += (double)ref[i] * ref[i];
  }
  return isfinite(num) ? num / (den > 0 ? den : 1) : INFINITY;
}

#endif
