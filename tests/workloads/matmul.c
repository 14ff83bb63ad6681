/* matmul: blocked multiplication of doubles, a compute- and memory-bound
 * workload with a regular access pattern.
 *
 *   matmul [--time] N [BLOCK [K]]
 *
 * C = A * B with A N x K, B K x N and C N x N (K defaults to N: square
 * matrices). A[i][k] = ((31i + 17k) mod 19 - 9) / 4 and
 * B[k][j] = ((13k + 29j) mod 23 - 11) / 8, and C is computed with
 * BLOCK x BLOCK tiles (default 64) in i-k-j order. Every product is a
 * multiple of 1/32 no larger than 99/32 in magnitude, so every partial sum
 * (at most 99K/32, far below 2^48) is exact in a double: C, and the output,
 * do not depend on the summation order, the block size, the compiler or the
 * machine. One element per row is recomputed with a plain dot product and
 * must match exactly.
 *
 * A small N with a large K makes a large working set (8 (N^2 + 2NK) bytes)
 * for few operations (2 N^2 K): every i block sweeps all of B once, so B is
 * read N / BLOCK times, the reuse a cache must hold to keep it fast. The
 * benchmarks (bench/run.py) use that shape.
 *
 * Output, one line:
 *   n=N block=B [k=K ]sum=S weighted=W trace=T hash=0123456789abcdef
 * ("k=K " only when K was given). sum is the sum of C's elements, weighted
 * the sum of C[i][j] * ((i + 2j) mod 7 + 1), trace the sum of its diagonal
 * (all exact, printed with %.6f), hash 64-bit FNV-1a over C's bit patterns
 * in row order.
 * With --time, stderr also gets "matmul: time init_ns=N" (filling A and B)
 * and "matmul: time multiply_ns=N" (the blocked product), see workload.h.
 * Exit status 0 on success; 1 if a check failed; 2 for bad arguments;
 * 3 with "matmul: cannot allocate ..." if the matrices cannot be allocated.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKLOAD_NAME "matmul"
#include "workload.h"

enum { kMaxN = 8192, kMaxK = 1 << 22 };

static void usage(void) {
  fprintf(stderr,
          "usage: matmul [--time] N [BLOCK [K]]   (1 <= N <= %d, 1 <= BLOCK <= N, 1 <= K <= %d)\n",
          kMaxN, kMaxK);
  exit(2);
}

static inline double a_at(size_t i, size_t j) {
  return (double)((int)((31 * i + 17 * j) % 19) - 9) / 4.0;
}
static inline double b_at(size_t i, size_t j) {
  return (double)((int)((13 * i + 29 * j) % 23) - 11) / 8.0;
}

static inline size_t min_size(size_t a, size_t b) {
  return a < b ? a : b;
}

int main(int argc, char** argv) {
  parse_timing(&argc, &argv);
  if (argc < 2 || argc > 4) usage();
  size_t n = (size_t)parse_u64("N", argv[1], 1, kMaxN);
  size_t block = argc > 2 ? (size_t)parse_u64("BLOCK", argv[2], 1, n) : min_size(64, n);
  size_t depth = argc > 3 ? (size_t)parse_u64("K", argv[3], 1, kMaxK) : n;

  double* a = malloc(n * depth * sizeof *a);
  double* b = malloc(depth * n * sizeof *b);
  double* c = calloc(n * n, sizeof *c);
  if (a == NULL || b == NULL || c == NULL) {
    fprintf(stderr, "matmul: cannot allocate %zux%zu, %zux%zu and %zux%zu matrices\n", n, depth,
            depth, n, n, n);
    return 3;
  }
  uint64_t start = now_ns();
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; k < depth; k++) a[i * depth + k] = a_at(i, k);
  }
  for (size_t k = 0; k < depth; k++) {
    for (size_t j = 0; j < n; j++) b[k * n + j] = b_at(k, j);
  }
  uint64_t init_ns = now_ns() - start;

  start = now_ns();
  for (size_t ii = 0; ii < n; ii += block) {
    size_t i_end = min_size(ii + block, n);
    for (size_t kk = 0; kk < depth; kk += block) {
      size_t k_end = min_size(kk + block, depth);
      for (size_t jj = 0; jj < n; jj += block) {
        size_t j_end = min_size(jj + block, n);
        for (size_t i = ii; i < i_end; i++) {
          double* c_row = c + i * n;
          for (size_t k = kk; k < k_end; k++) {
            double aik = a[i * depth + k];
            const double* b_row = b + k * n;
            for (size_t j = jj; j < j_end; j++) c_row[j] += aik * b_row[j];
          }
        }
      }
    }
  }
  uint64_t multiply_ns = now_ns() - start;

  /* One element per row, at a column that moves, by a plain dot product. */
  for (size_t i = 0; i < n; i++) {
    size_t j = (7 * i + 3) % n;
    double dot = 0;
    for (size_t k = 0; k < depth; k++) dot += a_at(i, k) * b_at(k, j);
    if (dot != c[i * n + j]) {
      fprintf(stderr, "matmul: C[%zu][%zu] is %.6f, a dot product gives %.6f\n", i, j, c[i * n + j],
              dot);
      return 1;
    }
  }

  double sum = 0, weighted = 0, trace = 0;
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < n; j++) {
      double v = c[i * n + j];
      sum += v;
      weighted += v * (double)((i + 2 * j) % 7 + 1);
      uint64_t bits;
      memcpy(&bits, &v, sizeof bits);
      hash = (hash ^ bits) * 0x100000001b3ULL;
    }
    trace += c[i * n + i];
  }
  printf("n=%zu block=%zu ", n, block);
  if (argc > 3) printf("k=%zu ", depth);
  printf("sum=%.6f weighted=%.6f trace=%.6f hash=%016" PRIx64 "\n", sum, weighted, trace, hash);
  if (fflush(stdout) != 0) {
    perror("matmul: stdout");
    return 1;
  }
  report_time("init", init_ns);
  report_time("multiply", multiply_ns);
  free(a);
  free(b);
  free(c);
  return 0;
}
