/* fileio: walks one file through the common file-system operations and
 * checks the data after each; the basic storage workload.
 *
 *   fileio DIR MIB
 *
 * Works in DIR/fileio.work (created; if a failed run left it behind, its
 * known files are removed first) and prints one line per step:
 *
 *   mkdir ok
 *   write bytes=N chunks=C checksum=H      N = MIB MiB in 64 KiB write()s to fileio.tmp
 *   fsync ok
 *   rename ok                              fileio.tmp -> fileio.dat; the old name is gone
 *   read bytes=N checksum=H                read() in 40000-byte pieces, compared with the pattern
 *   pread ok                               4 pread()s at unaligned offsets
 *   mmap bytes=N checksum=H                a shared read-only mapping of the whole file
 *   append bytes=1000 size=S checksum=H    O_APPEND write of another pattern
 *   truncate size=S checksum=H             truncate() to N / 2 + 123
 *   extend size=S zeros=ok checksum=H      truncate() 5000 bytes longer; the new bytes read as 0
 *   stat size=S type=regular nlink=1
 *   symlink target=fileio.dat size=S       symlink(), readlink(), stat() through the link
 *   list entries=2 fileio.dat fileio.link  readdir() of the work directory, sorted
 *   unlink ok                              both names gone (stat gives ENOENT)
 *   rmdir ok
 *
 * The file's bytes are a fixed function of their offset; every checksum is
 * 64-bit FNV-1a over the whole file's bytes as read back, so the output is the
 * same on every run and every file system for the same MIB.
 * Exit status 0 if every step succeeded and every byte matched; 1 with the
 * failing step on stderr otherwise; 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define WORKLOAD_NAME "fileio"
#include "workload.h"

enum {
  kChunk = 64 * 1024,   /* write() size */
  kReadPiece = 40000,   /* read() size: deliberately not a power of two */
  kAppendBytes = 1000,  /* not a multiple of any block size */
  kTruncateExtra = 123, /* truncate to N / 2 + this: an unaligned size */
  kExtendBytes = 5000,  /* extend by this much past the truncated size */
  kMaxMib = 64 * 1024,
};

static const uint64_t kMainSeed = 0x66696c65696f31ULL;
static const uint64_t kTailSeed = 0x66696c65696f32ULL;

/* What the file must hold: [0, main_end) main pattern, [main_end, tail_end)
 * tail pattern, [tail_end, size) zeroes. */
struct Layout {
  uint64_t main_end;
  uint64_t tail_end;
  uint64_t size;
};

static char g_dat[PATH_MAX];
static char g_tmp[PATH_MAX];
static char g_link[PATH_MAX];
static char g_work[PATH_MAX];

static void usage(void) {
  fprintf(stderr, "usage: fileio DIR MIB   (1 <= MIB <= %d)\n", kMaxMib);
  exit(2);
}


/* Prints "fileio: STEP: message[: errno text]" and exits 1. */
static void __attribute__((format(printf, 2, 3), noreturn)) fail(int err, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fileio: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (err != 0) fprintf(stderr, ": %s", strerror(err));
  fputc('\n', stderr);
  exit(1);
}

static void step(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void step(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  if (fflush(stdout) != 0) fail(errno, "stdout");
}


/* Fills dst with the bytes the layout puts at [off, off + len). Byte o of a
 * pattern is byte o % 8 (little-endian) of mix64(o / 8 ^ seed). */
static void expected_bytes(const struct Layout* layout, uint8_t* dst, uint64_t off, size_t len) {
  uint64_t word_index = UINT64_MAX, word = 0, word_seed = 0;
  for (size_t i = 0; i < len; i++) {
    uint64_t o = off + i;
    uint64_t seed;
    if (o < layout->main_end) {
      seed = kMainSeed;
    } else if (o < layout->tail_end) {
      seed = kTailSeed;
    } else {
      dst[i] = 0;
      continue;
    }
    if (o / 8 != word_index || seed != word_seed) {
      word_index = o / 8;
      word_seed = seed;
      word = mix64(word_index ^ seed);
    }
    dst[i] = (uint8_t)(word >> (8 * (o % 8)));
  }
}

static uint64_t fnv1a(uint64_t h, const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* Compares got with the layout's bytes at off; fails naming the first bad byte. */
static void check_bytes(const char* what, const struct Layout* layout, const uint8_t* got,
                        uint64_t off, size_t len, uint8_t* scratch) {
  expected_bytes(layout, scratch, off, len);
  if (memcmp(got, scratch, len) == 0) return;
  size_t i = 0;
  while (got[i] == scratch[i]) i++;
  fail(0, "%s: byte %" PRIu64 " is 0x%02x, expected 0x%02x", what, off + i, got[i], scratch[i]);
}

static void write_all(int fd, const uint8_t* p, size_t len, const char* what) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(n < 0 ? errno : 0, "%s: write", what);
    p += n;
    len -= (size_t)n;
  }
}

/* Reads the whole file with read() and checks every byte and the size;
 * returns the checksum. */
