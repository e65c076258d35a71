/*
 * thinp_native: the one system call Node's fs lacks, fallocate(2), used to punch holes.
 *
 *   punchHole(fd, offset, length, callback(err))
 *
 * runs fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) on the
 * libuv threadpool and calls back with null, or with an Error whose `code` is the errno's
 * name ('EOPNOTSUPP', 'EBADF', ...), `errno` its negated number (as Node's fs reports it)
 * and `syscall` 'fallocate'. A length of 0 succeeds without a system call. Arguments that
 * are not non-negative safe integers, or a callback that is not a function, throw a
 * TypeError. Node-API only, so one build serves every Node version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>

#define MAX_SAFE_INTEGER 9007199254740991.0

/* Returns from the calling function with NULL after a failed Node-API call. */
#define CHECK(call) \
  if ((call) != napi_ok) return NULL

/* One request: its arguments, the errno it ended with, and the pending work. */
typedef struct {
  int fd;
  int64_t offset;
  int64_t length;
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

/* On a threadpool thread: no JavaScript here. */
static void execute(napi_env env, void *data) {
  (void)env;
  Request *request = data;
  if (request->length == 0) return;
  int flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  while (fallocate(request->fd, flags, request->offset, request->length) != 0) {
    if (errno != EINTR) {
      request->error = errno;
      return;
    }
  }
}

/* Back on the JavaScript thread: builds the error, if any, and calls the callback. */
static void complete(napi_env env, napi_status status, void *data) {
  Request *request = data;
  napi_value callback, global, argument;
  napi_get_reference_value(env, request->callback, &callback);
  napi_get_global(env, &global);
  int error = status == napi_ok ? request->error : ECANCELED;
  if (error == 0) {
    napi_get_null(env, &argument);
  } else {
    const char *name = strerrorname_np(error) ? strerrorname_np(error) : "UNKNOWN";
    char text[160];
    snprintf(text, sizeof text, "%s: %s, fallocate", name, strerror(error));
    napi_value code, message, number, syscall;
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &argument);
    napi_create_int32(env, -error, &number);
    napi_set_named_property(env, argument, "errno", number);
    napi_create_string_utf8(env, "fallocate", NAPI_AUTO_LENGTH, &syscall);
    napi_set_named_property(env, argument, "syscall", syscall);
  }
  napi_delete_reference(env, request->callback);
  napi_delete_async_work(env, request->work);
  free(request);
  napi_call_function(env, global, callback, 1, &argument, NULL);
}

/* punchHole(fd, offset, length, callback): validates, then queues the work. */
static napi_value punch_hole(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype type; /* missing arguments read as undefined */
  CHECK(napi_typeof(env, argv[3], &type));
  if (type != napi_function) {
    return napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callback must be a function"), NULL;
  }
  int64_t fd, offset, length;
  if (!get_integer(env, argv[0], "fd", INT32_MAX, &fd) ||
      !get_integer(env, argv[1], "offset", MAX_SAFE_INTEGER, &offset) ||
      !get_integer(env, argv[2], "length", MAX_SAFE_INTEGER, &length)) {
    return NULL;
  }
  Request *request = calloc(1, sizeof *request);
  if (request == NULL) return napi_throw_error(env, "ENOMEM", "punchHole: out of memory"), NULL;
  request->fd = (int)fd;
  request->offset = offset;
  request->length = length;
  /* These fail only when the engine is out of memory, and then have thrown already. */
  napi_value resource_name;
  CHECK(napi_create_string_utf8(env, "thinp:punchHole", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_create_reference(env, argv[3], 1, &request->callback));
  CHECK(napi_create_async_work(env, NULL, resource_name, execute, complete, request,
                               &request->work));
  CHECK(napi_queue_async_work(env, request->work));
  return NULL;
}

/* The module's exports: { punchHole }. */
NAPI_MODULE_INIT() {
  napi_value fn;
  CHECK(napi_create_function(env, "punchHole", NAPI_AUTO_LENGTH, punch_hole, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "punchHole", fn));
  return exports;
}
