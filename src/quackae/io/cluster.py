"""Joining a Ray cluster (``--ray_address``) or starting a local one, authenticated or told so.

Ray >= 2.52 has token authentication (``RAY_AUTH_MODE=token`` plus a shared token), but a
cluster started without it answers anyone who reaches its ports, and a client holding a token
is admitted there all the same. So before joining, ``connect`` asks the cluster's GCS one
harmless question without a token (``probe``):

- it answers: the cluster is open. quackae says so in one line and goes on only when the
  address is loopback (this machine) or the caller passed ``allow_open`` (``--allow_open_cluster``);
- it refuses: a token is needed. Without one here, or with one the cluster refuses, quackae stops
  at once with one line saying what to set, instead of Ray's ~25 s of retries and traceback;
- no answer: Ray's own connection attempt decides (its failure becomes one line too).

A local cluster (no address) starts with ``RAY_AUTH_MODE=token`` unless the caller set a mode:
Ray 2.60 does that by itself, Ray 2.52 would start it open on every interface.
See docs/cluster.md for the recipe that starts an authenticated cluster.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from quackae.io.storage import first_line

__all__ = [
    "ClusterError",
    "Token",
    "connect",
    "find_token",
    "is_loopback",
    "probe",
    "stop_local",
    "token_available",
    "use_token_mode",
]

RECIPE = "docs/cluster.md, 'Start or join a cluster'"

AUTH_HELP = (
    "the cluster refused the connection or did not answer. Ray clusters started as "
    f"{RECIPE} require a token: set RAY_AUTH_MODE=token and make the head's token "
    "available here (copy its ~/.ray/auth_token to this machine's ~/.ray/auth_token, or set "
    "RAY_AUTH_TOKEN); also check the address (`ray status` on the head prints it)"
)

TOKEN_HELP = (
    "copy the head's ~/.ray/auth_token to this machine's ~/.ray/auth_token (mode 600) or set "
    f"RAY_AUTH_TOKEN, and set RAY_AUTH_MODE=token ({RECIPE})"
)

#: How long the probe waits for the GCS (a cluster that answers does so in milliseconds).
PROBE_SECONDS = 5.0

#: A GCS method every Ray >= 2.52 serves; its empty request serializes to no bytes.
PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"


class ClusterError(Exception):
    """A Ray cluster that cannot be joined; the message is one line saying what to do."""


@dataclass(frozen=True)
class Token:
    """The Ray authentication token of this process and where it came from (Ray's order)."""

    value: str
    source: str


def find_token() -> Token | None:
    """The token Ray would use here: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return Token(os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN")
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Token(value, str(path)) if value else None


def token_available() -> bool:
    """Whether a Ray authentication token is configured for this process."""
    return find_token() is not None


def is_loopback(address: str) -> bool:
    """Whether ``address`` (``HOST:PORT``, ``[V6]:PORT`` or ``auto``) names this machine.

    ``auto`` is Ray's "the cluster started on this machine", unless ``RAY_ADDRESS`` names
    another one.
    """
    if address == "auto":
        env = os.environ.get("RAY_ADDRESS", "auto")
        return env == "auto" or is_loopback(env)
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def probe(address: str, token: str | None = None) -> str:
    """Ask the GCS at ``address`` one question: ``answered``, ``refused`` or ``no answer``.

    Without ``token`` the question carries no credentials: ``answered`` means the cluster is
    open. With it, ``refused`` means the cluster does not accept that token.
    """
    import grpc

    target = address.split("://", 1)[-1]
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        call = channel.unary_unary(
            PROBE_METHOD, request_serializer=lambda _: b"", response_deserializer=lambda b: b
        )
        try:
            call(None, timeout=PROBE_SECONDS, metadata=metadata)
        except grpc.RpcError as e:
            return "refused" if e.code() == grpc.StatusCode.UNAUTHENTICATED else "no answer"
    return "answered"


def open_cluster_line(address: str) -> str:
    """The one line quackae prints when it joins a cluster that admits anyone."""
    return (
        f"quackae: the Ray cluster at {address} is open: it answers without a token, so anyone "
        "who can reach its ports can run code on it and read its data; close it: restart its "
        f"nodes with RAY_AUTH_MODE=token and the head's token ({RECIPE})"
    )


def _admit_open(address: str, allow_open: bool) -> None:
    """Say that the cluster is open; refuse it unless it is this machine's or the user knows."""
    if not allow_open and not is_loopback(address):
        raise ClusterError(
            f"--ray_address {address}: this Ray cluster is open (it answers without a token, so "
            "anyone who can reach it can run code on it and read its data): restart it with "
            f"token authentication ({RECIPE}), or pass --allow_open_cluster to use it anyway"
        )
    print(open_cluster_line(address), file=sys.stderr, flush=True)


def _check_token(address: str, answer: str) -> None:
    """Before joining a cluster that wants a token: stop at once if this process has none."""
    if answer != "refused":
        return
    token = find_token()
    if token is None:
        raise ClusterError(
            f"--ray_address {address}: the cluster requires a token and none is set here: "
            f"{TOKEN_HELP}"
        )
    if probe(address, token.value) == "refused":
        raise ClusterError(
            f"--ray_address {address}: the cluster refused the token from {token.source}: "
            f"{TOKEN_HELP}"
        )
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        raise ClusterError(
            f"--ray_address {address}: the cluster requires a token but RAY_AUTH_MODE is "
            f"{os.environ['RAY_AUTH_MODE']} here: set RAY_AUTH_MODE=token"
        )


def use_token_mode() -> None:
    """Set ``RAY_AUTH_MODE=token`` for this process, and make an imported Ray read it again.

    Ray 2.52 reads the mode (and caches the token) when ``ray`` is imported, so a mode set
    afterwards reached the processes ``ray.init`` started but not the driver, whose GCS client
    then sent no token and ``ray.init`` failed with "Failed to start GCS". The reset is the one
    Ray's own tests use (``ray._private.authentication_test_utils.reset_auth_token_state``).
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    with contextlib.suppress(ImportError, AttributeError):
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _start_local(num_cpus: int | None) -> None:
    """A local cluster for this run, with token authentication unless a mode is set."""
    import ray

    default = Path.home() / ".ray" / "auth_token"
    made_token = "RAY_AUTH_MODE" not in os.environ and not token_available()
    if "RAY_AUTH_MODE" not in os.environ:
        use_token_mode()
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True)
    if made_token and default.is_file():  # Ray wrote it readable by all (umask)
        with contextlib.suppress(OSError):
            default.chmod(0o600)
    if os.environ["RAY_AUTH_MODE"].lower() != "token":  # the caller's RAY_AUTH_MODE=disabled
        print(open_cluster_line(ray.get_runtime_context().gcs_address), file=sys.stderr)


def connect(address: str | None, num_cpus: int | None = None, allow_open: bool = False) -> None:
    """Join the cluster at ``address`` (``auto``: the one running here), else start a local one.

    ``allow_open``: join an open cluster (one that needs no token) that is not on this
    machine; an open cluster is always reported in one line.

    Raises
    ------
    ClusterError
        The cluster could not be joined (wrong address, missing or wrong token, open).
    """
    import ray

    if ray.is_initialized():
        return
    if not address:
        _start_local(num_cpus)
        return
    answer = "no answer" if address == "auto" else probe(address)
    _check_token(address, answer)
    if answer == "answered":
        _admit_open(address, allow_open)
    if "RAY_AUTH_MODE" not in os.environ and token_available():
        use_token_mode()  # what Ray 2.60 itself does for address=None
    try:
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as e:
        raise ClusterError(f"--ray_address {address}: {AUTH_HELP} ({first_line(e)})") from None
    if answer == "no answer" and probe(ray.get_runtime_context().gcs_address) == "answered":
        try:
            _admit_open(address, allow_open)
        except ClusterError:
            ray.shutdown()
            raise


def stop_local(temp_dir: str | Path, grace: float = 2.0) -> None:
    """Kill the processes of a local cluster whose Ray temp folder lies under ``temp_dir``.

    That is ``ray start --temp-dir temp_dir`` or ``RAY_TMPDIR=temp_dir ray start``. ``ray stop``
    would stop every cluster on the machine; this stops only the processes whose command line
    names ``temp_dir``, and their children (terminate, then kill after ``grace`` s: Ray 2.60's
    gcs_server, raylet and agents outlive a SIGTERM by 10 s and more), never this process or its
    parents (a shell command naming ``temp_dir`` would otherwise stop itself).
    """
    import psutil

    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    victims = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid not in spared and str(temp_dir) in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                victims += [proc, *proc.children(recursive=True)]
    victims = [p for p in victims if p.pid not in spared]
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(victims, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
