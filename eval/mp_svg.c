/* mp_svg — inline SVG charts for the reports (see mp_svg.h).
 *
 * Layout: a plot area inset by margins for the tick labels, axis titles under / beside
 * it, the legend in a column on the right of the plot (so it never hides a curve).
 * Ticks are "nice" numbers (1, 2, 5 x 10^k), about five per axis. */
#include "mp_svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { ML = 52, MR = 150, MT = 30, MB = 44 };

const char *mp_svg_color(size_t i) {
  static const char *pal[10] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return pal[i % 10];
}

void mp_svg_escape(mp_strbuf *out, const char *t) {
  for (; t && *t; t++) {
    switch (*t) {
    case '&': mp_strbuf_printf(out, "&amp;"); break;
    case '<': mp_strbuf_printf(out, "&lt;"); break;
    case '>': mp_strbuf_printf(out, "&gt;"); break;
    case '"': mp_strbuf_printf(out, "&quot;"); break;
    case '\'': mp_strbuf_printf(out, "&#39;"); break;
    default: mp_strbuf_append(out, t, 1);
    }
  }
}

static double nice_step(double span) {
  double raw = span / 5, p = pow(10, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

typedef struct {
  double x0, x1, y0, y1;
  int W, H, pw, ph;
} frame;

static double px(const frame *f, double x) { return ML + (x - f->x0) / (f->x1 - f->x0) * f->pw; }
static double py(const frame *f, double y) { return MT + f->ph - (y - f->y0) / (f->y1 - f->y0) * f->ph; }

static void fmt_tick(char *b, size_t n, double v, double step) {
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (fabs(v) < step * 1e-6) v = 0;
  snprintf(b, n, "%.*f", dec > 6 ? 6 : dec, v);
}

/* The opening tag, title, axes, ticks and axis titles. */
static void open_chart(mp_strbuf *o, const mp_svg_chart *c, frame *f, int xticks) {
  f->W = c->width ? c->width : 460, f->H = c->height ? c->height : 320;
  f->pw = f->W - ML - MR, f->ph = f->H - MT - MB;
  mp_strbuf_printf(o, "<svg class=\"chart %s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
                   c->kind, f->W, f->H, f->W, f->H);
  mp_svg_escape(o, c->title);
  mp_strbuf_printf(o, "\" font-family=\"sans-serif\" font-size=\"11\"><title>");
  mp_svg_escape(o, c->title);
  mp_strbuf_printf(o, "</title>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", f->W, f->H);
  mp_strbuf_printf(o, "<text x=\"%d\" y=\"18\" font-size=\"13\" font-weight=\"bold\">", ML);
  mp_svg_escape(o, c->title);
  mp_strbuf_printf(o, "</text>\n");
  /* y ticks and grid */
  double ys = nice_step(f->y1 - f->y0);
  for (double v = ceil(f->y0 / ys - 1e-9) * ys; v <= f->y1 + ys * 1e-9; v += ys) {
    char t[32];
    fmt_tick(t, sizeof t, v, ys);
    mp_strbuf_printf(o,
                     "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>"
                     "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                     ML, ML + f->pw, py(f, v), py(f, v), ML - 4, py(f, v) + 4, t);
  }
  if (xticks) {
    double xs = nice_step(f->x1 - f->x0);
    for (double v = ceil(f->x0 / xs - 1e-9) * xs; v <= f->x1 + xs * 1e-9; v += xs) {
      char t[32];
      fmt_tick(t, sizeof t, v, xs);
      mp_strbuf_printf(o,
                       "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#e6e6e6\"/>"
                       "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                       px(f, v), px(f, v), MT, MT + f->ph, px(f, v), MT + f->ph + 14, t);
    }
  }
  mp_strbuf_printf(o, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", ML, MT,
                   f->pw, f->ph);
  mp_strbuf_printf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", ML + f->pw / 2, f->H - 8);
  mp_svg_escape(o, c->xlabel);
  mp_strbuf_printf(o, "</text>\n<text transform=\"translate(13 %d) rotate(-90)\" text-anchor=\"middle\">",
                   MT + f->ph / 2);
  mp_svg_escape(o, c->ylabel);
  mp_strbuf_printf(o, "</text>\n");
}

static void legend(mp_strbuf *o, const frame *f, size_t i, const char *name, const char *color, int dashed) {
  double y = MT + 8 + 15.0 * (double)i;
  if (y > f->H - 10) return; /* more series than room: the first ones are named */
  mp_strbuf_printf(o,
                   "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>"
                   "<text x=\"%d\" y=\"%.1f\">",
                   ML + f->pw + 10, ML + f->pw + 28, y, y, color, dashed ? " stroke-dasharray=\"4 3\"" : "",
                   ML + f->pw + 32, y + 4);
  /* legend text is cut to fit the column */
  char cut[24];
  snprintf(cut, sizeof cut, "%s", name ? name : "");
  mp_svg_escape(o, cut);
  mp_strbuf_printf(o, "</text>\n");
}

void mp_svg_lines(mp_strbuf *o, const mp_svg_chart *c, const mp_svg_series *s, size_t ns) {
  frame f = {c->xmin, c->xmax, c->ymin, c->ymax, 0, 0, 0, 0};
  if (!(c->xmax > c->xmin) || !(c->ymax > c->ymin)) { /* from the data */
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t k = 0; k < ns; k++)
      for (size_t i = 0; i < s[k].n; i++)
        if (isfinite(s[k].x[i]) && isfinite(s[k].y[i])) {
          x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]);
          y0 = fmin(y0, s[k].y[i]), y1 = fmax(y1, s[k].y[i]);
        }
    if (!(x1 >= x0)) x0 = 0, x1 = 1;
    if (!(y1 >= y0)) y0 = 0, y1 = 1;
    if (x1 == x0) x0 -= 0.5, x1 += 0.5;
    if (y1 == y0) y0 -= 0.5, y1 += 0.5;
    if (!(c->xmax > c->xmin)) f.x0 = x0, f.x1 = x1;
    if (!(c->ymax > c->ymin)) {
      double pad = (y1 - y0) * 0.05;
      f.y0 = y0 >= 0 && y0 - pad < 0 ? 0 : y0 - pad, f.y1 = y1 + pad;
    }
  }
  open_chart(o, c, &f, 1);
  if (c->diagonal)
    mp_strbuf_printf(o,
                     "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" "
                     "stroke-dasharray=\"3 3\"/>\n",
                     px(&f, fmax(f.x0, f.y0)), py(&f, fmax(f.x0, f.y0)), px(&f, fmin(f.x1, f.y1)),
                     py(&f, fmin(f.x1, f.y1)));
  for (size_t k = 0; k < ns; k++) {
    if (s[k].markers) { /* a scatter: one small circle per point */
      mp_strbuf_printf(o, "<g fill=\"%s\" fill-opacity=\"0.6\"><title>", s[k].color);
      mp_svg_escape(o, s[k].name);
      mp_strbuf_printf(o, "</title>\n");
      for (size_t i = 0; i < s[k].n; i++)
        if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
          mp_strbuf_printf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.2\"/>", px(&f, s[k].x[i]), py(&f, s[k].y[i]));
      mp_strbuf_printf(o, "</g>\n");
      legend(o, &f, k, s[k].name, s[k].color, 0);
      continue;
    }
    mp_strbuf_printf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s points=\"", s[k].color,
                     s[k].dashed ? " stroke-dasharray=\"4 3\"" : "");
    for (size_t i = 0; i < s[k].n; i++)
      if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
        mp_strbuf_printf(o, "%.1f,%.1f ", px(&f, s[k].x[i]), py(&f, s[k].y[i]));
    mp_strbuf_printf(o, "\"><title>");
    mp_svg_escape(o, s[k].name);
    mp_strbuf_printf(o, "</title></polyline>\n");
    size_t finite = 0, last = 0;
    for (size_t i = 0; i < s[k].n; i++)
      if (isfinite(s[k].x[i]) && isfinite(s[k].y[i])) finite++, last = i;
    if (finite == 1) /* one point draws no line: a marker */
      mp_strbuf_printf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px(&f, s[k].x[last]),
                       py(&f, s[k].y[last]), s[k].color);
    legend(o, &f, k, s[k].name, s[k].color, s[k].dashed);
  }
  mp_strbuf_printf(o, "</svg>\n");
}

