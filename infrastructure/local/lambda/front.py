#!/usr/bin/env python3
"""Front door of the local Lambda emulator: what Lambda does and cargo-lambda does not.

cargo-lambda 1.9.2 serves the Runtime API (`/.rt/...`) and Function URLs (`/lambda-url/<name>/...`)
on 127.0.0.1:9001 inside this container. Every request reaches it through this proxy on :9000,
which adds:

- **The function's timeout, as Lambda enforces it.** The runtime's `/next` answer carries
  `Lambda-Runtime-Deadline-Ms` = now + the function's timeout (cargo-lambda sends a fixed
  600000), so the Web Adapter hands the app the real deadline (`x-amzn-lambda-context`). At the
  deadline the invocation ends: the runtime's streamed upload is closed at a chunk boundary
  (the client keeps the status and the body so far, and no error), the runtime's connection is
  cut, and this log gets `<function> <request id> Task timed out after N.NN seconds`. An
  invocation that has not started its response by then is answered with Lambda's timeout error.
  cargo-lambda's own `--timeout` cannot do this: it bounds every route, the runtime's long poll
  for `/next` included.
- **Which functions exist.** cargo-lambda routes `/lambda-url/<name>/` only to a binary that
  `cargo metadata` lists; `cargo` in this image is a stand-in that prints the functions
  registered here (`PUT /_xtask/functions/<name>` with `{"timeout": seconds}`, `DELETE` to
  remove), kept in /var/lib/lambda-emulator across restarts. `GET /_xtask/functions` lists them.
- `GET /_xtask/health`: 200 once cargo-lambda accepts connections.
- **One invoke at a time per runtime**, as in an execution environment: the runtime hears back
  on its result only once the whole result is through.

Standard library only; one thread per connection.
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

PORT = 9000
UPSTREAM = ("127.0.0.1", 9001)
STATE = "/var/lib/lambda-emulator"
PROJECT = "/opt/emulator/project"
PACKAGE = "xtask-lambda-emulator"
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
NEXT = re.compile(r"/\.rt/(?:([^/]+)/)?2018-06-01/runtime/invocation/next\Z")
RESULT = re.compile(r"/\.rt/(?:[^/]+/)?2018-06-01/runtime/invocation/([^/]+)/(?:response|error)\Z")
CONTROL = re.compile(r"/_xtask/functions/([^/]+)\Z")

lock = threading.Lock()
functions = {}  # name -> timeout in seconds
invocations = {}  # request id -> Invocation


def log(message):
    print(message, flush=True)


# --- The registered functions ----------------------------------------------------------------


def metadata(names):
    """What `cargo metadata --no-deps --format-version 1` prints for a project whose binaries
    are the functions (cargo-lambda reads only the targets; the rest is the required shape)."""
    pkg = f"path+file://{PROJECT}#{PACKAGE}@0.0.0"
    targets = [
        {"kind": ["bin"], "crate_types": ["bin"], "name": n, "src_path": f"{PROJECT}/src/main.rs",
         "edition": "2021", "doc": True, "doctest": False, "test": True}
        for n in [PACKAGE, *sorted(names)]
    ]
    package = {
        "name": PACKAGE, "version": "0.0.0", "id": pkg, "license": None, "license_file": None,
        "description": None, "source": None, "dependencies": [], "targets": targets,
        "features": {}, "manifest_path": f"{PROJECT}/Cargo.toml", "metadata": None,
        "publish": [], "authors": [], "categories": [], "keywords": [], "readme": None,
        "repository": None, "homepage": None, "documentation": None, "edition": "2021",
        "links": None, "default_run": None, "rust_version": None,
    }
    return {"packages": [package], "workspace_members": [pkg], "workspace_default_members": [pkg],
            "resolve": None, "target_directory": f"{PROJECT}/target", "version": 1,
            "workspace_root": PROJECT, "metadata": None}


def write(name, data):
    tmp = f"{STATE}/{name}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, f"{STATE}/{name}")


def save():
    """Called with `lock` held."""
    write("functions.json", functions)
    write("metadata.json", metadata(functions))


# --- HTTP/1.1 framing ------------------------------------------------------------------------


def read_head(rfile):
    line = rfile.readline(65536)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(65536)
    if not line:
        return None
    fields = []
    while True:
        raw = rfile.readline(65536)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        fields.append((name.strip(), value.strip()))
    return line.decode("latin-1").rstrip("\r\n"), fields


def get(fields, name):
    return next((v for k, v in fields if k.lower() == name), None)


def without(fields, *names):
    return [(k, v) for k, v in fields if k.lower() not in names]


def send_head(sock, start, fields):
    text = start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    sock.sendall(text.encode("latin-1"))


def framing(fields):
    """"chunked", a length, or None (a response that ends when the connection closes)."""
    if "chunked" in (get(fields, "transfer-encoding") or "").lower():
        return "chunked"
    length = get(fields, "content-length")
    return int(length) if length is not None else None


def copy_body(rfile, sock, kind):
    """Copies one body from `rfile` to `sock`, keeping its framing and forwarding each chunk
    as it arrives. Only whole chunks are forwarded. False if the source ended early. A client
    that left is an OSError at the end, after the source is read to its end: as on Lambda, the
    invocation still completes (left unread, it would hold its container until the timeout)."""
    gone = []

    def send(data):
        if not gone:
            try:
                sock.sendall(data)
            except OSError as e:
                gone.append(e)

    done = copy_framed(rfile, send, kind)
    if gone:
        raise gone[0]
    return done


def copy_framed(rfile, send, kind):
    if kind == "chunked":
        while True:
            size_line = rfile.readline(65536)
            if not size_line:
                return False
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: the emulator reads none
                send(b"0\r\n\r\n")
                return True
            data = rfile.read(size)
            rfile.readline(65536)
            if len(data) < size:
                return False
            send(b"%x\r\n%s\r\n" % (size, data))
    left = kind
    while left is None or left > 0:
        data = rfile.read1(65536 if left is None else min(left, 65536))
        if not data:
            return left is None
        send(data)
        if left is not None:
            left -= len(data)
    return True


def read_body(rfile, kind):
    if kind == "chunked":
        out = bytearray()
        while True:
            size = int(rfile.readline(65536).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += rfile.read(size)
            rfile.readline(65536)
    return rfile.read(kind) if kind is not None else rfile.read()


def reply(sock, status, body=b"", content_type="application/json", close=False):
    fields = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if close:
        fields.append(("Connection", "close"))
    send_head(sock, f"HTTP/1.1 {status}", fields)
    sock.sendall(body)


# --- Invocations and their deadlines ---------------------------------------------------------


class Invocation:
    def __init__(self, function, request_id, timeout):
        self.function, self.id, self.timeout = function, request_id, timeout
        self.start = time.time()
        self.deadline_ms = int((self.start + timeout) * 1000)
        self.done = self.over = False
        self.upload = None  # the runtime's socket while it uploads the response
        self.timer = threading.Timer(timeout, self.expire)
        self.timer.daemon = True

    def expire(self):
        with lock:
            if self.done:
                return
            self.over = True
            upload = self.upload
        log(f"{self.function} {self.id} Task timed out after {time.time() - self.start:.2f} seconds")
        if upload is not None:
            # The upload's reader sees the end and closes the response where it stands.
            try:
                upload.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        else:
            self.fail_upstream()

    def fail_upstream(self):
        """Lambda's answer for an invocation that timed out before its response started."""
        body = json.dumps({"errorType": "Sandbox.Timedout",
                           "errorMessage": f"{self.id} Task timed out after {self.timeout:.2f} seconds"}).encode()
        path = f"/.rt/{self.function}/2018-06-01/runtime/invocation/{self.id}/error"
        try:
            with socket.create_connection(UPSTREAM) as up:
                send_head(up, f"POST {path} HTTP/1.1", [("Host", "emulator"),
                          ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                          ("Lambda-Runtime-Function-Error-Type", "Sandbox.Timedout"),
                          ("Connection", "close")])
                up.sendall(body)
                up.makefile("rb").read()
        except OSError as e:
            log(f"{self.function} {self.id} could not report the timeout: {e}")

    def finish(self):
        with lock:
            self.done = True
            invocations.pop(self.id, None)
        self.timer.cancel()


