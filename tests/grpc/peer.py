#!/usr/bin/python3
"""A real gRPC peer (grpcio) for the router's integration tests.

Service `t.T` on raw bytes (generic handlers, no serializers, so no protoc):
the router is tested against grpcio's own HTTP/2 and gRPC handling, not a
copy of the wire format written by the tests.

    peer.py server --port P --name N [--tls-cert C --tls-key K]
    peer.py client --target HOST:PORT --authority NAME [--tls-ca C] SCENARIO [ARGS]

The server prints `listening PORT` once it serves. The client runs one
scenario and prints its result as one JSON line (a `hold` scenario prints a
line when it holds, then waits for a line on stdin). A client never raises
on a gRPC error: codes are part of the result, for the test to judge.

Methods (every answer names the server):
  Unary    echoes `NAME|request`; trailing metadata `x-served-by: NAME`
  Server   stream: `NAME|PORT|first`, then waits until Release(key) (10 s,
           else ABORTED), then `NAME|last`: a client that sees `first` before
           the server sent `last` proves nothing on the way buffers
  Release  unary: releases Server(key)
  Client   client stream: answers `NAME|COUNT|BYTES` after the last message
  Bidi     echoes every message as it comes
  Fail     aborts NOT_FOUND with a non-ASCII message and `x-detail` trailers
  Slow     sleeps up to the request's milliseconds while the call is active
  Last     unary: JSON of the last Slow call (deadline seen, cancelled)
  Hold     unary `KEY|N`: answers once N calls with KEY are in at once
"""

import argparse
import json
import queue
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "t.T"


class State:
    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.lock = threading.Condition()
        self.released = set()
        self.holding = {}
        self.last_slow = {}


def make_handlers(st):
    def unary(req, ctx):
        ctx.set_trailing_metadata((("x-served-by", st.name),))
        return st.name.encode() + b"|" + req

    def server(req, ctx):
        key = req.decode()
        yield f"{st.name}|{st.port}|first".encode()
        with st.lock:
            ok = st.lock.wait_for(lambda: key in st.released, timeout=10)
        if not ok:
            ctx.abort(grpc.StatusCode.ABORTED, "never released: the first message did not reach the client")
        yield f"{st.name}|last".encode()

    def release(req, ctx):
        with st.lock:
            st.released.add(req.decode())
            st.lock.notify_all()
        return b"ok"

    def client(reqs, ctx):
        n = size = 0
        for r in reqs:
            n += 1
            size += len(r)
        return f"{st.name}|{n}|{size}".encode()

    def bidi(reqs, ctx):
        for r in reqs:
            yield r

    def fail(req, ctx):
        ctx.set_trailing_metadata((("x-detail", "d1"),))
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: \u00fc 100%")

    def slow(req, ctx):
        ms = int(req.decode() or "0")
        remaining = ctx.time_remaining()
        start = time.monotonic()
        while ctx.is_active() and time.monotonic() - start < ms / 1000:
            time.sleep(0.01)
        with st.lock:
            st.last_slow = {
                "remaining_ms": None if remaining is None else int(remaining * 1000),
                "cancelled": not ctx.is_active(),
                "ran_ms": int((time.monotonic() - start) * 1000),
            }
        return b"done"

    def last(req, ctx):
        with st.lock:
            return json.dumps(st.last_slow).encode()

    def hold(req, ctx):
        key, _, want = req.decode().partition("|")
        want = int(want)
        with st.lock:
            st.holding[key] = st.holding.get(key, 0) + 1
            st.lock.notify_all()
            ok = st.lock.wait_for(lambda: st.holding[key] >= want, timeout=15)
        if not ok:
            ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, f"only {st.holding[key]} of {want} calls at once")
        return st.name.encode()

    u = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": u(unary),
            "Server": grpc.unary_stream_rpc_method_handler(server),
            "Release": u(release),
            "Client": grpc.stream_unary_rpc_method_handler(client),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Fail": u(fail),
            "Slow": u(slow),
            "Last": u(last),
            "Hold": u(hold),
        },
    )


def serve(a):
    st = State(a.name, a.port)
    # Every streaming call holds a worker: room for the 100 concurrent ones.
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=256), options=[("grpc.so_reuseport", 0)])
    srv.add_generic_rpc_handlers((make_handlers(st),))
    addr = f"127.0.0.1:{a.port}"
    if a.tls_cert:
        with open(a.tls_key, "rb") as k, open(a.tls_cert, "rb") as c:
            creds = grpc.ssl_server_credentials(((k.read(), c.read()),))
        port = srv.add_secure_port(addr, creds)
    else:
        port = srv.add_insecure_port(addr)
    if port == 0:
        sys.exit(f"cannot listen on {addr}")
    st.port = port
    srv.start()
    print(f"listening {port}", flush=True)
    srv.wait_for_termination()


