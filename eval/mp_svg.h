/* mp_svg — small self-contained SVG charts for the reports (ROC / PR curves, training
 * curves, mean ± std bars).  Inline SVG so that index.html needs no script, no font
 * download and no network: the charts render from disk in any browser.
 *
 * Every chart is an <svg class="chart KIND" role="img" aria-label="TITLE"> with a
 * <title>, axes with ticks, one <polyline> per series (or <rect> per bar) and a legend.
 * Non-finite points are skipped (a series with none left draws nothing).
 */
#ifndef MP_SVG_H
#define MP_SVG_H

#include <stddef.h>

#include "mp_strbuf.h"

typedef struct {
  const char *name;     /* legend text (escaped when written) */
  const char *color;    /* CSS colour, e.g. "#1f77b4" */
  const double *x, *y;  /* n points */
  size_t n;
  int dashed;           /* draw dashed (e.g. validation beside training) */
  int markers;          /* points only, no line (a scatter, e.g. the t-SNE map) */
} mp_svg_series;

typedef struct {
  const char *kind;           /* CSS class after "chart": "roc", "pr", "training", "bar" */
  const char *title, *xlabel, *ylabel;
  double xmin, xmax, ymin, ymax; /* axis ranges; xmin == xmax (or ymin == ymax): from the data */
  int width, height;          /* pixels; 0: 460 x 320 */
  int diagonal;               /* draw the chance line y = x (ROC) */
} mp_svg_chart;

/* A line chart of ns series appended to out. */
void mp_svg_lines(mp_strbuf *out, const mp_svg_chart *c, const mp_svg_series *s, size_t ns);

/* Grouped bars: ngroups groups (labels[g]) of nbars bars each (bar_names[b], colors[b]);
 * value[g * nbars + b] with error bar ± err[...] (err may be NULL; NaN values are
 * drawn as a gap). */
void mp_svg_bars(mp_strbuf *out, const mp_svg_chart *c, const char *const *labels, size_t ngroups,
                 const char *const *bar_names, const char *const *colors, size_t nbars, const double *value,
                 const double *err);

/* text with & < > " ' escaped for HTML / SVG, appended to out. */
void mp_svg_escape(mp_strbuf *out, const char *text);

/* A categorical colour (i-th of a 10-colour palette). */
const char *mp_svg_color(size_t i);

#endif
