/* mp_progress — progress of a long stage.
 *
 * On a terminal: one bar redrawn in place (at most 10 times a second).  Otherwise
 * (batch jobs, Slurm logs): one plain line every `interval` seconds, so a log file shows
 * the job is alive and how fast it goes without being flooded.  Only ranks whose
 * logger speaks print (rank 0 by default); on other ranks every call is a no-op.
 *
 *   p = mp_progress_start("preprocess", nfiles);
 *   for (...) mp_progress_add(p, 1);
 *   mp_progress_finish(p);   // final line: count, time, rate; frees p
 */
#ifndef MP_PROGRESS_H
#define MP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct mp_progress mp_progress;

/* Default interval for non-terminal output, in seconds (set from log.progress_interval). */
void mp_progress_set_default_interval(double seconds);

/* To stderr, bar when stderr is a TTY; silent where the logger does not speak. */
mp_progress *mp_progress_start(const char *label, uint64_t total);

/* Full control, for tests: out (NULL = silent), tty mode, interval, clock. */
mp_progress *mp_progress_start_ex(const char *label, uint64_t total, FILE *out, bool tty, double interval_s,
                                  double (*clock)(void));

void mp_progress_update(mp_progress *p, uint64_t done); /* absolute position */
void mp_progress_add(mp_progress *p, uint64_t delta);
/* Print the final line and free p (NULL is fine). */
void mp_progress_finish(mp_progress *p);

/* "1h02m", "3m05s", "12.3s" */
const char *mp_format_duration(double seconds, char *buf, size_t len);

#endif
