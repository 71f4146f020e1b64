/* mp_file — small file-system helpers shared by every stage: read a whole file,
 * write one atomically (temporary file in the same directory, fsync, rename: a reader
 * never sees a half-written result), create a directory path. */
#ifndef MP_FILE_H
#define MP_FILE_H

#include <stddef.h>

/* The whole file, NUL-terminated (mp_malloc'd; *len without the NUL if len non-NULL).
 * NULL with the reason in err on failure. */
char *mp_read_file(const char *path, size_t *len, char *err, size_t errlen);

/* Write bytes to path atomically.  0, or -1 with the reason in err. */
int mp_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* mkdir -p.  0, or -1 with the reason in err. */
int mp_mkdir_p(const char *path, char *err, size_t errlen);

/* Remove path and everything under it (no error when it does not exist); 0 or -1. */
int mp_rmtree(const char *path);

#endif