def channel(a, target=None, authority=None):
    target = target or a.target
    opts = [("grpc.default_authority", authority or a.authority)]
    if a.tls_ca:
        with open(a.tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        opts.append(("grpc.ssl_target_name_override", authority or a.authority))
        return grpc.secure_channel(target, creds, options=opts)
    return grpc.insecure_channel(target, options=opts)


def method(ch, kind, name):
    return getattr(ch, kind)(f"/{SERVICE}/{name}")


def code(e):
    return e.code().name


def run_unary(ch, a):
    call = method(ch, "unary_unary", "Unary")
    servers, codes, trailers = [], [], []
    for i in range(a.count):
        payload = f"m{i}".encode()
        try:
            resp, c = call.with_call(payload, timeout=10)
            name, _, echo = resp.partition(b"|")
            codes.append("OK" if echo == payload else "BAD_ECHO")
            servers.append(name.decode())
            trailers.append(dict(c.trailing_metadata()).get("x-served-by"))
        except grpc.RpcError as e:
            codes.append(code(e))
            servers.append(None)
            trailers.append(None)
    return {"codes": codes, "servers": servers, "trailers": trailers}


def run_server_stream(ch, a, hold):
    key = f"k{time.monotonic_ns()}"
    got = []
    try:
        it = method(ch, "unary_stream", "Server")(key.encode(), timeout=30)
        first = next(it).decode()
        got.append(first)
        name, port, _ = first.split("|")
        if hold:
            print(json.dumps({"holding": name}), flush=True)
            sys.stdin.readline()
        # Straight to the server that holds the stream, not through the router.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as direct:
            method(direct, "unary_unary", "Release")(key.encode(), timeout=10)
        for m in it:
            got.append(m.decode())
        return {"code": "OK", "messages": got}
    except grpc.RpcError as e:
        return {"code": code(e), "details": e.details(), "messages": got}


def run_client_stream(ch, a):
    sizes = [int(s) for s in a.sizes.split(",")]
    try:
        resp = method(ch, "stream_unary", "Client")((b"x" * n for n in sizes), timeout=30)
        _, count, size = resp.decode().split("|")
        return {"code": "OK", "count": int(count), "bytes": int(size)}
    except grpc.RpcError as e:
        return {"code": code(e), "details": e.details()}


def run_bidi(ch, a):
    # Ping-pong: the next message is sent only once the previous one came
    # back, which works only if neither direction is buffered on the way.
    q = queue.Queue()

    def requests():
        while True:
            m = q.get()
            if m is None:
                return
            yield m

    echoes = 0
    try:
        it = method(ch, "stream_stream", "Bidi")(requests(), timeout=30)
        for i in range(a.count):
            m = f"ping{i}".encode()
            q.put(m)
            if next(it) != m:
                return {"code": "BAD_ECHO", "echoes": echoes}
            echoes += 1
        q.put(None)
        rest = list(it)
        return {"code": "OK", "echoes": echoes, "after_end": len(rest)}
    except grpc.RpcError as e:
        q.put(None)
        return {"code": code(e), "details": e.details(), "echoes": echoes}


def run_fail(ch, a):
    try:
        method(ch, "unary_unary", "Fail")(b"", timeout=10)
        return {"code": "OK"}
    except grpc.RpcError as e:
        return {"code": code(e), "details": e.details(), "trailers": dict(e.trailing_metadata() or ())}


def run_deadline(ch, a):
    start = time.monotonic()
    try:
        method(ch, "unary_unary", "Slow")(str(a.sleep_ms).encode(), timeout=a.timeout_ms / 1000)
        out = {"code": "OK"}
    except grpc.RpcError as e:
        out = {"code": code(e), "details": e.details()}
    out["elapsed_ms"] = int((time.monotonic() - start) * 1000)
    # What the server saw, once its handler has ended.
    time.sleep(0.3)
    out["server"] = json.loads(method(ch, "unary_unary", "Last")(b"", timeout=10))
    return out


def run_concurrent(ch, a):
    call = method(ch, "unary_unary", "Hold")
    req = f"k{time.monotonic_ns()}|{a.count}".encode()
    pending = [call.future(req, timeout=30) for _ in range(a.count)]
    codes = {}
    for f in pending:
        try:
            f.result()
            c = "OK"
        except grpc.RpcError as e:
            c = code(e)
        codes[c] = codes.get(c, 0) + 1
    return {"codes": codes}


def client(a):
    with channel(a) as ch:
        if a.scenario == "unary":
            out = run_unary(ch, a)
        elif a.scenario in ("server-stream", "hold"):
            out = run_server_stream(ch, a, a.scenario == "hold")
        elif a.scenario == "client-stream":
            out = run_client_stream(ch, a)
        elif a.scenario == "bidi":
            out = run_bidi(ch, a)
        elif a.scenario == "fail":
            out = run_fail(ch, a)
        elif a.scenario == "deadline":
            out = run_deadline(ch, a)
        elif a.scenario == "concurrent":
            out = run_concurrent(ch, a)
        else:
            sys.exit(f"unknown scenario {a.scenario}")
    print(json.dumps(out), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--name", required=True)
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--authority", required=True)
    c.add_argument("--tls-ca")
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--sizes", default="1")
    c.add_argument("--timeout-ms", type=int, default=500)
    c.add_argument("--sleep-ms", type=int, default=3000)
    c.add_argument("scenario")
    a = p.parse_args()
    serve(a) if a.mode == "server" else client(a)


if __name__ == "__main__":
    main()
