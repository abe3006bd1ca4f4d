"""Client options: endpoints, deadlines, retries, TLS, bearer token."""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple, Union

import grpc

# Largest TLS file read (certificate chains and CA bundles are far smaller).
_MAX_PEM_BYTES = 4 << 20

@dataclasses.dataclass
class ClientOptions:
    """How a Client or AsyncClient reaches Registrar.

    targets: one or more "host:port" (or any gRPC target, e.g.
      "dns:///registrar:50051"). With several, calls go round-robin over
      them, skipping endpoints whose channel is failing, and a retried call
      moves on to the next endpoint.
    deadline: default seconds per call, covering all attempts and backoff.
    max_attempts / initial_backoff / max_backoff: retries (see retry.py):
      backoff doubles per attempt up to max_backoff, jittered into [d/2, d].
    tls_*: TLS is on when any is set. tls_ca_file: PEM roots the server's
      certificate must chain to (empty: system roots); tls_cert_file and
      tls_key_file: this client's certificate and key (mutual TLS; both or
      neither); tls_server_name: the name checked against the server's
      certificate instead of the target's host.
    bearer_token: sent as "authorization: Bearer <token>" on every call;
      printable ASCII; never logged or put in errors by this library.
    credentials: explicit channel credentials (win over tls_*_file).
    max_reconnect_backoff: the most seconds a channel whose endpoint went
      away waits between attempts to connect again (gRPC's own default
      grows to 120 s, leaving a restarted replica unused for long).
    channel_options: extra gRPC channel arguments (win over the above).
    on_retry: called as on_retry(method, attempt, error, delay) before a
      retry.
    """

    targets: Sequence[str] = ("127.0.0.1:50051",)
    deadline: float = 5.0
    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    max_reconnect_backoff: float = 1.0
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_server_name: str = ""
    bearer_token: str = ""
    credentials: Optional[grpc.ChannelCredentials] = None
    channel_options: Sequence[Tuple[str, object]] = ()
    on_retry: Optional[Callable[[str, int, Exception, float], None]] = None

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = (self.targets,)
        self.targets = tuple(self.targets)
        if not self.targets:
            raise ValueError("targets: give at least one endpoint")
        if any(not 0x20 <= ord(c) <= 0x7e for c in self.bearer_token):
            raise ValueError("bearer_token has a character that is not "
                             "printable ASCII (metadata cannot carry it)")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError(
                "tls_key_file is set but tls_cert_file is not: give both"
                if self.tls_key_file else
                "tls_cert_file is set but tls_key_file is not: give both")

    @property
    def uses_tls(self) -> bool:
        return self.credentials is not None or any(
            (self.tls_ca_file, self.tls_cert_file, self.tls_key_file,
             self.tls_server_name))

    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        if not self.bearer_token:
            return ()
        return (("authorization", "Bearer " + self.bearer_token),)

    def channel_credentials(self) -> Optional[grpc.ChannelCredentials]:
        """None for plaintext; reads the TLS files (ValueError naming the
        option and path when one cannot be read or holds no PEM data)."""
        if self.credentials is not None:
            return self.credentials
        if not self.uses_tls:
            return None
        roots = _read_pem("tls_ca_file", self.tls_ca_file)
        chain = _read_pem("tls_cert_file", self.tls_cert_file)
        key = _read_pem("tls_key_file", self.tls_key_file)
        return grpc.ssl_channel_credentials(root_certificates=roots,
                                            private_key=key,
                                            certificate_chain=chain)

    def channel_arguments(self) -> List[Tuple[str, object]]:
        max_ms = min(120_000, max(1, int(self.max_reconnect_backoff * 1000)))
        args: List[Tuple[str, object]] = [
            ("grpc.primary_user_agent", "registrar-client-python/0.1"),
            ("grpc.max_reconnect_backoff_ms", max_ms),
            ("grpc.initial_reconnect_backoff_ms",
             min(100, max(1, max_ms // 10))),
        ]
        if self.tls_server_name:
            args.append(("grpc.ssl_target_name_override",
                         self.tls_server_name))
        args.extend(self.channel_options)
        return args


def _read_pem(option: str, path: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_PEM_BYTES + 1)
    except OSError as e:
        raise ValueError(f"{option}: cannot read {path}: {e.strerror}") from e
    if len(data) > _MAX_PEM_BYTES:
        raise ValueError(
            f"{option}: {path} is larger than {_MAX_PEM_BYTES} bytes")
    if b"-----BEGIN " not in data:
        raise ValueError(f"{option}: {path} holds no PEM data")
    return data


OptionsLike = Union[ClientOptions, str, Sequence[str]]


def to_options(target: OptionsLike, overrides: dict) -> ClientOptions:
    """ClientOptions from a ClientOptions (overrides applied with
    dataclasses.replace) or from one or more targets plus keyword fields."""
    if isinstance(target, ClientOptions):
        return dataclasses.replace(target, **overrides)
    return ClientOptions(targets=target, **overrides)
