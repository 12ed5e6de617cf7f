/*
 * rezfs's own FUSE binding: libfuse3's low-level, inode-based API exposed to Node through N-API.
 *
 * The session is served from Node's own event loop: the /dev/fuse descriptor is non-blocking and
 * polled by libuv, and each request read from it is handed to JavaScript on the spot, with no
 * thread in between. A request then costs the kernel one wake-up of this process instead of a
 * worker thread's wake-up plus a hand-over to the JS thread. JavaScript answers at once or later
 * with the reply calls below. open and opendir are answered here with ENOSYS, which tells a kernel
 * that supports it never to send them again: warm opens never leave the kernel.
 *
 * Lifetime: a session lives until its loop has ended (the kernel connection is gone) and every
 * request JavaScript received has been answered; only then is the libfuse session destroyed, so a
 * late reply can never touch freed memory.
 */
#define FUSE_USE_VERSION 314
#define NAPI_VERSION 8

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <uv.h>

/* Operation codes, mirrored by Op in src/fs/native-server.ts; exported as `ops`, which the loader checks against it. */
enum op {
  OP_LOOKUP = 1,
  OP_FORGET = 2,
  OP_GETATTR = 3,
  OP_READLINK = 4,
  OP_READ = 5,
  OP_READDIR = 6,
  OP_READDIRPLUS = 7,
  OP_STATFS = 8,
  OP_GETXATTR = 9,
  OP_LISTXATTR = 10,
  OP_INIT = 11,
  OP_EXITED = 12,
};

/* The largest read the kernel may send: libfuse's own buffer size, so reads come whole. */
#define MAX_READ (1024 * 1024)

/* Attributes travel as 9 doubles: ino, mode, nlink, uid, gid, size, blocks, mtime (ms), then the FUSE node id
   (entries only). st_ino and the node id differ: JavaScript hands node ids out per path the kernel holds. */
#define ATTR_FIELDS 9
#define NODE_FIELD 8

/* Requests read from the kernel per wake-up before other events get their turn. */
#define BATCH 64

typedef struct session {
  struct fuse_session *se;
  napi_env env;
  napi_ref handler;
  napi_async_context context;
  /* Polls the /dev/fuse descriptor; freed by its close callback, so it may outlive the session. */
  uv_poll_t *poll;
  /* libfuse's request buffer, reused: each request is handled before the next is read. */
  struct fuse_buf buf;
  /* Requests JavaScript holds and has not answered; touched on the JS thread only. */
  int64_t outstanding;
  /* Invalidations still running on the pool; they use the session too. JS thread only. */
  int64_t notifying;
  int loop_ended;
  int destroyed;
  /* Calls into JavaScript under way, and whether JavaScript has let go of the session: it is freed
     only when both are over and it is destroyed (a call may outlive the JS object it serves). */
  int calls;
  int js_released;
  /* Whether the kernel takes ENOSYS from open/opendir as "never ask again" (set before the first open). */
  int no_open;
  int no_opendir;
  char *mountpoint;
} session_t;

typedef struct request {
  int op;
  fuse_req_t req;
  fuse_ino_t ino;
  double a; /* offset, nlookup, flags or size, by op */
  double b; /* size, by op */
  size_t forget_count;
  struct fuse_forget_data *forgets;
  char *name;
} request_t;

/* ---------------------------------------------------------------- helpers */

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != napi_ok) return throw_error(env, "rezfs native: " #call " failed");              \
  } while (0)

static napi_value undefined(napi_env env) {
  napi_value value;
  napi_get_undefined(env, &value);
  return value;
}

static napi_value number(napi_env env, double n) {
  napi_value value;
  napi_create_double(env, n, &value);
  return value;
}

