"""The native side of the comparison: the same binaries run natively in a
chroot of a copy of the vNode image, through scripts/run-native, the helper
the integration tests' compare_native uses too. The namespaces are set up
once (`run-native --hold`) and entered for each run, so that a native run's
time does not include mounting /proc, /dev and /tmp."""

import ctypes
import shutil
import signal
import subprocess
from pathlib import Path

from common import SOURCE, BenchError

RUN_NATIVE = SOURCE / "scripts/run-native"


def make_native_root(root, binaries):
    """The native root at ROOT: a copy of the default image (the tree a new
    vNode starts from) with the binaries in its /usr/local/bin, where the
    cases install them on the vNodes."""
    rootfs = subprocess.run([str(SOURCE / "scripts/build-image"), "--print-path"],
                            capture_output=True, text=True, check=True).stdout.split()[-1]
    subprocess.run(["cp", "-a", rootfs, str(root)], check=True)
    for binary in binaries:
        shutil.copy2(binary, root / "usr/local/bin")


class Native:
    """Runs programs natively in a chroot of ROOT, in the namespaces that
    one `run-native --hold` holds while the benchmarks run."""

    def __init__(self, root):
        self.root = root
        self.helper = None
        self.target = None
        self.prefix = None

    def start(self):
        # The namespaces die with this script, however it ends: the helper
        # (which execs unshare) gets SIGKILL when we die, and unshare's
        # --kill-child passes that on.
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1

        def die_with_parent():
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

        self.helper = subprocess.Popen(
            [str(RUN_NATIVE), "--hold", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            preexec_fn=die_with_parent)
        line = self.helper.stdout.readline().strip()
        if line != "ready":
            raise BenchError("the native namespaces could not be set up")
        children = Path(f"/proc/{self.helper.pid}/task/{self.helper.pid}/children")
        self.target = int(children.read_text().split()[0])
        enter = subprocess.run([str(RUN_NATIVE), "--enter-argv", str(self.target),
                                str(self.root)], capture_output=True, check=True)
        self.prefix = enter.stdout.decode().split("\0")[:-1]

    def argv(self, command):
        return [*self.prefix, *command]

    def stop(self):
        if self.helper is not None and self.helper.poll() is None:
            self.helper.kill()
            self.helper.wait()
