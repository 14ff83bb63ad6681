/* filebench: file-system throughput, one large file or many small ones (on
 * a vNode every operation goes through its FUSE root to the sComponent).
 *
 *   filebench [--time] seq DIR MIB
 *   filebench [--time] small DIR COUNT
 *
 * seq: writes DIR/filebench.seq (MIB MiB in 1 MiB write()s, then fsync and
 * close), reads it back in 1 MiB read()s comparing every byte with what was
 * written, and unlinks it. The bytes are a fixed function of their offset.
 * Output:
 *   seq bytes=N write_checksum=H read_checksum=H
 *
 * small: in DIR/filebench.small (created) creates COUNT files f0..f(COUNT-1)
 * (open O_CREAT|O_EXCL, one write() of 64 + i mod 960 bytes, close), stats
 * each (checking its size), reads each back (open, read, close, comparing
 * the bytes), unlinks each, and removes the directory. Output:
 *   small files=N bytes=B checksum=H
 *
 * A directory or file that a failed earlier run left behind is removed
 * first. Checksums are 64-bit FNV-1a over the bytes, so the output is the
 * same on every file system for the same arguments.
 * With --time, stderr also gets one "filebench: time PHASE_ns=T" line per
 * phase: write (including fsync) and read for seq; create, stat, read and
 * unlink for small (workload.h).
 * Exit status 0; 1 with the failed step on stderr; 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WORKLOAD_NAME "filebench"
#include "workload.h"

enum {
  kChunk = 1 << 20, /* seq: bytes per read() and write() */
  kSmallMin = 64,   /* small: file i has kSmallMin + i % kSmallSpread bytes */
  kSmallSpread = 960,
  kMaxMib = 64 * 1024,
  kMaxFiles = 1000000,
};

static const uint64_t kSeqSeed = 0x66696c6562656e63ULL;

static void usage(void) {
  fprintf(stderr,
          "usage: filebench [--time] seq DIR MIB      (1 <= MIB <= %d)\n"
          "       filebench [--time] small DIR COUNT  (1 <= COUNT <= %d)\n",
          kMaxMib, kMaxFiles);
  exit(2);
}

/* Prints "filebench: message[: errno text]" and exits 1. */
static void __attribute__((format(printf, 2, 3), noreturn)) fail(int err, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("filebench: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (err != 0) fprintf(stderr, ": %s", strerror(err));
  fputc('\n', stderr);
  exit(1);
}

static uint64_t fnv1a(uint64_t h, const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

/* Fills dst with the bytes at [off, off + len) of a pattern: byte o is byte
 * o % 8 (little-endian) of mix64(o / 8 ^ seed). off and len are multiples
 * of 8. */
static void pattern(uint8_t* dst, uint64_t off, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; i += 8) {
    uint64_t word = mix64((off + i) / 8 ^ seed);
    memcpy(dst + i, &word, 8);
  }
}

static void write_all(int fd, const uint8_t* p, size_t len, const char* path) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(n < 0 ? errno : EIO, "write %s", path);
    p += n;
    len -= (size_t)n;
  }
}

/* Reads exactly len bytes (fewer only at the end of the file); returns how many. */
static size_t read_full(int fd, uint8_t* p, size_t len, const char* path) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, p + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(errno, "read %s", path);
    if (n == 0) break;
    got += (size_t)n;
  }
  return got;
}

static void join_path(char* dst, size_t size, const char* dir, const char* name) {
  int len = snprintf(dst, size, "%s/%s", dir, name);
  if (len < 0 || (size_t)len >= size) fail(0, "path %s/%s is too long", dir, name);
}

static void run_seq(const char* dir, uint64_t mib) {
  char path[PATH_MAX];
  join_path(path, sizeof path, dir, "filebench.seq");
  if (unlink(path) != 0 && errno != ENOENT) fail(errno, "unlink leftover %s", path);
  uint8_t* chunk = malloc(kChunk);
  uint8_t* back = malloc(kChunk);
  if (chunk == NULL || back == NULL) fail(ENOMEM, "buffers");
  const uint64_t bytes = mib << 20;

  uint64_t start = now_ns();
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail(errno, "create %s", path);
  uint64_t written = kFnvOffset;
  for (uint64_t off = 0; off < bytes; off += kChunk) {
    pattern(chunk, off, kChunk, kSeqSeed);
    write_all(fd, chunk, kChunk, path);
    written = fnv1a(written, chunk, kChunk);
  }
  if (fsync(fd) != 0) fail(errno, "fsync %s", path);
  if (close(fd) != 0) fail(errno, "close %s", path);
  uint64_t write_ns = now_ns() - start;

  start = now_ns();
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno, "open %s", path);
  uint64_t read_sum = kFnvOffset, off = 0;
  for (;;) {
    size_t got = read_full(fd, back, kChunk, path);
    if (got == 0) break;
    if (off + got > bytes) fail(0, "%s is longer than %" PRIu64 " bytes", path, bytes);
    pattern(chunk, off, kChunk, kSeqSeed);
    if (memcmp(chunk, back, got) != 0) fail(0, "%s: wrong bytes in the MiB at %" PRIu64, path, off);
    read_sum = fnv1a(read_sum, back, got);
    off += got;
  }
  close(fd);
  uint64_t read_ns = now_ns() - start;
  if (off != bytes) fail(0, "%s: read %" PRIu64 " bytes, wrote %" PRIu64, path, off, bytes);
  if (unlink(path) != 0) fail(errno, "unlink %s", path);

  printf("seq bytes=%" PRIu64 " write_checksum=%016" PRIx64 " read_checksum=%016" PRIx64 "\n",
         bytes, written, read_sum);
  if (fflush(stdout) != 0) fail(errno, "stdout");
  report_time("write", write_ns);
  report_time("read", read_ns);
  free(chunk);
  free(back);
}

