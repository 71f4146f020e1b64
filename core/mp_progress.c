/* mp_progress — progress bar or periodic lines (see mp_progress.h). */
#include "mp_progress.h"

#include <string.h>
#include <unistd.h>

#include "mp_alloc.h"
#include "mp_log.h"

struct mp_progress {
  char label[64];
  uint64_t total, done;
  FILE *out;
  bool tty;
  double interval, t0, last;
  double (*clock)(void);
};

static double g_default_interval = 10.0;

void mp_progress_set_default_interval(double seconds) {
  if (seconds > 0) g_default_interval = seconds;
}

const char *mp_format_duration(double s, char *buf, size_t len) {
  if (s < 0) s = 0;
  if (s < 60)
    snprintf(buf, len, "%.1fs", s);
  else if (s < 3600)
    snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)s % 60);
  else
    snprintf(buf, len, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
  return buf;
}

mp_progress *mp_progress_start_ex(const char *label, uint64_t total, FILE *out, bool tty, double interval_s,
                                  double (*clock)(void)) {
  mp_progress *p = mp_calloc(1, sizeof *p);
  snprintf(p->label, sizeof p->label, "%s", label);
  p->total = total;
  p->out = out;
  p->tty = tty;
  p->interval = interval_s > 0 ? interval_s : g_default_interval;
  p->clock = clock ? clock : mp_now;
  p->t0 = p->last = p->clock();
  return p;
}

mp_progress *mp_progress_start(const char *label, uint64_t total) {
  bool speak = mp_log_enabled(MP_LOG_INFO);
  return mp_progress_start_ex(label, total, speak ? stderr : NULL, isatty(STDERR_FILENO) == 1, g_default_interval,
                              NULL);
}

static void mp_progress_draw(mp_progress *p, double now, bool final) {
  double el = now - p->t0;
  double rate = el > 0 ? (double)p->done / el : 0.0;
  char eta[32] = "?", elapsed[32];
  if (rate > 0 && p->total >= p->done) mp_format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
  mp_format_duration(el, elapsed, sizeof elapsed);
  double frac = p->total ? (double)p->done / (double)p->total : 1.0;
  if (frac > 1) frac = 1;
  if (p->tty) {
    char bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(p->out, "\r%-16s [%s] %3.0f%% %llu/%llu %.1f/s %s %s\x1b[K%s", p->label, bar, 100 * frac,
            (unsigned long long)p->done, (unsigned long long)p->total, rate, final ? "in" : "ETA",
            final ? elapsed : eta, final ? "\n" : "");
  } else if (final) {
    fprintf(p->out, "[mammopatch %7.1fs] INFO  %s: done %llu/%llu in %s (%.1f/s)\n", mp_log_elapsed(), p->label,
            (unsigned long long)p->done, (unsigned long long)p->total, elapsed, rate);
  } else {
    fprintf(p->out, "[mammopatch %7.1fs] INFO  %s: %.0f%% (%llu/%llu), %.1f/s, ETA %s\n", mp_log_elapsed(),
            p->label, 100 * frac, (unsigned long long)p->done, (unsigned long long)p->total, rate, eta);
  }
  fflush(p->out);
}

void mp_progress_update(mp_progress *p, uint64_t done) {
  if (!p) return;
  p->done = done;
  if (!p->out) return;
  double now = p->clock();
  double every = p->tty ? 0.1 : p->interval;
  if (now - p->last >= every) {
    p->last = now;
    mp_progress_draw(p, now, false);
  }
}

void mp_progress_add(mp_progress *p, uint64_t delta) {
  if (p) mp_progress_update(p, p->done + delta);
}

void mp_progress_finish(mp_progress *p) {
  if (!p) return;
  if (p->out) mp_progress_draw(p, p->clock(), true);
  mp_free(p);
}
