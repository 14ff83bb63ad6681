/* fork_evict: checks fork of a large address space, which on a vNode means
 * pages that may have been evicted from the parent's cache to the
 * mComponent before the fork (they must reach the child, never as zeroes)
 * and copy-on-write in both directions afterwards.
 *
 *   fork_evict MIB
 *
 * The parent writes a pattern (a function of page and word index) to every
 * word of MIB MiB, then forks. The child checks every page against the
 * pattern, overwrites every page with a second pattern, checks that again,
 * and exits 0 only if all of it matched. The parent waits for the child and
 * then checks that all its own pages still hold the first pattern.
 *
 * Output, one line from the parent:
 *   child=ok parent=ok
 * with FAILED in place of ok for the side that saw wrong data, or could not
 * run (details, such as the first bad page, on stderr).
 * Exit status 0 if both are ok; 1 otherwise; 2 for bad arguments; 3 with
 * "fork_evict: cannot allocate N MiB" if the buffer cannot be allocated.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKLOAD_NAME "fork_evict"
#include "workload.h"

enum {
  kPageSize = 4096,
  kWordsPerPage = kPageSize / 8,
};

static const uint64_t kParentSeed = 0x706172656e74ULL;
static const uint64_t kChildSeed = 0x6368696c64ULL;

static void usage(void) {
  fprintf(stderr, "usage: fork_evict MIB   (MIB >= 1)\n");
  exit(2);
}



static void fill(uint64_t* buf, uint64_t npages, uint64_t seed) {
  for (uint64_t g = 0; g < npages; g++) {
    uint64_t base = mix64(g ^ seed);
    uint64_t* words = buf + g * kWordsPerPage;
    for (uint64_t i = 0; i < kWordsPerPage; i++) words[i] = base + i * kGolden;
  }
}

/* Checks every word; reports the first bad one and the number of bad pages.
 * Returns 1 if everything matched. */
static int verify(const char* who, const uint64_t* buf, uint64_t npages, uint64_t seed) {
  uint64_t bad_pages = 0, zero_pages = 0;
  for (uint64_t g = 0; g < npages; g++) {
    uint64_t base = mix64(g ^ seed);
    const uint64_t* words = buf + g * kWordsPerPage;
    for (uint64_t i = 0; i < kWordsPerPage; i++) {
      uint64_t want = base + i * kGolden;
      if (words[i] == want) continue;
      if (bad_pages == 0)
        fprintf(stderr,
                "fork_evict: %s: page %" PRIu64 " word %" PRIu64 " is %016" PRIx64
                ", expected %016" PRIx64 "\n",
                who, g, i, words[i], want);
      bad_pages++;
      int all_zero = 1;
      for (uint64_t j = 0; j < kWordsPerPage; j++) all_zero &= words[j] == 0;
      zero_pages += all_zero;
      break;
    }
  }
  if (bad_pages != 0)
    fprintf(stderr,
            "fork_evict: %s: %" PRIu64 " of %" PRIu64 " pages wrong, %" PRIu64
            " of them all zeroes\n",
            who, bad_pages, npages, zero_pages);
  return bad_pages == 0;
}

int main(int argc, char** argv) {
  if (argc != 2) usage();
  uint64_t mib = parse_u64("MIB", argv[1], 1, SIZE_MAX >> 20);
  size_t bytes = (size_t)mib << 20;
  uint64_t npages = bytes / kPageSize;

  void* mem = NULL;
  if (posix_memalign(&mem, kPageSize, bytes) != 0) {
    fprintf(stderr, "fork_evict: cannot allocate %" PRIu64 " MiB\n", mib);
    return 3;
  }
  uint64_t* buf = mem;
  fill(buf, npages, kParentSeed);

  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "fork_evict: fork: %s\n", strerror(errno));
    printf("child=FAILED parent=%s\n",
           verify("parent", buf, npages, kParentSeed) ? "ok" : "FAILED");
    return 1;
  }
  if (pid == 0) {
    int ok = verify("child, inherited pages", buf, npages, kParentSeed);
    fill(buf, npages, kChildSeed);
    ok &= verify("child, its own writes", buf, npages, kChildSeed);
    _exit(ok ? 0 : 1);
  }

  int child_ok = 0, status = 0;
  pid_t waited;
  while ((waited = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  if (waited < 0) {
    fprintf(stderr, "fork_evict: waitpid: %s\n", strerror(errno));
  } else if (WIFSIGNALED(status)) {
    fprintf(stderr, "fork_evict: child killed by signal %d\n", WTERMSIG(status));
  } else if (WIFEXITED(status)) {
    child_ok = WEXITSTATUS(status) == 0;
  }
  int parent_ok = verify("parent", buf, npages, kParentSeed);

  printf("child=%s parent=%s\n", child_ok ? "ok" : "FAILED", parent_ok ? "ok" : "FAILED");
  if (fflush(stdout) != 0) {
    perror("fork_evict: stdout");
    return 1;
  }
  free(mem);
  return child_ok && parent_ok ? 0 : 1;
}
