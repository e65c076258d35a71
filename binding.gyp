# The native addons, one target per concern, built by node-gyp when npm installs this package:
# thinp_native (native/fallocate.c): hole punching in files (loop mode);
# thinp_fs (native/fs-ops.c): mknod, xattrs and nanosecond lutimes for the archive worker;
# thinp_blkdev (native/blkdev.c): block-device size, discard and zeroing ioctls (direct mode);
# thinp_nowait (native/nowait-io.c): page-cache reads and writes that never wait (loop mode's data path);
# thinp_batch (native/write-batch.c): several writes as one threadpool job (loop mode's data path);
# thinp_sender (native/reply-sender.c): an NBD connection's replies sent from native threads.
{
  "targets": [
    {
      "target_name": "thinp_native",
      "sources": ["native/fallocate.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    },
    {
      "target_name": "thinp_fs",
      "sources": ["native/fs-ops.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    },
    {
      "target_name": "thinp_blkdev",
      "sources": ["native/blkdev.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    },
    {
      "target_name": "thinp_nowait",
      "sources": ["native/nowait-io.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    },
    {
      "target_name": "thinp_batch",
      "sources": ["native/write-batch.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    },
    {
      "target_name": "thinp_sender",
      "sources": ["native/reply-sender.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
      "libraries": ["-lpthread"]
    }
  ]
}
