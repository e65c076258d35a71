/*
 * thinp_sender: the sending side of one NBD connection's socket, in native threads, so that
 * the copies of read replies (out of the page cache, into the socket) run beside the event
 * loop instead of on it. The event loop keeps the requests: framing, validation, the
 * metadata lookups; it hands over each read reply as a header and a list of pieces of
 * files, and every other reply as bytes.
 *
 *   open(fd, onDone) -> sender              dup()s the socket `fd`; starts its writer thread
 *   send(sender, bytes, tag) -> 0 | 1 | -errno
 *   sendRead(sender, header, pieces, count, tag, atOnce) -> 0 | 1 | 2 | -errno
 *   close(sender, abort)
 *   awaitInput(sender, buf, budgetUs) -> bytes | 0 | -errno
 *   sendBuffer(sender) -> bytes            the socket's send buffer (SO_SNDBUF), or -errno
 *
 * `send` writes `bytes` (one whole reply) to the socket at once when nobody else is writing
 * and the socket takes it all (0: done, nothing more will be said of it); otherwise it keeps
 * a copy and returns 1, and `onDone` is told of `tag` once the bytes are written or dropped.
 *
 * `sendRead` sends `header` followed by the bytes of `count` pieces, `pieces` holding a
 * triple (fd, offset, length) per piece; fd -1 stands for `length` zero bytes, and bytes past
 * the end of a file read as zeros. With `atOnce` it first tries on the calling thread: each
 * piece read with RWF_NOWAIT (from the page cache only, never waiting), then the reply sent
 * as `send` does: 0 means the reply is on the socket, 2 that it waits in the outbox with
 * its bytes read (the files are done with; `onDone` reports `tag` later). Otherwise the
 * reply is queued for a reader thread (1): the files are read there, with blocking reads,
 * and the caller must keep every fd open until `onDone` reports `tag`. A read that fails is
 * not sent: its result is the negated errno, at once (atOnce) or through `onDone`, and the
 * caller replies with the error itself. -EPIPE and -ECANCELED at once: the sender is broken
 * or closed, and nothing was queued.
 *
 * `onDone(results)` runs on the JavaScript thread with a Float64Array of pairs (tag,
 * result): result 0 when the reply reached the socket, a negated errno when a read failed,
 * -EPIPE when the socket failed (everything after that fails alike), -ECANCELED when the
 * sender was closed first. Replies are never interleaved: each goes to the socket whole,
 * from whichever thread writes, but replies may go out in any order (NBD allows it).
 *
 * Threads. Reader threads (two, shared by all senders, started with the first) read the
 * pieces of queued replies. A sender's writer thread takes over the socket whenever a write
 * would block, and waits for it with poll(); a reply ready on any other thread is written by
 * that thread when the socket is free (one sendmsg of as many replies as are ready), so at
 * depth one no thread hand-off happens at all. Locks: the readers' queue has `queue_mu`; each
 * sender's outbox, flags and completions have the sender's `mu`; neither is held while the
 * other is taken, nor across a system call that can block. `spare_mu` (the reply buffers
 * kept for reuse) may be taken under either and takes nothing else.
 *
 * `awaitInput` is the one call on the receiving side: it polls the socket for input on the
 * calling thread, without sleeping, for at most `budgetUs` microseconds (see
 * src/nbd/input-poll.ts for when the connection does so), and reads what arrives into `buf`.
 *
 * `open` widens the send buffer of a UNIX socket to SEND_BUFFER (forced where the process may,
 * else as far as net.core.wmem_max allows; the kernel counts twice the value, 2 MiB): a 1 MiB
 * read reply then goes out in one sendmsg and one wake-up of the client, where with the
 * default buffer (212,992 bytes) the writer sleeps and is woken again each time the client
 * has drained it. Not more: at 4 MiB (8 as counted) 1 MiB reads at depth 32 ran slower than
 * with the default, their bytes no longer in the CPU's caches when the client copies them.
 * TCP sockets keep the kernel's own tuning of their buffers, which a fixed size turns off.
 *
 * `close` stops the sender: with `abort`, replies not yet written are dropped (-ECANCELED)
 * and the socket is shut down; without, what is queued is still written. The writer thread
 * then closes the duplicate fd and the sender is freed once `onDone` has been told of every
 * tag. The caller must not use the sender after `close`. Node-API only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <node_api.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

#define READERS 2
#define SEND_BUFFER (1024 * 1024)
#define MAX_IOV 64
#define MAX_HEADER 64
#define MAX_SAFE_INTEGER 9007199254740991.0

typedef struct piece {
  int fd;
  off_t offset;
  size_t length;
} Piece;

typedef struct sender Sender;

/* One reply: queued for a reader (pieces), or ready in the outbox (buf). */
typedef struct job {
  struct job *next;
  Sender *sender;
  double tag;
  Piece *pieces;
  uint32_t count;
  size_t header;
  char *buf;
  /* What `buf` can hold (see take_buffer). */
  size_t capacity;
  size_t length;
  size_t sent;
  /* Sent while corked: no completion unless it is still waiting at the uncork. */
  int quiet;
} Job;

