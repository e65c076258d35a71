# The native addon (native/fallocate.c): built by node-gyp when npm installs this package.
{
  "targets": [
    {
      "target_name": "thinp_native",
      "sources": ["native/fallocate.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    }
  ]
}
