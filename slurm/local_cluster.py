"""A real CPU-only Slurm cluster in a directory, for tests and for users without a cluster.

It starts its own ``munged``, ``slurmctld`` and one ``slurmd`` per node from a slurm.conf
generated in DIR, on free ports, and never touches the system munge or any daemon it did
not start. Clients (sbatch, srun, squeue, scontrol, scancel) reach it through
``SLURM_CONF``; the generated slurm.conf's ``AuthInfo=socket=...`` points them (and the
daemons) at our munged.

One node by default (named after this host). With ``--nodes N`` it runs N slurmd daemons
on this machine (``slurmd -N NAME``: Debian builds Slurm with multiple-slurmd support),
named ``node1``..``nodeN``, each with its own port, spool directory, pid file and log,
all at address 127.0.0.1: a multi-node allocation, node ranks, per-node step daemons and
node failures are then real Slurm behaviour, only the network is the loopback.

Command line::

    python slurm/local_cluster.py start --dir ~/lev-slurm [--cpus 8] [--nodes 3]
    # (without --dir: a new private directory, /tmp/lev-local-slurm-XXXXXXXX, printed)
    export SLURM_CONF=~/lev-slurm/slurm.conf
    sbatch --ntasks=2 my_job.sh
    python slurm/local_cluster.py status --dir ~/lev-slurm
    python slurm/local_cluster.py stop --dir ~/lev-slurm

Python::

    with LocalSlurm(Path.home() / "lev-slurm") as cluster:
        job = cluster.sbatch("my_job.sh", "--ntasks=2")
        assert cluster.wait(job, timeout=60) == "COMPLETED"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["LocalSlurm", "SlurmNotInstalled", "TERMINAL_STATES", "slurm_binaries_missing"]

#: Job states after which a job will not run again by itself.
TERMINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
     "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)
_DAEMONS = ("munged", "slurmctld", "slurmd")
_CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo", "mungekey")
# Daemons and the slurmstepds they fork inherit this variable; stop() uses it to find
# leftovers of *this* cluster without touching anybody else's processes.
_MARKER = "LEV_LOCAL_SLURM_DIR"
# ...and this one, set per slurmd, names the node a slurmstepd belongs to (kill_node()).
_NODE_MARKER = "LEV_LOCAL_SLURM_NODE"


class SlurmNotInstalled(RuntimeError):
    """Raised when the Slurm or munge binaries are not on PATH."""


def slurm_binaries_missing() -> list[str]:
    """Return the names of the Slurm/munge programs that are not on PATH (empty if all are)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [name for name in _DAEMONS + _CLIENTS if shutil.which(name, path=path) is None]


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nobody listens on right now (the kernel picks them)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:  # all bound at once, so the kernel cannot hand out one port twice
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (zombies of reparented daemons count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` started with, or {} if it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _parse_scontrol(line: str) -> dict[str, str]:
    """Parse one ``scontrol show -o`` record (``Key=Value Key=Value ...``; values may hold spaces)."""
    # A new field starts at a space followed by ``Name=``; anything else belongs to the value.
    parts = re.split(r" (?=[A-Za-z][A-Za-z0-9_:/.]*=)", line.strip())
    return dict(part.split("=", 1) for part in parts if "=" in part)


class LocalSlurm:
    """A Slurm (munged + slurmctld + one slurmd per node) living in ``directory``.

    Args:
        directory: where config, keys, state, spool, logs and pidfiles go. Created if missing.
        cpus: CPUs each node declares. More than the machine has is fine (and the default 8
            lets 2-4 task jobs run on a 2-core box): ``SlurmdParameters=config_overrides``
            stops Slurm from draining the node for it.
        start_timeout: seconds to wait for the node to become idle.
        cred_expire: job credential lifetime in seconds, which is also how long a requeued
            job waits before it may start again (Slurm's default is 120). Long enough for
            slurmd to accept a step launch on a loaded machine, short enough for tests.
        preemption: two partitions on the node instead of one: ``low`` (the default,
            PriorityTier 1) and ``high`` (PriorityTier 2), with
            ``PreemptType=preempt/partition_prio`` and ``PreemptMode=REQUEUE``: a job
            submitted to ``high`` that needs the CPUs of a ``low`` job preempts it (TERM,
            ``grace_time`` seconds, then KILL) and Slurm requeues the preempted job.
        grace_time: seconds a preempted job has between TERM and KILL.
        nodes: how many nodes (slurmd daemons). 1 (the default) is one node named after
            this host; more are ``node1``..``nodeN``.
        slurmd_timeout: seconds after which slurmctld declares a silent node DOWN and fails
            (requeues) its jobs: Slurm's ``SlurmdTimeout`` (300 s by default, as on most
            clusters). Lower it to see node failures handled within a test's time.
    """

    def __init__(self, directory: str | os.PathLike, cpus: int = 8, start_timeout: float = 60.0,
                 cred_expire: int = 10, preemption: bool = False, grace_time: int = 30,
                 nodes: int = 1, slurmd_timeout: int = 300):
        if nodes < 1:
            raise ValueError(f"`nodes`={nodes} must be >= 1")
        if cpus < 1:
            raise ValueError(f"`cpus`={cpus} must be >= 1 (it is the CPU count the node declares)")
        if cred_expire < 1:
            raise ValueError(f"`cred_expire`={cred_expire} must be >= 1 second (Slurm's default is 120)")
        self.cred_expire = cred_expire
        self.preemption = preemption
        self.grace_time = grace_time
        # Not resolved: a symlink at DIR is refused by start(), never followed.
        self.dir = Path(os.path.abspath(directory))
        self.cpus = cpus
        self.start_timeout = start_timeout
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.slurmd_timeout = slurmd_timeout
        #: Node names, in slurm.conf order (the order Slurm allocates them in).
        self.nodenames = ([socket.gethostname().split(".")[0]] if nodes == 1
                          else [f"node{i}" for i in range(1, nodes + 1)])
        self.nodename = self.nodenames[0]
        self._procs: dict[str, subprocess.Popen] = {}

    # ---------------------------------------------------------------- environment
    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm clients: ``os.environ`` plus SLURM_CONF (which names our munge socket)."""
        # Drop the caller's own job variables (tests run inside a real allocation on CI):
        # sbatch would export them into our jobs and srun would think it runs inside them.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
        env["SLURM_CONF"] = str(self.conf)
        env["LEV_MUNGE_SOCKET"] = str(self.munge_socket)  # for `munge -S` / `unmunge -S` checks
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
        return env

    # ---------------------------------------------------------------- start / stop
    def start(self) -> LocalSlurm:
        """Write the config, start the three daemons and wait until the node is idle."""
        _claim_private_dir(self.dir)
        missing = slurm_binaries_missing()
        if missing:
            raise SlurmNotInstalled(
                f"missing {', '.join(missing)}; install them with `apt-get install -y slurm-wlm munge`"
            )
        if self.running():
            raise RuntimeError(f"a local Slurm already runs in {self.dir}; stop it with "
                               f"`python slurm/local_cluster.py stop --dir {self.dir}`")
        for sub in ("munge", "state", "spool", "log", "run"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses a socket directory others can write, and warns unless all may enter it.
        (self.dir / "munge").chmod(0o755)
        self._write_munge_key()
        self._write_conf()
        # A socket left by a killed munged would make the readiness check below pass at once.
        self.munge_socket.unlink(missing_ok=True)
        try:
            self._spawn("munged", ["munged", "-F", "-f", f"--socket={self.munge_socket}",
                                   f"--key-file={self.dir / 'munge' / 'munge.key'}",
                                   f"--pid-file={self.dir / 'run' / 'munged.pid'}",
                                   f"--log-file={self.dir / 'log' / 'munged.log'}",
                                   f"--seed-file={self.dir / 'munge' / 'munged.seed'}"])
            self._wait_for(self.munge_socket.exists, "munged to create its socket")
            # -i: tolerate missing or partial state files in a fresh or reused DIR (stop()
            # cancels every job first, so a restart resurrects none).
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            for node in self.nodenames:
                self._start_slurmd(node)
            self._wait_for(self._node_idle, f"node(s) {','.join(self.nodenames)} to become idle in sinfo")
        except BaseException:
            self.stop()
            raise
        return self

    def _daemon_key(self, node: str) -> str:
        """Key of ``node``'s slurmd in pids.json (plain ``slurmd`` on a one-node cluster)."""
        return "slurmd" if len(self.nodenames) == 1 else f"slurmd@{node}"

    def _daemon_names(self) -> list[str]:
        names = ["munged", "slurmctld", *(self._daemon_key(n) for n in self.nodenames)]
        # Also the slurmds recorded at start: `stop --dir D` need not repeat `--nodes N`.
        pids_file = self.dir / "run" / "pids.json"
        recorded = json.loads(pids_file.read_text()) if pids_file.exists() else {}
        return names + sorted(k for k in recorded if k.startswith("slurmd") and k not in names)

    def _start_slurmd(self, node: str) -> None:
        # The node marker reaches the slurmstepds slurmd forks (they inherit its
        # environment), so kill_node() can tell which node's step daemons to kill.
        self._spawn(self._daemon_key(node), ["slurmd", "-D", "-f", str(self.conf), "-N", node],
                    extra_env={_NODE_MARKER: node})

    # ---------------------------------------------------------------- node failures
    def kill_node(self, node: str) -> list[int]:
        """Make ``node`` die as a machine does: SIGKILL its slurmd, its step daemons and
        every job process on it, in that order, so no daemon reports anything on the way
        out (a crashed host sends no "task exited" message either). Returns the pids killed.

        slurmctld then sees a silent node: after ``slurmd_timeout`` seconds it marks it
        DOWN and fails (or requeues) the jobs that were using it. Other nodes' processes are
        untouched. :meth:`start_node` brings the node back.
        """
        if node not in self.nodenames:
            raise ValueError(f"no node {node!r} in this cluster (nodes: {', '.join(self.nodenames)})")
        killed = []
        pid = self._pid(self._daemon_key(node))
        if pid and _alive(pid) and self._is_ours(pid):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            if self._daemon_key(node) in self._procs:  # our child: reap it, no zombie
                self._procs.pop(self._daemon_key(node)).wait(timeout=10)
        # Step daemons first (they would report their tasks' deaths), then the tasks.
        for which in ("stepd", "task"):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in killed:
                    continue
                env = _environ(int(entry.name))
                stepd = env.get(_NODE_MARKER) == node and env.get(_MARKER) == str(self.dir)
                task = (env.get("SLURM_CONF") == str(self.conf)
                        and env.get("SLURMD_NODENAME") == node and "SLURM_JOB_ID" in env)
                if (stepd if which == "stepd" else task) and _alive(int(entry.name)):
                    try:
                        os.kill(int(entry.name), signal.SIGKILL)
                        killed.append(int(entry.name))
                    except ProcessLookupError:
                        pass
        return killed

    def start_node(self, node: str, timeout: float = 120.0) -> None:
        """Start ``node``'s slurmd again (after :meth:`kill_node`) and wait until Slurm
        schedules on it again (``ReturnToService=2`` returns a DOWN node that registers)."""
        if self._daemon_key(node) in self.running():
            raise RuntimeError(f"the slurmd of {node} already runs")
        self._start_slurmd(node)
        deadline = time.monotonic() + timeout
        while self.node_state(node).rstrip("*~#!%$@^-") not in ("idle", "mixed", "allocated"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node} still {self.node_state(node)} {timeout}s after its "
                                   f"slurmd started\n{self.log_tails()}")
            time.sleep(0.5)

    def node_state(self, node: str) -> str:
        """``node``'s state in sinfo's long form, e.g. ``idle``, ``allocated``, ``down*``."""
        out = self._client("sinfo", "-h", "-N", "-n", node, "-o", "%T")
        return out.split()[0] if out.split() else "unknown"

    def stop(self) -> None:
        """Cancel jobs, then end every process this cluster started (and only those)."""
        if "slurmctld" in self.running():
            self.cancel_all()  # slurmstepd then kills the job processes itself: the clean path
        for name in reversed(self._daemon_names()):  # slurmds first, munged last: daemons need munge to exit cleanly
            pid = self._pid(name)
            if pid and _alive(pid) and self._is_ours(pid):
                os.kill(pid, signal.SIGTERM)
                self._reap(name, pid)
        # Whatever survived: a slurmstepd that hung, or a job process that escaped tracking.
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._procs.clear()
        (self.dir / "run" / "pids.json").unlink(missing_ok=True)

    def running(self) -> dict[str, int]:
        """{daemon name: pid} of this cluster's daemons that are alive."""
        found = {name: self._pid(name) for name in self._daemon_names()}
        return {n: p for n, p in found.items() if p and _alive(p) and self._is_ours(p)}

    def leftover_pids(self) -> list[int]:
        """Pids of live processes of this cluster: daemons, slurmstepds and job processes.

        Daemons and slurmstepds carry our marker variable; job processes carry our
        SLURM_CONF together with a SLURM_JOB_ID (a client shell has no job id).
        """
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            env = _environ(int(entry.name))
            ours = env.get(_MARKER) == str(self.dir) or (
                env.get("SLURM_CONF") == str(self.conf) and "SLURM_JOB_ID" in env)
            if ours and _alive(int(entry.name)):
                pids.append(int(entry.name))
        return pids

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- jobs
    def sbatch(self, script: str | os.PathLike, *options: str, script_args: tuple[str, ...] = (),
               env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None) -> int:
        """Submit ``script`` and return its job id.

        Args:
            script: path of the batch script.
            *options: sbatch options, e.g. ``"--ntasks=2"``, ``"--output=/tmp/o.log"``.
            script_args: arguments for the script itself.
            env: variables added to the client environment; sbatch exports them to the job.
            cwd: the job's working directory (default: the current one).
        """
        full_env = {**self.env, **(env or {})}
        cmd = ["sbatch", "--parsable", *options, str(script), *script_args]
        out = subprocess.run(cmd, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {out.returncode}): {out.stderr.strip()}")
        return int(out.stdout.strip().split(";")[0])

    def release(self, job_id: int) -> None:
        """Let a job submitted with ``--hold`` start (``scontrol release``)."""
        self._client("scontrol", "release", str(job_id))

    def sbatch_wrap(self, command: str, *options: str) -> int:
        """Submit the shell ``command`` (``sbatch --wrap``) and return its job id."""
        cmd = ["sbatch", "--parsable", *options, "--wrap", command]
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {out.returncode}): {out.stderr.strip()}")
        return int(out.stdout.strip().split(";")[0])

    def job_info(self, job_id: int) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, StdOut, ...)."""
        out = self._client("scontrol", "show", "job", "-o", str(job_id))
        return _parse_scontrol(out.splitlines()[0])

    def cancel_all(self, timeout: float = 15.0) -> None:
        """Cancel every job of this cluster and wait until none is left in squeue."""
        subprocess.run(["scancel", "--partition=debug"], env=self.env, capture_output=True, timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._squeue_ids():
            time.sleep(0.3)

    def state(self, job_id: int) -> str:
        """The job's state word, e.g. ``RUNNING`` or ``COMPLETED``."""
        return self.job_info(job_id)["JobState"]

    def requeue_count(self, job_id: int) -> int:
        """How many times the job was requeued (scontrol's ``Restarts``)."""
        return int(self.job_info(job_id)["Restarts"])

    def wait(self, job_id: int, timeout: float = 120.0, poll: float = 0.5) -> str:
        """Wait until the job reaches a terminal state (see TERMINAL_STATES) and return it.

        A requeued job passes through REQUEUED/PENDING and is waited for until its last run ends.
        Raises TimeoutError with the job record and its output's tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            info = self.job_info(job_id)
            if info["JobState"] in TERMINAL_STATES:
                return info["JobState"]
            if time.monotonic() > deadline:
                tail = ""
                if info.get("StdOut") and Path(info["StdOut"]).exists():
                    tail = Path(info["StdOut"]).read_text(errors="replace")[-2000:]
                raise TimeoutError(f"job {job_id} still {info['JobState']} after {timeout}s "
                                   f"(Reason={info.get('Reason')}); output tail:\n{tail}")
            time.sleep(poll)

    def signal(self, job_id: int, sig: str | int = "USR1", batch_only: bool = True) -> None:
        """Send ``sig`` via ``scancel --signal``.

        ``batch_only=True`` (``--batch``) signals only the batch shell, as ``#SBATCH
        --signal=B:USR1@T`` does before a time limit; the shell must forward it to its steps.
        ``batch_only=False`` signals all steps but not the batch shell.
        """
        name = sig if isinstance(sig, str) else signal.Signals(sig).name
        args = ["scancel", f"--signal={name.removeprefix('SIG')}"]
        self._client(*args, *(["--batch"] if batch_only else []), str(job_id))

    # ---------------------------------------------------------------- internals
    def _client(self, *cmd: str) -> str:
        out = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {out.returncode}): {out.stderr.strip()}")
        return out.stdout

    def _write_munge_key(self) -> None:
        key = self.dir / "munge" / "munge.key"
        if not key.exists():
            # 1024 random bytes is what mungekey writes too; no need to depend on it.
            key.write_bytes(os.urandom(1024))
        key.chmod(0o400)

    def _write_conf(self) -> None:
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        d = self.dir
        ctld_port, *slurmd_ports = _free_ports(1 + len(self.nodenames))
        multi = len(self.nodenames) > 1
        (d / "plugstack.conf").write_text("")  # keep the system's SPANK plugins out
        lines = [
            "ClusterName=lev",
            f"SlurmctldHost={socket.gethostname().split('.')[0]}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_ports[0]}",
            "SlurmUser=root",
            "SlurmdUser=root",
            # Clients and daemons find our munged through this socket (22.05 has no env
            # variable for it); cred_expire also delays a requeued job's restart.
            f"AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"StateSaveLocation={d / 'state'}",
            # %n: the node name, so every slurmd of a multi-node cluster has its own
            # spool (job state, step sockets), pid file and log.
            f"SlurmdSpoolDir={d / 'spool' / '%n' if multi else d / 'spool'}",
            f"SlurmctldPidFile={d / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'run' / ('slurmd.%n.pid' if multi else 'slurmd.pid')}",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'log' / ('slurmd.%n.log' if multi else 'slurmd.log')}",
            f"PlugStackConfig={d / 'plugstack.conf'}",
            f"TmpFS={d / 'spool'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # No cgroups here (containers, no systemd). pgid rather than linuxproc: linuxproc
            # follows parent pids, so a background child orphaned by its exiting batch shell
            # escapes it and outlives the job; a process group keeps it.
            "ProctrackType=proctrack/pgid",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/builtin",
            # The main scheduler otherwise runs every 60 s: a requeued job, eligible again
            # after cred_expire, would sit PENDING for up to a minute.
            "SchedulerParameters=sched_interval=1",
            "MailProg=/bin/true",  # Debian's default mail program is absent; slurmctld logs an error
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            # Declared CPUs may exceed the machine's; without this the node is drained.
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "JobRequeue=1",
            # TERM -> KILL delay of a cancelled job: time for the ranks to save (default 30).
            "KillWait=10",
            "MinJobAge=3600",  # finished jobs stay visible to `scontrol show job` for an hour
            "InactiveLimit=0",
            # How long slurmctld waits for a silent node before declaring it DOWN.
            f"SlurmdTimeout={self.slurmd_timeout}",
        ]
        hardware = (f"CPUs={self.cpus} Sockets=1 CoresPerSocket={self.cpus} ThreadsPerCore=1 "
                    f"RealMemory={mem_mb} State=UNKNOWN")
        if not multi:
            lines.append(f"NodeName={self.nodename} NodeAddr=127.0.0.1 {hardware}")
        else:
            # NodeHostname is the machine every slurmd runs on; NodeAddr is where slurmctld
            # and srun reach it; Port tells the daemons of one host apart.
            host = socket.gethostname().split(".")[0]
            lines += [f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} {hardware}"
                      for node, port in zip(self.nodenames, slurmd_ports, strict=True)]
        nodes = ",".join(self.nodenames)
        if self.preemption:
            lines += [
                "PreemptType=preempt/partition_prio",
                "PreemptMode=REQUEUE",
                f"PartitionName=low Nodes={nodes} Default=YES MaxTime=INFINITE "
                f"State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime={self.grace_time}",
                f"PartitionName=high Nodes={nodes} MaxTime=INFINITE State=UP "
                "PriorityTier=2 PreemptMode=OFF",
            ]
        else:
            lines.append(f"PartitionName=debug Nodes={nodes} Default=YES "
                         "MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
        env = {**self.env, _MARKER: str(self.dir), **(extra_env or {})}
        log = open(self.dir / "log" / f"{name}.out", "ab")  # noqa: SIM115 - owned by the child
        # A new session: the daemons outlive `local_cluster.py start` and ignore our Ctrl-C.
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._procs[name] = proc
        pids_file = self.dir / "run" / "pids.json"
        pids = json.loads(pids_file.read_text()) if pids_file.exists() else {}
        pids[name] = proc.pid
        pids_file.write_text(json.dumps(pids))

    def _pid(self, name: str) -> int | None:
        pids_file = self.dir / "run" / "pids.json"
        if not pids_file.exists():
            return None
        return json.loads(pids_file.read_text()).get(name)

    def _is_ours(self, pid: int) -> bool:
        """Guard against a recycled pid: the process must carry this cluster's marker."""
        return _environ(pid).get(_MARKER) == str(self.dir)

    def _reap(self, name: str, pid: int, grace: float = 10.0) -> None:
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        if name in self._procs:
            self._procs[name].wait(timeout=10)

    def _squeue_ids(self) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True,
                             text=True, timeout=30)
        return out.stdout.split()

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env,
                             capture_output=True, text=True, timeout=30)
        # One line per partition the node is in (two with preemption).
        return out.returncode == 0 and set(out.stdout.split()) == {"idle"}

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not ready():
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"timed out after {self.start_timeout}s"
                raise RuntimeError(f"local Slurm in {self.dir}: waiting for {what}: {why}.\n"
                                   f"{self.log_tails()}")
            time.sleep(0.3)

    def log_tails(self, chars: int = 1500) -> str:
        """The end of each daemon log, for error messages."""
        parts = []
        for log in sorted((self.dir / "log").glob("*")):
            parts.append(f"--- {log} ---\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


def _claim_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700), or accept it only if it is a real directory of this
    user that nobody else can enter.

    The daemons run as root and write slurm.conf, plugstack.conf, the munge key and logs
    here: in a directory someone else made (a predictable name in /tmp), or through a
    symlink they planted, those files would be theirs to read, replace or aim elsewhere.

    Raises:
        RuntimeError: ``path`` exists and is a symlink, not a directory, another user's,
            or open to others; the message names what and the fix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
        return
    except FileExistsError:
        pass
    st = os.lstat(path)
    why = ("a symlink" if stat.S_ISLNK(st.st_mode)
           else "not a directory" if not stat.S_ISDIR(st.st_mode)
           else f"owned by uid {st.st_uid}, not {os.geteuid()}" if st.st_uid != os.geteuid()
           else f"open to others (mode {stat.S_IMODE(st.st_mode):04o})" if st.st_mode & 0o077
           else None)
    if why:
        raise RuntimeError(
            f"local Slurm directory {path} is {why}: the cluster's daemons write their "
            f"config and keys there as root. Use a new directory (omit --dir for a private "
            f"one in {tempfile.gettempdir()}), or, if it is yours, chmod 700 {path}")


def main(argv: list[str] | None = None) -> int:
    """``start`` / ``stop`` / ``status`` from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", default=os.environ.get(_MARKER),
                        help="cluster directory: new, or yours with mode 0700 (default: "
                             "$LEV_LOCAL_SLURM_DIR; for start, else a new private directory "
                             "in the temporary directory)")
    parser.add_argument("--cpus", type=int, default=8, help="CPUs each node declares (default 8)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="slurmd daemons (nodes) on this machine: 1 (default) is named after "
                             "this host, more are node1..nodeN")
    parser.add_argument("--slurmd-timeout", type=int, default=300,
                        help="seconds before a silent node is declared DOWN (SlurmdTimeout, default 300)")
    parser.add_argument("--preemption", action="store_true",
                        help="partitions low (default) and high; high preempts low (REQUEUE)")
    parser.add_argument("--grace-time", type=int, default=30,
                        help="seconds between a preempted job's TERM and KILL (default 30)")
    args = parser.parse_args(argv)
    if args.dir is None:
        if args.command != "start":
            parser.error(f"{args.command} needs --dir: the directory `start` printed")
        # A fresh name no one else can have created first (mkdtemp: 0700, exclusive).
        args.dir = tempfile.mkdtemp(prefix="lev-local-slurm-")
    cluster = LocalSlurm(args.dir, cpus=args.cpus, preemption=args.preemption,
                         grace_time=args.grace_time, nodes=args.nodes,
                         slurmd_timeout=args.slurmd_timeout)
    if args.command == "start":
        try:
            cluster.start()
        except RuntimeError as err:  # includes SlurmNotInstalled; the message says the fix
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"local Slurm up in {cluster.dir}; for clients run:\nexport SLURM_CONF={cluster.conf}")
    elif args.command == "stop":
        cluster.stop()
        print(f"local Slurm in {cluster.dir} stopped")
    else:
        up = cluster.running()
        print(f"{cluster.dir}: " + (", ".join(f"{n} pid {p}" for n, p in up.items()) or "not running"))
        if "slurmctld" in up:
            print(subprocess.run(["sinfo"], env=cluster.env, capture_output=True, text=True).stdout)
        return 0 if len(up) == len(cluster._daemon_names()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
