{
  "targets": [
    {
      "target_name": "rezfs_fuse",
      "sources": ["rezfs_fuse.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS"]
    }
  ]
}
