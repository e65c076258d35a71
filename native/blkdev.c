/*
 * thinp_blkdev: the block-device ioctls Node's fs lacks, for direct mode.
 *
 *   sizeOf(fd) -> number                       BLKGETSIZE64, synchronous (no I/O)
 *   sectorSize(fd) -> number                   BLKSSZGET, synchronous
 *   blockOp(op, fd, offset, length, callback(err))
 *
 * `blockOp` runs on the libuv threadpool; `op` is 0 for BLKDISCARD (give the range back to
 * the device), 1 for BLKZEROOUT (make it read zeros, writing them if need be) and 2 for
 * fallocate(PUNCH_HOLE | KEEP_SIZE) on the device (zeros by unmapping, EOPNOTSUPP where the
 * device cannot do that without writing). Offset and length must be multiples of 512. A
 * length of 0 succeeds without a system call. Errors carry `code` (the errno's name),
 * `errno` (negated, as Node's fs reports it) and `syscall`. Bad arguments throw a TypeError.
 * Node-API only, so one build serves every Node version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <node_api.h>

#define MAX_SAFE_INTEGER 9007199254740991.0

/* Returns from the calling function with NULL after a failed Node-API call. */
#define CHECK(call) \
  if ((call) != napi_ok) return NULL

enum { OP_DISCARD = 0, OP_ZEROOUT = 1, OP_PUNCH = 2 };
static const char *const OP_NAMES[] = {"BLKDISCARD", "BLKZEROOUT", "fallocate"};

/* One request: its arguments, the errno it ended with, and the pending work. */
typedef struct {
  int op;
  int fd;
  uint64_t offset;
  uint64_t length;
  int error;
  napi_ref callback;
  napi_async_work work;
} Request;

/* Reads argument `value` as a safe integer in [0, max], or throws a TypeError naming it. */
static int get_integer(napi_env env, napi_value value, const char *name, double max,
                       int64_t *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok || !isfinite(number) ||
      number < 0 || number > max || floor(number) != number) {
    char message[96];
    snprintf(message, sizeof message, "%s must be a non-negative safe integer", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return 0;
  }
  *out = (int64_t)number;
  return 1;
}

/* An Error like Node's fs errors: code, errno (negated) and syscall. */
static napi_value errno_error(napi_env env, int error, const char *syscall) {
  const char *name = strerrorname_np(error) ? strerrorname_np(error) : "UNKNOWN";
  char text[160];
  snprintf(text, sizeof text, "%s: %s, %s", name, strerror(error), syscall);
  napi_value code, message, number, call, result;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &result);
  napi_create_int32(env, -error, &number);
  napi_set_named_property(env, result, "errno", number);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &call);
  napi_set_named_property(env, result, "syscall", call);
  return result;
}

/* On a threadpool thread: no JavaScript here. */
static void execute(napi_env env, void *data) {
  (void)env;
  Request *r = data;
  if (r->length == 0) return;
  uint64_t range[2] = {r->offset, r->length};
  int result;
  do {
    switch (r->op) {
      case OP_DISCARD: result = ioctl(r->fd, BLKDISCARD, range); break;
      case OP_ZEROOUT: result = ioctl(r->fd, BLKZEROOUT, range); break;
      default:
        result = fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)r->offset,
                           (off_t)r->length);
    }
  } while (result != 0 && errno == EINTR);
  if (result != 0) r->error = errno;
}

/* Back on the JavaScript thread: builds the error, if any, and calls the callback. */
static void complete(napi_env env, napi_status status, void *data) {
  Request *r = data;
  napi_value callback, global, argument;
  napi_get_reference_value(env, r->callback, &callback);
  napi_get_global(env, &global);
  int error = status == napi_ok ? r->error : ECANCELED;
  if (error == 0) napi_get_null(env, &argument);
  else argument = errno_error(env, error, OP_NAMES[r->op]);
  napi_delete_reference(env, r->callback);
  napi_delete_async_work(env, r->work);
  free(r);
  napi_call_function(env, global, callback, 1, &argument, NULL);
}

/* blockOp(op, fd, offset, length, callback): validates, then queues the work. */
static napi_value block_op(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype type; /* missing arguments read as undefined */
  CHECK(napi_typeof(env, argv[4], &type));
  if (type != napi_function) {
    return napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callback must be a function"), NULL;
  }
  int64_t op, fd, offset, length;
  if (!get_integer(env, argv[0], "op", OP_PUNCH, &op) ||
      !get_integer(env, argv[1], "fd", INT32_MAX, &fd) ||
      !get_integer(env, argv[2], "offset", MAX_SAFE_INTEGER, &offset) ||
      !get_integer(env, argv[3], "length", MAX_SAFE_INTEGER, &length)) {
    return NULL;
  }
  if (offset % 512 != 0 || length % 512 != 0) {
    return napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                                 "offset and length must be multiples of 512"),
           NULL;
  }
  Request *r = calloc(1, sizeof *r);
  if (r == NULL) return napi_throw_error(env, "ENOMEM", "blockOp: out of memory"), NULL;
  r->op = (int)op;
  r->fd = (int)fd;
  r->offset = (uint64_t)offset;
  r->length = (uint64_t)length;
  napi_value resource_name;
  CHECK(napi_create_string_utf8(env, "thinp:blockOp", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_create_reference(env, argv[4], 1, &r->callback));
  CHECK(napi_create_async_work(env, NULL, resource_name, execute, complete, r, &r->work));
  CHECK(napi_queue_async_work(env, r->work));
  return NULL;
}

/* Runs a synchronous size ioctl on argv[0]; throws the errno error on failure. */
static napi_value size_ioctl(napi_env env, napi_callback_info info, int sector) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fd;
  if (!get_integer(env, argv[0], "fd", INT32_MAX, &fd)) return NULL;
  double value;
  if (sector) {
    int size = 0;
    if (ioctl((int)fd, BLKSSZGET, &size) != 0) {
      return napi_throw(env, errno_error(env, errno, "BLKSSZGET")), NULL;
    }
    value = size;
  } else {
    uint64_t size = 0;
    if (ioctl((int)fd, BLKGETSIZE64, &size) != 0) {
      return napi_throw(env, errno_error(env, errno, "BLKGETSIZE64")), NULL;
    }
    value = (double)size;
  }
  CHECK(napi_create_double(env, value, &result));
  return result;
}

static napi_value size_of(napi_env env, napi_callback_info info) {
  return size_ioctl(env, info, 0);
}

static napi_value sector_size(napi_env env, napi_callback_info info) {
  return size_ioctl(env, info, 1);
}

/* The module's exports: { sizeOf, sectorSize, blockOp }. */
NAPI_MODULE_INIT() {
  napi_value fn;
  CHECK(napi_create_function(env, "sizeOf", NAPI_AUTO_LENGTH, size_of, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "sizeOf", fn));
  CHECK(napi_create_function(env, "sectorSize", NAPI_AUTO_LENGTH, sector_size, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "sectorSize", fn));
  CHECK(napi_create_function(env, "blockOp", NAPI_AUTO_LENGTH, block_op, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "blockOp", fn));
  return exports;
}
