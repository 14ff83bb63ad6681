/* sandbox_probe: reports what a program sees of its sandbox, one fact per
 * command, so tests can compare a vNode with native Linux and check the
 * walls of the sandbox.
 *
 *   sandbox_probe id          uid, gid, pid and ppid
 *   sandbox_probe hostname    the uts name
 *   sandbox_probe nnp         the no_new_privs flag
 *   sandbox_probe mount       tries to mount a tmpfs; prints the errno name
 *   sandbox_probe syscall N   makes raw syscall N with no arguments; prints errno name or result
 *   sandbox_probe cat FILE    prints FILE or the errno name
 *   sandbox_probe ls DIR      lists DIR or prints the errno name
 *   sandbox_probe wait        reads stdin until end of file, then prints its byte count
 *   sandbox_probe mmap MIB    maps MIB MiB of private anonymous memory, touches
 *                             it, prints "ok" or the errno name
 *   sandbox_probe sbrk KIB    grows the heap by KIB KiB with sbrk, prints "ok" or the errno name
 *   sandbox_probe exit N      exits with status N
 *   sandbox_probe signal N    kills itself with signal N
 *   sandbox_probe echo ARG... prints its arguments, one per line
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EXDEV: return "EXDEV";
    case ELOOP: return "ELOOP";
    case ENOMEM: return "ENOMEM";
    default: return strerror(e);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sandbox_probe COMMAND [ARG]\n");
    return 2;
  }
  const char *command = argv[1];
  if (strcmp(command, "id") == 0) {
    printf("uid=%d gid=%d pid=%d ppid=%d\n", getuid(), getgid(), getpid(), getppid());
  } else if (strcmp(command, "hostname") == 0) {
    char name[256] = {0};
    gethostname(name, sizeof name - 1);
    printf("%s\n", name);
  } else if (strcmp(command, "nnp") == 0) {
    printf("%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  } else if (strcmp(command, "mount") == 0) {
    if (mount("none", "/tmp", "tmpfs", 0, NULL) == 0) {
      printf("mounted\n");
    } else {
      printf("%s\n", errno_name(errno));
    }
  } else if (strcmp(command, "syscall") == 0 && argc > 2) {
    long r = syscall(atol(argv[2]), 0, 0, 0, 0, 0, 0);
    if (r < 0) {
      printf("%s\n", errno_name(errno));
    } else {
      printf("%ld\n", r);
    }
  } else if (strcmp(command, "cat") == 0 && argc > 2) {
    FILE *f = fopen(argv[2], "r");
    if (!f) {
      printf("%s\n", errno_name(errno));
      return 1;
    }
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, f)) > 0) fwrite(buffer, 1, n, stdout);
    fclose(f);
  } else if (strcmp(command, "ls") == 0 && argc > 2) {
    DIR *d = opendir(argv[2]);
    if (!d) {
      printf("%s\n", errno_name(errno));
      return 1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) printf("%s\n", e->d_name);
    closedir(d);
  } else if (strcmp(command, "wait") == 0) {
    char buffer[4096];
    long total = 0;
    ssize_t n;
    while ((n = read(0, buffer, sizeof buffer)) > 0) total += n;
    printf("%ld\n", total);
  } else if (strcmp(command, "mmap") == 0 && argc > 2) {
    size_t length = (size_t)atol(argv[2]) << 20;
    char *memory = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
      printf("%s\n", errno_name(errno));
    } else {
      for (size_t i = 0; i < length; i += 4096) memory[i] = (char)i;
      printf("ok\n");
    }
  } else if (strcmp(command, "sbrk") == 0 && argc > 2) {
    intptr_t length = (intptr_t)atol(argv[2]) << 10;
    char *memory = sbrk(length);
    if (memory == (void *)-1) {
      printf("%s\n", errno_name(errno));
    } else {
      for (intptr_t i = 0; i < length; i += 4096) memory[i] = 1;
      printf("ok\n");
    }
  } else if (strcmp(command, "exit") == 0 && argc > 2) {
    return atoi(argv[2]);
  } else if (strcmp(command, "signal") == 0 && argc > 2) {
    fflush(stdout);
    raise(atoi(argv[2]));
    return 99;
  } else if (strcmp(command, "echo") == 0) {
    for (int i = 2; i < argc; ++i) printf("%s\n", argv[i]);
  } else {
    fprintf(stderr, "sandbox_probe: unknown command %s\n", command);
    return 2;
  }
  return 0;
}
