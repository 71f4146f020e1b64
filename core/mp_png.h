/* mp_png — 8-bit grayscale and RGB PNG files through libpng (previews, montages,
 * heatmaps).  Compiled when libpng is found (MP_HAVE_PNG). */
#ifndef MP_PNG_H
#define MP_PNG_H

#include <stddef.h>
#include <stdint.h>

/* channels 1 (gray) or 3 (RGB), rows of width*channels bytes.  Returns 0, or -1 with
 * the reason in err.  Written atomically (temporary file, rename). */
int mp_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels, char *err,
                 size_t errlen);

#endif
