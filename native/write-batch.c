/*
 * thinp_batch: several positional writes to one file as one piece of threadpool work, for
 * the data path of loop mode. Each threadpool round trip wakes a thread and is answered
 * through the event loop; a batch pays that once for all its writes.
 *
 *   writeBatch(fd, buffers, offsets, callback(results), align?)
 *
 * `buffers` is an array of Uint8Array, `offsets` an array of non-negative safe integers of
 * the same length. On a threadpool thread each buffer is written whole at its offset with
 * pwrite (looping over short writes and EINTR), in order. `results[i]` is then the bytes
 * written (the buffer's length), or a negated errno where a write failed (-EIO when the
 * kernel made no progress). The caller keeps the buffers alive until the callback. Bad
 * arguments throw a TypeError. Node-API only, so one build serves every Node version.
 *
 * With `align` (a power of two up to 1 MiB), `fd` is open with O_DIRECT and the caller has
 * put every offset and length on a multiple of `align`; the memory need not be aligned
 * (Node's buffers are not). The writes are then taken in order of offset, neighbours merged
 * into runs of up to 1 MiB (writes in flight together never overlap, so the order among
 * them is free), and each run is copied into the thread's own aligned buffer of 1 MiB (kept
 * for the thread's life) and written from it with one pwrite: a copy into memory already
 * touched, where the page cache would take a fresh page per 4 KiB. Every write of a run
 * gets the run's result: its length, or the run's negated errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <node_api.h>

#define MAX_SAFE_INTEGER 9007199254740991.0
/* The most bytes a run of O_DIRECT writes holds, and the size of a thread's bounce buffer. */
#define RUN_BYTES (1024 * 1024)

/* Returns from the calling function with NULL after a failed Node-API call. */
#define CHECK(call) \
  if ((call) != napi_ok) return NULL

typedef struct {
  const uint8_t *data;
  size_t length;
  off_t offset;
  double result;
} Item;

typedef struct {
  int fd;
  uint32_t count;
  /* 0: plain pwrite, one by one; otherwise O_DIRECT's alignment (see the top). */
  uint32_t align;
  Item *items;
  /* With `align`: the items in order of offset, sorted on the threadpool thread. */
  Item **order;
  napi_ref callback;
  napi_async_work work;
} Batch;

static napi_value type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

