"""Joining a Ray cluster (``--ray_address``) or starting a local one, with one-line failures.

Clusters started with ``ray start --head`` (Ray >= 2.5x) require token authentication. Ray
turns it on for a client by itself only when no address is given; with an explicit address the
client must set ``RAY_AUTH_MODE=token``. ``connect`` does that when a token is at hand
(``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), and turns a refused
connection into one line saying what to set, instead of Ray's retries and traceback.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from quackae.io.storage import first_line

__all__ = ["ClusterError", "connect", "token_available"]

AUTH_HELP = (
    "the cluster refused the connection or did not answer. Ray clusters started with "
    "`ray start --head` require a token: set RAY_AUTH_MODE=token and make the head's token "
    "available here (copy its ~/.ray/auth_token to this machine's ~/.ray/auth_token, or set "
    "RAY_AUTH_TOKEN); also check the address (`ray status` on the head prints it)"
)


class ClusterError(Exception):
    """A Ray cluster that cannot be joined; the message is one line saying what to do."""


def token_available() -> bool:
    """Whether a Ray authentication token is configured for this process."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto``: the one running here), else start a local one.

    Raises
    ------
    ClusterError
        The cluster could not be joined (wrong address, missing or wrong token).
    """
    import ray

    if ray.is_initialized():
        return
    if not address:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True)
        return
    if "RAY_AUTH_MODE" not in os.environ and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"  # what Ray itself does for address=None
    try:
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError) as e:
        raise ClusterError(f"--ray_address {address}: {AUTH_HELP} ({first_line(e)})") from None


def stop_local(temp_dir: str | Path) -> None:
    """Kill the processes of a local cluster started with ``ray start --temp-dir temp_dir``.

    ``ray stop`` would stop every cluster on the machine; this stops only those whose command
    line names ``temp_dir``, and their children (terminate, then kill after 10 s).
    """
    import psutil

    victims = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(temp_dir) in " ".join(proc.info["cmdline"] or []):
            victims += [proc, *proc.children(recursive=True)]
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(victims, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