/* Strict UTF-8 check: names that are not UTF-8 cannot exist on the mount (publish refuses them). */
static int valid_utf8(const unsigned char *s) {
  while (*s) {
    if (*s < 0x80) {
      s++;
      continue;
    }
    int extra = (*s & 0xE0) == 0xC0 ? 1 : (*s & 0xF0) == 0xE0 ? 2 : (*s & 0xF8) == 0xF0 ? 3 : -1;
    if (extra < 0 || (extra == 1 && *s < 0xC2) || (*s == 0xF4 && s[1] > 0x8F) || *s > 0xF4) return 0;
    if (extra == 2 && ((*s == 0xE0 && s[1] < 0xA0) || (*s == 0xED && s[1] > 0x9F))) return 0;
    if (extra == 3 && *s == 0xF0 && s[1] < 0x90) return 0;
    for (int i = 1; i <= extra; i++)
      if ((s[i] & 0xC0) != 0x80) return 0;
    s += extra + 1;
  }
  return 1;
}

static session_t *session_of(fuse_req_t req) { return (session_t *)fuse_req_userdata(req); }

static void dispatch(session_t *s, request_t *r);

static request_t *new_request(int op, fuse_req_t req, fuse_ino_t ino) {
  request_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->op = op;
  r->req = req;
  r->ino = ino;
  return r;
}

static void send_simple(fuse_req_t req, int op, fuse_ino_t ino, double a, double b, const char *name) {
  request_t *r = new_request(op, req, ino);
  if (!r || (name && !(r->name = strdup(name)))) {
    free(r);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  r->a = a;
  r->b = b;
  dispatch(session_of(req), r);
}

/* ---------------------------------------------------------------- libfuse callbacks (JS thread, from the poll) */

static void on_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  s->no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
  s->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  /* readlink answers stay in the page cache like file data: targets never change. */
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA; /* immutable data: no need to compare mtimes */
  conn->max_read = MAX_READ;
  request_t *r = new_request(OP_INIT, NULL, 0);
  if (r) {
    r->a = s->no_open;
    r->b = s->no_opendir;
    dispatch(s, r);
  }
}

static void on_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (!valid_utf8((const unsigned char *)name)) {
    struct fuse_entry_param e = {0}; /* cached negative entry, as for any other missing name */
    e.entry_timeout = 1;
    fuse_reply_entry(req, &e);
    return;
  }
  send_simple(req, OP_LOOKUP, parent, 0, 0, name);
}

static void forward_forgets(session_t *s, struct fuse_forget_data *forgets, size_t count) {
  request_t *r = new_request(OP_FORGET, NULL, 0);
  if (!r) {
    free(forgets);
    return; /* a lost forget only keeps an inode mapping alive; it never breaks the mount */
  }
  r->forgets = forgets;
  r->forget_count = count;
  dispatch(s, r);
}

static void on_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  session_t *s = session_of(req);
  fuse_reply_none(req);
  struct fuse_forget_data *one = malloc(sizeof *one);
  if (!one) return;
  one->ino = ino;
  one->nlookup = nlookup;
  forward_forgets(s, one, 1);
}

static void on_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session_t *s = session_of(req);
  struct fuse_forget_data *copy = malloc(count * sizeof *copy);
  if (copy) memcpy(copy, forgets, count * sizeof *copy);
  fuse_reply_none(req); /* frees the request and with it `forgets` */
  if (copy) forward_forgets(s, copy, count);
}

static void on_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  send_simple(req, OP_GETATTR, ino, 0, 0, NULL);
}

static void on_readlink(fuse_req_t req, fuse_ino_t ino) { send_simple(req, OP_READLINK, ino, 0, 0, NULL); }

/* Files need no state (reads go by inode), so JavaScript never sees an open or a release. */
static void on_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  if (session_of(req)->no_open) {
    fuse_reply_err(req, ENOSYS); /* the kernel opens every later file itself */
    return;
  }
  fi->keep_cache = 1; /* immutable: page cache survives across opens */
  fuse_reply_open(req, fi);
}

static void on_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (session_of(req)->no_opendir) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  (void)ino;
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi); /* directories need no state: answered here without JavaScript */
}

static void on_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  send_simple(req, OP_READ, ino, (double)off, (double)size, NULL);
}

static void on_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void on_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  send_simple(req, OP_READDIR, ino, (double)off, (double)size, NULL);
}

