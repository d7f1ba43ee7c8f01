"""Connection settings and every connection error, against real labs (plain and HTTPS) and real sockets."""
from __future__ import annotations

import socket

import pytest
from pyVmomi import vim

import runbook
from runbook.vsphere.connection import InsecureConnectionWarning, Settings, settings_from_env
from runbook.errors import ConnectionFailed


def test_govc_url_forms_and_credentials_in_url_are_taken_out():
    s = settings_from_env({"GOVC_URL": "https://bob:s3cret-pw@vc.example.com/sdk"})
    assert (s.host, s.port, s.scheme, s.username, s.password) == ("vc.example.com", 443, "https", "bob", "s3cret-pw")
    assert "s3cret-pw" not in s.url and "s3cret-pw" not in repr(s) and "s3cret-pw" not in s.describe()
    s = settings_from_env({"GOVC_URL": "vc.example.com:8443", "GOVC_USERNAME": "u", "GOVC_INSECURE": "1"})
    assert (s.host, s.port, s.scheme, s.insecure) == ("vc.example.com", 8443, "https", True)
    s = settings_from_env({"GOVC_URL": "http://127.0.0.1:8989/sdk", "GOVC_USERNAME": "u", "GOVC_PASSWORD": "p"})
    assert s.url == "http://127.0.0.1:8989/sdk"


def test_password_file(tmp_path):
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    s = settings_from_env({"GOVC_URL": "vc", "GOVC_USERNAME": "u", "RUNBOOK_PASSWORD_FILE": str(f)})
    assert s.password == "from-file"
    with pytest.raises(ConnectionFailed, match="cannot read the password file"):
        settings_from_env({"GOVC_URL": "vc", "GOVC_USERNAME": "u", "RUNBOOK_PASSWORD_FILE": str(tmp_path / "no")})


def test_no_vcenter_and_no_lab_says_what_to_do():
    with pytest.raises(ConnectionFailed, match="no vCenter configured and no lab running.*runbook lab start"):
        runbook.login()


def test_without_govc_url_the_running_lab_is_used(lab, monkeypatch):
    monkeypatch.setenv("RUNBOOK_LAB_DIR", str(lab.state_dir))
    s = settings_from_env()
    assert s.url == lab.url and "lab vCenter" in s.source
    with runbook.connect() as si:
        assert si.content.sessionManager.currentSession.userName == lab.username


def test_unreachable_host():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nobody listens there
    with pytest.raises(ConnectionFailed, match=f"cannot reach vCenter at 127.0.0.1:{port}"):
        runbook.login(Settings(host="127.0.0.1", port=port, scheme="http", username="u", password="p"))


def test_host_that_never_answers_times_out():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)  # accepts connections in the kernel, never answers a byte
    try:
        with pytest.raises(ConnectionFailed, match="did not answer within 1 s"):
            runbook.login(Settings(host="127.0.0.1", port=server.getsockname()[1], scheme="http",
                                   username="u", password="p", timeout=1))
    finally:
        server.close()


def test_wrong_password_is_refused_without_echoing_it(lab):
    settings = Settings(host=lab.host, port=lab.port, scheme="http", username=lab.username,
                        password="Wrong-Secret-42")
    with pytest.raises(ConnectionFailed, match="refused the login") as err:
        runbook.login(settings)
    assert "Wrong-Secret-42" not in str(err.value)


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory):
    from conftest import running_lab

    with running_lab(tmp_path_factory.mktemp("tls"), tls=True) as info:
        yield info


def _tls_settings(info, **kw) -> Settings:
    return Settings(host="127.0.0.1", port=info.port, scheme="https", username=info.username,
                    password=info.password, **kw)


def test_tls_untrusted_certificate_is_refused_with_the_fix(tls_lab):
    with pytest.raises(ConnectionFailed, match="not trusted.*GOVC_TLS_CA_CERTS"):
        runbook.login(_tls_settings(tls_lab))


def test_tls_trusted_with_the_ca_file(tls_lab):
    si = runbook.login(_tls_settings(tls_lab, ca_file=str(tls_lab.ca_file)))
    try:
        assert si.content.about.apiType == "VirtualCenter"
    finally:
        runbook.logout(si)


def test_tls_insecure_works_with_a_visible_warning(tls_lab):
    with pytest.warns(InsecureConnectionWarning, match="NOT verified"):
        si = runbook.login(_tls_settings(tls_lab, insecure=True))
    runbook.logout(si)


def test_connect_always_logs_out(lab, use_lab):
    use_lab(lab)
    with runbook.connect() as si:
        sessions = si.content.sessionManager
        assert sessions.currentSession is not None
    with pytest.raises(vim.fault.NotAuthenticated):
        sessions.currentSession.userName  # the session is gone after the block


def test_credentials_in_govc_url_are_percent_decoded_as_govc_does():
    s = settings_from_env({"GOVC_URL": "administrator%40vsphere.local:pa%24s%3A%40@vc.example.com"})
    assert (s.username, s.password) == ("administrator@vsphere.local", "pa$s:@")
    s = settings_from_env({"GOVC_URL": "https://u%25x:p%2541@vc.example.com/sdk"})
    assert (s.username, s.password) == ("u%x", "p%41")  # decoded once, as govc does


def test_an_encoded_user_in_govc_url_logs_in(tls_lab):
    """vcsim prints GOVC_URL with the user percent-encoded; the runbook logs in with it as govc does."""
    from urllib.parse import quote

    url = (f"https://{quote(tls_lab.username, safe='')}:{quote(tls_lab.password, safe='')}"
           f"@127.0.0.1:{tls_lab.port}/sdk")
    assert "%40" in url
    settings = settings_from_env({"GOVC_URL": url, "GOVC_TLS_CA_CERTS": str(tls_lab.ca_file)})
    with runbook.connect(settings) as si:
        assert si.content.sessionManager.currentSession.userName == tls_lab.username


def test_plain_http_to_an_https_port_says_use_https(tls_lab):
    settings = Settings(host="127.0.0.1", port=tls_lab.port, scheme="http", username=tls_lab.username,
                        password=tls_lab.password, timeout=5)
    with pytest.raises(ConnectionFailed, match=r"this port speaks HTTPS: use https://") as err:
        runbook.login(settings)
    assert err.value.exit_code == 4 and tls_lab.password not in str(err.value)


def test_a_password_file_others_can_read_is_warned_about_once(tmp_path, caplog):
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    env = {"GOVC_URL": "vc", "GOVC_USERNAME": "u", "RUNBOOK_PASSWORD_FILE": str(f)}
    f.chmod(0o600)
    with caplog.at_level("WARNING", logger="runbook"):
        settings_from_env(env)
    assert not caplog.records
    f.chmod(0o644)
    with caplog.at_level("WARNING", logger="runbook"):
        assert settings_from_env(env).password == "from-file"
        settings_from_env(env)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "can be read by everyone" in warnings[0] and "chmod 600" in warnings[0]
    assert "from-file" not in warnings[0]