struct sender {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int fd;
  int closing;
  int aborted;
  int broken;
  /* A thread owns the socket's sending side; `handoff`: that owner is the writer thread. */
  int writing;
  int handoff;
  /* The event loop is gathering a burst's replies (see `cork`). */
  int corked;
  /* Replies at readers (queued or being read). */
  int reading;
  Job *out_head;
  Job *out_tail;
  double *done;
  size_t done_count;
  size_t done_cap;
  int call_pending;
  napi_threadsafe_function tsfn;
};

static pthread_mutex_t queue_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cv = PTHREAD_COND_INITIALIZER;
static Job *queue_head;
static Job *queue_tail;
static int readers_started;

/*
 * Large reply buffers, kept once sent for the replies that follow. A fresh buffer of a
 * megabyte is memory the kernel maps and zeroes page by page on the first copy into it
 * (malloc takes it from mmap, or from a heap it trims again once the buffer is freed): at
 * 1 MiB reads and queue depth 32 those faults were a sixth of the CPU, more than the copy
 * into the socket. Buffers of SPARE_MIN bytes or more are allocated in multiples of
 * SPARE_STEP and kept, up to SPARE_MAX_BYTES for the whole process, on a list that the
 * buffer's own first bytes link; a reply takes one of exactly its rounded size. `spare_mu`
 * protects the list; it is taken last (a job may be freed under `queue_mu` or its sender's
 * `mu`), takes nothing else, and is held only to link or unlink.
 */
#define SPARE_MIN (64 * 1024)
#define SPARE_STEP (64 * 1024)
#define SPARE_MAX_BYTES ((size_t)64 << 20)

typedef struct spare {
  struct spare *next;
  size_t capacity;
} Spare;

static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static Spare *spares;
static size_t spare_bytes;

/* A buffer of at least `length` bytes; its capacity in *capacity (for `give_buffer`). */
static char *take_buffer(size_t length, size_t *capacity) {
  if (length < SPARE_MIN) {
    *capacity = length;
    return malloc(length > 0 ? length : 1);
  }
  size_t want = (length + SPARE_STEP - 1) / SPARE_STEP * SPARE_STEP;
  *capacity = want;
  pthread_mutex_lock(&spare_mu);
  for (Spare **at = &spares; *at != NULL; at = &(*at)->next) {
    Spare *found = *at;
    if (found->capacity != want) continue;
    *at = found->next;
    spare_bytes -= want;
    pthread_mutex_unlock(&spare_mu);
    return (char *)found;
  }
  pthread_mutex_unlock(&spare_mu);
  return malloc(want);
}

/* Keeps `buf` (of `capacity` bytes, from `take_buffer`) for reuse, or frees it. */
static void give_buffer(char *buf, size_t capacity) {
  if (buf == NULL) return;
  if (capacity >= SPARE_MIN) {
    pthread_mutex_lock(&spare_mu);
    if (spare_bytes + capacity <= SPARE_MAX_BYTES) {
      Spare *kept = (Spare *)buf;
      kept->capacity = capacity;
      kept->next = spares;
      spares = kept;
      spare_bytes += capacity;
      pthread_mutex_unlock(&spare_mu);
      return;
    }
    pthread_mutex_unlock(&spare_mu);
  }
  free(buf);
}

static void free_job(Job *job) {
  free(job->pieces);
  give_buffer(job->buf, job->capacity);
  free(job);
}

