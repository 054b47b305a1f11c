/* svgchart.h — line charts as SVG, for `keel report` and `keel sim --svg`.
 *
 * A chart is a set of named series of (x, y) points, drawn with axes, a
 * light grid, tick labels and a legend. Output is well-formed XML, usable
 * as a standalone .svg file or inline in an HTML page. Points whose y is
 * NaN are gaps. Each series' polyline carries data-series="NAME" and
 * data-n="POINTS" so tests and scripts can read what was drawn. */
#ifndef KEEL_CLI_SVGCHART_H
#define KEEL_CLI_SVGCHART_H

#include <stddef.h>
#include <stdio.h>

typedef struct svg_series {
  const char *name; /* borrowed */
  const double *x;  /* borrowed, n values, ascending */
  const double *y;  /* borrowed, n values (NaN: no point) */
  size_t n;
} svg_series;

typedef struct svg_chart {
  const char *title;   /* borrowed */
  const char *x_label; /* e.g. "seconds" */
  const char *y_label; /* e.g. "MiB" */
  double y_max;        /* 0: from the data (+10 %) */
  int standalone;      /* write the XML declaration and xmlns (a .svg file) */
  int x_from_zero;     /* the x axis starts at 0 (time since the start) */
} svg_chart;

/* Writes one chart (640 x 300). Returns 0, or -1 when writing failed. */
int svg_chart_write(FILE *f, const svg_chart *c, const svg_series *s, size_t ns);

/* Writes s with XML's five special characters escaped, and control
 * characters XML 1.0 forbids written as U+FFFD. */
void svg_escape(FILE *f, const char *s);

#endif
