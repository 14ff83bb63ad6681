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

#endif
