/*
 * thinp_nowait: positional reads and writes that never wait for the disk, for the data
 * path of loop mode, and the readahead advice of the data path's descriptors.
 *
 *   readNowait(fd, buffer, offset) -> number
 *   writeNowait(fd, buffer, offset) -> number
 *   adviseRandom(fd) -> 0 | -errno
 *
 * Each is one preadv2/pwritev2 with RWF_NOWAIT, run synchronously on the calling thread:
 * the kernel copies from or into the page cache when it can do so without blocking, and
 * refuses (EAGAIN) when the data is not cached, a page is locked, or the filesystem would
 * have to wait. The result is the number of bytes transferred (possibly fewer than asked,
 * 0 at the end of the file), or a negated errno (-EAGAIN, -EOPNOTSUPP where the kernel or
 * filesystem does not offer RWF_NOWAIT, or any other failure): the caller then does the
 * rest through the threadpool, which blocks safely and reports errors in full. `buffer` is
 * any Uint8Array (a Buffer or a view of one); `offset` a non-negative safe integer. Bad
 * arguments throw a TypeError.
 *
 * `adviseRandom` is posix_fadvise(POSIX_FADV_RANDOM) over the whole file: the kernel's
 * readahead off for reads through this open file description (other descriptors of the
 * file keep theirs). It only sets a flag, so it runs on the calling thread. Node-API only,
 * so one build serves every Node version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <sys/uio.h>
#include <node_api.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

#define MAX_SAFE_INTEGER 9007199254740991.0

/* Reads the three arguments, or throws a TypeError and returns 0. */
static int get_args(napi_env env, napi_callback_info info, int *fd, struct iovec *iov,
                    off_t *offset) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  int32_t f;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &f) != napi_ok || f < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a non-negative integer");
    return 0;
  }
  bool is_typed;
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_is_typedarray(env, argv[1], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "buffer must be a Uint8Array");
    return 0;
  }
  double number;
  if (napi_get_value_double(env, argv[2], &number) != napi_ok || !isfinite(number) ||
      number < 0 || number > MAX_SAFE_INTEGER || floor(number) != number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "offset must be a non-negative safe integer");
    return 0;
  }
  *fd = f;
  iov->iov_base = data;
  iov->iov_len = length;
  *offset = (off_t)number;
  return 1;
}

static napi_value result(napi_env env, ssize_t n) {
  napi_value value;
  if (napi_create_double(env, n < 0 ? (double)-errno : (double)n, &value) != napi_ok) return NULL;
  return value;
}

static napi_value read_nowait(napi_env env, napi_callback_info info) {
  int fd;
  struct iovec iov;
  off_t offset;
  if (!get_args(env, info, &fd, &iov, &offset)) return NULL;
  if (iov.iov_len == 0) return result(env, 0);
  ssize_t n;
  do n = preadv2(fd, &iov, 1, offset, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  return result(env, n);
}

static napi_value write_nowait(napi_env env, napi_callback_info info) {
  int fd;
  struct iovec iov;
  off_t offset;
  if (!get_args(env, info, &fd, &iov, &offset)) return NULL;
  if (iov.iov_len == 0) return result(env, 0);
  ssize_t n;
  do n = pwritev2(fd, &iov, 1, offset, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  return result(env, n);
}

static napi_value advise_random(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a non-negative integer");
    return NULL;
  }
  /* posix_fadvise returns the error number itself; errno is left alone. */
  int err = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  napi_value value;
  if (napi_create_int32(env, -err, &value) != napi_ok) return NULL;
  return value;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"readNowait", NULL, read_nowait, NULL, NULL, NULL, napi_default, NULL},
      {"writeNowait", NULL, write_nowait, NULL, NULL, NULL, napi_default, NULL},
      {"adviseRandom", NULL, advise_random, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, 3, props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
