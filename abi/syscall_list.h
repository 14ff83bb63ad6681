// The x86-64 Linux system call list: number, name, how a vNode process's
// call is routed, and the reason when it is not simply native. Generated once
// from the kernel headers' asm/unistd_64.h (plus the calls newer than
// Debian 12's headers, up to mseal) and maintained by hand since: this is the
// one place a route is decided; the seccomp filter and the tracer's dispatch
// are both built from it.
//
// Routes (see syscall_table.h):
//   kNative   runs on the local kernel at full speed (SCMP_ACT_ALLOW)
//   kTraced   stops in the pComponent's tracer, which updates its bookkeeping
//             and lets the call run (memory calls in the memory manager)
//   kRefused  the tracer fails it with ENOSYS and counts it
#pragma once

// X(number, name, route, reason)
#define SK_SYSCALLS(X) \
  X(0, read, kNative, "") \
  X(1, write, kNative, "") \
  X(2, open, kNative, "") \
  X(3, close, kNative, "") \
  X(4, stat, kNative, "") \
  X(5, fstat, kNative, "") \
  X(6, lstat, kNative, "") \
  X(7, poll, kNative, "") \
  X(8, lseek, kNative, "") \
  X(9, mmap, kTraced, "memory manager: new private anonymous memory is counted against the vNode quota and registered with the process userfaultfd") \
  X(10, mprotect, kTraced, "memory manager: making private anonymous memory writable commits it against the vNode quota") \
  X(11, munmap, kNative, "") \
  X(12, brk, kTraced, "memory manager: new private anonymous memory is counted against the vNode quota and registered with the process userfaultfd") \
  X(13, rt_sigaction, kNative, "") \
  X(14, rt_sigprocmask, kNative, "") \
  X(15, rt_sigreturn, kNative, "") \
  X(16, ioctl, kNative, "") \
  X(17, pread64, kNative, "") \
  X(18, pwrite64, kNative, "") \
  X(19, readv, kNative, "") \
  X(20, writev, kNative, "") \
  X(21, access, kNative, "") \
  X(22, pipe, kNative, "") \
  X(23, select, kNative, "") \
  X(24, sched_yield, kNative, "") \
  X(25, mremap, kTraced, "memory manager: new private anonymous memory is counted against the vNode quota and registered with the process userfaultfd") \
  X(26, msync, kNative, "") \
  X(27, mincore, kNative, "") \
  X(28, madvise, kNative, "") \
  X(29, shmget, kNative, "") \
  X(30, shmat, kNative, "") \
  X(31, shmctl, kNative, "") \
  X(32, dup, kNative, "") \
  X(33, dup2, kNative, "") \
  X(34, pause, kNative, "") \
  X(35, nanosleep, kNative, "") \
  X(36, getitimer, kNative, "") \
  X(37, alarm, kNative, "") \
  X(38, setitimer, kNative, "") \
  X(39, getpid, kNative, "") \
  X(40, sendfile, kNative, "") \
  X(41, socket, kNative, "") \
  X(42, connect, kNative, "") \
  X(43, accept, kNative, "") \
  X(44, sendto, kNative, "") \
  X(45, recvfrom, kNative, "") \
  X(46, sendmsg, kNative, "") \
  X(47, recvmsg, kNative, "") \
  X(48, shutdown, kNative, "") \
  X(49, bind, kNative, "") \
  X(50, listen, kNative, "") \
  X(51, getsockname, kNative, "") \
  X(52, getpeername, kNative, "") \
  X(53, socketpair, kNative, "") \
  X(54, setsockopt, kNative, "") \
  X(55, getsockopt, kNative, "") \
  X(56, clone, kNative, "") \
  X(57, fork, kNative, "") \
  X(58, vfork, kNative, "") \
  X(59, execve, kNative, "") \
  X(60, exit, kNative, "") \
  X(61, wait4, kNative, "") \
  X(62, kill, kNative, "") \
  X(63, uname, kNative, "") \
  X(64, semget, kNative, "") \
  X(65, semop, kNative, "") \
  X(66, semctl, kNative, "") \
  X(67, shmdt, kNative, "") \
  X(68, msgget, kNative, "") \
  X(69, msgsnd, kNative, "") \
  X(70, msgrcv, kNative, "") \
  X(71, msgctl, kNative, "") \
  X(72, fcntl, kNative, "") \
  X(73, flock, kNative, "") \
  X(74, fsync, kNative, "") \
  X(75, fdatasync, kNative, "") \
  X(76, truncate, kNative, "") \
  X(77, ftruncate, kNative, "") \
  X(78, getdents, kNative, "") \
  X(79, getcwd, kNative, "") \
  X(80, chdir, kNative, "") \
  X(81, fchdir, kNative, "") \
  X(82, rename, kNative, "") \
  X(83, mkdir, kNative, "") \
  X(84, rmdir, kNative, "") \
  X(85, creat, kNative, "") \
  X(86, link, kNative, "") \
  X(87, unlink, kNative, "") \
  X(88, symlink, kNative, "") \
  X(89, readlink, kNative, "") \
  X(90, chmod, kNative, "") \
  X(91, fchmod, kNative, "") \
  X(92, chown, kNative, "") \
  X(93, fchown, kNative, "") \
  X(94, lchown, kNative, "") \
  X(95, umask, kNative, "") \
  X(96, gettimeofday, kNative, "") \
  X(97, getrlimit, kNative, "") \
  X(98, getrusage, kNative, "") \
  X(99, sysinfo, kNative, "") \
  X(100, times, kNative, "") \
  X(101, ptrace, kNative, "") \
  X(102, getuid, kNative, "") \
  X(103, syslog, kRefused, "host kernel log") \
  X(104, getgid, kNative, "") \
  X(105, setuid, kNative, "") \
  X(106, setgid, kNative, "") \
  X(107, geteuid, kNative, "") \
  X(108, getegid, kNative, "") \
  X(109, setpgid, kNative, "") \
  X(110, getppid, kNative, "") \
  X(111, getpgrp, kNative, "") \
  X(112, setsid, kNative, "") \
  X(113, setreuid, kNative, "") \
  X(114, setregid, kNative, "") \
  X(115, getgroups, kNative, "") \
  X(116, setgroups, kNative, "") \
  X(117, setresuid, kNative, "") \
  X(118, getresuid, kNative, "") \
  X(119, setresgid, kNative, "") \
  X(120, getresgid, kNative, "") \
  X(121, getpgid, kNative, "") \
  X(122, setfsuid, kNative, "") \
  X(123, setfsgid, kNative, "") \
  X(124, getsid, kNative, "") \
  X(125, capget, kNative, "") \
  X(126, capset, kNative, "") \
  X(127, rt_sigpending, kNative, "") \
  X(128, rt_sigtimedwait, kNative, "") \
  X(129, rt_sigqueueinfo, kNative, "") \
  X(130, rt_sigsuspend, kNative, "") \
  X(131, sigaltstack, kNative, "") \
  X(132, utime, kNative, "") \
  X(133, mknod, kNative, "") \
  X(134, uselib, kRefused, "not implemented by Linux x86-64 either") \
  X(135, personality, kNative, "") \
  X(136, ustat, kNative, "") \
  X(137, statfs, kNative, "") \
  X(138, fstatfs, kNative, "") \
  X(139, sysfs, kNative, "") \
  X(140, getpriority, kNative, "") \
  X(141, setpriority, kNative, "") \
  X(142, sched_setparam, kNative, "") \
  X(143, sched_getparam, kNative, "") \
  X(144, sched_setscheduler, kNative, "") \
  X(145, sched_getscheduler, kNative, "") \
  X(146, sched_get_priority_max, kNative, "") \
  X(147, sched_get_priority_min, kNative, "") \
  X(148, sched_rr_get_interval, kNative, "") \
  X(149, mlock, kNative, "") \
  X(150, munlock, kNative, "") \
  X(151, mlockall, kNative, "") \
  X(152, munlockall, kNative, "") \
  X(153, vhangup, kRefused, "host terminals") \
  X(154, modify_ldt, kNative, "") \
  X(155, pivot_root, kRefused, "the vNode root is fixed") \
  X(156, _sysctl, kRefused, "not implemented by Linux x86-64 either") \
  X(157, prctl, kNative, "") \
  X(158, arch_prctl, kNative, "") \
  X(159, adjtimex, kRefused, "host clock") \
  X(160, setrlimit, kNative, "") \
  X(161, chroot, kRefused, "the vNode root is fixed") \
  X(162, sync, kNative, "") \
  X(163, acct, kRefused, "host accounting") \
  X(164, settimeofday, kRefused, "host clock") \
  X(165, mount, kRefused, "the vNode root and its mounts are set up by the pComponent") \
  X(166, umount2, kRefused, "the vNode root and its mounts are set up by the pComponent") \
  X(167, swapon, kRefused, "host swap") \
  X(168, swapoff, kRefused, "host swap") \
  X(169, reboot, kRefused, "would act on the host") \
  X(170, sethostname, kRefused, "the vNode hostname is set at creation") \
  X(171, setdomainname, kRefused, "the vNode hostname is set at creation") \
  X(172, iopl, kRefused, "port I/O") \
  X(173, ioperm, kRefused, "port I/O") \
  X(174, create_module, kRefused, "not implemented by Linux x86-64 either") \
  X(175, init_module, kRefused, "loads host kernel code") \
  X(176, delete_module, kRefused, "unloads host kernel code") \
  X(177, get_kernel_syms, kRefused, "not implemented by Linux x86-64 either") \
  X(178, query_module, kRefused, "not implemented by Linux x86-64 either") \
  X(179, quotactl, kRefused, "host quotas") \
  X(180, nfsservctl, kRefused, "removed") \
  X(181, getpmsg, kRefused, "not implemented by Linux x86-64 either") \
  X(182, putpmsg, kRefused, "not implemented by Linux x86-64 either") \
  X(183, afs_syscall, kRefused, "not implemented by Linux x86-64 either") \
  X(184, tuxcall, kRefused, "not implemented by Linux x86-64 either") \
  X(185, security, kRefused, "not implemented by Linux x86-64 either") \
  X(186, gettid, kNative, "") \
  X(187, readahead, kNative, "") \
  X(188, setxattr, kNative, "") \
  X(189, lsetxattr, kNative, "") \
  X(190, fsetxattr, kNative, "") \
  X(191, getxattr, kNative, "") \
  X(192, lgetxattr, kNative, "") \
  X(193, fgetxattr, kNative, "") \
  X(194, listxattr, kNative, "") \
  X(195, llistxattr, kNative, "") \
  X(196, flistxattr, kNative, "") \
  X(197, removexattr, kNative, "") \
  X(198, lremovexattr, kNative, "") \
  X(199, fremovexattr, kNative, "") \
  X(200, tkill, kNative, "") \
  X(201, time, kNative, "") \
  X(202, futex, kNative, "") \
  X(203, sched_setaffinity, kNative, "") \
  X(204, sched_getaffinity, kNative, "") \
  X(205, set_thread_area, kNative, "") \
  X(206, io_setup, kNative, "") \
  X(207, io_destroy, kNative, "") \
  X(208, io_getevents, kNative, "") \
  X(209, io_submit, kNative, "") \
  X(210, io_cancel, kNative, "") \
  X(211, get_thread_area, kNative, "") \
  X(212, lookup_dcookie, kRefused, "host profiling") \
  X(213, epoll_create, kNative, "") \
  X(214, epoll_ctl_old, kRefused, "not implemented by Linux x86-64 either") \
  X(215, epoll_wait_old, kRefused, "not implemented by Linux x86-64 either") \
  X(216, remap_file_pages, kNative, "") \
  X(217, getdents64, kNative, "") \
  X(218, set_tid_address, kNative, "") \
  X(219, restart_syscall, kNative, "") \
  X(220, semtimedop, kNative, "") \
  X(221, fadvise64, kNative, "") \
  X(222, timer_create, kNative, "") \
  X(223, timer_settime, kNative, "") \
  X(224, timer_gettime, kNative, "") \
  X(225, timer_getoverrun, kNative, "") \
  X(226, timer_delete, kNative, "") \
  X(227, clock_settime, kRefused, "host clock") \
  X(228, clock_gettime, kNative, "") \
  X(229, clock_getres, kNative, "") \
  X(230, clock_nanosleep, kNative, "") \
  X(231, exit_group, kNative, "") \
  X(232, epoll_wait, kNative, "") \
  X(233, epoll_ctl, kNative, "") \
  X(234, tgkill, kNative, "") \
  X(235, utimes, kNative, "") \
  X(236, vserver, kRefused, "not implemented by Linux x86-64 either") \
  X(237, mbind, kNative, "") \
  X(238, set_mempolicy, kNative, "") \
  X(239, get_mempolicy, kNative, "") \
  X(240, mq_open, kNative, "") \
  X(241, mq_unlink, kNative, "") \
  X(242, mq_timedsend, kNative, "") \
  X(243, mq_timedreceive, kNative, "") \
  X(244, mq_notify, kNative, "") \
  X(245, mq_getsetattr, kNative, "") \
  X(246, kexec_load, kRefused, "replaces the host kernel") \
  X(247, waitid, kNative, "") \
  X(248, add_key, kNative, "") \
  X(249, request_key, kNative, "") \
  X(250, keyctl, kNative, "") \
  X(251, ioprio_set, kNative, "") \
  X(252, ioprio_get, kNative, "") \
  X(253, inotify_init, kNative, "") \
  X(254, inotify_add_watch, kNative, "") \
  X(255, inotify_rm_watch, kNative, "") \
  X(256, migrate_pages, kNative, "") \
  X(257, openat, kNative, "") \
  X(258, mkdirat, kNative, "") \
  X(259, mknodat, kNative, "") \
  X(260, fchownat, kNative, "") \
  X(261, futimesat, kNative, "") \
  X(262, newfstatat, kNative, "") \
  X(263, unlinkat, kNative, "") \
  X(264, renameat, kNative, "") \
  X(265, linkat, kNative, "") \
  X(266, symlinkat, kNative, "") \
  X(267, readlinkat, kNative, "") \
  X(268, fchmodat, kNative, "") \
  X(269, faccessat, kNative, "") \
  X(270, pselect6, kNative, "") \
  X(271, ppoll, kNative, "") \
  X(272, unshare, kRefused, "namespaces are the pComponent's") \
  X(273, set_robust_list, kNative, "") \
  X(274, get_robust_list, kNative, "") \
  X(275, splice, kNative, "") \
  X(276, tee, kNative, "") \
  X(277, sync_file_range, kNative, "") \
  X(278, vmsplice, kNative, "") \
  X(279, move_pages, kNative, "") \
  X(280, utimensat, kNative, "") \
  X(281, epoll_pwait, kNative, "") \
  X(282, signalfd, kNative, "") \
  X(283, timerfd_create, kNative, "") \
  X(284, eventfd, kNative, "") \
  X(285, fallocate, kNative, "") \
  X(286, timerfd_settime, kNative, "") \
  X(287, timerfd_gettime, kNative, "") \
  X(288, accept4, kNative, "") \
  X(289, signalfd4, kNative, "") \
  X(290, eventfd2, kNative, "") \
  X(291, epoll_create1, kNative, "") \
  X(292, dup3, kNative, "") \
  X(293, pipe2, kNative, "") \
  X(294, inotify_init1, kNative, "") \
  X(295, preadv, kNative, "") \
  X(296, pwritev, kNative, "") \
  X(297, rt_tgsigqueueinfo, kNative, "") \
  X(298, perf_event_open, kRefused, "host-wide performance counters") \
  X(299, recvmmsg, kNative, "") \
  X(300, fanotify_init, kNative, "") \
  X(301, fanotify_mark, kNative, "") \
  X(302, prlimit64, kNative, "") \
  X(303, name_to_handle_at, kRefused, "file handles bypass path confinement") \
  X(304, open_by_handle_at, kRefused, "file handles bypass path confinement") \
  X(305, clock_adjtime, kRefused, "host clock") \
  X(306, syncfs, kNative, "") \
  X(307, sendmmsg, kNative, "") \
  X(308, setns, kRefused, "namespaces are the pComponent's") \
  X(309, getcpu, kNative, "") \
  X(310, process_vm_readv, kNative, "") \
  X(311, process_vm_writev, kRefused, "would write another process's memory behind the pComponent") \
  X(312, kcmp, kRefused, "host process comparison") \
  X(313, finit_module, kRefused, "loads host kernel code") \
  X(314, sched_setattr, kNative, "") \
  X(315, sched_getattr, kNative, "") \
  X(316, renameat2, kNative, "") \
  X(317, seccomp, kNative, "") \
  X(318, getrandom, kNative, "") \
  X(319, memfd_create, kNative, "") \
  X(320, kexec_file_load, kRefused, "replaces the host kernel") \
  X(321, bpf, kRefused, "host kernel programs") \
  X(322, execveat, kNative, "") \
  X(323, userfaultfd, kRefused, "the pComponent owns the process's userfaultfd (memory disaggregation)") \
  X(324, membarrier, kNative, "") \
  X(325, mlock2, kNative, "") \
  X(326, copy_file_range, kNative, "") \
  X(327, preadv2, kNative, "") \
  X(328, pwritev2, kNative, "") \
  X(329, pkey_mprotect, kNative, "") \
  X(330, pkey_alloc, kNative, "") \
  X(331, pkey_free, kNative, "") \
  X(332, statx, kNative, "") \
  X(333, io_pgetevents, kNative, "") \
  X(334, rseq, kNative, "") \
  X(424, pidfd_send_signal, kNative, "") \
  X(425, io_uring_setup, kNative, "") \
  X(426, io_uring_enter, kNative, "") \
  X(427, io_uring_register, kNative, "") \
  X(428, open_tree, kRefused, "mount API") \
  X(429, move_mount, kRefused, "the vNode root and its mounts are set up by the pComponent") \
  X(430, fsopen, kRefused, "mount API") \
  X(431, fsconfig, kRefused, "mount API") \
  X(432, fsmount, kRefused, "mount API") \
  X(433, fspick, kRefused, "mount API") \
  X(434, pidfd_open, kNative, "") \
  X(435, clone3, kNative, "") \
  X(436, close_range, kNative, "") \
  X(437, openat2, kNative, "") \
  X(438, pidfd_getfd, kNative, "") \
  X(439, faccessat2, kNative, "") \
  X(440, process_madvise, kNative, "") \
  X(441, epoll_pwait2, kNative, "") \
  X(442, mount_setattr, kRefused, "mount API") \
  X(443, quotactl_fd, kRefused, "host quotas") \
  X(444, landlock_create_ruleset, kNative, "") \
  X(445, landlock_add_rule, kNative, "") \
  X(446, landlock_restrict_self, kNative, "") \
  X(447, memfd_secret, kNative, "") \
  X(448, process_mrelease, kNative, "") \
  X(449, futex_waitv, kNative, "") \
  X(450, set_mempolicy_home_node, kNative, "") \
  X(451, cachestat, kNative, "") \
  X(452, fchmodat2, kNative, "") \
  X(453, map_shadow_stack, kNative, "") \
  X(454, futex_wake, kNative, "") \
  X(455, futex_wait, kNative, "") \
  X(456, futex_requeue, kNative, "") \
  X(457, statmount, kNative, "") \
  X(458, listmount, kNative, "") \
  X(459, lsm_get_self_attr, kNative, "") \
  X(460, lsm_set_self_attr, kNative, "") \
  X(461, lsm_list_modules, kNative, "") \
  X(462, mseal, kNative, "")

// The tracer's handler for each kTraced call: X(name, handler), `handler`
// being a pcomponent::tracer::SyscallHandler (pcomponent/tracer/
// syscall_handler.h). The tracer's dispatch table is built from this list
// and SK_SYSCALLS together, and static_asserts there check that every
// kTraced call has exactly one handler and that nothing else has one: a
// call is traced by changing its route above and naming its handler here.
#define SK_TRACED_SYSCALL_HANDLERS(X) \
  X(mmap, mmap_handler) \
  X(mprotect, mprotect_handler) \
  X(brk, brk_handler) \
  X(mremap, mremap_handler)
