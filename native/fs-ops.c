/*
 * thinp_fs: the filesystem calls Node's fs lacks, for the archive worker that applies and
 * exports layer tars. Every call is synchronous: it runs in the worker child process, never
 * in the daemon, so blocking here blocks nobody else.
 *
 *   mknod(path, mode, major, minor)            mknod(2) of a device node or fifo
 *   lsetxattr(path, name, value)               lsetxattr(2), flags 0 (create or replace)
 *   lgetxattr(path, name) -> Buffer | null     lgetxattr(2); null when the attribute is absent
 *   llistxattr(path) -> Buffer[]               llistxattr(2): every attribute name, as bytes
 *   lutimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec)
 *                                              utimensat(2) with AT_SYMLINK_NOFOLLOW, exact ns
 *
 * Paths, names and values are Buffers (file names are bytes, not text). A failed call
 * throws an Error whose `code` is the errno's name ('ENOENT', 'ENOTSUP', ...), `errno` its
 * negated number (as Node's fs reports it) and `syscall` the call's name. Arguments of the
 * wrong type throw a TypeError. Node-API only, so one build serves every Node version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <node_api.h>

/* Returns from the calling function with NULL after a failed Node-API call. */
#define CHECK(call) \
  if ((call) != napi_ok) return NULL

/* Longest path or attribute name accepted, with its terminating NUL. */
#define MAX_STRING 8192

/* Throws the errno error of `syscall` for `err`. Always returns NULL. */
static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  const char *name = strerrorname_np(err) ? strerrorname_np(err) : "UNKNOWN";
  char text[200];
  snprintf(text, sizeof text, "%s: %s, %s", name, strerror(err), syscall);
  napi_value code, message, error, number, call;
  CHECK(napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code));
  CHECK(napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message));
  CHECK(napi_create_error(env, code, message, &error));
  CHECK(napi_create_int32(env, -err, &number));
  CHECK(napi_set_named_property(env, error, "errno", number));
  CHECK(napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &call));
  CHECK(napi_set_named_property(env, error, "syscall", call));
  napi_throw(env, error);
  return NULL;
}

/* Copies Buffer argument `value` into a NUL-terminated string, or throws a TypeError. */
static int get_string(napi_env env, napi_value value, const char *what, char *out) {
  bool is_buffer = false;
  void *data;
  size_t length;
  if (napi_is_buffer(env, value, &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, value, &data, &length) != napi_ok || length == 0 ||
      length >= MAX_STRING || memchr(data, 0, length) != NULL) {
    char message[96];
    snprintf(message, sizeof message, "%s must be a non-empty Buffer without NUL bytes", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return 0;
  }
  memcpy(out, data, length);
  out[length] = 0;
  return 1;
}

/* Reads argument `value` as an integer in [0, max], or throws a TypeError naming it. */
static int get_integer(napi_env env, napi_value value, const char *what, double max,
                       int64_t *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok || !isfinite(number) ||
      number < 0 || number > max || floor(number) != number) {
    char message[96];
    snprintf(message, sizeof message, "%s must be an integer from 0 to %.0f", what, max);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return 0;
  }
  *out = (int64_t)number;
  return 1;
}

/* mknod(path, mode, major, minor): mode carries the file type (S_IFCHR, S_IFBLK, S_IFIFO). */
static napi_value do_mknod(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[MAX_STRING];
  int64_t mode, major, minor;
  if (!get_string(env, argv[0], "path", path) ||
      !get_integer(env, argv[1], "mode", 0xffff, &mode) ||
      !get_integer(env, argv[2], "major", 0xfffff, &major) ||
      !get_integer(env, argv[3], "minor", 0xfffff, &minor)) {
    return NULL;
  }
  if (mknod(path, (mode_t)mode, makedev((unsigned)major, (unsigned)minor)) != 0) {
    return throw_errno(env, errno, "mknod");
  }
  return NULL;
}

