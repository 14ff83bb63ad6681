/* forktree: builds a tree of processes with fork and checks copy-on-write
 * at every edge of it.
 *
 *   forktree DEPTH [FANOUT]
 *
 * The root allocates a 256 KiB buffer. Every process at a level below DEPTH
 * forks FANOUT (default 2) children; processes are numbered breadth-first
 * (root 0, child k of process n is n * FANOUT + 1 + k). Before forking its
 * child k a process fills the buffer with pattern (its id, k); after its last
 * fork it fills it with pattern (its id, FANOUT) while the children run (a
 * leaf fills pattern (its id, 0)). Each child first checks that it sees
 * pattern (parent id, k), the parent's data at the moment of its fork, then
 * runs the same procedure as its own subtree's root. After its children have
 * exited, each process checks that its buffer still holds its own last
 * pattern, i.e. that neither its children's writes nor its own reached the
 * other side of a fork. A child sends {processes, checksum, errors} of its
 * subtree to its parent through a pipe and exits 0 only if its subtree saw no
 * error. The tree may hold at most 4096 processes.
 *
 * Output, one line from the root once every process has exited:
 *   depth=D fanout=F processes=N checksum=0123456789abcdef cow=ok
 * (cow=FAILED, with the details on stderr, if any check failed). The
 * checksum covers every process's final buffer in tree order.
 * Exit status 0 if everything matched, 1 otherwise, 2 for bad arguments.
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

#define WORKLOAD_NAME "forktree"
#include "workload.h"

enum {
  kBufferWords = 256 * 1024 / 8,
  kMaxFanout = 16,
  kMaxProcesses = 4096,
};


/* What a subtree reports to its parent. Fixed size, so one pipe write. */
struct Report {
  uint64_t processes;
  uint64_t checksum;
  uint64_t errors;
};

static unsigned g_depth;
static unsigned g_fanout;

static void usage(void) {
  fprintf(stderr, "usage: forktree DEPTH [FANOUT]   (1 <= FANOUT <= %d, at most %d processes)\n",
          kMaxFanout, kMaxProcesses);
  exit(2);
}



static inline uint64_t pattern_word(uint64_t id, uint64_t gen, uint64_t i) {
  return mix64((id << 8) ^ gen ^ 0x666f726bULL) ^ (i * kGolden);
}

static void fill(uint64_t* buf, uint64_t id, uint64_t gen) {
  for (uint64_t i = 0; i < kBufferWords; i++) buf[i] = pattern_word(id, gen, i);
}

/* Returns the index of the first word that is not pattern (id, gen), or -1. */
static long first_mismatch(const uint64_t* buf, uint64_t id, uint64_t gen) {
  for (uint64_t i = 0; i < kBufferWords; i++)
    if (buf[i] != pattern_word(id, gen, i)) return (long)i;
  return -1;
}

static uint64_t hash_buffer(const uint64_t* buf) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint64_t i = 0; i < kBufferWords; i++) h = (h ^ buf[i]) * 0x100000001b3ULL;
  return h;
}