static void on_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  send_simple(req, OP_READDIRPLUS, ino, (double)off, (double)size, NULL);
}

static void on_statfs(fuse_req_t req, fuse_ino_t ino) { send_simple(req, OP_STATFS, ino, 0, 0, NULL); }

static void on_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  send_simple(req, OP_GETXATTR, ino, (double)size, 0, name);
}

static void on_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  send_simple(req, OP_LISTXATTR, ino, (double)size, 0, NULL);
}

static const struct fuse_lowlevel_ops operations = {
    .init = on_init,
    .lookup = on_lookup,
    .forget = on_forget,
    .forget_multi = on_forget_multi,
    .getattr = on_getattr,
    .readlink = on_readlink,
    .open = on_open,
    .read = on_read,
    .release = on_release,
    .opendir = on_opendir,
    .readdir = on_readdir,
    .readdirplus = on_readdirplus,
    .releasedir = on_release,
    .statfs = on_statfs,
    .getxattr = on_getxattr,
    .listxattr = on_listxattr,
    /* Anything that writes is refused by the kernel on a read-only mount before it gets here;
       absent operations (access among them) answer ENOSYS, which the kernel remembers. */
};

/* ---------------------------------------------------------------- JS thread */

static void destroy_session(session_t *s) {
  if (s->destroyed) return;
  s->destroyed = 1;
  fuse_session_unmount(s->se); /* a no-op once the connection is gone; releases the fd */
  fuse_session_destroy(s->se);
  s->se = NULL;
  free(s->buf.mem);
  s->buf.mem = NULL;
  napi_delete_reference(s->env, s->handler);
  napi_async_destroy(s->env, s->context);
}

static void release_if_done(session_t *s) {
  if (!s->js_released || !s->destroyed || s->calls > 0) return;
  free(s->mountpoint);
  free(s);
}

static void maybe_destroy(session_t *s) {
  if (s->loop_ended && s->outstanding == 0 && s->notifying == 0) destroy_session(s);
}

/* After each reply: the last answer to a session whose loop has ended destroys it. */
static napi_value replied(napi_env env, session_t *s) {
  maybe_destroy(s);
  return undefined(env);
}

/* Hands one request to JavaScript, which may answer before this returns (its promise jobs run here). */
static void dispatch(session_t *s, request_t *r) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value args[6];
  args[0] = number(env, r->op);
  args[1] = number(env, (double)(uintptr_t)r->req);
  args[2] = number(env, (double)r->ino);
  args[3] = number(env, r->a);
  args[4] = number(env, r->b);
  args[5] = undefined(env);
  if (r->name) napi_create_string_utf8(env, r->name, NAPI_AUTO_LENGTH, &args[5]);
  if (r->forgets) {
    napi_value list;
    napi_create_array_with_length(env, r->forget_count * 2, &list);
    for (size_t i = 0; i < r->forget_count; i++) {
      napi_set_element(env, list, (uint32_t)(2 * i), number(env, (double)r->forgets[i].ino));
      napi_set_element(env, list, (uint32_t)(2 * i + 1), number(env, (double)r->forgets[i].nlookup));
    }
    args[5] = list;
  }
  if (r->req) s->outstanding++;
  if (r->op == OP_EXITED) s->loop_ended = 1;
  free(r->forgets);
  free(r->name);
  free(r);

  napi_value global, handler, result;
  napi_get_global(env, &global);
  napi_get_reference_value(env, s->handler, &handler);
  s->calls++;
  napi_async_context context = s->context; /* a reply made during the call may destroy the session */
  if (napi_make_callback(env, context, global, handler, 6, args, &result) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error); /* Node's uncaught-exception path, as for any callback */
  }
  s->calls--;
  napi_close_handle_scope(env, scope);
  maybe_destroy(s);
  release_if_done(s);
}

static void on_poll_closed(uv_handle_t *handle) { free(handle); }

