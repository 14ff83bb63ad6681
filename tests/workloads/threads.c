/* threads: several threads touching one address space, each its own slice
 * of a buffer plus a shared page under a mutex and a shared atomic counter.
 *
 *   threads NTHREADS MIB
 *
 * Allocates a buffer of MIB MiB and gives thread t (0 <= t < NTHREADS <= 256)
 * the 4 KiB pages [t * G / T, (t + 1) * G / T), G being the page count. The
 * threads start together (barrier). Each one writes a pattern that depends
 * only on the page and word index to every word of its pages, and after each
 * page adds a value derived from the page to one slot of a shared page under
 * a mutex and to an atomic counter; then it makes 10000 more mutex-protected
 * and atomic updates derived from its index, and finally re-reads its slice
 * and hashes it (64-bit FNV-1a over words in address order, then mix64). All updates
 * are sums, so the shared results do not depend on the interleaving.
 *
 * After joining, the main thread re-hashes every slice itself (the threads'
 * writes must be visible to it), recomputes what the shared page and the
 * counter must hold, and checks all three.
 *
 * Output:
 *   threads=T mib=M pages=G
 *   thread=0 pages=P checksum=0123456789abcdef     (one line per thread, in order)
 *   shared=0123456789abcdef atomic=N total=0123456789abcdef
 * Exit status 0 if every check passed; 1 otherwise (details on stderr);
 * 2 for bad arguments; 3 with "threads: cannot allocate N MiB" if the buffer
 * cannot be allocated.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKLOAD_NAME "threads"
#include "workload.h"

enum {
  kPageSize = 4096,
  kWordsPerPage = kPageSize / 8,
  kMaxThreads = 256,
  kSharedSlots = kWordsPerPage, /* the shared region is one page */
  kSharedUpdates = 10000,       /* extra mutex/atomic updates per thread */
};


struct Worker {
  pthread_t thread;
  unsigned index;
  uint64_t first_page;
  uint64_t npages;
  uint64_t checksum;
} __attribute__((aligned(64)));

static uint64_t* g_buf;
static pthread_barrier_t g_start;
static pthread_mutex_t g_shared_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_shared[kSharedSlots]
    __attribute__((aligned(kPageSize))); /* under g_shared_lock */
static _Atomic uint64_t g_counter;

static void usage(void) {
  fprintf(stderr, "usage: threads NTHREADS MIB   (1 <= NTHREADS <= %d, MIB >= 1)\n", kMaxThreads);
  exit(2);
}



static inline uint64_t page_value(uint64_t page) {
  return mix64(page ^ 0x746872656164ULL);
}

/* The shared updates: which slot and how much, for page updates and for
 * each thread's extra updates. */
static inline unsigned page_slot(uint64_t page) {
  return (unsigned)(page % kSharedSlots);
}
static inline uint64_t page_amount(uint64_t page) {
  return page_value(page) >> 8;
}
static inline unsigned extra_slot(unsigned t, unsigned j) {
  return (t * 31 + j * 7) % kSharedSlots;
}
static inline uint64_t extra_amount(unsigned t, unsigned j) {
  return mix64(((uint64_t)t << 32) | j) >> 8;
}

static uint64_t hash_pages(const uint64_t* words, uint64_t npages) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint64_t i = 0; i < npages * kWordsPerPage; i++) h = (h ^ words[i]) * 0x100000001b3ULL;
  return mix64(h); /* FNV's low bits depend only on the data's low bits */
}