static uint64_t read_and_check(const char* what, const struct Layout* layout) {
  static uint8_t buf[kReadPiece], scratch[kReadPiece];
  int fd = open(g_dat, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno, "%s: open %s", what, g_dat);
  uint64_t off = 0, h = kFnvOffset;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(errno, "%s: read at %" PRIu64, what, off);
    if (n == 0) break;
    if (off + (uint64_t)n > layout->size)
      fail(0, "%s: file is longer than %" PRIu64 " bytes", what, layout->size);
    check_bytes(what, layout, buf, off, (size_t)n, scratch);
    h = fnv1a(h, buf, (size_t)n);
    off += (uint64_t)n;
  }
  if (off != layout->size)
    fail(0, "%s: read %" PRIu64 " bytes, expected %" PRIu64, what, off, layout->size);
  close(fd);
  return h;
}

static uint64_t file_size(const char* what, const char* path) {
  struct stat st;
  if (stat(path, &st) != 0) fail(errno, "%s: stat %s", what, path);
  return (uint64_t)st.st_size;
}

static void expect_gone(const char* what, const char* path) {
  struct stat st;
  if (lstat(path, &st) == 0) fail(0, "%s: %s still exists", what, path);
  if (errno != ENOENT) fail(errno, "%s: lstat %s: expected ENOENT", what, path);
}

static int compare_names(const void* a, const void* b) {
  return strcmp(*(char* const*)a, *(char* const*)b);
}

static void join_path(char* dst, size_t size, const char* dir, const char* name) {
  int len = snprintf(dst, size, "%s/%s", dir, name);
  if (len < 0 || (size_t)len >= size) fail(0, "path %s/%s is too long", dir, name);
}

static void make_paths(const char* dir) {
  join_path(g_work, sizeof g_work, dir, "fileio.work");
  join_path(g_tmp, sizeof g_tmp, g_work, "fileio.tmp");
  join_path(g_dat, sizeof g_dat, g_work, "fileio.dat");
  join_path(g_link, sizeof g_link, g_work, "fileio.link");
}