/* The kernel connection is gone (unmounted or aborted): stop polling and tell JavaScript. */
static void end_loop(session_t *s, int rc) {
  uv_poll_stop(s->poll);
  uv_close((uv_handle_t *)s->poll, on_poll_closed);
  s->poll = NULL;
  request_t *r = new_request(OP_EXITED, NULL, 0);
  if (!r) {
    s->loop_ended = 1;
    maybe_destroy(s);
    return;
  }
  r->a = rc;
  dispatch(s, r);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  session_t *s = handle->data;
  /* An error (libuv has stopped polling) means the connection is going: a read says how. */
  for (int i = 0; i < BATCH || status < 0; i++) {
    int res = fuse_session_receive_buf(s->se, &s->buf);
    if (res == -EAGAIN || res == -EINTR) {
      if (status < 0) end_loop(s, status);
      return;
    }
    if (res <= 0 || fuse_session_exited(s->se)) {
      end_loop(s, res < 0 ? res : 0);
      return;
    }
    fuse_session_process_buf(s->se, &s->buf);
  }
}

/* The JS side holds its session until the loop has ended; a session still serving is never freed. */
static void finalize_session(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session_t *s = data;
  s->js_released = 1;
  release_if_done(s);
}

static int get_session(napi_env env, napi_value value, session_t **out) {
  return napi_get_value_external(env, value, (void **)out) == napi_ok && *out != NULL;
}

/* Takes the request token from JS and counts the request as answered. NULL if unusable. */
static fuse_req_t take_request(napi_env env, session_t *s, napi_value token) {
  double raw;
  if (napi_get_value_double(env, token, &raw) != napi_ok || raw <= 0) return NULL;
  s->outstanding--;
  return (fuse_req_t)(uintptr_t)raw;
}

/* Reads the attributes at `index`, and its node id into *node when node is not NULL. */
static int read_attr(napi_env env, napi_value array, size_t index, struct stat *st, fuse_ino_t *node) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, array, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array ||
      length < (index + 1) * ATTR_FIELDS)
    return 0;
  const double *f = (const double *)data + index * ATTR_FIELDS;
  if (node) *node = (fuse_ino_t)f[NODE_FIELD];
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)f[0];
  st->st_mode = (mode_t)f[1];
  st->st_nlink = (nlink_t)f[2];
  st->st_uid = (uid_t)f[3];
  st->st_gid = (gid_t)f[4];
  st->st_size = (off_t)f[5];
  st->st_blocks = (blkcnt_t)f[6];
  st->st_blksize = 4096;
  double ms = f[7];
  st->st_mtim.tv_sec = (time_t)(ms / 1000);
  st->st_mtim.tv_nsec = (long)((ms - (double)st->st_mtim.tv_sec * 1000) * 1e6);
  if (st->st_mtim.tv_nsec < 0) st->st_mtim.tv_nsec = 0;
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
  return 1;
}

#define ARGS(n)                                                                                    \
  size_t argc = n;                                                                                 \
  napi_value argv[n];                                                                              \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));                                     \
  session_t *s;                                                                                    \
  if (argc < n || !get_session(env, argv[0], &s)) return throw_error(env, "rezfs native: bad arguments");

#define REQUEST(index)                                                                             \
  fuse_req_t req = take_request(env, s, argv[index]);                                              \
  if (!req) return throw_error(env, "rezfs native: bad request token");

