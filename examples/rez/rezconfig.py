# A rezconfig fragment: every rez-release publishes what it released with rezfs, through rez's built-in
# `command` release hook. Add it to the site config (REZ_CONFIG_FILE takes several files, separated by ':').
#
# - `rezfs` must be on the releasing user's PATH (npm install -g, or a symlink to dist/cli/main.js: see the README).
# - The store comes from the releasing user's environment (REZFS_STORE=s3://bucket/prefix, plus AWS_* for S3),
#   or add "--store", "s3://..." to the args. A signing store also wants "--sign-key", "/path/to/key".
# - The hook publishes only the version just released ({package.name}/{package.version}): rez-release of one more
#   variant (--variants N) adds that variant's payload to the published version, nothing else is read again.
# - rez does NOT fail a release when a post-release command fails: it prints "command failed:" with rezfs's
#   output and carries on. Catch it with a periodic `rezfs publish <release path>` (incremental: a stat per file),
#   which publishes whatever a failed hook missed, and alert on its exit code (1: some version refused).
release_hooks = ["command"]

plugins = {
    "release_hook": {
        "command": {
            "print_output": True,
            "print_error": True,
            "post_release_commands": [
                {
                    "command": "rezfs",
                    "args": ["publish", "{release.path}", "{package.name}/{package.version}"],
                },
            ],
        },
    },
}
