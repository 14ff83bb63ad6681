/* What the workloads share: argument parsing with one clear error, and the
 * deterministic mixing and hashing that make their output comparable byte
 * for byte between native Linux and a vNode.
 *
 * A workload defines WORKLOAD_NAME and its usage() before including this. */
#ifndef SPLITKERNEL_WORKLOAD_H
#define SPLITKERNEL_WORKLOAD_H

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef WORKLOAD_NAME
#error "define WORKLOAD_NAME before including workload.h"
#endif

static void usage(void);

static const uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
static const uint64_t kFnvPrime = 0x100000001b3ULL;
static const uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

/* A decimal number in [min, max], or the usage message and exit 2. */
static uint64_t parse_u64(const char* what, const char* text, uint64_t min, uint64_t max) {
  char* end = NULL;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (!isdigit((unsigned char)text[0]) || errno != 0 || *end != '\0' || value < min ||
      value > max) {
    fprintf(stderr, WORKLOAD_NAME ": bad %s '%s'\n", what, text);
    usage();
  }
  return value;
}

/* The splitmix64 finaliser: a cheap, well-spread 64-bit mix. */
static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Timing, for the benchmarks (bench/run.py). A workload that supports it
 * takes --time as its first argument and then also prints, on stderr after
 * its output, one line per timed phase:
 *   NAME: time PHASE_ns=N
 * PHASE is the kernel of the work, measured with CLOCK_MONOTONIC inside the
 * program, so process start-up and argument parsing are not counted. stdout
 * is the same with and without --time (the benchmarks compare it byte for
 * byte between native and vNode runs); without --time stderr stays empty.
 * The flag lives in a function so that workloads that time nothing get no
 * unused-variable warning. */
static inline int* timing_flag(void) {
  static int flag = 0;
  return &flag;
}

/* Removes a leading --time from the arguments and turns timing on. */
static inline void parse_timing(int* argc, char*** argv) {
  if (*argc > 1 && strcmp((*argv)[1], "--time") == 0) {
    *timing_flag() = 1;
    (*argv)[1] = (*argv)[0];
    ++*argv;
    --*argc;
  }
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The "NAME: time PHASE_ns=N" line, when timing is on. */
static inline void report_time(const char* phase, uint64_t ns) {
  if (*timing_flag())
    fprintf(stderr, WORKLOAD_NAME ": time %s_ns=%llu\n", phase, (unsigned long long)ns);
}

#endif
