"""Connect to a vCenter (or the lab) with govc's settings, and always log out.

Settings follow govc's environment variables so that people who use govc or vcsim already have them:

``GOVC_URL``          host, host:port or URL (``https://vc.example.com/sdk``); user:password in the URL
                      are accepted and taken out of it, percent-decoded as govc does
                      (``administrator%40vsphere.local:pa%24s@vc``)
``GOVC_USERNAME``     user name
``GOVC_PASSWORD``     password (or ``RUNBOOK_PASSWORD_FILE``: a file holding it, first line; a warning
                      when others than its owner may read it)
``GOVC_INSECURE``     ``1``/``true`` skips certificate verification (with a warning)
``GOVC_TLS_CA_CERTS`` CA file(s) to trust, ``:``-separated
``RUNBOOK_TIMEOUT``   seconds to wait for the vCenter to answer (default 10)

With no ``GOVC_URL`` the runbook uses the running lab vCenter (``runbook lab start``) and says so.
"""
from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import ssl
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from runbook.errors import ConnectionFailed

log = logging.getLogger("runbook")

DEFAULT_TIMEOUT = 10.0
_TRUE = {"1", "true", "yes", "on"}


class InsecureConnectionWarning(UserWarning):
    """Certificate verification was switched off with GOVC_INSECURE."""


@dataclass(frozen=True)
class Settings:
    """Where and how to log in. The password never shows in ``repr`` or logs."""

    host: str
    port: int
    scheme: str = "https"
    username: str = ""
    password: str = field(default="", repr=False)
    insecure: bool = False
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    source: str = "GOVC_URL"

    @property
    def url(self) -> str:
        """The SDK address, without credentials: safe to show and to record."""
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}/sdk"

    def describe(self) -> str:
        tls = "plain HTTP" if self.scheme == "http" else (
            "TLS NOT verified" if self.insecure else "TLS verified")
        return f"{self.url} as {self.username or '(no user)'} ({tls}; from {self.source})"


def settings_from_env(env: Mapping[str, str] | None = None, *, lab_state_dir: Path | None = None) -> Settings:
    """Read govc's variables; with no ``GOVC_URL`` fall back to the running lab vCenter."""
    env = os.environ if env is None else env
    timeout = _float(env.get("RUNBOOK_TIMEOUT"), DEFAULT_TIMEOUT, "RUNBOOK_TIMEOUT")
    raw = (env.get("GOVC_URL") or "").strip()
    if not raw:
        return _lab_settings(timeout, lab_state_dir)
    parts = urlsplit(raw if "://" in raw else f"https://{raw}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionFailed(
            "GOVC_URL is not a vCenter address: give a host name, host:port or https://host/sdk")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConnectionFailed("GOVC_URL has an invalid port number") from None
    # userinfo in a URL is percent-encoded (vcsim prints administrator%40vsphere.local): decode as govc does
    username = env.get("GOVC_USERNAME") or unquote(parts.username or "")
    password = env.get("GOVC_PASSWORD") or unquote(parts.password or "")
    pw_file = env.get("RUNBOOK_PASSWORD_FILE")
    if pw_file and not env.get("GOVC_PASSWORD"):
        password = read_password_file(pw_file)
    if not username:
        raise ConnectionFailed("GOVC_USERNAME is not set: give the vCenter user name (for example "
                               "administrator@vsphere.local)")
    ca = env.get("GOVC_TLS_CA_CERTS") or None
    return Settings(host=parts.hostname, port=port, scheme=parts.scheme, username=username,
                    password=password, insecure=(env.get("GOVC_INSECURE", "").lower() in _TRUE),
                    ca_file=ca, timeout=timeout, source="GOVC_URL")


_warned_files: set[str] = set()


def read_password_file(path: str) -> str:
    """The first line of ``RUNBOOK_PASSWORD_FILE``; one warning (once per file) when others than its owner
    may read it, as ssh does for a private key."""
    try:
        text = Path(path).read_text()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConnectionFailed(
            f"cannot read the password file RUNBOOK_PASSWORD_FILE={path}: {exc.strerror}") from None
    if mode & 0o077 and path not in _warned_files:
        _warned_files.add(path)
        who = "everyone" if mode & 0o004 else "its group"
        log.warning("the password file %s can be read by %s (mode %o): chmod 600 %s", path, who, mode & 0o777, path)
    return text.splitlines()[0] if text else ""


def _lab_settings(timeout: float, state_dir: Path | None) -> Settings:
    from runbook.vsphere.labstate import running_lab  # the lab is the embedded default

    info = running_lab(state_dir)
    if info is None:
        raise ConnectionFailed(
            "no vCenter configured and no lab running: set GOVC_URL, GOVC_USERNAME and GOVC_PASSWORD, "
            "or start the lab with: runbook lab start")
    parts = urlsplit(info.url)
    return Settings(host=parts.hostname or "127.0.0.1", port=parts.port or info.port, scheme=parts.scheme,
                    username=info.username, password=info.password,
                    insecure=bool(getattr(info, "insecure", False)) and parts.scheme == "https",
                    ca_file=str(info.ca_file) if getattr(info, "ca_file", None) else None,
                    timeout=timeout, source=f"the lab vCenter (scenario {info.scenario}; no GOVC_URL set)")