/* Records the end of `tag` and makes sure `onDone` will run. Holds s->mu. */
static void complete(Sender *s, double tag, double result) {
  if (s->done_count + 2 > s->done_cap) {
    size_t cap = s->done_cap == 0 ? 64 : s->done_cap * 2;
    double *grown = realloc(s->done, cap * sizeof(double));
    if (grown == NULL) abort();
    s->done = grown;
    s->done_cap = cap;
  }
  s->done[s->done_count++] = tag;
  s->done[s->done_count++] = result;
  if (!s->call_pending) {
    s->call_pending = 1;
    napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking);
  }
}

/* Drops every reply in the outbox with `result`. Holds s->mu. */
static void fail_outbox(Sender *s, double result) {
  while (s->out_head != NULL) {
    Job *job = s->out_head;
    s->out_head = job->next;
    if (!job->quiet) complete(s, job->tag, result);
    free_job(job);
  }
  s->out_tail = NULL;
}

static void append(Sender *s, Job *job) {
  job->next = NULL;
  if (s->out_tail == NULL) s->out_head = job;
  else s->out_tail->next = job;
  s->out_tail = job;
}

/*
 * Writes the outbox while holding the send side (s->writing); called and returns with
 * s->mu held. One sendmsg per round, of up to MAX_IOV replies. Returns 1 when the outbox is
 * empty, 0 when the socket is full (EAGAIN), -1 when the sender broke or was aborted.
 */
static int drain(Sender *s) {
  while (s->out_head != NULL) {
    if (s->aborted || s->broken) return -1;
    struct iovec iov[MAX_IOV];
    int n = 0;
    for (Job *job = s->out_head; job != NULL && n < MAX_IOV; job = job->next, n++) {
      iov[n].iov_base = job->buf + job->sent;
      iov[n].iov_len = job->length - job->sent;
    }
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    int fd = s->fd;
    pthread_mutex_unlock(&s->mu);
    ssize_t wrote;
    do wrote = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (wrote < 0 && errno == EINTR);
    int err = errno;
    pthread_mutex_lock(&s->mu);
    if (wrote < 0) {
      if (err == EAGAIN || err == EWOULDBLOCK) return 0;
      s->broken = 1;
      return -1;
    }
    size_t left = (size_t)wrote;
    while (left > 0) {
      Job *job = s->out_head;
      size_t rest = job->length - job->sent;
      if (left < rest) {
        job->sent += left;
        break;
      }
      left -= rest;
      s->out_head = job->next;
      if (s->out_head == NULL) s->out_tail = NULL;
      if (!job->quiet) complete(s, job->tag, 0);
      free_job(job);
    }
  }
  return 1;
}

/*
 * Writes the outbox from this thread, which has just taken the send side (s->writing); on a
 * full socket the send side goes to the writer thread, on a failure the outbox is dropped.
 * Holds s->mu.
 */
static void write_out(Sender *s) {
  int r = drain(s);
  if (r == 1) {
    s->writing = 0;
  } else if (r < 0) {
    fail_outbox(s, s->aborted ? -ECANCELED : -EPIPE);
    s->writing = 0;
    pthread_cond_signal(&s->cv);
  } else {
    s->handoff = 1;
    pthread_cond_signal(&s->cv);
  }
}

/*
 * Puts `job` (its bytes ready) in the outbox and, when nobody holds the send side, writes
 * the outbox from this thread; a write that would block hands the send side to the writer
 * thread. Holds s->mu.
 */
static void deliver(Sender *s, Job *job) {
  if (s->aborted) {
    complete(s, job->tag, -ECANCELED);
    free_job(job);
    return;
  }
  if (s->broken) {
    complete(s, job->tag, -EPIPE);
    free_job(job);
    return;
  }
  append(s, job);
  if (s->writing) return;
  s->writing = 1;
  write_out(s);
}