static void* work(void* arg) {
  struct Worker* w = arg;
  pthread_barrier_wait(&g_start);
  for (uint64_t g = w->first_page; g < w->first_page + w->npages; g++) {
    uint64_t* words = g_buf + g * kWordsPerPage;
    uint64_t base = page_value(g);
    for (uint64_t i = 0; i < kWordsPerPage; i++) words[i] = base + i * kGolden;
    pthread_mutex_lock(&g_shared_lock);
    g_shared[page_slot(g)] += page_amount(g);
    pthread_mutex_unlock(&g_shared_lock);
    atomic_fetch_add_explicit(&g_counter, page_amount(g) & 0xffff, memory_order_relaxed);
  }
  for (unsigned j = 0; j < kSharedUpdates; j++) {
    pthread_mutex_lock(&g_shared_lock);
    g_shared[extra_slot(w->index, j)] += extra_amount(w->index, j);
    pthread_mutex_unlock(&g_shared_lock);
    atomic_fetch_add_explicit(&g_counter, extra_amount(w->index, j) & 0xffff, memory_order_relaxed);
  }
  w->checksum = hash_pages(g_buf + w->first_page * kWordsPerPage, w->npages);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 3) usage();
  unsigned nthreads = (unsigned)parse_u64("NTHREADS", argv[1], 1, kMaxThreads);
  uint64_t mib = parse_u64("MIB", argv[2], 1, SIZE_MAX >> 20);

  size_t bytes = (size_t)mib << 20;
  uint64_t npages = bytes / kPageSize;
  void* mem = NULL;
  if (posix_memalign(&mem, kPageSize, bytes) != 0) {
    fprintf(stderr, "threads: cannot allocate %" PRIu64 " MiB\n", mib);
    return 3;
  }
  g_buf = mem;

  static struct Worker workers[kMaxThreads];
  for (unsigned t = 0; t < nthreads; t++) {
    workers[t].index = t;
    workers[t].first_page = npages * t / nthreads;
    workers[t].npages = npages * (t + 1) / nthreads - workers[t].first_page;
  }
  int err = pthread_barrier_init(&g_start, NULL, nthreads);
  if (err != 0) {
    fprintf(stderr, "threads: pthread_barrier_init: %s\n", strerror(err));
    return 1;
  }
  for (unsigned t = 1; t < nthreads; t++) {
    err = pthread_create(&workers[t].thread, NULL, work, &workers[t]);
    if (err != 0) {
      fprintf(stderr, "threads: pthread_create: %s\n", strerror(err));
      return 1;
    }
  }
  work(&workers[0]);
  for (unsigned t = 1; t < nthreads; t++) {
    err = pthread_join(workers[t].thread, NULL);
    if (err != 0) {
      fprintf(stderr, "threads: pthread_join: %s\n", strerror(err));
      return 1;
    }
  }

  int failed = 0;
  printf("threads=%u mib=%" PRIu64 " pages=%" PRIu64 "\n", nthreads, mib, npages);
  uint64_t total = 0;
  for (unsigned t = 0; t < nthreads; t++) {
    const struct Worker* w = &workers[t];
    uint64_t again = hash_pages(g_buf + w->first_page * kWordsPerPage, w->npages);
    if (again != w->checksum) {
      fprintf(stderr,
              "threads: slice of thread %u hashes to %016" PRIx64 " in the main thread, %016" PRIx64
              " in its own\n",
              t, again, w->checksum);
      failed = 1;
    }
    printf("thread=%u pages=%" PRIu64 " checksum=%016" PRIx64 "\n", t, w->npages, w->checksum);
    total = mix64(total ^ w->checksum);
  }

  /* What the shared page and the counter must hold, whatever the order. */
  static uint64_t want[kSharedSlots];
  uint64_t want_counter = 0;
  for (uint64_t g = 0; g < npages; g++) {
    want[page_slot(g)] += page_amount(g);
    want_counter += page_amount(g) & 0xffff;
  }
  for (unsigned t = 0; t < nthreads; t++) {
    for (unsigned j = 0; j < kSharedUpdates; j++) {
      want[extra_slot(t, j)] += extra_amount(t, j);
      want_counter += extra_amount(t, j) & 0xffff;
    }
  }
  uint64_t shared = 0xcbf29ce484222325ULL;
  unsigned bad_slots = 0;
  for (unsigned s = 0; s < kSharedSlots; s++) {
    if (g_shared[s] != want[s] && bad_slots++ == 0)
      fprintf(stderr, "threads: shared slot %u is %016" PRIx64 ", expected %016" PRIx64 "\n", s,
              g_shared[s], want[s]);
    shared = (shared ^ g_shared[s]) * 0x100000001b3ULL;
  }
  if (bad_slots != 0) {
    fprintf(stderr, "threads: %u of %d shared slots are wrong\n", bad_slots, kSharedSlots);
    failed = 1;
  }
  uint64_t counter = atomic_load(&g_counter);
  if (counter != want_counter) {
    fprintf(stderr, "threads: atomic counter is %" PRIu64 ", expected %" PRIu64 "\n", counter,
            want_counter);
    failed = 1;
  }
  total = mix64(total ^ shared ^ counter);
  printf("shared=%016" PRIx64 " atomic=%" PRIu64 " total=%016" PRIx64 "\n", shared, counter, total);
  if (fflush(stdout) != 0) {
    perror("threads: stdout");
    return 1;
  }
  pthread_barrier_destroy(&g_start);
  free(mem);
  return failed;
}
