/* pi: Monte Carlo estimate of pi (experiment 1 of the LegoOS paper), a
 * CPU-bound workload with almost no memory traffic.
 *
 *   pi [--time] SAMPLES [THREADS]
 *
 * SAMPLES points (x, y) are drawn uniformly from the square [0, 2^31)^2 and
 * counted when they fall inside the quarter circle of radius 2^31. THREADS
 * (default 1, at most 256) threads share the samples: thread i draws
 * SAMPLES / THREADS points, plus one if i < SAMPLES % THREADS, from its own
 * xoshiro256** generator seeded by splitmix64 from i. The test is done in
 * integers, so the count, and therefore the output, is the same on every run
 * and every machine for the same arguments (but differs between thread
 * counts, since the streams differ).
 *
 * Output, one line:
 *   samples=N threads=T hits=H pi=3.1415926536
 * With --time, stderr also gets "pi: time count_ns=N", the time from starting
 * the threads to joining them (workload.h).
 * Exit status 0; 2 with a message on stderr for bad arguments, 1 if a thread
 * cannot be started.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKLOAD_NAME "pi"
#include "workload.h"

enum { kMaxThreads = 256 };

/* One word of per-thread state per cache line, so the threads do not share
 * lines while they count. */
struct Worker {
  pthread_t thread;
  unsigned index;
  uint64_t samples;
  uint64_t hits;
} __attribute__((aligned(64)));

static void usage(void) {
  fprintf(stderr, "usage: pi [--time] SAMPLES [THREADS]   (SAMPLES >= 1, 1 <= THREADS <= %d)\n",
          kMaxThreads);
  exit(2);
}

/* Parses a decimal number in [min, max]; anything else is a usage error. */

static uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static inline uint64_t xoshiro256ss(uint64_t s[4]) {
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

static void* count_hits(void* arg) {
  struct Worker* w = arg;
  uint64_t seed = 0x5eed0000ULL + w->index;
  uint64_t s[4];
  for (int i = 0; i < 4; i++) s[i] = splitmix64(&seed);

  /* Radius 2^31: x^2 + y^2 < 2^63 fits in 64 bits, so the test is exact. */
  const uint64_t r2 = 1ULL << 62;
  uint64_t hits = 0;
  for (uint64_t n = 0; n < w->samples; n++) {
    uint64_t v = xoshiro256ss(s);
    uint64_t x = v >> 33;               /* top 31 bits */
    uint64_t y = (v >> 2) & 0x7fffffff; /* next 31 bits */
    hits += (x * x + y * y < r2);
  }
  w->hits = hits;
  return NULL;
}

int main(int argc, char** argv) {
  parse_timing(&argc, &argv);
  if (argc < 2 || argc > 3) usage();
  uint64_t samples = parse_u64("SAMPLES", argv[1], 1, UINT64_MAX / 4);
  unsigned threads = argc > 2 ? (unsigned)parse_u64("THREADS", argv[2], 1, kMaxThreads) : 1;

  static struct Worker workers[kMaxThreads];
  for (unsigned i = 0; i < threads; i++) {
    workers[i].index = i;
    workers[i].samples = samples / threads + (i < samples % threads ? 1 : 0);
  }
  uint64_t start = now_ns();
  /* Thread 0's share runs on the main thread. */
  for (unsigned i = 1; i < threads; i++) {
    int err = pthread_create(&workers[i].thread, NULL, count_hits, &workers[i]);
    if (err != 0) {
      fprintf(stderr, "pi: pthread_create: %s\n", strerror(err));
      return 1;
    }
  }
  count_hits(&workers[0]);
  uint64_t hits = workers[0].hits;
  for (unsigned i = 1; i < threads; i++) {
    int err = pthread_join(workers[i].thread, NULL);
    if (err != 0) {
      fprintf(stderr, "pi: pthread_join: %s\n", strerror(err));
      return 1;
    }
    hits += workers[i].hits;
  }
  uint64_t elapsed = now_ns() - start;

  printf("samples=%" PRIu64 " threads=%u hits=%" PRIu64 " pi=%.10f\n", samples, threads, hits,
         4.0 * (double)hits / (double)samples);
  if (fflush(stdout) != 0) {
    perror("pi: stdout");
    return 1;
  }
  report_time("count", elapsed);
  return 0;
}