static double get_double(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

/* mount(mountpoint, options: string, handler) -> session */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char mountpoint[4096], options[8192 + 32];
  size_t len;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], mountpoint, sizeof mountpoint, &len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], options, 8192, &len) != napi_ok)
    return throw_error(env, "rezfs native: mount(mountpoint, options, handler)");
  snprintf(options + len, sizeof options - len, "%smax_read=%d", len ? "," : "", MAX_READ);

  struct uv_loop_s *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  session_t *s = calloc(1, sizeof *s);
  if (!s) return throw_error(env, "rezfs native: out of memory");
  s->mountpoint = strdup(mountpoint);
  s->env = env;
  napi_value name;
  napi_create_string_utf8(env, "rezfs-fuse", NAPI_AUTO_LENGTH, &name);
  CHECK(napi_create_reference(env, argv[2], 1, &s->handler));
  CHECK(napi_async_init(env, NULL, name, &s->context));

  char *fuse_argv[] = {"rezfs", "-o", options, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
  s->se = fuse_session_new(&args, &operations, sizeof operations, s);
  fuse_opt_free_args(&args);
  if (!s->se || fuse_session_mount(s->se, mountpoint) != 0) {
    int saved = errno;
    if (s->se) fuse_session_destroy(s->se);
    napi_delete_reference(env, s->handler);
    napi_async_destroy(env, s->context);
    free(s->mountpoint);
    free(s);
    char message[4400];
    /* libfuse and fusermount3 print their reason on stderr; the CLI passes that on with this message. */
    snprintf(message, sizeof message, "cannot mount FUSE at %s: %s", mountpoint, saved ? strerror(saved) : "libfuse refused the options");
    return throw_error(env, message);
  }
  int fd = fuse_session_fd(s->se);
  s->poll = malloc(sizeof *s->poll);
  if (!s->poll || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 || uv_poll_init(loop, s->poll, fd) != 0) {
    free(s->poll);
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    napi_delete_reference(env, s->handler);
    napi_async_destroy(env, s->context);
    free(s->mountpoint);
    free(s);
    return throw_error(env, "rezfs native: cannot poll the FUSE device");
  }
  s->poll->data = s;
  uv_poll_start(s->poll, UV_READABLE, on_readable);
  /* Node may exit while mounted only after the loop ends: the active poll keeps the event loop alive. */
  napi_value external;
  CHECK(napi_create_external(env, s, finalize_session, NULL, &external));
  return external;
}

/* unmount(session): detaches the mount; the loop ends once the kernel lets go. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  ARGS(1);
  if (s->destroyed || s->loop_ended) return number(env, 0);
  if (umount2(s->mountpoint, MNT_DETACH) == 0) return number(env, 0);
  return number(env, errno); /* EPERM for unprivileged users: the caller runs fusermount3 -u -z */
}

static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  ARGS(3);
  REQUEST(1);
  fuse_reply_err(req, (int)get_double(env, argv[2]));
  return replied(env, s);
}

/* replyEntry(session, req, attrs | null, attrTimeout, entryTimeout) */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ARGS(5);
  struct fuse_entry_param e = {0};
  napi_valuetype type;
  napi_typeof(env, argv[2], &type);
  if (type != napi_null && !read_attr(env, argv[2], 0, &e.attr, &e.ino)) return throw_error(env, "rezfs native: bad attributes");
  REQUEST(1);
  e.generation = 1;
  e.attr_timeout = get_double(env, argv[3]);
  e.entry_timeout = get_double(env, argv[4]);
  fuse_reply_entry(req, &e);
  return replied(env, s);
}

/* replyAttr(session, req, attrs, timeout) */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ARGS(4);
  struct stat st;
  if (!read_attr(env, argv[2], 0, &st, NULL)) return throw_error(env, "rezfs native: bad attributes");
  REQUEST(1);
  fuse_reply_attr(req, &st, get_double(env, argv[3]));
  return replied(env, s);
}

/* replyBuf(session, req, buffer): read data, xattr values and lists. */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  ARGS(3);
  void *data = NULL;
  size_t length = 0;
  if (napi_get_buffer_info(env, argv[2], &data, &length) != napi_ok) return throw_error(env, "rezfs native: bad buffer");
  REQUEST(1);
  fuse_reply_buf(req, data, length);
  return replied(env, s);
}

static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  ARGS(3);
  size_t length;
  CHECK(napi_get_value_string_utf8(env, argv[2], NULL, 0, &length));
  char *target = malloc(length + 1);
  if (!target) return throw_error(env, "rezfs native: out of memory");
  napi_get_value_string_utf8(env, argv[2], target, length + 1, &length);
  fuse_req_t req = take_request(env, s, argv[1]);
  if (!req) {
    free(target);
    return throw_error(env, "rezfs native: bad request token");
  }
  fuse_reply_readlink(req, target);
  free(target);
  return replied(env, s);
}

