/* mp_file — file-system helpers (see mp_file.h). */
#define _XOPEN_SOURCE 700
#include "mp_file.h"

#include <ftw.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mp_alloc.h"

char *mp_read_file(const char *path, size_t *len, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0, got;
  char *buf = mp_malloc(cap);
  while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0)
    if ((n += got) + 1 == cap) buf = mp_realloc(buf, cap *= 2);
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    snprintf(err, errlen, "error reading '%s'", path);
    mp_free(buf);
    return NULL;
  }
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

int mp_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
  size_t pl = strlen(path);
  char *tmp = mp_malloc(pl + 32);
  snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int rc = -1;
  if (fd < 0) {
    snprintf(err, errlen, "cannot create '%s': %s", tmp, strerror(errno));
    goto out;
  }
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
      close(fd);
      unlink(tmp);
      goto out;
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    snprintf(err, errlen, "cannot flush '%s': %s", tmp, strerror(errno));
    unlink(tmp);
    goto out;
  }
  if (rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    unlink(tmp);
    goto out;
  }
  rc = 0;
out:
  mp_free(tmp);
  return rc;
}

int mp_mkdir_p(const char *path, char *err, size_t errlen) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
    snprintf(err, errlen, "path too long: '%s'", path);
    return -1;
  }
  for (char *q = buf + 1;; q++) {
    if (*q != '/' && *q != '\0') continue;
    char c = *q;
    *q = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "cannot create '%s': %s", buf, strerror(errno));
      return -1;
    }
    *q = c;
    if (!c) break;
  }
  return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

int mp_rmtree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return 0;
  return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
