/* hashprobe: random probes of a large hash table, the random-access
 * counterpart of memtouch and matmul (every probe lands on a page chosen at
 * random, so a cache smaller than the table misses on most of them).
 *
 *   hashprobe [--time] MIB PROBES
 *
 * The table is MIB MiB of 64-byte buckets (one cache line each) of four
 * slots {key + 1, value} (0 marks an empty slot); a key's bucket is
 * key mod BUCKETS. Bucket b holds the keys b + j * BUCKETS for
 * j < fill(b) = 1 + mix64(b ^ seed) mod 4, each with value mix64(key), and
 * is built in one sequential pass over the table, so building costs one
 * write of every page and the probes are what is random.
 *
 * Each of the PROBES probes draws a key uniformly from [0, 4 * BUCKETS)
 * with splitmix64 (about 5/8 of them are present), scans its bucket, and
 * checks the outcome: a key found must carry its value, and a key must be
 * found exactly when j < fill(b). Found values are summed.
 *
 * Output, one line:
 *   mib=M buckets=B keys=K probes=P hits=H sum=0123456789abcdef
 * With --time, stderr also gets "hashprobe: time build_ns=N" and
 * "hashprobe: time probe_ns=N" (workload.h).
 * Exit status 0; 1 with the first wrong probe on stderr; 2 for bad
 * arguments; 3 with "hashprobe: cannot allocate N MiB" if the table cannot
 * be allocated.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKLOAD_NAME "hashprobe"
#include "workload.h"

enum {
  kSlotsPerBucket = 4,
  kBucketBytes = 64, /* one cache line: a probe reads one line of one page */
  kMaxMib = 1 << 20,
};

static const uint64_t kFillSeed = 0x6861736866696c6cULL;
static const uint64_t kProbeSeed = 0x68617368726e6421ULL;

struct Slot {
  uint64_t key_plus_one; /* 0: empty */
  uint64_t value;
};

struct Bucket {
  struct Slot slots[kSlotsPerBucket];
};

_Static_assert(sizeof(struct Bucket) == kBucketBytes, "a bucket is one cache line");

static void usage(void) {
  fprintf(stderr, "usage: hashprobe [--time] MIB PROBES   (1 <= MIB <= %d, PROBES >= 0)\n",
          kMaxMib);
  exit(2);
}

/* How many keys bucket b holds: 1..4. */
static inline unsigned fill(uint64_t b) {
  return 1 + (unsigned)(mix64(b ^ kFillSeed) % kSlotsPerBucket);
}

int main(int argc, char** argv) {
  parse_timing(&argc, &argv);
  if (argc != 3) usage();
  uint64_t mib = parse_u64("MIB", argv[1], 1, kMaxMib);
  uint64_t probes = parse_u64("PROBES", argv[2], 0, UINT64_MAX / 2);

  size_t bytes = (size_t)mib << 20;
  uint64_t buckets = bytes / kBucketBytes;
  void* mem = NULL;
  if (posix_memalign(&mem, 4096, bytes) != 0) {
    fprintf(stderr, "hashprobe: cannot allocate %" PRIu64 " MiB\n", mib);
    return 3;
  }
  struct Bucket* table = mem;

  uint64_t start = now_ns();
  uint64_t keys = 0;
  for (uint64_t b = 0; b < buckets; b++) {
    unsigned n = fill(b);
    for (unsigned j = 0; j < kSlotsPerBucket; j++) {
      uint64_t key = b + j * buckets;
      table[b].slots[j].key_plus_one = j < n ? key + 1 : 0;
      table[b].slots[j].value = j < n ? mix64(key) : 0;
    }
    keys += n;
  }
  uint64_t build_ns = now_ns() - start;

  start = now_ns();
  uint64_t state = kProbeSeed, hits = 0, sum = 0;
  for (uint64_t p = 0; p < probes; p++) {
    state += kGolden;
    uint64_t key = mix64(state) % (kSlotsPerBucket * buckets);
    uint64_t b = key % buckets;
    const struct Bucket* bucket = &table[b];
    int found = 0;
    for (unsigned j = 0; j < kSlotsPerBucket; j++) {
      if (bucket->slots[j].key_plus_one != key + 1) continue;
      if (bucket->slots[j].value != mix64(key)) {
        fprintf(stderr,
                "hashprobe: probe %" PRIu64 ": key %" PRIu64 " has value %016" PRIx64
                ", expected %016" PRIx64 "\n",
                p, key, bucket->slots[j].value, mix64(key));
        return 1;
      }
      sum += bucket->slots[j].value;
      found = 1;
      break;
    }
    int present = key / buckets < fill(b);
    if (found != present) {
      fprintf(stderr, "hashprobe: probe %" PRIu64 ": key %" PRIu64 " is %s, expected %s\n", p, key,
              found ? "present" : "absent", present ? "present" : "absent");
      return 1;
    }
    hits += (uint64_t)found;
  }
  uint64_t probe_ns = now_ns() - start;

  printf("mib=%" PRIu64 " buckets=%" PRIu64 " keys=%" PRIu64 " probes=%" PRIu64 " hits=%" PRIu64
         " sum=%016" PRIx64 "\n",
         mib, buckets, keys, probes, hits, sum);
  if (fflush(stdout) != 0) {
    perror("hashprobe: stdout");
    return 1;
  }
  report_time("build", build_ns);
  report_time("probe", probe_ns);
  free(mem);
  return 0;
}