/* The writer thread: the send side when a write would block; closes the socket at the end. */
static void *writer_main(void *arg) {
  Sender *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->handoff) {
      int r = drain(s);
      if (r == 0) {
        int fd = s->fd;
        pthread_mutex_unlock(&s->mu);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, 200);
        pthread_mutex_lock(&s->mu);
        continue;
      }
      if (r < 0) fail_outbox(s, s->aborted ? -ECANCELED : -EPIPE);
      s->handoff = 0;
      s->writing = 0;
      continue;
    }
    if (s->closing && s->reading == 0 && !s->writing &&
        (s->out_head == NULL || s->aborted || s->broken)) {
      break;
    }
    pthread_cond_wait(&s->cv, &s->mu);
  }
  fail_outbox(s, s->aborted ? -ECANCELED : -EPIPE);
  close(s->fd);
  s->fd = -1;
  napi_threadsafe_function tsfn = s->tsfn;
  pthread_mutex_unlock(&s->mu);
  /* The last touch of `s` from this thread: the finalizer frees it on the event loop. */
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

/* Reads one piece into `dst` with `flags`; bytes past the end read as zeros. */
static int read_piece(const Piece *p, char *dst, int flags) {
  if (p->fd < 0) {
    memset(dst, 0, p->length);
    return 0;
  }
  size_t done = 0;
  while (done < p->length) {
    struct iovec iov = {.iov_base = dst + done, .iov_len = p->length - done};
    ssize_t n = preadv2(p->fd, &iov, 1, p->offset + (off_t)done, flags);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) {
      memset(dst + done, 0, p->length - done);
      break;
    }
    done += (size_t)n;
  }
  return 0;
}

/* Reads every piece of `job` into its buffer, after the header. */
static int read_pieces(Job *job, int flags) {
  char *at = job->buf + job->header;
  for (uint32_t i = 0; i < job->count; i++) {
    int r = read_piece(&job->pieces[i], at, flags);
    if (r < 0) return r;
    at += job->pieces[i].length;
  }
  return 0;
}

static void *reader_main(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&queue_mu);
    while (queue_head == NULL) pthread_cond_wait(&queue_cv, &queue_mu);
    Job *job = queue_head;
    queue_head = job->next;
    if (queue_head == NULL) queue_tail = NULL;
    pthread_mutex_unlock(&queue_mu);

    Sender *s = job->sender;
    pthread_mutex_lock(&s->mu);
    int skip = s->aborted || s->broken;
    pthread_mutex_unlock(&s->mu);
    int r = skip ? 0 : read_pieces(job, 0);
    free(job->pieces);
    job->pieces = NULL;
    pthread_mutex_lock(&s->mu);
    s->reading--;
    if (r < 0) {
      complete(s, job->tag, r);
      free_job(job);
    } else {
      deliver(s, job);
    }
    if (s->closing) pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
  return NULL;
}

/* Starts a thread with every signal blocked (signals belong to the event loop's thread). */
static int start_thread(void *(*main)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int r = pthread_create(&thread, &attr, main, arg);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return r;
}

/* ---- the JavaScript side ---------------------------------------------------------------- */

static napi_value type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

static napi_value number(napi_env env, double value) {
  napi_value out;
  if (napi_create_double(env, value, &out) != napi_ok) return NULL;
  return out;
}

/* Runs on the event loop: hands the completions gathered so far to `onDone`. */
static void call_js(napi_env env, napi_value on_done, void *context, void *data) {
  (void)data;
  Sender *s = context;
  pthread_mutex_lock(&s->mu);
  size_t count = s->done_count;
  double *taken = s->done;
  s->done = NULL;
  s->done_count = 0;
  s->done_cap = 0;
  s->call_pending = 0;
  pthread_mutex_unlock(&s->mu);
  if (env != NULL && count > 0) {
    napi_value buffer, array, undefined;
    void *bytes;
    if (napi_create_arraybuffer(env, count * sizeof(double), &bytes, &buffer) == napi_ok &&
        napi_create_typedarray(env, napi_float64_array, count, buffer, 0, &array) == napi_ok &&
        napi_get_undefined(env, &undefined) == napi_ok) {
      memcpy(bytes, taken, count * sizeof(double));
      napi_call_function(env, undefined, on_done, 1, &array, NULL);
    }
  }
  free(taken);
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Sender *s = data;
  free(s->done);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}

static Sender *get_sender(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    type_error(env, "sender must be a value returned by open()");
    return NULL;
  }
  return data;
}

