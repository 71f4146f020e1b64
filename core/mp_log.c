/* mp_log — rank-aware logging (see mp_log.h). */
#include "mp_log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static struct {
  int rank, size;
  mp_log_level level;
  bool all_ranks;
  FILE *stream; /* NULL means stderr (stderr is not a constant initializer) */
  double t0;
  bool started;
} g_log = {0, 1, MP_LOG_INFO, false, NULL, 0.0, false};

double mp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mp_log_init(int rank, int size, mp_log_level level, bool all_ranks) {
  g_log.rank = rank;
  g_log.size = size;
  g_log.level = level;
  g_log.all_ranks = all_ranks;
  if (!g_log.started) {
    g_log.t0 = mp_now();
    g_log.started = true;
  }
}

void mp_log_set_stream(FILE *f) { g_log.stream = f; }
mp_log_level mp_log_get_level(void) { return g_log.level; }
void mp_log_set_level(mp_log_level level) { g_log.level = level; }

double mp_log_elapsed(void) {
  if (!g_log.started) {
    g_log.t0 = mp_now();
    g_log.started = true;
  }
  return mp_now() - g_log.t0;
}

bool mp_log_enabled(mp_log_level level) {
  if (level > g_log.level) return false;
  if (level == MP_LOG_ERROR) return true; /* errors are never hidden */
  return g_log.rank == 0 || g_log.all_ranks;
}

int mp_log_level_parse(const char *s) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++)
    if (s && strcasecmp(s, names[i]) == 0) return i;
  if (s && strcasecmp(s, "warning") == 0) return MP_LOG_WARN;
  return -1;
}

void mp_log(mp_log_level level, const char *fmt, ...) {
  if (!mp_log_enabled(level)) return;
  static const char *tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};
  char line[4096];
  int n;
  double t = mp_log_elapsed();
  if (g_log.size > 1 && (g_log.all_ranks || g_log.rank != 0))
    n = snprintf(line, sizeof line, "[mammopatch %7.1fs r%d] %s ", t, g_log.rank, tags[level]);
  else
    n = snprintf(line, sizeof line, "[mammopatch %7.1fs] %s ", t, tags[level]);
  if (n < 0) return;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = strlen(line);
  if (m >= 0 && (size_t)n + (size_t)m >= sizeof line - 1) { /* truncated: say so */
    memcpy(line + sizeof line - 6, "[...]", 5);
    len = sizeof line - 1;
  }
  line[len] = '\n';
  FILE *out = g_log.stream ? g_log.stream : stderr;
  fwrite(line, 1, len + 1, out);
  fflush(out);
}
