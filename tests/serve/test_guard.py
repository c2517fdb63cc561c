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
    for weak, problem in (("short", "has 5 characters"), (" " * 16, "is blank"), ("a" * 40, "only 1 different"),
                          ("correct horse battery staple", "spaces"), ("token\twith\ttabs\tinside", "spaces")):
        with pytest.raises(ValueError, match=f"{problem}.*secrets.token_urlsafe"):
            ServeSettings(token=weak)
    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    monkeypatch.delenv("KIDNEYCT_TOKEN", raising=False)
    checkpoint = str(trained_run.best_checkpoint)
    assert main(["serve", "--checkpoint", checkpoint, "--host", "0.0.0.0"]) == 2 and not calls
    assert "--token" in capsys.readouterr().err
    monkeypatch.setenv("KIDNEYCT_TOKEN", " " * 16)  # refused at start, before any port is opened
    assert main(["serve", "--checkpoint", checkpoint, "--host", "0.0.0.0"]) == 2 and not calls
    assert "the token is blank" in capsys.readouterr().err
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


def _run_live(app, protocol):
    """The app under uvicorn with a guarded protocol on a free loopback port, in a thread: (port, stop)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=protocol))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)

    return port, stop


@pytest.fixture(scope="module")
def live_server(trained_run):
    """The app under uvicorn with the guarded protocol: at most 4 connections, 0.5 s for headers and 1 s
    for a body."""
    from kidneyct.serve.connections import guarded_protocol

    settings = ServeSettings(body_timeout_s=1.0, header_timeout_s=0.5, max_connections=4)
    port, stop = _run_live(create_app(trained_run.best_checkpoint, settings), guarded_protocol(4, 0.5))
    yield port
    stop()


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
        answer, closed, deadline = b"", False, time.monotonic() + 30  # a bound for a loaded machine, not a wait
        while not closed and time.monotonic() < deadline:  # headers and body may arrive in separate segments
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(4096)
            except (TimeoutError, socket.timeout):
                break
            except ConnectionResetError:
                chunk = b""
            answer, closed = answer + chunk, not chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 1 s" in answer
    assert closed and b"connection: close" in answer.lower()  # the slot is free at once, not after keep-alive


def _connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_a_flood_of_idle_connections_cannot_lock_a_good_client_out(trained_run):
    from kidneyct.serve.connections import guarded_protocol

    # 8 connections, 3 per address, 10 s for headers, 0.5 s once 6 are open
    port, stop = _run_live(create_app(trained_run.best_checkpoint, ServeSettings()),
                           guarded_protocol(8, 10.0, per_client=3, busy_header_timeout_s=0.5))
    flood = []
    try:
        flood += [_connect(port, "127.0.0.2") for _ in range(3)]
        with _connect(port, "127.0.0.2") as extra:
            assert _closed_within(extra, 0.3)  # beyond its address's share: closed on arrival
        flood += [_connect(port, source) for source in ("127.0.0.3", "127.0.0.4") for _ in range(3)]
        started = time.monotonic()
        with _connect(port, "127.0.0.1") as good:  # the server is full of idle connections
            good.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            good.settimeout(5)
            assert good.recv(4096).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 1.5
        assert all(_closed_within(sock, 2) for sock in flood)  # busy: idle ones go within 0.5 s
        with _connect(port, "127.0.0.2") as again:  # and a freed address is served again
            again.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            again.settimeout(5)
            assert again.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in flood:
            sock.close()
        stop()


def test_errors_never_echo_the_upload(client):
    marker = b"UPLOADED-BYTES-" * 4000  # 60 KB under a field name the API does not take
    response = client.post("/predict", files={"image": ("slice.png", marker, "image/png")}, headers=AUTH)
    assert response.status_code == 422 and b"UPLOADED-BYTES" not in response.content
    assert len(response.content) < 1000 and "file: Field required" in response.json()["detail"]
    response = client.post("/explain?view=UPLOADED-BYTES", files={"file": ("slice.png", PNG, "image/png")},
                           headers=AUTH)
    assert response.status_code == 422 and b"UPLOADED-BYTES" not in response.content