/* The arguments (sender, flag) of `usage`, or NULL with a TypeError thrown. */
static Sender *sender_and_flag(napi_env env, napi_callback_info info, const char *usage,
                               bool *flag) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) {
    type_error(env, usage);
    return NULL;
  }
  Sender *s = get_sender(env, argv[0]);
  if (s == NULL) return NULL;
  if (napi_get_value_bool(env, argv[1], flag) != napi_ok) {
    type_error(env, usage);
    return NULL;
  }
  return s;
}

static int get_bytes(napi_env env, napi_value value, char **data, size_t *length) {
  bool is_typed;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, length, (void **)data, NULL, NULL) !=
          napi_ok ||
      type != napi_uint8_array) {
    return 0;
  }
  return 1;
}

static int is_offset(double v) {
  return isfinite(v) && v >= 0 && v <= MAX_SAFE_INTEGER && floor(v) == v;
}

/* Widens the send buffer of a UNIX socket (see the top); anything else is left alone. */
static void widen_send_buffer(int fd) {
  struct sockaddr_storage addr;
  socklen_t length = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &length) != 0 || addr.ss_family != AF_UNIX) {
    return;
  }
  int want = SEND_BUFFER;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) == 0) return;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd;
  napi_valuetype kind;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    return type_error(env, "fd must be a non-negative integer");
  }
  if (napi_typeof(env, argv[1], &kind) != napi_ok || kind != napi_function) {
    return type_error(env, "onDone must be a function");
  }
  pthread_mutex_lock(&queue_mu);
  if (!readers_started) {
    for (int i = 0; i < READERS; i++) {
      if (start_thread(reader_main, NULL) != 0) break;
      readers_started++;
    }
  }
  int readers = readers_started;
  pthread_mutex_unlock(&queue_mu);
  if (readers == 0) {
    napi_throw_error(env, "EAGAIN", "cannot start the reader threads of the reply sender");
    return NULL;
  }
  Sender *s = calloc(1, sizeof(Sender));
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (s->fd < 0) {
    int err = errno;
    free(s);
    napi_throw_error(env, "EBADF", strerror(err));
    return NULL;
  }
  widen_send_buffer(s->fd);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  napi_value name;
  napi_create_string_utf8(env, "thinp reply sender", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, s, finalize, s, call_js,
                                      &s->tsfn) != napi_ok) {
    close(s->fd);
    free(s);
    return NULL;
  }
  /* Pending completions must not keep the process alive on their own. */
  napi_unref_threadsafe_function(env, s->tsfn);
  if (start_thread(writer_main, s) != 0) {
    close(s->fd);
    s->fd = -1;
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
    napi_throw_error(env, "EAGAIN", "cannot start the writer thread of the reply sender");
    return NULL;
  }
  napi_value out;
  if (napi_create_external(env, s, NULL, NULL, &out) != napi_ok) return NULL;
  return out;
}

static Job *new_job(double tag, size_t header, size_t length) {
  Job *job = calloc(1, sizeof(Job));
  if (job == NULL) return NULL;
  job->buf = take_buffer(length, &job->capacity);
  if (job->buf == NULL) {
    free(job);
    return NULL;
  }
  job->tag = tag;
  job->header = header;
  job->length = length;
  return job;
}

/*
 * Sends `job` from the event loop, which must never wait: one non-blocking sendmsg when the
 * socket is free, else the job joins the outbox (its owner writes it). 0: all of it is on
 * the socket (no completion follows); 1: it waits in the outbox (a completion follows);
 * -EPIPE or -ECANCELED: the sender can no longer send (nothing follows).
 */