static napi_value js_reply_xattr_size(napi_env env, napi_callback_info info) {
  ARGS(3);
  REQUEST(1);
  fuse_reply_xattr(req, (size_t)get_double(env, argv[2]));
  return replied(env, s);
}

/* replyStatfs(session, req, [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax]) */
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  ARGS(3);
  double f[9] = {0};
  for (uint32_t i = 0; i < 9; i++) {
    napi_value v;
    if (napi_get_element(env, argv[2], i, &v) == napi_ok) napi_get_value_double(env, v, &f[i]);
  }
  REQUEST(1);
  struct statvfs st = {0};
  st.f_bsize = (unsigned long)f[0];
  st.f_frsize = (unsigned long)f[1];
  st.f_blocks = (fsblkcnt_t)f[2];
  st.f_bfree = (fsblkcnt_t)f[3];
  st.f_bavail = (fsblkcnt_t)f[4];
  st.f_files = (fsfilcnt_t)f[5];
  st.f_ffree = (fsfilcnt_t)f[6];
  st.f_favail = (fsfilcnt_t)f[7];
  st.f_namemax = (unsigned long)f[8];
  fuse_reply_statfs(req, &st);
  return replied(env, s);
}

/*
 * replyDir(session, req, plus, size, offset, names[], attrs, attrTimeout, entryTimeout) -> entries added.
 * names and attrs hold the whole directory, "." and ".." first; an entry's offset is its index + 1,
 * so the kernel's next request starts where this reply stopped.
 */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  ARGS(9);
  bool plus;
  uint32_t count;
  CHECK(napi_get_value_bool(env, argv[2], &plus));
  size_t size = (size_t)get_double(env, argv[3]);
  size_t offset = (size_t)get_double(env, argv[4]);
  CHECK(napi_get_array_length(env, argv[5], &count));
  double attr_timeout = get_double(env, argv[7]);
  double entry_timeout = get_double(env, argv[8]);

  char *buf = malloc(size ? size : 1);
  if (!buf) return throw_error(env, "rezfs native: out of memory");
  size_t used = 0;
  uint32_t added = 0;
  char name[1024];
  for (size_t i = offset; i < count; i++) {
    napi_value element;
    size_t len;
    struct stat st;
    fuse_ino_t node;
    if (napi_get_element(env, argv[5], (uint32_t)i, &element) != napi_ok ||
        napi_get_value_string_utf8(env, element, name, sizeof name, &len) != napi_ok || !read_attr(env, argv[6], i, &st, &node)) {
      free(buf);
      return throw_error(env, "rezfs native: bad directory entries");
    }
    size_t need;
    if (plus) {
      struct fuse_entry_param e = {0};
      e.attr = st;
      /* "." and ".." carry no lookup: the kernel skips them, and so must the lookup count. */
      e.ino = i < 2 ? 0 : node;
      e.generation = 1;
      e.attr_timeout = attr_timeout;
      e.entry_timeout = entry_timeout;
      need = fuse_add_direntry_plus(NULL, buf + used, size - used, name, &e, (off_t)(i + 1));
      if (need > size - used) break;
    } else {
      need = fuse_add_direntry(NULL, buf + used, size - used, name, &st, (off_t)(i + 1));
      if (need > size - used) break;
    }
    used += need;
    added++;
  }
  fuse_req_t req = take_request(env, s, argv[1]);
  if (!req) {
    free(buf);
    return throw_error(env, "rezfs native: bad request token");
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  replied(env, s);
  return number(env, added);
}

/* ---------------------------------------------------------------- invalidation (off the JS thread) */

typedef struct notify_work {
  session_t *s;
  fuse_ino_t ino;
  char *name; /* NULL: invalidate the inode's attributes and cached data or listing */
  int rc;
  napi_async_work work;
  napi_deferred deferred;
} notify_work_t;