int main(int argc, char** argv) {
  if (argc != 3) usage();
  uint64_t mib = parse_u64("MIB", argv[2], 1, kMaxMib);
  const uint64_t n = mib << 20;
  make_paths(argv[1]);
  static uint8_t chunk[kChunk], scratch[kChunk];

  /* mkdir, cleaning up after a failed earlier run. */
  if (mkdir(g_work, 0755) != 0) {
    if (errno != EEXIST) fail(errno, "mkdir %s", g_work);
    const char* leftovers[] = {g_tmp, g_dat, g_link};
    for (size_t i = 0; i < sizeof leftovers / sizeof *leftovers; i++)
      if (unlink(leftovers[i]) != 0 && errno != ENOENT)
        fail(errno, "mkdir: unlink leftover %s", leftovers[i]);
  }
  step("mkdir ok");

  /* write + fsync */
  struct Layout layout = {.main_end = n, .tail_end = n, .size = n};
  int fd = open(g_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(errno, "write: open %s", g_tmp);
  uint64_t h = kFnvOffset, chunks = 0;
  for (uint64_t off = 0; off < n; off += kChunk) {
    expected_bytes(&layout, chunk, off, kChunk);
    write_all(fd, chunk, kChunk, "write");
    h = fnv1a(h, chunk, kChunk);
    chunks++;
  }
  const uint64_t written = h;
  step("write bytes=%" PRIu64 " chunks=%" PRIu64 " checksum=%016" PRIx64, n, chunks, written);
  if (fsync(fd) != 0) fail(errno, "fsync");
  if (close(fd) != 0) fail(errno, "write: close");
  step("fsync ok");

  /* rename */
  if (rename(g_tmp, g_dat) != 0) fail(errno, "rename %s to %s", g_tmp, g_dat);
  expect_gone("rename", g_tmp);
  if (file_size("rename", g_dat) != n) fail(0, "rename: size changed");
  step("rename ok");

  /* read */
  h = read_and_check("read", &layout);
  if (h != written) fail(0, "read: checksum %016" PRIx64 " != written %016" PRIx64, h, written);
  step("read bytes=%" PRIu64 " checksum=%016" PRIx64, n, h);

  /* pread at unaligned offsets, including the last bytes of the file. */
  fd = open(g_dat, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno, "pread: open");
  const uint64_t offsets[] = {1, n / 3 + 7, n / 2 - 4095, n - 4093};
  for (size_t i = 0; i < sizeof offsets / sizeof *offsets; i++) {
    ssize_t got = pread(fd, chunk, 4096, (off_t)offsets[i]);
    size_t want = (size_t)(n - offsets[i] < 4096 ? n - offsets[i] : 4096);
    if (got < 0) fail(errno, "pread at %" PRIu64, offsets[i]);
    if ((size_t)got != want)
      fail(0, "pread at %" PRIu64 ": got %zd bytes, expected %zu", offsets[i], got, want);
    check_bytes("pread", &layout, chunk, offsets[i], want, scratch);
  }
  close(fd);
  step("pread ok");

  /* mmap */
  fd = open(g_dat, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno, "mmap: open");
  uint8_t* map = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) fail(errno, "mmap");
  close(fd);
  h = kFnvOffset;
  for (uint64_t off = 0; off < n; off += kChunk) {
    check_bytes("mmap", &layout, map + off, off, kChunk, scratch);
    h = fnv1a(h, map + off, kChunk);
  }
  if (munmap(map, n) != 0) fail(errno, "munmap");
  if (h != written) fail(0, "mmap: checksum %016" PRIx64 " != written %016" PRIx64, h, written);
  step("mmap bytes=%" PRIu64 " checksum=%016" PRIx64, n, h);

  /* append */
  fd = open(g_dat, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) fail(errno, "append: open");
  layout.tail_end = layout.size = n + kAppendBytes;
  expected_bytes(&layout, chunk, n, kAppendBytes);
  write_all(fd, chunk, kAppendBytes, "append");
  struct stat st;
  if (fstat(fd, &st) != 0) fail(errno, "append: fstat");
  if ((uint64_t)st.st_size != layout.size)
    fail(0, "append: size %jd, expected %" PRIu64, (intmax_t)st.st_size, layout.size);
  if (close(fd) != 0) fail(errno, "append: close");
  h = read_and_check("append", &layout);
  step("append bytes=%d size=%" PRIu64 " checksum=%016" PRIx64, kAppendBytes, layout.size, h);

  /* truncate down */
  const uint64_t cut = n / 2 + kTruncateExtra;
  if (truncate(g_dat, (off_t)cut) != 0) fail(errno, "truncate to %" PRIu64, cut);
  layout = (struct Layout){.main_end = cut, .tail_end = cut, .size = cut};
  if (file_size("truncate", g_dat) != cut) fail(0, "truncate: size is not %" PRIu64, cut);
  h = read_and_check("truncate", &layout);
  step("truncate size=%" PRIu64 " checksum=%016" PRIx64, cut, h);

  /* truncate up: the new bytes must read as zeroes, not as the old data. */
  layout.size = cut + kExtendBytes;
  if (truncate(g_dat, (off_t)layout.size) != 0) fail(errno, "extend to %" PRIu64, layout.size);
  if (file_size("extend", g_dat) != layout.size)
    fail(0, "extend: size is not %" PRIu64, layout.size);
  h = read_and_check("extend", &layout);
  step("extend size=%" PRIu64 " zeros=ok checksum=%016" PRIx64, layout.size, h);

  /* stat */
  if (stat(g_dat, &st) != 0) fail(errno, "stat");
  if (!S_ISREG(st.st_mode)) fail(0, "stat: not a regular file (mode %o)", (unsigned)st.st_mode);
  if ((uint64_t)st.st_size != layout.size) fail(0, "stat: wrong size %jd", (intmax_t)st.st_size);
  step("stat size=%jd type=regular nlink=%ju", (intmax_t)st.st_size, (uintmax_t)st.st_nlink);

  /* symlink */
  if (symlink("fileio.dat", g_link) != 0) fail(errno, "symlink");
  char target[PATH_MAX];
  ssize_t tlen = readlink(g_link, target, sizeof target - 1);
  if (tlen < 0) fail(errno, "readlink");
  target[tlen] = '\0';
  if (strcmp(target, "fileio.dat") != 0) fail(0, "readlink: got '%s'", target);
  uint64_t via_link = file_size("symlink", g_link);
  if (via_link != layout.size)
    fail(0, "symlink: stat through the link gives size %" PRIu64, via_link);
  step("symlink target=%s size=%" PRIu64, target, via_link);

  /* list */
  DIR* d = opendir(g_work);
  if (d == NULL) fail(errno, "opendir %s", g_work);
  char* names[16];
  size_t count = 0;
  struct dirent* e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (count == sizeof names / sizeof *names) fail(0, "list: too many entries");
    names[count] = strdup(e->d_name);
    if (names[count] == NULL) fail(errno, "list: strdup");
    count++;
  }
  if (errno != 0) fail(errno, "readdir");
  closedir(d);
  qsort(names, count, sizeof *names, compare_names);
  printf("list entries=%zu", count);
  for (size_t i = 0; i < count; i++) {
    printf(" %s", names[i]);
    free(names[i]);
  }
  step("%s", "");
  if (count != 2) fail(0, "list: expected 2 entries");

  /* unlink + rmdir */
  if (unlink(g_link) != 0) fail(errno, "unlink %s", g_link);
  if (unlink(g_dat) != 0) fail(errno, "unlink %s", g_dat);
  expect_gone("unlink", g_link);
  expect_gone("unlink", g_dat);
  step("unlink ok");
  if (rmdir(g_work) != 0) fail(errno, "rmdir %s", g_work);
  expect_gone("rmdir", g_work);
  step("rmdir ok");
  return 0;
}
