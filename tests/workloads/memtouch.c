/* memtouch: touches every page of a large anonymous buffer and checks that
 * what it reads back is what it wrote; the basic remote-memory workload.
 *
 *   memtouch [--time] [--random] MIB [PASSES]
 *
 * Allocates MIB MiB (page-aligned, through malloc) and makes PASSES passes
 * (default 1, at most 1000) over its 4 KiB pages. Each pass reads every word
 * of a page and replaces it with a function of its old value, the page
 * index, the word index and the pass number, so a page that loses a write
 * (or comes back as zeroes) in any pass changes the result. With --random
 * each pass visits the pages in a different deterministic shuffled order
 * (Fisher-Yates driven by splitmix64 seeded from the pass number) instead of
 * in address order; the final contents, and so the output, are the same in
 * both modes.
 *
 * Each page's 512 words are hashed with 64-bit FNV-1a over words and the page
 * hashes are combined order-independently (sum of mix64(hash + page index)).
 * "checksum" is computed from the values as the last pass writes them,
 * "recheck" by reading the whole buffer again afterwards in address order.
 *
 * Output:
 *   mib=N passes=P pages=G
 *   checksum=0123456789abcdef
 *   recheck=0123456789abcdef
 * With --time, stderr also gets "memtouch: time passN_ns=T" for each pass N
 * (from 0) and "memtouch: time recheck_ns=T" (workload.h): a sequential
 * scan's pages per second, first touch (pass 0) and later passes apart.
 * Exit status 0 if the two checksums match; 1 if they do not (with the
 * first bad word on stderr); 2 for bad arguments; 3 with
 * "memtouch: cannot allocate N MiB" on stderr if the allocation fails, which
 * is how an over-quota vNode shows up.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKLOAD_NAME "memtouch"
#include "workload.h"

enum {
  kPageSize = 4096, /* fixed, not sysconf: the output must not depend on the host */
  kWordsPerPage = kPageSize / 8,
  kMaxPasses = 1000,
};