/* lsetxattr(path, name, value). */
static napi_value do_lsetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[MAX_STRING], name[MAX_STRING];
  bool is_buffer = false;
  void *value;
  size_t length;
  if (!get_string(env, argv[0], "path", path) || !get_string(env, argv[1], "name", name)) {
    return NULL;
  }
  if (napi_is_buffer(env, argv[2], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[2], &value, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "value must be a Buffer");
    return NULL;
  }
  if (lsetxattr(path, name, value, length, 0) != 0) return throw_errno(env, errno, "lsetxattr");
  return NULL;
}

/* lgetxattr(path, name): the value as a new Buffer, or null when absent. */
static napi_value do_lgetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[MAX_STRING], name[MAX_STRING];
  if (!get_string(env, argv[0], "path", path) || !get_string(env, argv[1], "name", name)) {
    return NULL;
  }
  for (;;) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) {
      if (errno == ENODATA) return napi_get_null(env, &result), result;
      return throw_errno(env, errno, "lgetxattr");
    }
    void *data;
    CHECK(napi_create_buffer(env, (size_t)size, &data, &result));
    ssize_t got = size == 0 ? 0 : lgetxattr(path, name, data, (size_t)size);
    if (got >= 0) {
      if (got == size) return result;
      /* Shrunk in between: copy the shorter value. */
      napi_value shorter;
      CHECK(napi_create_buffer_copy(env, (size_t)got, data, NULL, &shorter));
      return shorter;
    }
    if (errno != ERANGE) return throw_errno(env, errno, "lgetxattr");
    /* Grew in between: ask again. */
  }
}

/* llistxattr(path): an array of Buffers, one per attribute name. */
static napi_value do_llistxattr(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[MAX_STRING];
  if (!get_string(env, argv[0], "path", path)) return NULL;
  for (;;) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size < 0) return throw_errno(env, errno, "llistxattr");
    char *list = malloc(size == 0 ? 1 : (size_t)size);
    if (list == NULL) return throw_errno(env, ENOMEM, "llistxattr");
    ssize_t got = size == 0 ? 0 : llistxattr(path, list, (size_t)size);
    if (got < 0) {
      int err = errno;
      free(list);
      if (err == ERANGE) continue; /* grew in between: ask again */
      return throw_errno(env, err, "llistxattr");
    }
    if (napi_create_array(env, &result) != napi_ok) return free(list), NULL;
    uint32_t index = 0;
    for (ssize_t at = 0; at < got;) {
      size_t length = strnlen(list + at, (size_t)(got - at));
      napi_value name;
      if (napi_create_buffer_copy(env, length, list + at, NULL, &name) != napi_ok ||
          napi_set_element(env, result, index++, name) != napi_ok) {
        free(list);
        return NULL;
      }
      at += (ssize_t)length + 1;
    }
    free(list);
    return result;
  }
}

/* lutimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec): never follows a symlink. */
static napi_value do_lutimes(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[MAX_STRING];
  int64_t asec, ansec, msec, mnsec;
  if (!get_string(env, argv[0], "path", path) ||
      !get_integer(env, argv[1], "atimeSec", 9007199254740991.0, &asec) ||
      !get_integer(env, argv[2], "atimeNsec", 999999999, &ansec) ||
      !get_integer(env, argv[3], "mtimeSec", 9007199254740991.0, &msec) ||
      !get_integer(env, argv[4], "mtimeNsec", 999999999, &mnsec)) {
    return NULL;
  }
  struct timespec times[2] = {{.tv_sec = asec, .tv_nsec = ansec},
                              {.tv_sec = msec, .tv_nsec = mnsec}};
  if (utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0) {
    return throw_errno(env, errno, "utimensat");
  }
  return NULL;
}

/* The module's exports. */
NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback callback;
  } functions[] = {{"mknod", do_mknod},
                   {"lsetxattr", do_lsetxattr},
                   {"lgetxattr", do_lgetxattr},
                   {"llistxattr", do_llistxattr},
                   {"lutimes", do_lutimes}};
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    CHECK(napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].callback,
                               NULL, &fn));
    CHECK(napi_set_named_property(env, exports, functions[i].name, fn));
  }
  return exports;
}
