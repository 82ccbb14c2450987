"""A real single-node SLURM cluster for the tests: munge + slurmctld + slurmd from Debian's
packages, every file of it under a temporary directory, one partition `main` with all cores and a
fake GPU (gres `gpu`, File=/dev/null). Jobs submitted with sbatch really run, on this machine.

Needs root and apt-get (packages are installed when missing); `unavailable()` says why not.
Facts this relies on are in ../shared/notes/SLURM.md; the two that shape this module:
- the SLURM executor's jobstep plugin drops every SLURM_* variable (SLURM_CONF too) before its
  in-job `srun`, so the config must also be found at /etc/slurm/slurm.conf: a symlink, made only
  if nothing is there and removed on stop;
- the daemons are started with the real path, since gres.conf is looked up beside it.
Daemons are stopped by the PIDs in their pid files, never by name.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol"]
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def unavailable():
    """Why this machine cannot run the cluster (None when it can)."""
    if os.geteuid() != 0:
        return "a SLURM cluster needs root (slurmd runs jobs as their users)"
    if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
        SYSTEM_CONF.unlink()  # dangling: left by a run that was killed; it configures nothing
    if SYSTEM_CONF.exists():
        return f"{SYSTEM_CONF} exists: this machine has its own SLURM setup, which the test leaves alone"
    if all(shutil.which(b) for b in BINARIES):
        return None
    if not shutil.which("apt-get"):
        return f"SLURM is not installed and there is no apt-get to install {' '.join(PACKAGES)}"
    return None


def install():
    """Install the Debian packages when a binary is missing (apt starts no daemon here)."""
    if all(shutil.which(b) for b in BINARIES):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    missing = [b for b in BINARIES if not shutil.which(b)]
    if missing:
        raise RuntimeError(f"installed {PACKAGES} but still missing: {missing}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("MemTotal not found in /proc/meminfo")


class SlurmCluster:
    """start() brings the cluster up (sinfo says idle), stop() takes it down; also a context
    manager. `env` is the environment clients (sbatch, snakemake) need."""

    def __init__(self, root=None, partition="main", gpus=1):
        self.own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="metasig-slurm-"))
        self.partition = partition
        self.gpus = gpus
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.pid_files = {}  # daemon -> pid file, in start order
        self.linked_system_conf = False
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self):
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise RuntimeError(
                f"{SYSTEM_CONF} already exists: another SLURM setup is on this machine; this fixture leaves it alone"
            )
        try:
            self._start_munge()
            self._write_config()
            SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
            SYSTEM_CONF.symlink_to(self.conf)
            self.linked_system_conf = True
            self._daemon("slurmctld", ["slurmctld", "-f", str(self.conf)], self.root / "slurmctld.pid")
            self._daemon("slurmd", ["slurmd", "-f", str(self.conf), "-N", "localhost"], self.root / "slurmd.pid")
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop what start() started, newest first, by the PIDs in its pid files; remove the
        /etc/slurm/slurm.conf symlink if this cluster made it."""
        for name, pid_file in reversed(list(self.pid_files.items())):
            self._kill(name, pid_file)
        self.pid_files.clear()
        if self.linked_system_conf and SYSTEM_CONF.is_symlink() and os.readlink(SYSTEM_CONF) == str(self.conf):
            SYSTEM_CONF.unlink()
        self.linked_system_conf = False
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- clients --------------------------------------------------------------------------------

    def run(self, *cmd, check=True):
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def jobs(self):
        """Every job slurmctld still remembers (MinJobAge keeps finished ones an hour), as dicts of
        `scontrol show job -o` fields."""
        out = self.run("scontrol", "show", "job", "-o", "--details")
        jobs = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            fields = {}
            for token in line.split():
                key, _, value = token.partition("=")
                fields[key] = value
            jobs.append(fields)
        return jobs

    def log(self, daemon="slurmctld"):
        path = self.root / "log" / f"{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- internals ------------------------------------------------------------------------------

    def _start_munge(self):
        folder = self.munge_socket.parent
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        key = folder / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        self._daemon(
            "munged",
            [
                "munged",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={folder / 'munged.pid'}",
                f"--log-file={folder / 'munged.log'}",
                f"--seed-file={folder / 'munged.seed'}",
            ],
            folder / "munged.pid",
        )

    def _write_config(self):
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(exist_ok=True)
        cpus = os.cpu_count() or 1
        memory = max(1000, _memory_mb() - 2000)
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text(f"""\
ClusterName=metasig-test
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.root / "log" / "slurmctld.log"}
SlurmdLogFile={self.root / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=3600
ReturnToService=2
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory}{gres} State=UNKNOWN
PartitionName={self.partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        # No File= and the node goes INVAL; /dev/null stands in for a device.
        (self.root / "gres.conf").write_text(
            "AutoDetect=off\n"
            + (f"NodeName=localhost Name=gpu File=/dev/null Count={self.gpus}\n" if self.gpus else "")
        )

    def _daemon(self, name, cmd, pid_file):
        """Start a daemon that forks into the background and wait for its pid file."""
        self.pid_files[name] = pid_file
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{name} did not start ({proc.returncode}): {proc.stderr.strip()}\n{self.log(name)[-2000:]}"
            )
        deadline = time.monotonic() + 15
        while not self._pid(pid_file):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} wrote no pid file {pid_file}:\n{self.log(name)[-2000:]}")
            time.sleep(0.1)

    @staticmethod
    def _pid(pid_file):
        try:
            pid = int(Path(pid_file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def _kill(self, name, pid_file, timeout=15):
        pid = self._pid(pid_file)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def _wait_idle(self, timeout=30):
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True)
            state = proc.stdout.strip() or proc.stderr.strip()
            if state == "idle":
                return
            time.sleep(0.3)
        raise RuntimeError(
            f"node not idle after {timeout} s (sinfo: {state!r}):\n{self.log('slurmctld')[-2000:]}\n"
            f"{self.log('slurmd')[-2000:]}"
        )