/* One whole write: the bytes written, or a negated errno. */
static double write_all(int fd, const Item *item) {
  size_t done = 0;
  while (done < item->length) {
    ssize_t n = pwrite(fd, item->data + done, item->length - done, item->offset + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -(double)errno;
    if (n == 0) return -(double)EIO;
    done += (size_t)n;
  }
  return (double)done;
}

/* This thread's aligned buffer of RUN_BYTES for O_DIRECT runs, made on first use. */
static __thread uint8_t *bounce;

static int by_offset(const void *a, const void *b) {
  off_t x = (*(Item *const *)a)->offset, y = (*(Item *const *)b)->offset;
  return (x > y) - (x < y);
}

/* Writes `length` bytes from `data` at `offset`: the bytes written, or a negated errno. */
static double pwrite_all(int fd, const uint8_t *data, size_t length, off_t offset) {
  Item item = {data, length, offset, 0};
  return write_all(fd, &item);
}

/* Writes the run `run[0..count)` (neighbours, in order) through the bounce buffer. */
static double write_bounced(int fd, Item **run, uint32_t count, size_t total) {
  if (bounce == NULL && posix_memalign((void **)&bounce, RUN_BYTES, RUN_BYTES) != 0) {
    bounce = NULL;
    return -(double)ENOMEM;
  }
  off_t offset = run[0]->offset;
  size_t filled = 0, written = 0;
  for (uint32_t i = 0; i < count; i++) {
    for (size_t at = 0; at < run[i]->length;) {
      size_t part = run[i]->length - at;
      if (part > RUN_BYTES - filled) part = RUN_BYTES - filled;
      memcpy(bounce + filled, run[i]->data + at, part);
      filled += part;
      at += part;
      if (filled < RUN_BYTES) continue;
      double r = pwrite_all(fd, bounce, filled, offset + (off_t)written);
      if (r < 0) return r;
      written += filled;
      filled = 0;
    }
  }
  if (filled > 0) {
    double r = pwrite_all(fd, bounce, filled, offset + (off_t)written);
    if (r < 0) return r;
    written += filled;
  }
  return written == total ? (double)total : -(double)EIO;
}

/* The writes through O_DIRECT: in order of offset, neighbours merged into runs. */
static void write_direct(Batch *b) {
  for (uint32_t i = 0; i < b->count; i++) b->order[i] = &b->items[i];
  qsort(b->order, b->count, sizeof *b->order, by_offset);
  for (uint32_t i = 0; i < b->count;) {
    Item **run = &b->order[i];
    size_t total = run[0]->length;
    uint32_t n = 1;
    while (i + n < b->count && run[n]->offset == run[n - 1]->offset + (off_t)run[n - 1]->length &&
           total + run[n]->length <= RUN_BYTES) {
      total += run[n]->length;
      n++;
    }
    double r = write_bounced(b->fd, run, n, total);
    for (uint32_t k = 0; k < n; k++) run[k]->result = r < 0 ? r : (double)run[k]->length;
    i += n;
  }
}

/* On a threadpool thread: no JavaScript here. */
static void execute(napi_env env, void *data) {
  (void)env;
  Batch *b = data;
  if (b->align != 0) {
    write_direct(b);
    return;
  }
  for (uint32_t i = 0; i < b->count; i++) b->items[i].result = write_all(b->fd, &b->items[i]);
}

static void free_batch(napi_env env, Batch *b) {
  if (b->callback != NULL) napi_delete_reference(env, b->callback);
  if (b->work != NULL) napi_delete_async_work(env, b->work);
  free(b->items);
  free(b->order);
  free(b);
}

/* Back on the JavaScript thread: calls the callback with the results. */
static void complete(napi_env env, napi_status status, void *data) {
  Batch *b = data;
  napi_value callback, global, results, value;
  napi_get_reference_value(env, b->callback, &callback);
  napi_get_global(env, &global);
  napi_create_array_with_length(env, b->count, &results);
  for (uint32_t i = 0; i < b->count; i++) {
    double r = status == napi_ok ? b->items[i].result : -(double)ECANCELED;
    napi_create_double(env, r, &value);
    napi_set_element(env, results, i, value);
  }
  free_batch(env, b);
  napi_call_function(env, global, callback, 1, &results, NULL);
}

/* Reads item `i` of the two arrays into `item`, or throws a TypeError and returns 0. */
static int get_item(napi_env env, napi_value buffers, napi_value offsets, uint32_t i,
                    Item *item) {
  napi_value buffer, offset;
  bool is_typed;
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_element(env, buffers, i, &buffer) != napi_ok ||
      napi_is_typedarray(env, buffer, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, buffer, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    type_error(env, "buffers must hold Uint8Arrays");
    return 0;
  }
  double number;
  if (napi_get_element(env, offsets, i, &offset) != napi_ok ||
      napi_get_value_double(env, offset, &number) != napi_ok || !isfinite(number) ||
      number < 0 || number > MAX_SAFE_INTEGER || floor(number) != number) {
    type_error(env, "offsets must hold non-negative safe integers");
    return 0;
  }
  item->data = data;
  item->length = length;
  item->offset = (off_t)number;
  return 1;
}

/* writeBatch(fd, buffers, offsets, callback, align?): validates, then queues the work. */
static napi_value write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    return type_error(env, "fd must be a non-negative integer");
  }
  bool is_array, offsets_array;
  uint32_t count, offsets_count;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_is_array(env, argv[2], &offsets_array) != napi_ok || !offsets_array ||
      napi_get_array_length(env, argv[1], &count) != napi_ok ||
      napi_get_array_length(env, argv[2], &offsets_count) != napi_ok || count != offsets_count) {
    return type_error(env, "buffers and offsets must be arrays of the same length");
  }
  napi_valuetype type;
  CHECK(napi_typeof(env, argv[3], &type));
  if (type != napi_function) return type_error(env, "callback must be a function");
  uint32_t align = 0;
  if (argc >= 5) {
    CHECK(napi_typeof(env, argv[4], &type));
    if (type != napi_undefined &&
        (napi_get_value_uint32(env, argv[4], &align) != napi_ok || align > RUN_BYTES ||
         (align & (align - 1)) != 0)) {
      return type_error(env, "align must be a power of two up to 1 MiB");
    }
  }
  Batch *b = calloc(1, sizeof *b);
  Item *items = calloc(count > 0 ? count : 1, sizeof *items);
  Item **order = align != 0 ? calloc(count > 0 ? count : 1, sizeof *order) : NULL;
  if (b == NULL || items == NULL || (align != 0 && order == NULL)) {
    free(b);
    free(items);
    free(order);
    napi_throw_error(env, "ENOMEM", "writeBatch: out of memory");
    return NULL;
  }
  b->fd = fd;
  b->count = count;
  b->align = align;
  b->items = items;
  b->order = order;
  for (uint32_t i = 0; i < count; i++) {
    if (!get_item(env, argv[1], argv[2], i, &items[i])) {
      free_batch(env, b);
      return NULL;
    }
  }
  napi_value name;
  if (napi_create_reference(env, argv[3], 1, &b->callback) != napi_ok ||
      napi_create_string_utf8(env, "thinp.writeBatch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, b, &b->work) != napi_ok ||
      napi_queue_async_work(env, b->work) != napi_ok) {
    free_batch(env, b);
    napi_throw_error(env, NULL, "writeBatch: cannot queue the work");
    return NULL;
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"writeBatch", NULL, write_batch, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, 1, props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