def begin(function, fields):
    """A runtime took an invocation: its deadline is now + the function's timeout."""
    request_id = get(fields, "lambda-runtime-aws-request-id")
    with lock:
        timeout = functions.get(function)
        if timeout is None or request_id is None:
            return fields
        inv = Invocation(function, request_id, timeout)
        invocations[request_id] = inv
    inv.timer.start()
    return without(fields, "lambda-runtime-deadline-ms") + [("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms))]


# --- Requests --------------------------------------------------------------------------------


def control(sock, rfile, method, path, fields):
    body = read_body(rfile, framing(fields) or 0)
    if path == "/_xtask/health":
        try:
            socket.create_connection(UPSTREAM, timeout=2).close()
            reply(sock, "200 OK", b'{"healthy":true}')
        except OSError:
            reply(sock, "503 Service Unavailable", b'{"healthy":false}')
        return True
    if path == "/_xtask/functions" and method == "GET":
        with lock:
            reply(sock, "200 OK", json.dumps(functions).encode())
        return True
    m = CONTROL.match(path)
    if not m or not NAME.match(m.group(1)) or m.group(1) == PACKAGE:
        reply(sock, "404 Not Found", b'{"error":"PUT or DELETE /_xtask/functions/<function name>"}')
        return True
    name = m.group(1)
    if method == "PUT":
        try:
            timeout = float(json.loads(body or b"{}")["timeout"])
            if not 0 < timeout <= 900:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            reply(sock, "400 Bad Request", b'{"error":"body: {\\"timeout\\": seconds, 1 to 900}"}')
            return True
        with lock:
            functions[name] = timeout
            save()
    elif method == "DELETE":
        with lock:
            functions.pop(name, None)
            save()
    else:
        reply(sock, "405 Method Not Allowed", b"{}")
        return True
    reply(sock, "204 No Content")
    return True


def wait_for(up, sock):
    """Waits for cargo-lambda's answer to a runtime's long poll, giving up when the runtime is
    gone (its container stopped): else cargo-lambda would hand the next invocation to it."""
    while True:
        ready, _, _ = select.select([up, sock], [], [])
        if up in ready:
            return
        if not sock.recv(1, socket.MSG_PEEK):
            raise OSError("the runtime left during its long poll")


def forward(sock, rfile, method, target, version, fields, upstream):
    """Relays one request over the client's own connection to cargo-lambda (`upstream`, kept
    for the client connection's life, as a direct connection would be: cargo-lambda reads a
    response body after it has answered, and a connection closed at once would lose it)."""
    path = target.split("?", 1)[0]
    result = RESULT.match(path)
    with lock:
        inv = invocations.get(result.group(1)) if result else None
        if inv is not None and inv.over:
            # Lambda would have stopped this runtime: its late answer goes nowhere.
            reply(sock, "410 Gone", b'{"errorMessage":"the invocation timed out"}', close=True)
            return False
        if inv is not None:
            inv.upload = sock
    if not upstream:
        up = socket.create_connection(UPSTREAM)
        upstream.extend([up, up.makefile("rb")])
    up, upf = upstream
    try:
        pump = None
        body = framing(fields) or 0
        if body == "chunked":
            # A streamed result: cargo-lambda answers before reading its body, so the body is
            # relayed beside, chunk by chunk.
            send_head(up, f"{method} {target} {version}", fields)

            def pumping():
                try:
                    if not copy_body(rfile, up, body) and inv is not None and inv.over:
                        up.sendall(b"0\r\n\r\n")
                except OSError:
                    pass  # either side went away: the other one notices

            pump = threading.Thread(target=pumping, daemon=True)
            pump.start()
        else:
            # A body of known length goes whole with its head: cargo-lambda, having answered,
            # may leave body bytes that arrive later unread until the next request.
            data = rfile.read(body) if body else b""
            head_text = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
            up.sendall(head_text.encode("latin-1") + data)
        next_call = NEXT.match(path) if method == "GET" else None
        if next_call:
            wait_for(up, sock)
        head = read_head(upf)
        if head is None:
            raise OSError("the emulator closed the connection")
        if pump is not None and result:
            # The runtime hears back once its whole result is through, as from Lambda: an
            # answer before the body ends makes its HTTP client drop the rest of the body.
            pump.join()
        status_line, rfields = head
        status = int(status_line.split(" ", 2)[1])
        has_body = method != "HEAD" and status >= 200 and status not in (204, 304)
        kind = framing(rfields) if has_body else 0
        if next_call and status == 200:
            data = read_body(upf, kind)
            rfields = begin(next_call.group(1) or "_", rfields)
            rfields = without(rfields, "content-length", "transfer-encoding") + [("Content-Length", str(len(data)))]
            send_head(sock, status_line, rfields)
            sock.sendall(data)
        else:
            send_head(sock, status_line, rfields)
            copy_body(upf, sock, kind)
        if pump is not None:
            pump.join()
        if inv is not None:
            if inv.over:
                return False
            inv.finish()
        closing = kind is None or "close" in (get(rfields, "connection") or "").lower()
        if closing:
            up.close()
            upstream.clear()
        return not closing
    except OSError:
        up.close()
        upstream.clear()
        raise


def serve(sock):
    rfile = sock.makefile("rb")
    upstream = []
    try:
        while True:
            head = read_head(rfile)
            if head is None:
                break
            start, fields = head
            method, target, version = start.split(" ", 2)
            path = target.split("?", 1)[0]
            if path.startswith("/_xtask/"):
                keep = control(sock, rfile, method, path, fields)
            else:
                keep = forward(sock, rfile, method, target, version, fields, upstream)
            # HTTP/1.0 clients (xtask's own) read to the end of the connection.
            if not keep or version != "HTTP/1.1" or "close" in (get(fields, "connection") or "").lower():
                break
    except (OSError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass
        if upstream:
            # Not at once: cargo-lambda may still be reading the last body sent on it.
            threading.Timer(5, upstream[0].close).start()


def main():
    os.makedirs(STATE, exist_ok=True)
    try:
        with open(f"{STATE}/functions.json") as f:
            functions.update(json.load(f))
    except (OSError, ValueError):
        pass
    with lock:
        save()
    emulator = subprocess.Popen(
        ["cargo-lambda", "lambda", "watch", "--only-lambda-apis", "--disable-cors", "--ignore-changes",
         "-A", UPSTREAM[0], "-P", str(UPSTREAM[1]), "--manifest-path", f"{PROJECT}/Cargo.toml"],
        cwd=PROJECT)

    def stop(*_):
        emulator.terminate()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The container ends with cargo-lambda, so that its restart policy brings both back.
    threading.Thread(target=lambda: os._exit(emulator.wait() or 1), daemon=True).start()
    listener = socket.create_server(("0.0.0.0", PORT), backlog=128)
    log(f"front of cargo-lambda on :{PORT}; functions: {sorted(functions)}")
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
