/* syscalls: the cost of one system call that a vNode lets through natively
 * (getppid) and of one it intercepts (mmap + munmap of one page), called in
 * a tight loop.
 *
 *   syscalls [--time] GETPPID_CALLS MMAP_CALLS
 *
 * Calls getppid() GETPPID_CALLS times through syscall(2), so no C library
 * cache can stand in for the kernel, then maps and unmaps one private
 * anonymous read-write page MMAP_CALLS times (the page is never touched:
 * only the two calls are measured). Every call's result is checked.
 *
 * Output, one line:
 *   getppid calls=N mmap calls=M ok
 * With --time, stderr also gets "syscalls: time getppid_ns=T" and
 * "syscalls: time mmap_munmap_ns=T", the totals of each loop (workload.h).
 * Exit status 0; 1 with the failed call on stderr; 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WORKLOAD_NAME "syscalls"
#include "workload.h"

enum { kPage = 4096 };

static void usage(void) {
  fprintf(stderr, "usage: syscalls [--time] GETPPID_CALLS MMAP_CALLS\n");
  exit(2);
}

int main(int argc, char** argv) {
  parse_timing(&argc, &argv);
  if (argc != 3) usage();
  uint64_t getppid_calls = parse_u64("GETPPID_CALLS", argv[1], 0, UINT64_MAX);
  uint64_t mmap_calls = parse_u64("MMAP_CALLS", argv[2], 0, UINT64_MAX);

  uint64_t start = now_ns();
  for (uint64_t i = 0; i < getppid_calls; i++) {
    /* 0 when the parent is outside our pid namespace; never negative. */
    if (syscall(SYS_getppid) < 0) {
      perror("syscalls: getppid");
      return 1;
    }
  }
  uint64_t getppid_ns = now_ns() - start;

  start = now_ns();
  for (uint64_t i = 0; i < mmap_calls; i++) {
    void* page = mmap(NULL, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
      perror("syscalls: mmap");
      return 1;
    }
    if (munmap(page, kPage) != 0) {
      perror("syscalls: munmap");
      return 1;
    }
  }
  uint64_t mmap_ns = now_ns() - start;

  printf("getppid calls=%" PRIu64 " mmap calls=%" PRIu64 " ok\n", getppid_calls, mmap_calls);
  if (fflush(stdout) != 0) {
    perror("syscalls: stdout");
    return 1;
  }
  report_time("getppid", getppid_ns);
  report_time("mmap_munmap", mmap_ns);
  return 0;
}
