/* mp_log — rank-aware logging.
 *
 * By default only rank 0 speaks (one voice for an N-rank job); `--verbose` lets every
 * rank speak, each line tagged with its rank.  Errors are printed by whichever rank
 * hits them, always.  Every line goes out in one write so ranks do not interleave
 * mid-line.  Line format:
 *     [mammopatch   12.3s] INFO  message              (rank 0 only)
 *     [mammopatch   12.3s r3] WARN  message           (all ranks, or a non-zero rank's error)
 */
#ifndef MP_LOG_H
#define MP_LOG_H

#include <stdbool.h>
#include <stdio.h>

#include "mp_check.h" /* MP_PRINTF */

typedef enum { MP_LOG_ERROR = 0, MP_LOG_WARN = 1, MP_LOG_INFO = 2, MP_LOG_DEBUG = 3 } mp_log_level;

/* Set who we are and what to print.  Before this is called the logger acts as rank 0
 * of 1 at INFO level.  all_ranks: every rank prints (the --verbose switch). */
void mp_log_init(int rank, int size, mp_log_level level, bool all_ranks);

/* Where lines go (default stderr).  For tests. */
void mp_log_set_stream(FILE *f);

mp_log_level mp_log_get_level(void);
void mp_log_set_level(mp_log_level level);

/* True when this rank prints messages of this level. */
bool mp_log_enabled(mp_log_level level);

/* Parse "error|warn|info|debug"; returns -1 for anything else. */
int mp_log_level_parse(const char *s);

/* Seconds since mp_log_init (or program start): the time stamp on every line. */
double mp_log_elapsed(void);

void mp_log(mp_log_level level, const char *fmt, ...) MP_PRINTF(2, 3);

#define MP_ERROR(...) mp_log(MP_LOG_ERROR, __VA_ARGS__)
#define MP_WARN(...) mp_log(MP_LOG_WARN, __VA_ARGS__)
#define MP_INFO(...) mp_log(MP_LOG_INFO, __VA_ARGS__)
#define MP_DEBUG(...) mp_log(MP_LOG_DEBUG, __VA_ARGS__)

/* Monotonic clock in seconds (shared by the logger and the progress reporter). */
double mp_now(void);

#endif
