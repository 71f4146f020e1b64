/* mp_tsne — exact t-SNE (van der Maaten & Hinton, "Visualizing data using t-SNE", JMLR
 * 2008) for the report's map of real and synthetic lesion features (SPEC §8: the thesis's
 * third tool for judging synthetic data).  A few thousand points of up to ~2048
 * dimensions: O(n^2) time per iteration and O(n^2) memory (one n x n matrix of doubles:
 * 128 MiB at n = 4000), no Barnes-Hut approximation.
 *
 * It follows scikit-learn's TSNE(method='exact', init='random') step for step, in double
 * precision, so its maps and KL values can be checked against scikit-learn:
 *   - squared Euclidean distances in feature space;
 *   - per point, a binary search of the Gaussian precision beta (start 1; doubling or
 *     halving until bracketed, then bisection; at most 100 steps) until the entropy
 *     log(sum_j e^{-beta d_ij}) + beta sum_j d_ij p_j|i (nats) is within 1e-5 of
 *     log(perplexity); a row whose exponentials all underflow uses the sum 1e-8;
 *   - p_ij = (p_j|i + p_i|j) / sum, floored at DBL_EPSILON off the diagonal (the sum is the
 *     actual total, i.e. 2n up to rounding);
 *   - Student-t (one degree of freedom) similarities q_ij = (1 + |y_i - y_j|^2)^-1 / Z,
 *     floored at DBL_EPSILON; gradient 4 sum_j (p_ij - q_ij)(y_i - y_j)/(1 + |y_i - y_j|^2);
 *   - two gradient-descent stages as scikit-learn's _gradient_descent, each starting with
 *     zero updates and unit gains: exaggeration_iters iterations with P times exaggeration
 *     and momentum 0.5, then the rest (up to `iterations` in all) with momentum 0.8;
 *     delta-bar-delta gains (+0.2 when the update and the gradient disagree in sign, x0.8
 *     otherwise, never below 0.01); every 50 iterations the KL is checked: stop when it has
 *     not improved for more than 300 iterations (in the first stage: exaggeration_iters)
 *     or when the gain-scaled gradient norm is <= 1e-7.
 * The returned KL is scikit-learn's kl_divergence_: KL(P||Q) evaluated by the last
 * gradient call, i.e. at the layout before the final update.
 *
 * Differences from scikit-learn, all below its own float32 round-off: scikit-learn rounds
 * the squared distances (and the random initial layout and gradients) to float32 and
 * passes the perplexity through a C float; here everything is double.
 *
 * The initial layout is y_i ~ N(0, 1e-4^2 I), drawn from mp_rng (seed, MP_RNG_TSNE, i)
 * (two normals per point), so a map is a pure function of (x, options): the same bytes
 * for any number of OpenMP threads (every reduction has a fixed order).
 *
 * The map shows neighbourhoods: distances between clusters in it are not distances in
 * feature space (the report's caption says so).
 */
#ifndef MP_TSNE_H
#define MP_TSNE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  double perplexity;      /* 30; must be > 0 and < n - 1 (the caller lowers it for small n) */
  int iterations;         /* 1000 in all, both stages; 0: just the initial layout */
  int exaggeration_iters; /* 250; 0 <= exaggeration_iters <= iterations */
  double exaggeration;    /* 12; > 0 */
  double learning_rate;   /* <= 0: scikit-learn's 'auto' = max(n / exaggeration / 4, 50) */
  uint64_t seed;          /* initial layout: N(0, 1e-4^2) from mp_rng (seed, MP_RNG_TSNE, point index) */
} mp_tsne_opts;

/* The defaults above (seed 0). */
void mp_tsne_defaults(mp_tsne_opts *o);

/* The map of n points x (n x d row-major doubles) into y (n x 2 row-major).  Returns the
 * final KL(P||Q) (>= 0), or -1 with the reason in err: n < 5, d < 1, a non-finite input
 * value, a perplexity outside (0, n - 1) (no perplexity >= n - 1 is reachable: the
 * uniform distribution over the n - 1 others has perplexity n - 1; it is refused rather
 * than silently lowered, so the figure's caption can state the value used), an invalid
 * option, or a layout that became non-finite.  When the second stage is empty
 * (exaggeration_iters == iterations, e.g. iterations 0) the KL is evaluated at the final
 * layout. */
double mp_tsne(const double *x, int n, int d, const mp_tsne_opts *o, double *y, char *err, size_t errlen);

/* The joint probabilities P (n x n row-major, symmetric, zero diagonal, sum 1 up to the
 * DBL_EPSILON floors) of n points x (n x d) at the given perplexity; the matrix the
 * optimisation of mp_tsne uses.  Returns 0, or -1 with the reason in err (as mp_tsne). */
int mp_tsne_joint_p(const double *x, int n, int d, double perplexity, double *p, char *err, size_t errlen);

#endif