static size_t small_size(uint64_t i) {
  return kSmallMin + (size_t)(i % kSmallSpread);
}

static void small_path(char* dst, size_t size, const char* work, uint64_t i) {
  int len = snprintf(dst, size, "%s/f%" PRIu64, work, i);
  if (len < 0 || (size_t)len >= size) fail(0, "path %s/f%" PRIu64 " is too long", work, i);
}

static void run_small(const char* dir, uint64_t count) {
  char work[PATH_MAX], path[PATH_MAX];
  join_path(work, sizeof work, dir, "filebench.small");
  /* Leftovers of a failed run: the files this run would make, then the directory. */
  if (rmdir(work) != 0 && errno == ENOTEMPTY) {
    for (uint64_t i = 0; i < count; i++) {
      small_path(path, sizeof path, work, i);
      if (unlink(path) != 0 && errno != ENOENT) fail(errno, "unlink leftover %s", path);
    }
    if (rmdir(work) != 0) fail(errno, "rmdir leftover %s", work);
  }
  if (mkdir(work, 0755) != 0) fail(errno, "mkdir %s", work);
  uint8_t data[kSmallMin + kSmallSpread], back[kSmallMin + kSmallSpread + 1];

  uint64_t start = now_ns(), total = 0;
  for (uint64_t i = 0; i < count; i++) {
    small_path(path, sizeof path, work, i);
    size_t len = small_size(i);
    pattern(data, i * 1024, sizeof data, kSeqSeed);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail(errno, "create %s", path);
    write_all(fd, data, len, path);
    if (close(fd) != 0) fail(errno, "close %s", path);
    total += len;
  }
  uint64_t create_ns = now_ns() - start;

  start = now_ns();
  for (uint64_t i = 0; i < count; i++) {
    small_path(path, sizeof path, work, i);
    struct stat st;
    if (stat(path, &st) != 0) fail(errno, "stat %s", path);
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != small_size(i))
      fail(0, "stat %s: size %jd, expected %zu", path, (intmax_t)st.st_size, small_size(i));
  }
  uint64_t stat_ns = now_ns() - start;

  start = now_ns();
  uint64_t h = kFnvOffset;
  for (uint64_t i = 0; i < count; i++) {
    small_path(path, sizeof path, work, i);
    size_t len = small_size(i);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(errno, "open %s", path);
    size_t got = read_full(fd, back, sizeof back, path);
    close(fd);
    pattern(data, i * 1024, sizeof data, kSeqSeed);
    if (got != len || memcmp(back, data, len) != 0)
      fail(0, "%s: read %zu bytes that differ from the %zu written", path, got, len);
    h = fnv1a(h, back, got);
  }
  uint64_t read_ns = now_ns() - start;

  start = now_ns();
  for (uint64_t i = 0; i < count; i++) {
    small_path(path, sizeof path, work, i);
    if (unlink(path) != 0) fail(errno, "unlink %s", path);
  }
  uint64_t unlink_ns = now_ns() - start;
  if (rmdir(work) != 0) fail(errno, "rmdir %s", work);

  printf("small files=%" PRIu64 " bytes=%" PRIu64 " checksum=%016" PRIx64 "\n", count, total, h);
  if (fflush(stdout) != 0) fail(errno, "stdout");
  report_time("create", create_ns);
  report_time("stat", stat_ns);
  report_time("read", read_ns);
  report_time("unlink", unlink_ns);
}

int main(int argc, char** argv) {
  parse_timing(&argc, &argv);
  if (argc != 4) usage();
  if (strcmp(argv[1], "seq") == 0) {
    run_seq(argv[2], parse_u64("MIB", argv[3], 1, kMaxMib));
  } else if (strcmp(argv[1], "small") == 0) {
    run_small(argv[2], parse_u64("COUNT", argv[3], 1, kMaxFiles));
  } else {
    fprintf(stderr, "filebench: unknown mode '%s'\n", argv[1]);
    usage();
  }
  return 0;
}