/* Reads exactly one report; returns 0 on success. */
static int read_report(int fd, struct Report* report) {
  size_t got = 0;
  while (got < sizeof *report) {
    ssize_t n = read(fd, (char*)report + got, sizeof *report - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static int write_report(int fd, const struct Report* report) {
  size_t put = 0;
  while (put < sizeof *report) {
    ssize_t n = write(fd, (const char*)report + put, sizeof *report - put);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    put += (size_t)n;
  }
  return 0;
}

/* Runs process `id` at `level`: forks its children, waits for them and
 * checks its own buffer. Called in the root and, after fork, in every child. */
static struct Report run_node(uint64_t* buf, uint64_t id, unsigned level) {
  struct Report report = {.processes = 1, .checksum = 0, .errors = 0};
  unsigned nchildren = level < g_depth ? g_fanout : 0;
  pid_t pids[kMaxFanout];
  int fds[kMaxFanout];
  unsigned started = 0;

  for (unsigned k = 0; k < nchildren; k++) {
    fill(buf, id, k);
    int pipefd[2];
    if (pipe(pipefd) != 0) {
      fprintf(stderr, "forktree: process %" PRIu64 ": pipe: %s\n", id, strerror(errno));
      report.errors++;
      break;
    }
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "forktree: process %" PRIu64 ": fork: %s\n", id, strerror(errno));
      close(pipefd[0]);
      close(pipefd[1]);
      report.errors++;
      break;
    }
    if (pid == 0) {
      for (unsigned j = 0; j < started; j++) close(fds[j]);
      close(pipefd[0]);
      uint64_t child = id * g_fanout + 1 + k;
      struct Report sub = {0};
      long bad = first_mismatch(buf, id, k);
      if (bad >= 0) {
        fprintf(stderr,
                "forktree: process %" PRIu64 ": word %ld of the buffer is %016" PRIx64
                ", expected parent %" PRIu64 "'s data at fork %u (%016" PRIx64 ")\n",
                child, bad, buf[bad], id, k, pattern_word(id, k, (uint64_t)bad));
        sub.errors++;
      }
      struct Report mine = run_node(buf, child, level + 1);
      mine.errors += sub.errors;
      if (write_report(pipefd[1], &mine) != 0) {
        fprintf(stderr, "forktree: process %" PRIu64 ": write report: %s\n", child,
                strerror(errno));
        _exit(1);
      }
      _exit(mine.errors == 0 ? 0 : 1);
    }
    close(pipefd[1]);
    pids[started] = pid;
    fds[started] = pipefd[0];
    started++;
  }
  /* Change the buffer while the children run: they must not see it. */
  fill(buf, id, nchildren);

  uint64_t child_checksum = 0;
  for (unsigned k = 0; k < started; k++) {
    struct Report sub = {0};
    int reported = read_report(fds[k], &sub) == 0;
    if (!reported) {
      fprintf(stderr, "forktree: process %" PRIu64 ": child %u sent no report\n", id, k);
      report.errors++;
    } else {
      report.processes += sub.processes;
      report.errors += sub.errors;
      child_checksum = mix64(child_checksum ^ sub.checksum);
    }
    close(fds[k]);
    int status = 0;
    while (waitpid(pids[k], &status, 0) < 0) {
      if (errno != EINTR) {
        fprintf(stderr, "forktree: process %" PRIu64 ": waitpid: %s\n", id, strerror(errno));
        report.errors++;
        break;
      }
    }
    if (WIFSIGNALED(status)) {
      fprintf(stderr, "forktree: process %" PRIu64 ": child %u killed by signal %d\n", id, k,
              WTERMSIG(status));
      report.errors++;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && reported && sub.errors == 0) {
      /* A child that reported errors has already said why; this one has not. */
      fprintf(stderr, "forktree: process %" PRIu64 ": child %u exited with status %d\n", id, k,
              WEXITSTATUS(status));
      report.errors++;
    }
  }

  long bad = first_mismatch(buf, id, nchildren);
  if (bad >= 0) {
    fprintf(stderr,
            "forktree: process %" PRIu64 ": word %ld of its buffer changed to %016" PRIx64
            " while its children ran (expected %016" PRIx64 ")\n",
            id, bad, buf[bad], pattern_word(id, nchildren, (uint64_t)bad));
    report.errors++;
  }
  report.checksum = mix64(hash_buffer(buf) + id) ^ child_checksum;
  return report;
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) usage();
  g_depth = (unsigned)parse_u64("DEPTH", argv[1], 0, kMaxProcesses);
  g_fanout = argc > 2 ? (unsigned)parse_u64("FANOUT", argv[2], 1, kMaxFanout) : 2;

  uint64_t expected = 0, level_size = 1;
  for (unsigned level = 0; level <= g_depth; level++) {
    expected += level_size;
    if (expected > kMaxProcesses) {
      fprintf(stderr, "forktree: depth %u with fanout %u makes more than %d processes\n", g_depth,
              g_fanout, kMaxProcesses);
      usage();
    }
    level_size *= g_fanout;
  }

  uint64_t* buf = malloc(kBufferWords * sizeof *buf);
  if (buf == NULL) {
    fprintf(stderr, "forktree: cannot allocate the buffer\n");
    return 1;
  }
  struct Report report = run_node(buf, 0, 0);
  if (report.errors == 0 && report.processes != expected) {
    fprintf(stderr, "forktree: %" PRIu64 " processes reported, expected %" PRIu64 "\n",
            report.processes, expected);
    report.errors++;
  }
  printf("depth=%u fanout=%u processes=%" PRIu64 " checksum=%016" PRIx64 " cow=%s\n", g_depth,
         g_fanout, report.processes, report.checksum, report.errors == 0 ? "ok" : "FAILED");
  if (fflush(stdout) != 0) {
    perror("forktree: stdout");
    return 1;
  }
  free(buf);
  return report.errors == 0 ? 0 : 1;
}
