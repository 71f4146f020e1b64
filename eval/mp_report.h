/* mp_report — the experiment report, written by rank 0 into DIR/report/ (SPEC §10, §1).
 *
 *   index.html        self-contained: inline CSS, inline SVG charts, the patch montage as
 *                     an embedded PNG (data: URI); no script, no external request — it
 *                     opens from disk
 *   report.md         the same tables in Markdown; charts/ *.svg and montage.png beside it
 *   results.csv       per (variant, split, level): every metric and the confusion counts
 *   summary.csv       per (variant, level, metric): n, mean, std, min, max over splits
 *   differences.csv   per (augmented variant, level, metric): paired difference from the
 *                     baseline, mean, std, splits higher / lower / equal
 *   training.csv      per (variant, split, epoch): training loss, validation loss and MCC
 *   preprocess.csv    the Table 3.2 counts
 *   experiment.json   everything above in one document (a copy of DIR/experiment.json)
 *
 * Contents: highlights (the thesis's "highlights of evaluation" form); the preprocessing
 * table (Table 3.2 form, from the store's file counts) and the §3.1.3 patch statistics;
 * per variant and level (patch, view, patient) the metric table (mean ± std and every
 * split); differences from the baseline; bar charts of F1 and MCC; ROC and PR curves;
 * training curves; a montage of real lesion and normal patches (synthetic ones join it
 * with the gan stage); the jobs; the configuration (INI) and version that produced it —
 * both as experiment.json records them (provenance), never the configuration of whoever
 * renders the report, whose own version is named apart when it differs.
 *
 * A paired difference identical on every split (no_variance in experiment.json) has no
 * variance estimate and no interval: marked †, "identical on all N splits; no variance
 * estimate", never * (differences.csv: no_variance 1, no ci95).
 *
 * DOM contract the browser test holds the page to: <section id="preprocess"> with
 * <table id="preprocess-table">; <section id="metrics"> with <table class="metrics"
 * data-variant data-level> per variant and level; <svg class="chart roc|pr|training|bar|fid">;
 * <img class="montage" src="data:image/png;base64,...">; <section id="config"> with a
 * <pre>; an element id="version".
 */
#ifndef MP_REPORT_H
#define MP_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mp_config.h"
#include "mp_strbuf.h"

/* experiment: the document of DIR/experiment.json (mp_experiment).  One process.
 * cfg: the renderer's configuration.  No key of it changes a number or how it is shown;
 * only experiment.gan_sweep is read, to locate the sweep's files when the experiment
 * recorded one (a sweep moved since: the report then says where it read them from; an
 * experiment without a sweep shows none).  With an experiment.json that records no
 * configuration, cfg's is shown instead, and said to be so.
 * Returns 0, or -1 with the reason in err. */
int mp_report_write(const char *dir, const char *store_path, const mp_config *cfg, const cJSON *experiment, char *err,
                    size_t errlen);

/* A montage (8 columns, 4-pixel gaps, a 12-pixel band between the two parts): ntop
 * P x P patches above nbottom below; returns the w x h grey image (mp_malloc'd). */
uint8_t *mp_report_montage(const uint8_t *top, int ntop, const uint8_t *bottom, int nbottom, int P, int *w, int *h);

/* Standard base64 (RFC 4648, padded) of n bytes appended to out (data: URIs). */
void mp_report_base64(mp_strbuf *out, const unsigned char *p, size_t n);

#endif
