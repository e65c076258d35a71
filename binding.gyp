# The native addons, one target per concern, built by node-gyp when npm installs this package:
# native/fallocate.c (hole punching for block/) and native/fs-ops.c (mknod, xattrs and
# nanosecond lutimes for the archive worker).
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
    }
  ]
}