static void usage(void) {
  fprintf(stderr,
          "usage: memtouch [--time] [--random] MIB [PASSES]   (MIB >= 1, 1 <= PASSES <= %d)\n",
          kMaxPasses);
  exit(2);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/* The value pass `pass` adds to every word of page `page`. */
static inline uint64_t page_base(uint64_t page, unsigned pass) {
  return mix64(((uint64_t)pass << 48) ^ page ^ 0x6d656d746f756368ULL);
}

/* One pass over one page: each word becomes a function of its old value.
 * The first pass only writes (as if the old value were 0), so the buffer
 * needs no zeroing and its first touch is a write. */
static inline uint64_t update_page(uint64_t* words, uint64_t page, unsigned pass) {
  uint64_t base = page_base(page, pass);
  uint64_t hash = kFnvOffset;
  if (pass == 0) {
    for (uint64_t i = 0; i < kWordsPerPage; i++) {
      uint64_t w = base + i * kGolden;
      words[i] = w;
      hash = (hash ^ w) * kFnvPrime;
    }
  } else {
    for (uint64_t i = 0; i < kWordsPerPage; i++) {
      uint64_t w = rotl(words[i], 7) ^ (base + i * kGolden);
      words[i] = w;
      hash = (hash ^ w) * kFnvPrime;
    }
  }
  return hash;
}

static inline uint64_t hash_page(const uint64_t* words) {
  uint64_t hash = kFnvOffset;
  for (uint64_t i = 0; i < kWordsPerPage; i++) hash = (hash ^ words[i]) * kFnvPrime;
  return hash;
}

/* What word `i` of page `page` should hold after `passes` passes. */
static uint64_t expected_word(uint64_t page, uint64_t i, unsigned passes) {
  uint64_t w = 0;
  for (unsigned p = 0; p < passes; p++) w = rotl(w, 7) ^ (page_base(page, p) + i * kGolden);
  return w;
}

/* Fills order[] with a shuffle of 0..n-1 that depends only on `pass`. */
static void shuffle_pages(uint64_t* order, uint64_t n, unsigned pass) {
  uint64_t state = 0x72616e646f6dULL + pass;
  for (uint64_t i = 0; i < n; i++) order[i] = i;
  for (uint64_t i = n - 1; i > 0; i--) {
    state += kGolden;
    uint64_t j = mix64(state) % (i + 1);
    uint64_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

/* Reports the first word that differs from what the passes should have left. */
static void report_first_bad_word(const uint64_t* buf, uint64_t npages, unsigned passes) {
  uint64_t bad_pages = 0;
  for (uint64_t g = 0; g < npages; g++) {
    const uint64_t* words = buf + g * kWordsPerPage;
    for (uint64_t i = 0; i < kWordsPerPage; i++) {
      uint64_t want = expected_word(g, i, passes);
      if (words[i] != want) {
        if (bad_pages == 0)
          fprintf(stderr,
                  "memtouch: page %" PRIu64 " word %" PRIu64 " is %016" PRIx64
                  ", expected %016" PRIx64 "\n",
                  g, i, words[i], want);
        bad_pages++;
        break;
      }
    }
  }
  fprintf(stderr, "memtouch: %" PRIu64 " of %" PRIu64 " pages are wrong\n", bad_pages, npages);
}

int main(int argc, char** argv) {
  parse_timing(&argc, &argv);
  int random_order = 0;
  int arg = 1;
  if (arg < argc && strcmp(argv[arg], "--random") == 0) {
    random_order = 1;
    arg++;
  }
  if (argc - arg < 1 || argc - arg > 2) usage();
  uint64_t mib = parse_u64("MIB", argv[arg], 1, SIZE_MAX >> 20);
  unsigned passes =
      argc - arg > 1 ? (unsigned)parse_u64("PASSES", argv[arg + 1], 1, kMaxPasses) : 1;

  size_t bytes = (size_t)mib << 20;
  uint64_t npages = bytes / kPageSize;
  void* mem = NULL;
  if (posix_memalign(&mem, kPageSize, bytes) != 0) {
    fprintf(stderr, "memtouch: cannot allocate %" PRIu64 " MiB\n", mib);
    return 3;
  }
  uint64_t* buf = mem;

  uint64_t* order = NULL;
  if (random_order) {
    order = malloc(npages * sizeof *order);
    if (order == NULL) {
      fprintf(stderr, "memtouch: cannot allocate the page order (%" PRIu64 " pages)\n", npages);
      return 3;
    }
  }

  printf("mib=%" PRIu64 " passes=%u pages=%" PRIu64 "\n", mib, passes, npages);
  fflush(stdout);

  uint64_t checksum = 0;
  uint64_t* pass_ns = calloc(passes, sizeof *pass_ns);
  if (pass_ns == NULL) {
    fprintf(stderr, "memtouch: cannot allocate the pass times\n");
    return 3;
  }
  for (unsigned pass = 0; pass < passes; pass++) {
    if (order != NULL) shuffle_pages(order, npages, pass);
    uint64_t start = now_ns();
    int last = pass + 1 == passes;
    for (uint64_t n = 0; n < npages; n++) {
      uint64_t g = order != NULL ? order[n] : n;
      uint64_t hash = update_page(buf + g * kWordsPerPage, g, pass);
      if (last) checksum += mix64(hash + g);
    }
    pass_ns[pass] = now_ns() - start;
  }
  printf("checksum=%016" PRIx64 "\n", checksum);
  fflush(stdout);

  uint64_t start = now_ns();
  uint64_t recheck = 0;
  for (uint64_t g = 0; g < npages; g++) recheck += mix64(hash_page(buf + g * kWordsPerPage) + g);
  uint64_t recheck_ns = now_ns() - start;
  printf("recheck=%016" PRIx64 "\n", recheck);
  if (fflush(stdout) != 0) {
    perror("memtouch: stdout");
    return 1;
  }

  if (recheck != checksum) {
    fprintf(stderr, "memtouch: recheck %016" PRIx64 " != checksum %016" PRIx64 "\n", recheck,
            checksum);
    report_first_bad_word(buf, npages, passes);
    return 1;
  }
  for (unsigned pass = 0; pass < passes; pass++) {
    char phase[32];
    snprintf(phase, sizeof phase, "pass%u", pass);
    report_time(phase, pass_ns[pass]);
  }
  report_time("recheck", recheck_ns);
  free(pass_ns);
  free(order);
  free(buf);
  return 0;
}