static int send_now(Sender *s, Job *job) {
  pthread_mutex_lock(&s->mu);
  if (s->aborted || s->broken) {
    int r = s->aborted ? -ECANCELED : -EPIPE;
    pthread_mutex_unlock(&s->mu);
    free_job(job);
    return r;
  }
  if (s->corked) {
    job->quiet = 1;
    append(s, job);
    pthread_mutex_unlock(&s->mu);
    return 3;
  }
  if (s->writing) {
    append(s, job);
    pthread_mutex_unlock(&s->mu);
    return 1;
  }
  s->writing = 1;
  int fd = s->fd;
  pthread_mutex_unlock(&s->mu);
  ssize_t wrote;
  do wrote = send(fd, job->buf, job->length, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (wrote < 0 && errno == EINTR);
  int err = errno;
  pthread_mutex_lock(&s->mu);
  int r;
  if (wrote >= 0 && (size_t)wrote == job->length) {
    free_job(job);
    r = 0;
  } else if (wrote >= 0 || err == EAGAIN || err == EWOULDBLOCK) {
    /* The rest goes first: bytes of a reply are never split by another. */
    job->sent = wrote > 0 ? (size_t)wrote : 0;
    job->next = s->out_head;
    s->out_head = job;
    if (s->out_tail == NULL) s->out_tail = job;
    r = 1;
  } else {
    s->broken = 1;
    free_job(job);
    fail_outbox(s, -EPIPE);
    s->writing = 0;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return -EPIPE;
  }
  if (s->out_head == NULL) {
    s->writing = 0;
  } else {
    /* Replies that came while this thread wrote, or the rest: the writer thread goes on. */
    s->handoff = 1;
    pthread_cond_signal(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return r;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return type_error(env, "send(sender, bytes, tag)");
  Sender *s = get_sender(env, argv[0]);
  if (s == NULL) return NULL;
  char *data;
  size_t length;
  double tag;
  if (!get_bytes(env, argv[1], &data, &length)) return type_error(env, "bytes must be a Uint8Array");
  if (napi_get_value_double(env, argv[2], &tag) != napi_ok) return type_error(env, "tag must be a number");
  Job *job = new_job(tag, length, length);
  if (job == NULL) return number(env, -ENOMEM);
  job->sender = s;
  memcpy(job->buf, data, length);
  return number(env, send_now(s, job));
}

static napi_value js_send_read(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 6) return type_error(env, "sendRead(sender, header, pieces, count, tag, atOnce)");
  Sender *s = get_sender(env, argv[0]);
  if (s == NULL) return NULL;
  char *header;
  size_t header_length;
  if (!get_bytes(env, argv[1], &header, &header_length) || header_length > MAX_HEADER) {
    return type_error(env, "header must be a Uint8Array of at most 64 bytes");
  }
  bool is_typed;
  napi_typedarray_type type;
  size_t slots;
  double *triples;
  if (napi_is_typedarray(env, argv[2], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[2], &type, &slots, (void **)&triples, NULL, NULL) !=
          napi_ok ||
      type != napi_float64_array) {
    return type_error(env, "pieces must be a Float64Array");
  }
  uint32_t count;
  double tag;
  bool at_once;
  if (napi_get_value_uint32(env, argv[3], &count) != napi_ok || (size_t)count * 3 > slots) {
    return type_error(env, "count must fit the pieces");
  }
  if (napi_get_value_double(env, argv[4], &tag) != napi_ok) return type_error(env, "tag must be a number");
  if (napi_get_value_bool(env, argv[5], &at_once) != napi_ok) return type_error(env, "atOnce must be a boolean");
  size_t total = header_length;
  Piece *pieces = malloc((count > 0 ? count : 1) * sizeof(Piece));
  if (pieces == NULL) return number(env, -ENOMEM);
  for (uint32_t i = 0; i < count; i++) {
    double fd = triples[3 * i], offset = triples[3 * i + 1], length = triples[3 * i + 2];
    if (!(fd >= -1 && fd <= INT32_MAX && floor(fd) == fd) || !is_offset(offset) ||
        !is_offset(length) || length > (double)(1u << 30)) {
      free(pieces);
      return type_error(env, "each piece must be (fd >= -1, offset, length) in safe integers");
    }
    pieces[i].fd = (int)fd;
    pieces[i].offset = (off_t)offset;
    pieces[i].length = (size_t)length;
    total += pieces[i].length;
  }
  Job *job = new_job(tag, header_length, total);
  if (job == NULL) {
    free(pieces);
    return number(env, -ENOMEM);
  }
  job->sender = s;
  job->pieces = pieces;
  job->count = count;
  memcpy(job->buf, header, header_length);
  if (at_once) {
    int r = read_pieces(job, RWF_NOWAIT);
    if (r == 0) {
      free(job->pieces);
      job->pieces = NULL;
      /* Queued with its bytes read (2): the files are done with; a completion follows. */
      r = send_now(s, job);
      return number(env, r == 1 ? 2 : r);
    }
    if (r != -EAGAIN && r != -EOPNOTSUPP) {
      free_job(job);
      return number(env, r);
    }
  }
  pthread_mutex_lock(&s->mu);
  s->reading++;
  pthread_mutex_unlock(&s->mu);
  pthread_mutex_lock(&queue_mu);
  job->next = NULL;
  if (queue_tail == NULL) queue_head = job;
  else queue_tail->next = job;
  queue_tail = job;
  pthread_cond_signal(&queue_cv);
  pthread_mutex_unlock(&queue_mu);
  return number(env, 1);
}

/* Nanoseconds of the monotonic clock. */
static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * awaitInput(sender, buf, budgetUs) -> bytes | 0 | -errno: polls the socket for input without
 * sleeping, for at most `budgetUs` microseconds, and reads what arrives into `buf`. 0: the
 * client closed its side (nothing is consumed then); -EAGAIN: nothing came in time.
 */
static napi_value js_await_input(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return type_error(env, "awaitInput(sender, buf, budgetUs)");
  Sender *s = get_sender(env, argv[0]);
  if (s == NULL) return NULL;
  char *data;
  size_t length;
  double budget;
  if (!get_bytes(env, argv[1], &data, &length) || length == 0) {
    return type_error(env, "buf must be a non-empty Uint8Array");
  }
  if (napi_get_value_double(env, argv[2], &budget) != napi_ok || !(budget >= 0 && budget <= 10000)) {
    return type_error(env, "budgetUs must be a number of microseconds from 0 to 10000");
  }
  int64_t deadline = now_ns() + (int64_t)(budget * 1000);
  for (;;) {
    ssize_t n = recv(s->fd, data, length, MSG_DONTWAIT);
    if (n >= 0) return number(env, (double)n);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return number(env, -errno);
    if (now_ns() >= deadline) return number(env, -EAGAIN);
  }
}

/*
 * cork(sender, true): the event loop's replies gather in the outbox (`send` and `sendRead`
 * return 3 for them) instead of one sendmsg each. cork(sender, false) writes them, as many
 * as the socket takes in a few non-blocking sendmsg calls, and leaves the rest to the
 * writer thread: it returns how many of the gathered replies are still waiting (each to be
 * reported through onDone, as queued replies are), or -EPIPE / -ECANCELED when the sender
 * can no longer send.
 */
static napi_value js_cork(napi_env env, napi_callback_info info) {
  bool on;
  Sender *s = sender_and_flag(env, info, "cork(sender, on: boolean)", &on);
  if (s == NULL) return NULL;
  pthread_mutex_lock(&s->mu);
  if (on) {
    s->corked = 1;
    pthread_mutex_unlock(&s->mu);
    return number(env, 0);
  }
  s->corked = 0;
  if (!s->writing && s->out_head != NULL && !s->aborted && !s->broken) {
    s->writing = 1;
    write_out(s);
  }
  double result = s->aborted ? -ECANCELED : s->broken ? -EPIPE : 0;
  if (result == 0) {
    for (Job *job = s->out_head; job != NULL; job = job->next) {
      if (job->quiet) {
        job->quiet = 0;
        result++;
      }
    }
  }
  pthread_mutex_unlock(&s->mu);
  return number(env, result);
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  bool abort_now;
  Sender *s = sender_and_flag(env, info, "close(sender, abort: boolean)", &abort_now);
  if (s == NULL) return NULL;
  pthread_mutex_lock(&s->mu);
  s->closing = 1;
  if (abort_now && !s->aborted) {
    s->aborted = 1;
    shutdown(s->fd, SHUT_RDWR);
    if (!s->writing) fail_outbox(s, -ECANCELED);
  }
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* sendBuffer(sender): the socket's send buffer as the kernel has it (SO_SNDBUF), or -errno. */
static napi_value js_send_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) return type_error(env, "sendBuffer(sender)");
  Sender *s = get_sender(env, argv[0]);
  if (s == NULL) return NULL;
  int size = 0;
  socklen_t length = sizeof size;
  if (getsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &size, &length) != 0) return number(env, -errno);
  return number(env, (double)size);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sendBuffer", NULL, js_send_buffer, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"sendRead", NULL, js_send_read, NULL, NULL, NULL, napi_default, NULL},
      {"cork", NULL, js_cork, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"awaitInput", NULL, js_await_input, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
