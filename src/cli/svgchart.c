/* svgchart.c — line charts as SVG (see svgchart.h). */
#include "svgchart.h"

#include <math.h>
#include <string.h>

#define W 640.0
#define H 300.0
#define ML 64.0  /* left margin: y tick labels */
#define MR 150.0 /* right margin: the legend */
#define MT 30.0  /* top: the title */
#define MB 40.0  /* bottom: x tick labels and the axis label */

static const char *const colors[] = {"#2f6fdf", "#e5533d", "#2a9d5c", "#9b51e0", "#e0a100",
                                     "#1aa3b8", "#d6338a", "#6b7280", "#8c564b", "#17becf"};

void svg_escape(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '&': fputs("&amp;", f); break;
      case '"': fputs("&quot;", f); break;
      case '\'': fputs("&apos;", f); break;
      default:
        /* XML 1.0 has no place for other control characters, escaped or not:
         * one in a crafted log would make the page malformed. */
        if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n' && *s != '\r') fputs("\xef\xbf\xbd", f); /* U+FFFD */
        else fputc(*s, f);
    }
  }
}

/* A tick label: 12345 -> "12.3k", 0.25 -> "0.25". */
static void tick_text(char *buf, size_t len, double v) {
  double a = fabs(v);
  if (a >= 1e9) snprintf(buf, len, "%.3gG", v / 1e9);
  else if (a >= 1e6) snprintf(buf, len, "%.3gM", v / 1e6);
  else if (a >= 1e4) snprintf(buf, len, "%.3gk", v / 1e3);
  else snprintf(buf, len, "%.3g", v);
}

typedef struct frame {
  double x0, x1, top;
  double ystep, xstep; /* tick spacing: 1, 2, 2.5 or 5 times a power of ten */
} frame;

static double nice_step(double raw) {
  if (!(raw > 0)) return 1;
  double p = pow(10, floor(log10(raw))), f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}

static double px(const frame *fr, double x) { return ML + (x - fr->x0) / (fr->x1 - fr->x0) * (W - ML - MR); }
static double py(const frame *fr, double y) { return MT + (1 - y / fr->top) * (H - MT - MB); }

static frame frame_of(const svg_chart *c, const svg_series *s, size_t ns) {
  frame fr = {INFINITY, -INFINITY, 0, 1, 1};
  double ymax = 0;
  for (size_t i = 0; i < ns; i++)
    for (size_t k = 0; k < s[i].n; k++) {
      if (isnan(s[i].y[k])) continue;
      if (s[i].x[k] < fr.x0) fr.x0 = s[i].x[k];
      if (s[i].x[k] > fr.x1) fr.x1 = s[i].x[k];
      if (s[i].y[k] > ymax) ymax = s[i].y[k];
    }
  if (!isfinite(fr.x0)) fr.x0 = 0, fr.x1 = 1;
  if (c->x_from_zero && fr.x0 > 0) fr.x0 = 0;
  if (fr.x1 <= fr.x0) fr.x1 = fr.x0 + 1;
  if (c->y_max > 0) {
    fr.top = c->y_max;
    fr.ystep = c->y_max / 4;
  } else {
    fr.ystep = nice_step((ymax > 0 ? ymax * 1.05 : 1) / 4);
    fr.top = ceil((ymax > 0 ? ymax * 1.05 : 1) / fr.ystep) * fr.ystep;
  }
  fr.xstep = nice_step((fr.x1 - fr.x0) / 5);
  return fr;
}

static void axes(FILE *f, const svg_chart *c, const frame *fr) {
  char t[32];
  for (int i = 0; i * fr->ystep <= fr->top * (1 + 1e-9); i++) {
    double v = i * fr->ystep, y = py(fr, v);
    tick_text(t, sizeof t, v);
    fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eceef2\"/>\n", ML, W - MR, y, y);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ML - 6, y + 4, t);
  }
  for (double v = ceil(fr->x0 / fr->xstep - 1e-9) * fr->xstep; v <= fr->x1 * (1 + 1e-9); v += fr->xstep) {
    tick_text(t, sizeof t, fabs(v) < fr->xstep * 1e-6 ? 0 : v);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px(fr, v), H - MB + 16, t);
  }
  fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#9aa3b2\"/>\n", ML, ML, MT, H - MB);
  fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#9aa3b2\"/>\n", ML, W - MR, H - MB,
          H - MB);
  fprintf(f, "<text x=\"%.1f\" y=\"18\" font-weight=\"bold\">", ML);
  svg_escape(f, c->title ? c->title : "");
  fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (ML + W - MR) / 2, H - 6);
  svg_escape(f, c->x_label ? c->x_label : "");
  fprintf(f, "</text>\n<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">",
          (MT + H - MB) / 2, (MT + H - MB) / 2);
  svg_escape(f, c->y_label ? c->y_label : "");
  fputs("</text>\n", f);
}

static void series(FILE *f, const frame *fr, const svg_series *s, size_t i) {
  const char *col = colors[i % (sizeof colors / sizeof colors[0])];
  size_t n = 0;
  for (size_t k = 0; k < s->n; k++) n += !isnan(s->y[k]);
  fprintf(f, "<polyline fill=\"none\" stroke-width=\"1.8\" stroke=\"%s\" data-series=\"", col);
  svg_escape(f, s->name);
  fprintf(f, "\" data-n=\"%zu\" points=\"", n);
  int first = 1;
  for (size_t k = 0; k < s->n; k++) {
    if (isnan(s->y[k])) continue;
    double y = s->y[k] > fr->top ? fr->top : s->y[k];
    fprintf(f, "%s%.1f,%.1f", first ? "" : " ", px(fr, s->x[k]), py(fr, y));
    first = 0;
  }
  double ly = MT + 10 + (double)i * 16;
  fprintf(f, "\"/>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>\n", W - MR + 12, ly - 8,
          col);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", W - MR + 27, ly + 1);
  svg_escape(f, s->name);
  fputs("</text>\n", f);
}

int svg_chart_write(FILE *f, const svg_chart *c, const svg_series *s, size_t ns) {
  frame fr = frame_of(c, s, ns);
  if (c->standalone) fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
          "font-family=\"sans-serif\" font-size=\"11\" fill=\"#1d2330\">\n"
          "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
          W, H, W, H);
  axes(f, c, &fr);
  for (size_t i = 0; i < ns; i++) series(f, &fr, &s[i], i);
  fputs("</svg>\n", f);
  return ferror(f) ? -1 : 0;
}
