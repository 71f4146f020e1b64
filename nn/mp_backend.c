/* mp_backend — backend registry and the ref backend (see mp_backend.h). */
#include "mp_build_config.h"
#include "mp_backend.h"

#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"

static void *ref_alloc(mp_backend *b, size_t bytes) {
  (void)b;
  return mp_malloc(bytes);
}
static void ref_release(mp_backend *b, void *p) {
  (void)b;
  mp_free(p);
}
static void ref_copy(mp_backend *b, void *dst, const void *src, size_t bytes) {
  (void)b;
  memcpy(dst, src, bytes);
}
static void ref_destroy(mp_backend *b) { mp_free(b); }
static void ref_conv_fwd(mp_backend *b, const mp_conv_desc *d, const float *x, const float *w, const float *bias,
                         float *y) {
  (void)b;
  mp_ref_conv2d_forward(d, x, w, bias, y);
}
static void ref_conv_bwd_data(mp_backend *b, const mp_conv_desc *d, const float *dy, const float *w, float *dx) {
  (void)b;
  mp_ref_conv2d_backward_data(d, dy, w, dx);
}
static void ref_conv_bwd_weights(mp_backend *b, const mp_conv_desc *d, const float *x, const float *dy, float *dw,
                                 float *db) {
  (void)b;
  mp_ref_conv2d_backward_weights(d, x, dy, dw, db);
}
static const char *ref_describe(mp_backend *b, const char *op, const mp_conv_desc *d) {
  (void)b;
  (void)op;
  (void)d;
  return "ref: plain C, double accumulation";
}

static const mp_backend_i ref_iface = {
    .name = "ref",
    .destroy = ref_destroy,
    .alloc = ref_alloc,
    .release = ref_release,
    .upload = ref_copy,
    .download = ref_copy,
    .conv2d_forward = ref_conv_fwd,
    .conv2d_backward_data = ref_conv_bwd_data,
    .conv2d_backward_weights = ref_conv_bwd_weights,
    .describe = ref_describe,
};

mp_backend *mp_backend_ref_create(void) {
  mp_backend *b = mp_calloc(1, sizeof *b);
  b->iface = &ref_iface;
  return b;
}

mp_backend *mp_backend_create(const char *name, char *err, size_t errlen) {
  if (!strcmp(name, "ref")) return mp_backend_ref_create();
#if MP_HAVE_DNNL
  if (!strcmp(name, "cpu")) return mp_backend_dnnl_create(err, errlen);
#endif
  snprintf(err, errlen, "backend '%s' is not in this build (available: %s)", name, mp_backend_list());
  return NULL;
}

void mp_backend_free(mp_backend *b) {
  if (b) b->iface->destroy(b);
}

const char *mp_backend_list(void) { return MP_HAVE_DNNL ? "ref cpu" : "ref"; }
