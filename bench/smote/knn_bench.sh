#!/usr/bin/env bash
# bench/smote: the SPEC §9 kNN at thesis scale — N x D vectors (default 2,000 x 65,536, the
# block-1 features of ~2,000 training lesion patches), k = 2, for each distance: mammopatch's
# mp_knn (tests' knn_tool: SGEMM / blocked l1 candidates re-scored exactly; 1 and 2 ranks)
# beside scikit-learn's NearestNeighbors(algorithm="brute") on the same float32 data in the
# same run.  Prints seconds and the ratio (scikit-learn / mammopatch; target >= 2).
# Each side times its own kNN call (data already in memory; knn_tool reports mp_knn's time).
# Usage: bench/smote/knn_bench.sh [N] [D]; THREADS (default 2), DISTS (default "cosine l1 l2").
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-2000} d=${2:-65536} threads=${THREADS:-2}
tool=${BUILD_DIR:-build}/tests/knn_tool
[[ -x $tool ]] || { echo "build first (cmake --build build)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -c "
import numpy as np
rng = np.random.default_rng(1)
x = np.maximum(rng.normal(size=($n, $d)).astype(np.float32), 0)  # ReLU-like block-1 activations
x.tofile('$tmp/x.f32')"
printf '%-8s %6s %7s %12s %12s %12s %9s\n' dist N D mp_1rank_s mp_2ranks_s sklearn_s ratio
for dist in ${DISTS:-cosine l1 l2}; do
  a=$(OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$tool" "$tmp/x.f32" "$n" "$d" $dist 2 "$tmp/o1" |
      sed -n 's/.*"knn_seconds": \([0-9.]*\).*/\1/p')
  h=$((threads / 2 > 0 ? threads / 2 : 1))
  b=$(OMP_NUM_THREADS=$h OPENBLAS_NUM_THREADS=$h mpiexec -n 2 --oversubscribe "$tool" "$tmp/x.f32" "$n" "$d" $dist 2 "$tmp/o2" |
      sed -n 's/.*"knn_seconds": \([0-9.]*\).*/\1/p')
  cmp -s "$tmp/o1" "$tmp/o2" || echo "WARNING: 1 and 2 ranks differ for $dist" >&2
  sk=$(OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads /usr/bin/python3 -c "
import time, numpy as np
from sklearn.neighbors import NearestNeighbors
x = np.fromfile('$tmp/x.f32', np.float32).reshape($n, $d)
m = {'cosine': 'cosine', 'l1': 'manhattan', 'l2': 'euclidean'}['$dist']
t = time.perf_counter()
NearestNeighbors(n_neighbors=3, algorithm='brute', metric=m, n_jobs=$threads).fit(x).kneighbors(x)
print(time.perf_counter() - t)")
  awk -v d=$dist -v n=$n -v D=$d -v a="$a" -v b="$b" -v s="$sk" \
    'BEGIN { best = a < b ? a : b; printf "%-8s %6d %7d %12.2f %12.2f %12.2f %9.2f\n", d, n, D, a, b, s, s / best }'
done
echo "(each side's kNN call alone, data loaded; 2 ranks use THREADS/2 threads each; the ratio uses the faster of 1 and 2 ranks)"