/*
 * The kernel may hold a directory lock while it waits for a lookup that only the JS thread can
 * answer; invalidating from the JS thread could then deadlock, so it runs on a pool thread (and the
 * JS side sends one at a time, so it never takes more than one of them).
 */
static void notify_execute(napi_env env, void *data) {
  (void)env;
  notify_work_t *w = data;
  if (w->s->destroyed || w->s->loop_ended) {
    w->rc = -ENOTCONN;
  } else if (w->name) {
    w->rc = fuse_lowlevel_notify_inval_entry(w->s->se, w->ino, w->name, strlen(w->name));
  } else {
    w->rc = fuse_lowlevel_notify_inval_inode(w->s->se, w->ino, 0, 0);
  }
}

static void notify_complete(napi_env env, napi_status status, void *data) {
  notify_work_t *w = data;
  (void)status;
  /* ENOENT: the kernel had nothing cached under that name, which is what we wanted. */
  napi_resolve_deferred(env, w->deferred, number(env, w->rc == -ENOENT ? 0 : -w->rc));
  napi_delete_async_work(env, w->work);
  session_t *s = w->s;
  free(w->name);
  free(w);
  s->notifying--;
  maybe_destroy(s);
  release_if_done(s);
}

/* notifyInval(session, ino, name | undefined) -> Promise<errno> */
static napi_value js_notify_inval(napi_env env, napi_callback_info info) {
  ARGS(3);
  notify_work_t *w = calloc(1, sizeof *w);
  if (!w) return throw_error(env, "rezfs native: out of memory");
  w->s = s;
  w->ino = (fuse_ino_t)get_double(env, argv[1]);
  napi_valuetype type;
  napi_typeof(env, argv[2], &type);
  if (type == napi_string) {
    size_t len;
    napi_get_value_string_utf8(env, argv[2], NULL, 0, &len);
    w->name = malloc(len + 1);
    if (w->name) napi_get_value_string_utf8(env, argv[2], w->name, len + 1, &len);
  }
  napi_value promise, resource;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "rezfs-notify", NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(env, NULL, resource, notify_execute, notify_complete, w, &w->work);
  napi_queue_async_work(env, w->work);
  s->notifying++;
  return promise;
}

/* ---------------------------------------------------------------- module */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
      {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
      {"replyErr", NULL, js_reply_err, NULL, NULL, NULL, napi_default, NULL},
      {"replyEntry", NULL, js_reply_entry, NULL, NULL, NULL, napi_default, NULL},
      {"replyAttr", NULL, js_reply_attr, NULL, NULL, NULL, napi_default, NULL},
      {"replyBuf", NULL, js_reply_buf, NULL, NULL, NULL, napi_default, NULL},
      {"replyReadlink", NULL, js_reply_readlink, NULL, NULL, NULL, napi_default, NULL},
      {"replyXattrSize", NULL, js_reply_xattr_size, NULL, NULL, NULL, napi_default, NULL},
      {"replyStatfs", NULL, js_reply_statfs, NULL, NULL, NULL, napi_default, NULL},
      {"replyDir", NULL, js_reply_dir, NULL, NULL, NULL, napi_default, NULL},
      {"notifyInval", NULL, js_notify_inval, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  static const struct { const char *name; int code; } codes[] = {
      {"lookup", OP_LOOKUP},       {"forget", OP_FORGET},       {"getattr", OP_GETATTR}, {"readlink", OP_READLINK},
      {"read", OP_READ},           {"readdir", OP_READDIR},     {"readdirplus", OP_READDIRPLUS},
      {"statfs", OP_STATFS},       {"getxattr", OP_GETXATTR},   {"listxattr", OP_LISTXATTR},
      {"init", OP_INIT},           {"exited", OP_EXITED},
  };
  napi_value ops, code;
  napi_create_object(env, &ops);
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    napi_create_int32(env, codes[i].code, &code);
    napi_set_named_property(env, ops, codes[i].name, code);
  }
  napi_object_freeze(env, ops);
  napi_set_named_property(env, exports, "ops", ops);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
