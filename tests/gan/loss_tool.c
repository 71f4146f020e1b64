/* loss_tool — the five SPEC §7 losses (mp_ref_gan_loss) on logits read from stdin, for
 * tests/gan/check_losses.py.  Input: n, then n real-critic values, then n fake-critic
 * values.  Output per loss and side (D, G): "name side value dcr... dcf..." (%.17g). */
#include <stdio.h>

#include "mp_alloc.h"
#include "mp_ref.h"

int main(void) {
  int n;
  if (scanf("%d", &n) != 1 || n < 1) return 2;
  float *cr = mp_malloc((size_t)n * sizeof *cr), *cf = mp_malloc((size_t)n * sizeof *cf);
  float *dr = mp_malloc((size_t)n * sizeof *dr), *df = mp_malloc((size_t)n * sizeof *df);
  for (int i = 0; i < n; i++)
    if (scanf("%f", &cr[i]) != 1) return 2;
  for (int i = 0; i < n; i++)
    if (scanf("%f", &cf[i]) != 1) return 2;
  static const char *names[] = {"wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge"};
  for (int l = 0; l < 5; l++)
    for (int g = 0; g < 2; g++) {
      double v = mp_ref_gan_loss((mp_gan_loss)l, g, cr, cf, n, dr, df);
      printf("%s %s %.17g", names[l], g ? "G" : "D", v);
      for (int i = 0; i < n; i++) printf(" %.9g", dr[i]);
      for (int i = 0; i < n; i++) printf(" %.9g", df[i]);
      printf("\n");
    }
  mp_free(cr), mp_free(cf), mp_free(dr), mp_free(df);
  return 0;
}