void mp_svg_bars(mp_strbuf *o, const mp_svg_chart *c, const char *const *labels, size_t ng,
                 const char *const *names, const char *const *colors, size_t nb, const double *v, const double *e) {
  frame f = {0, 1, c->ymin, c->ymax, 0, 0, 0, 0};
  if (!(c->ymax > c->ymin)) {
    double lo = 0, hi = 0;
    for (size_t i = 0; i < ng * nb; i++)
      if (isfinite(v[i])) {
        double d = e && isfinite(e[i]) ? e[i] : 0;
        lo = fmin(lo, v[i] - d), hi = fmax(hi, v[i] + d);
      }
    if (hi == lo) hi = lo + 1;
    f.y0 = lo, f.y1 = hi + (hi - lo) * 0.05;
  }
  open_chart(o, c, &f, 0);
  double gw = (double)f.pw / (double)(ng ? ng : 1), bw = gw * 0.8 / (double)(nb ? nb : 1);
  double base = py(&f, f.y0 < 0 && f.y1 > 0 ? 0 : f.y0);
  mp_strbuf_printf(o, "<path class=\"baseline\" d=\"M%d %.1fH%d\" stroke=\"#333\"/>\n", ML, base, ML + f.pw);
  for (size_t g = 0; g < ng; g++) {
    double gx = ML + gw * (double)g + gw * 0.1;
    mp_strbuf_printf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", ML + gw * ((double)g + 0.5),
                     MT + f.ph + 14);
    mp_svg_escape(o, labels[g]);
    mp_strbuf_printf(o, "</text>\n");
    for (size_t b = 0; b < nb; b++) {
      double val = v[g * nb + b];
      if (!isfinite(val)) continue;
      double top = py(&f, val), x = gx + bw * (double)b;
      mp_strbuf_printf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", x,
                       fmin(top, base), bw * 0.92, fabs(base - top), colors[b]);
      mp_svg_escape(o, names[b]);
      mp_strbuf_printf(o, " %s: %.4f", labels[g], val);
      if (e && isfinite(e[g * nb + b])) mp_strbuf_printf(o, " ± %.4f", e[g * nb + b]);
      mp_strbuf_printf(o, "</title></rect>\n");
      if (e && isfinite(e[g * nb + b]) && e[g * nb + b] > 0) {
        double cx = x + bw * 0.46, y0 = py(&f, val - e[g * nb + b]), y1 = py(&f, val + e[g * nb + b]);
        mp_strbuf_printf(o,
                         "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#222\" "
                         "fill=\"none\"/>\n",
                         cx, y0, y1, cx - 3, y0, cx + 3, cx - 3, y1, cx + 3);
      }
    }
  }
  for (size_t b = 0; b < nb; b++) legend(o, &f, b, names[b], colors[b], 0);
  mp_strbuf_printf(o, "</svg>\n");
}