def _float(value: str | None, default: float, name: str) -> float:
    if not value:
        return default
    try:
        result = float(value)
    except ValueError:
        raise ConnectionFailed(f"{name}={value!r} is not a number of seconds") from None
    if result <= 0:
        raise ConnectionFailed(f"{name} must be a positive number of seconds")
    return result


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A context that verifies certificates unless GOVC_INSECURE asks otherwise.

    Always passed explicitly: pyvmomi skips verification for localhost when left to itself.
    """
    if settings.insecure:
        warnings.warn(f"GOVC_INSECURE is set: the certificate of {settings.host} is NOT verified",
                      InsecureConnectionWarning, stacklevel=3)
        log.warning("TLS certificate verification is off for %s (GOVC_INSECURE)", settings.host)
        return ssl._create_unverified_context()  # noqa: S323 - asked for by GOVC_INSECURE
    context = ssl.create_default_context()
    if settings.ca_file:
        for path in settings.ca_file.split(":"):
            try:
                context.load_verify_locations(cafile=path)
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionFailed(
                    f"cannot load GOVC_TLS_CA_CERTS file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return context


def login(settings: Settings | None = None) -> vim.ServiceInstance:
    """Log in and return the service instance; raise :class:`ConnectionFailed` in one line."""
    settings = settings or settings_from_env()
    kwargs = {}
    if settings.scheme == "https":
        kwargs["sslContext"] = ssl_context(settings)
    where = f"{settings.host}:{settings.port}"
    try:
        # pyvmomi's API-version discovery has no timeout: ask first ourselves, with one.
        _preflight(settings, kwargs.get("sslContext"))
        si = SmartConnect(host=settings.host, port=settings.port, user=settings.username,
                          pwd=settings.password, protocol=settings.scheme,
                          httpConnectionTimeout=settings.timeout, **kwargs)
    except vim.fault.InvalidLogin:
        raise ConnectionFailed(
            f"vCenter {where} refused the login of {settings.username!r}: wrong user name or password; "
            f"check GOVC_USERNAME and GOVC_PASSWORD") from None
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionFailed(
            f"the certificate of {where} is not trusted ({exc.verify_message}); set GOVC_TLS_CA_CERTS to "
            f"the file of the CA that signed it (or GOVC_INSECURE=1 to skip the check, not for production)"
        ) from None
    except (TimeoutError, socket.timeout):
        raise ConnectionFailed(
            f"vCenter {where} did not answer within {settings.timeout:g} s; check GOVC_URL and the network "
            f"(RUNBOOK_TIMEOUT sets the wait)") from None
    except ssl.SSLError as exc:
        raise ConnectionFailed(f"TLS with {where} failed ({exc.reason}); is it an https address?") from None
    except (ConnectionError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConnectionFailed(f"cannot reach vCenter at {where}: {reason}; check GOVC_URL and that the "
                               f"vCenter (or the lab: runbook lab status) is running") from None
    except vim.fault.HostConnectFault as exc:
        raise ConnectionFailed(f"cannot reach vCenter at {where}: {exc.msg}") from None
    log.info("connected to %s", settings.describe())
    return si


def _preflight(settings: Settings, context: ssl.SSLContext | None) -> None:
    """One timed request to the SDK's version document: reachability, TLS trust and timeout, first; plain
    HTTP spoken to a port that speaks HTTPS is said as such (not "is not a VIM server")."""
    if settings.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            settings.host, settings.port, timeout=settings.timeout, context=context)
    else:
        conn = http.client.HTTPConnection(settings.host, settings.port, timeout=settings.timeout)
    try:
        conn.request("GET", "/sdk/vimServiceVersions.xml")
        status = conn.getresponse()
        status.read()
        ok = status.status < 400
    except (ConnectionResetError, http.client.RemoteDisconnected, http.client.BadStatusLine):
        if settings.scheme == "https" or not _speaks_tls(settings):
            raise
        ok = False
    finally:
        conn.close()
    if not ok and settings.scheme == "http" and _speaks_tls(settings):
        raise ConnectionFailed(
            f"vCenter {settings.host}:{settings.port}: this port speaks HTTPS: use https:// "
            f"(GOVC_URL=https://{settings.host}:{settings.port}/sdk)")


def _speaks_tls(settings: Settings) -> bool:
    """Whether the port completes a TLS handshake (its certificate is not judged here: only the protocol)."""
    context = ssl._create_unverified_context()  # noqa: S323 - asks only which protocol the port speaks
    try:
        with socket.create_connection((settings.host, settings.port), timeout=settings.timeout) as raw:
            with context.wrap_socket(raw, server_hostname=settings.host):
                return True
    except (OSError, ssl.SSLError):
        return False


def logout(si: vim.ServiceInstance) -> None:
    """Log out, ignoring a session the server already dropped."""
    with contextlib.suppress(Exception):
        Disconnect(si)


@contextlib.contextmanager
def connect(settings: Settings | None = None) -> Iterator[vim.ServiceInstance]:
    """``with connect() as si:`` logs in with govc's settings and always logs out."""
    si = login(settings)
    try:
        yield si
    finally:
        logout(si)
