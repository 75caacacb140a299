"""A real single-node slurm cluster in a scratch folder, for tests of the slurm launch path.

``LocalSlurmCluster(root)`` writes a munge key and a ``slurm.conf`` (one CPU-only partition sized to this machine
by ``slurmd -C``, free ports, every state/spool/log path under ``root``), starts ``munged``, ``slurmctld`` and
``slurmd`` in the foreground as child processes, and waits until ``sinfo`` reports the node idle. Leaving the
``with`` block (also on an error) cancels the cluster's jobs and stops every daemon it started. Client commands
(``srun``, ``sinfo``) reach this cluster through ``SLURM_CONF``: run them with ``cluster.env``.

It needs Debian's ``munge``, ``slurmctld``, ``slurmd`` and ``slurm-client`` and must run as root (``slurmd`` starts
job steps as their user). ``missing_requirements()`` says what is missing, in one line, or returns None.
"""
import os
import os.path as osp
import random
import shutil
import signal
import socket
import subprocess
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("srun", "sinfo", "scontrol", "scancel", "squeue")


def missing_requirements():
    """One line naming what stops a local cluster here (binaries, root), or None."""
    missing = [name for name in DAEMONS + CLIENTS if _which(name) is None]
    if missing:
        return (f"slurm/munge not installed (missing {', '.join(missing)}); "
                "apt-get install munge slurmctld slurmd slurm-client")
    if os.geteuid() != 0:
        return "needs root: a local slurm cluster runs as root (slurmd starts job steps as their user)"
    return None


def _which(name):
    # The daemons live in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def free_port():
    """A TCP port nobody listens on right now (for the daemons, or a job's MASTER_PORT), below the kernel's ephemeral
    range (32768 and up on Linux): a port from ``bind(0)`` is one the kernel also hands out to outgoing connections
    and other ``bind(0)`` calls, and the port is only bound seconds later (a slurm job's rendezvous once failed with
    EADDRINUSE so)."""
    for port in random.Random().sample(range(20000, 32768), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port in 20000-32767")


def node_hardware():
    """``slurmd -C``'s description of this machine, e.g. {'NodeName': 'vm', 'CPUs': '2', ...}."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0]
    return dict(item.split("=", 1) for item in first.split())


class LocalSlurmCluster:
    """Start with ``with LocalSlurmCluster(root, partition="cpu") as cluster:``; ``cluster.env`` reaches it."""

    def __init__(self, root, partition="cpu", start_timeout=60.0):
        self.root = osp.abspath(root)
        self.partition = partition
        self.start_timeout = start_timeout
        self.hardware = node_hardware()
        self.node = self.hardware["NodeName"]
        self.cpus = int(self.hardware["CPUs"])
        self.conf = osp.join(self.root, "slurm.conf")
        self.log_dir = osp.join(self.root, "log")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self._procs = {}

    def _write_files(self):
        for sub in ("state", "spool", "log", "munge"):
            os.makedirs(osp.join(self.root, sub), mode=0o700, exist_ok=True)
        key = osp.join(self.root, "munge", "munge.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(os.urandom(1024))
        self.munge_key = key
        self.munge_socket = osp.join(self.root, "munge", "munge.socket")
        plugstack = osp.join(self.root, "plugstack.conf")
        open(plugstack, "w").close()  # no SPANK plugins, whatever /etc/slurm holds
        hw = self.hardware
        node_line = " ".join(f"{key}={hw[key]}" for key in
                             ("NodeName", "CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
                              "RealMemory") if key in hw)
        lines = [
            "ClusterName=mgllavatest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.root}/state",
            f"SlurmdSpoolDir={self.root}/spool",
            f"SlurmctldPidFile={self.root}/slurmctld.pid",
            f"SlurmdPidFile={self.root}/slurmd.pid",
            f"SlurmctldLogFile={self.log_dir}/slurmctld.log",
            f"SlurmdLogFile={self.log_dir}/slurmd.log",
            f"PlugStackConfig={plugstack}",
            # No cgroups in containers: track processes by parentage, bind nothing.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            "KillWait=5",
            f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _start(self, name, *args):
        log = open(osp.join(self.log_dir, f"{name}.out"), "w")
        self._procs[name] = subprocess.Popen([_which(name), *args], env=self.env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def _check_alive(self):
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode} while the cluster started\n"
                                   + self.logs())

    def _wait_for(self, what, ready):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"the local slurm cluster: {what} not ready after {self.start_timeout:.0f} s\n"
                           + self.logs())

    def node_state(self):
        out = subprocess.run(["sinfo", "--noheader", "-p", self.partition, "-o", "%t"], env=self.env,
                             capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    def start(self):
        self._write_files()
        self._start("munged", "--foreground", "--force", f"--key-file={self.munge_key}",
                    f"--socket={self.munge_socket}", f"--pid-file={self.root}/munge/munged.pid",
                    f"--seed-file={self.root}/munge/munged.seed", f"--log-file={self.log_dir}/munged.log")
        self._wait_for("munged", lambda: osp.exists(self.munge_socket))
        self._start("slurmctld", "-D", "-i", "-f", self.conf)
        self._start("slurmd", "-D", "-N", self.node, "-f", self.conf)
        self._wait_for(f"node {self.node} idle in partition {self.partition}", lambda: self.node_state() == "idle")
        return self

    def stop(self):
        """Cancel the cluster's jobs, then stop the daemons (SIGTERM, SIGKILL after 15 s)."""
        if self._procs.get("slurmctld") and self._procs["slurmctld"].poll() is None:
            try:  # best effort: the daemons below are stopped whatever happens here
                subprocess.run(["scancel", "--full", f"--partition={self.partition}"], env=self.env,
                               capture_output=True, timeout=30)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and self._jobs_left():
                    time.sleep(0.5)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in reversed(DAEMONS):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def _jobs_left(self):
        out = subprocess.run(["squeue", "--noheader", "-p", self.partition], env=self.env, capture_output=True,
                             text=True, timeout=30)
        return out.returncode == 0 and out.stdout.strip() != ""

    def logs(self, tail=3000):
        """The end of every daemon log, for error messages."""
        parts = []
        for name in sorted(os.listdir(self.log_dir)) if osp.isdir(self.log_dir) else []:
            with open(osp.join(self.log_dir, name), errors="replace") as f:
                parts.append(f"--- {name} ---\n{f.read()[-tail:]}")
        return "\n".join(parts)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
