"""What a web page, a stranger on the network or a slow client can do to the server: cross-origin POSTs
and foreign Host names are refused, the API needs the token beyond loopback, answers carry security
headers, and slow or excess connections are cut."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from kidneyct.serve import ServeSettings, TokenRequired, bind_settings, create_app
from kidneyct.synthetic.bad_files import gradient, image_bytes

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (dev extra)")
from fastapi.testclient import TestClient  # noqa: E402

LOCAL = "http://127.0.0.1"
TOKEN = "s3cret-token-for-tests-0123456789"
PNG = image_bytes(gradient())


def _post(client, headers=None, path="/predict"):
    return client.post(path, files={"file": ("slice.png", PNG, "image/png")}, headers=headers or {})


@pytest.fixture(scope="module")
def app(trained_run):
    return create_app(trained_run.best_checkpoint,
                      ServeSettings(allowed_origins=("http://localhost:3000",), token=TOKEN))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_cross_origin_posts_are_refused_before_the_model_runs(client, app, monkeypatch):
    calls = []
    monkeypatch.setattr(app.state.service, "read", lambda *a: calls.append(a))
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://127.0.0.1:9999"}):  # another port is another origin
        response = _post(client, {**AUTH, **headers})
        assert response.status_code == 403 and "refused" in response.json()["detail"], headers
    assert calls == []
    assert "--allow-origin https://evil.example" in _post(client, {**AUTH, "Origin": "https://evil.example"}).text


def test_same_origin_allowed_origins_and_non_browsers_are_served(client):
    assert _post(client, {**AUTH, "Origin": LOCAL}).status_code == 200  # the server's own page
    assert _post(client, AUTH).status_code == 200  # curl, scripts: no Origin
    response = _post(client, {**AUTH, "Origin": "http://localhost:3000"})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "http://localhost:3000"
    preflight = client.options("/predict", headers={"Origin": "http://localhost:3000",
                                                    "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200 and "authorization" in preflight.headers["access-control-allow-headers"].lower()


def test_foreign_host_names_are_refused(app):
    with TestClient(app, base_url="http://attacker.example") as rebound:  # DNS rebinding: the page's own name
        assert rebound.get("/health").status_code == 400
        assert _post(rebound, AUTH).status_code == 400


def test_the_api_needs_the_token_the_page_and_health_do_not(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = _post(client, headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", headers
    assert client.get("/model").status_code == 401 and client.get("/model", headers=AUTH).status_code == 200
    for path in ("/", "/health", "/static/app.js", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_answers_carry_security_headers(client):
    page, error, docs = client.get("/"), _post(client), client.get("/docs")
    for response in (page, error, docs):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    assert "'unsafe-inline'" in docs.headers["content-security-policy"]  # Swagger UI starts from an inline script


def test_a_token_is_required_beyond_loopback(trained_run, monkeypatch, capsys):
    import uvicorn

    from kidneyct.cli import main

    assert bind_settings(ServeSettings(), "127.0.0.1") == ServeSettings()
    with pytest.raises(TokenRequired, match="--token"):
        bind_settings(ServeSettings(), "0.0.0.0")
    assert bind_settings(ServeSettings(token=TOKEN), "0.0.0.0").allowed_hosts == ("*",)
    with pytest.raises(ValueError, match="16 characters"):
        ServeSettings(token="short")
    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    monkeypatch.delenv("KIDNEYCT_TOKEN", raising=False)
    checkpoint = str(trained_run.best_checkpoint)
    assert main(["serve", "--checkpoint", checkpoint, "--host", "0.0.0.0"]) == 2 and not calls
    assert "--token" in capsys.readouterr().err
    monkeypatch.setenv("KIDNEYCT_TOKEN", TOKEN)
    assert main(["serve", "--checkpoint", checkpoint, "--host", "0.0.0.0", "--allow-origin", "http://a.example"]) == 0
    settings = calls["app"].state.settings
    assert settings.token == TOKEN and settings.allowed_origins == ("http://a.example",)
    assert calls["http"].__name__ == "GuardedH11Protocol"


def test_timed_out_work_stops_before_inference(trained_run):
    app = create_app(trained_run.best_checkpoint, ServeSettings(request_timeout_s=0.3))
    service, inferred = app.state.service, []
    read = service.read

    def slow_read(data, filename):
        time.sleep(0.6)  # past the deadline
        return read(data, filename)

    service.read = slow_read
    service.predictor.backend.logits = lambda *a, **k: inferred.append(1)
    with TestClient(app, base_url=LOCAL) as client:
        assert _post(client).status_code == 504
        time.sleep(0.8)  # the worker finishes reading, then sees the deadline has passed
    assert inferred == []


@pytest.fixture(scope="module")
def live_server(trained_run):
    """The app under uvicorn with the guarded protocol: at most 4 connections, 0.5 s for headers and 1 s
    for a body."""
    import uvicorn

    from kidneyct.serve.connections import guarded_protocol

    settings = ServeSettings(body_timeout_s=1.0, header_timeout_s=0.5, max_connections=4)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(trained_run.best_checkpoint, settings), host="127.0.0.1", port=port,
                            log_level="warning", http=guarded_protocol(4, 0.5))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(4096) == b""
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def test_headers_sent_too_slowly_close_the_connection(live_server):
    with socket.create_connection(("127.0.0.1", live_server)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        started = time.monotonic()
        assert _closed_within(sock, 5) and time.monotonic() - started < 3


def test_a_body_sent_too_slowly_gets_408(live_server):
    with socket.create_connection(("127.0.0.1", live_server)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
        sock.settimeout(5)
        answer = b""
        while chunk := sock.recv(4096):  # headers and body may arrive in separate segments
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 1 s" in answer


def test_connections_beyond_the_limit_are_closed_at_once(live_server):
    held = [socket.create_connection(("127.0.0.1", live_server)) for _ in range(4)]
    try:
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", live_server)) as extra:
            assert _closed_within(extra, 0.4)  # closed on arrival, before the 0.5 s header deadline
        assert not _closed_within(held[0], 0.05)  # the first four are still open
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.6)
    with socket.create_connection(("127.0.0.1", live_server)) as sock:  # freed slots serve again
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
