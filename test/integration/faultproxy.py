#!/usr/bin/env python3
"""faultproxy.py — a fault-injecting TCP proxy for the integration tests.

One process serves any number of ROUTES; a route listens on 127.0.0.1:LISTEN and
forwards every accepted connection to 127.0.0.1:TARGET.  It is steered at run time
through a unix control socket, one command per connection, one answer line back:

    ping                               -> "pong"
    route NAME LISTEN TARGET           add a route (listening at once)
    unroute NAME                       close a route and its connections
    pid SOURCE PID                     connections dialled by process PID are from SOURCE
    set ROUTE MODE [ARGS] [from SOURCE]
        MODE pass                      forward normally
        MODE drop                      close matching connections, refuse new ones
                                       (accepted and closed at once with a reset)
        MODE blackhole DIR             accept, but never forward bytes in direction DIR
        MODE delay MS_UP MS_DOWN       hold every chunk MS ms per direction
      DIR: up (client -> target), down (target -> client) or both.
      "from SOURCE" limits the rule to connections dialled by SOURCE's process;
      without it the rule covers every connection on the route.  The most specific
      rule wins (ROUTE+SOURCE, then ROUTE), default pass.
    clear ROUTE [from SOURCE]          remove one rule
    heal                               remove every rule
    stats                              one line per route: conns accepted/open/refused,
                                       bytes up/down forwarded, bytes discarded
    quit                               stop the proxy

Sources are found with /proc: the accepted connection's peer port is looked up in
/proc/net/tcp (the dialling socket's inode), then in /proc/PID/fd of the registered
processes.  This needs no cooperation from the server under test, so the same rules
work for etcd and metastore peers.

    faultproxy.py serve --control SOCK [--route NAME LISTEN TARGET]...
    faultproxy.py ctl SOCK COMMAND...
    faultproxy.py selftest             prove every mode on echo servers; prints ok/not ok
Only 127.0.0.1 is ever used.  Standard library only.
"""

import asyncio
import os
import socket
import struct
import sys
import time

HOST = "127.0.0.1"


def _log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- source lookup

def _socket_inode(local_port, remote_port):
    """inode of the socket 127.0.0.1:local_port -> 127.0.0.1:remote_port, or None."""
    want_l = "0100007F:%04X" % local_port
    want_r = "0100007F:%04X" % remote_port
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                if p[1] == want_l and p[2] == want_r:
                    return p[9]
    except OSError:
        return None
    return None


def _pid_has_inode(pid, inode):
    target = "socket:[%s]" % inode
    d = "/proc/%d/fd" % pid
    try:
        for fd in os.listdir(d):
            try:
                if os.readlink(os.path.join(d, fd)) == target:
                    return True
            except OSError:
                pass
    except OSError:
        return False
    return False


class Conn:
    def __init__(self, route, cr, cw, source):
        self.route = route
        self.cr, self.cw = cr, cw
        self.tr = self.tw = None
        self.source = source
        self.closed = False
        self.tasks = []

    def close(self, reset=False):
        if self.closed:
            return
        self.closed = True
        for w in (self.cw, self.tw):
            if w is None:
                continue
            try:
                if reset:
                    s = w.get_extra_info("socket")
                    if s is not None:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.close()
            except Exception:
                pass
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        self.route.conns.discard(self)


class Route:
    def __init__(self, proxy, name, listen, target):
        self.proxy, self.name, self.listen, self.target = proxy, name, listen, target
        self.server = None
        self.conns = set()
        self.stats = dict(accepted=0, refused=0, up=0, down=0, discarded=0)


class Proxy:
    def __init__(self):
        self.routes = {}
        self.pids = {}      # source name -> pid
        self.rules = {}     # (route, source or None) -> (mode, args)

    # ---- rules
    def rule(self, route, source):
        if source is not None and (route, source) in self.rules:
            return self.rules[(route, source)]
        return self.rules.get((route, None), ("pass", ()))

    def find_source(self, peer_port, listen_port):
        inode = _socket_inode(peer_port, listen_port)
        if inode is None or inode == "0":
            return None
        for name, pid in self.pids.items():
            if _pid_has_inode(pid, inode):
                return name
        return None

    def apply_rules(self):
        """Close live connections that a drop rule now covers."""
        for r in self.routes.values():
            for c in list(r.conns):
                if self.rule(r.name, c.source)[0] == "drop":
                    c.close(reset=True)

    # ---- data path
    async def handle(self, route, cr, cw):
        route.stats["accepted"] += 1
        peer = cw.get_extra_info("peername")
        source = None
        for _ in range(5):   # the dialler's fd table is visible at once; retry briefly
            source = self.find_source(peer[1], route.listen)
            if source is not None or not self.pids:
                break
            await asyncio.sleep(0.01)
        conn = Conn(route, cr, cw, source)
        if self.rule(route.name, source)[0] == "drop":
            route.stats["refused"] += 1
            conn.close(reset=True)
            return
        try:
            tr, tw = await asyncio.wait_for(asyncio.open_connection(HOST, route.target), 5)
        except Exception:
            conn.close(reset=True)
            return
        conn.tr, conn.tw = tr, tw
        if conn.closed:
            tw.close()
            return
        route.conns.add(conn)
        conn.tasks = [asyncio.ensure_future(self.pump(conn, cr, tw, "up")),
                      asyncio.ensure_future(self.pump(conn, tr, cw, "down"))]

    async def pump(self, conn, reader, writer, direction):
        route = conn.route
        queue = asyncio.Queue()
        sender = asyncio.ensure_future(self.deliver(conn, queue, writer, direction))
        try:
            while not conn.closed:
                data = await reader.read(65536)
                mode, args = self.rule(route.name, conn.source)
                if mode == "drop":
                    conn.close(reset=True)
                    break
                if not data:
                    await queue.put((0, b""))
                    await sender
                    break
                if mode == "blackhole" and args[0] in (direction, "both"):
                    route.stats["discarded"] += len(data)
                    continue
                delay = 0.0
                if mode == "delay":
                    delay = (args[0] if direction == "up" else args[1]) / 1000.0
                await queue.put((time.monotonic() + delay, data))
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            if not sender.done():
                sender.cancel()
            conn.close()

    async def deliver(self, conn, queue, writer, direction):
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    # the sender half-closed: pass the FIN on
                    try:
                        writer.write_eof()
                    except Exception:
                        pass
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                mode, args = self.rule(conn.route.name, conn.source)
                if mode == "blackhole" and args[0] in (direction, "both"):
                    conn.route.stats["discarded"] += len(data)
                    continue
                writer.write(data)
                await writer.drain()
                conn.route.stats[direction] += len(data)
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass

    # ---- control
    async def add_route(self, name, listen, target):
        if name in self.routes:
            raise ValueError("route %s exists" % name)
        r = Route(self, name, int(listen), int(target))
        r.server = await asyncio.start_server(
            lambda cr, cw: self.handle(r, cr, cw), HOST, r.listen, reuse_address=True)
        self.routes[name] = r

    async def command(self, words):
        if not words:
            return "error: empty command"
        cmd, a = words[0], words[1:]
        if cmd == "ping":
            return "pong"
        if cmd == "route" and len(a) == 3:
            await self.add_route(*a)
            return "ok"
        if cmd == "unroute" and len(a) == 1:
            r = self.routes.pop(a[0], None)
            if r is None:
                return "error: no route %s" % a[0]
            r.server.close()
            for c in list(r.conns):
                c.close(reset=True)
            return "ok"
        if cmd == "pid" and len(a) == 2:
            self.pids[a[0]] = int(a[1])
            return "ok"
        if cmd in ("set", "clear"):
            source = None
            if len(a) >= 2 and a[-2] == "from":
                source = a[-1]
                a = a[:-2]
            if not a or a[0] not in self.routes:
                return "error: no route %s" % (a[0] if a else "")
            route = a[0]
            if cmd == "clear":
                self.rules.pop((route, source), None)
                return "ok"
            mode, margs = (a[1] if len(a) > 1 else ""), a[2:]
            if mode in ("pass", "drop") and not margs:
                rule = (mode, ())
            elif mode == "blackhole" and len(margs) == 1 and margs[0] in ("up", "down", "both"):
                rule = (mode, (margs[0],))
            elif mode == "delay" and len(margs) == 2:
                rule = (mode, (int(margs[0]), int(margs[1])))
            else:
                return "error: bad rule %s" % " ".join(a[1:])
            self.rules[(route, source)] = rule
            self.apply_rules()
            _log("rule", route, source or "*", rule)
            return "ok"
        if cmd == "heal":
            self.rules.clear()
            _log("heal")
            return "ok"
        if cmd == "stats":
            lines = []
            for r in self.routes.values():
                s = r.stats
                lines.append("%s accepted=%d open=%d refused=%d up=%d down=%d discarded=%d" % (
                    r.name, s["accepted"], len(r.conns), s["refused"], s["up"], s["down"], s["discarded"]))
            return "\n".join(lines) if lines else "(no routes)"
        if cmd == "quit":
            asyncio.get_event_loop().call_later(0.05, self.stop.set)
            return "ok"
        return "error: unknown command %s" % " ".join(words)

    async def control(self, cr, cw):
        try:
            line = await asyncio.wait_for(cr.readline(), 10)
            try:
                ans = await self.command(line.decode().split())
            except Exception as e:
                ans = "error: %s" % e
            cw.write((ans + "\n").encode())
            await cw.drain()
        except Exception:
            pass
        finally:
            cw.close()

    async def serve(self, sock_path, routes):
        self.stop = asyncio.Event()
        for name, listen, target in routes:
            await self.add_route(name, listen, target)
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        ctl = await asyncio.start_unix_server(self.control, sock_path)
        _log("faultproxy serving, control", sock_path)
        await self.stop.wait()
        ctl.close()
        for r in self.routes.values():
            r.server.close()
            for c in list(r.conns):
                c.close()


def ctl(sock_path, words):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    s.sendall((" ".join(words) + "\n").encode())
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    out = buf.decode().rstrip("\n")
    print(out)
    return 1 if out.startswith("error") else 0


# ---------------------------------------------------------------- self-test

def selftest():
    """Run the proxy in this process against an echo server and a client, prove
    pass / delay / blackhole up / blackhole down / drop (existing and new
    connections) / per-source rules / heal."""
    import subprocess
    import tempfile

    results = []

    def check(name, cond, diag=""):
        results.append(cond)
        print(("ok " if cond else "not ok ") + "faultproxy/" + name + ("" if cond else " (%s)" % diag), flush=True)

    async def echo(cr, cw):
        try:
            while True:
                d = await cr.read(65536)
                if not d:
                    break
                cw.write(d)
                await cw.drain()
        except (Exception, asyncio.CancelledError):
            pass
        finally:
            cw.close()

    def free_port():
        s = socket.socket()
        s.bind((HOST, 0))
        p = s.getsockname()[1]
        s.close()
        return p

    async def roundtrip(port, payload=b"ping", timeout=2.0):
        """send payload on a new connection, return (reply or None, seconds, error)."""
        t0 = time.monotonic()
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        except Exception as e:
            return None, time.monotonic() - t0, repr(e)
        try:
            w.write(payload)
            await w.drain()
            got = b""
            while len(got) < len(payload):
                d = await asyncio.wait_for(r.read(65536), timeout)
                if not d:
                    return got or None, time.monotonic() - t0, "closed"
                got += d
            return got, time.monotonic() - t0, ""
        except Exception as e:
            return None, time.monotonic() - t0, repr(e) or type(e).__name__
        finally:
            w.close()

    async def main():
        p = Proxy()
        p.stop = asyncio.Event()
        eport, lport = free_port(), free_port()
        es = await asyncio.start_server(echo, HOST, eport)
        await p.command(["route", "r", str(lport), str(eport)])

        got, dt, err = await roundtrip(lport)
        check("pass", got == b"ping", err)

        await p.command(["set", "r", "delay", "300", "200"])
        got, dt, err = await roundtrip(lport)
        check("delay-applied", got == b"ping" and dt >= 0.45, "reply %r after %.3fs %s" % (got, dt, err))
        await p.command(["set", "r", "pass"])

        # blackhole up: the connection is accepted but nothing reaches the target
        await p.command(["set", "r", "blackhole", "up"])
        before = p.routes["r"].stats["discarded"]
        got, dt, err = await roundtrip(lport, timeout=0.8)
        check("blackhole-up-accepts", err != "" and "ConnectionRefused" not in err, err)
        check("blackhole-up-no-reply", got is None and p.routes["r"].stats["discarded"] > before,
              "reply %r" % got)
        # blackhole down: the target receives (echo replies) but the client sees nothing
        await p.command(["set", "r", "blackhole", "down"])
        up_before = p.routes["r"].stats["up"]
        got, dt, err = await roundtrip(lport, timeout=0.8)
        check("blackhole-down-no-reply", got is None, "reply %r" % got)
        check("blackhole-down-forwards-up", p.routes["r"].stats["up"] > up_before, "no bytes went up")
        await p.command(["clear", "r"])

        # drop: an open connection is closed, new ones are refused (reset)
        r, w = await asyncio.open_connection(HOST, lport)
        w.write(b"a")
        await w.drain()
        first = await asyncio.wait_for(r.read(10), 2)
        await p.command(["set", "r", "drop"])
        try:
            rest = await asyncio.wait_for(r.read(10), 2)
            closed = rest == b""
        except (ConnectionError, OSError):
            closed = True
        except asyncio.TimeoutError:
            closed = False
        w.close()
        check("drop-closes-open-connection", first == b"a" and closed, "first %r closed %s" % (first, closed))
        got, dt, err = await roundtrip(lport, timeout=2)
        check("drop-refuses-new", got is None and err != "", "reply %r" % got)

        # per-source: a rule "from X" hits only connections dialled by X's process
        await p.command(["heal"])
        helper = subprocess.Popen(
            [sys.executable, "-c",
             "import socket,sys,time\n"
             "s=socket.create_connection(('127.0.0.1',%d))\n"
             "s.settimeout(2)\n"
             "for i in range(40):\n"
             "  try:\n"
             "    s.sendall(b'x'); d=s.recv(10)\n"
             "    if not d: print('closed'); break\n"
             "  except Exception as e: print('closed'); break\n"
             "  time.sleep(0.05)\n"
             "else: print('open')\n"
             "sys.stdout.flush()\n" % lport],
            stdout=subprocess.PIPE)
        p.pids["helper"] = helper.pid
        await asyncio.sleep(0.4)
        srcs = sorted(str(c.source) for c in p.routes["r"].conns)
        check("source-identified", "helper" in srcs, "sources %s" % srcs)
        await p.command(["set", "r", "drop", "from", "helper"])
        got, dt, err = await roundtrip(lport)   # this process is not "helper"
        check("per-source-others-pass", got == b"ping", err)
        loop = asyncio.get_event_loop()
        out = await loop.run_in_executor(None, helper.communicate)
        check("per-source-drops-that-source", out[0].strip() == b"closed", "helper said %r" % out[0])
        await p.command(["heal"])
        got, dt, err = await roundtrip(lport)
        check("heal", got == b"ping", err)
        es.close()

    asyncio.run(main())
    return 0 if all(results) else 1


def main(argv):
    if len(argv) >= 2 and argv[1] == "ctl":
        if len(argv) < 4:
            print("usage: faultproxy.py ctl SOCK COMMAND...", file=sys.stderr)
            return 2
        return ctl(argv[2], argv[3:])
    if len(argv) >= 2 and argv[1] == "selftest":
        return selftest()
    if len(argv) >= 2 and argv[1] == "serve":
        sock, routes, a = None, [], argv[2:]
        while a:
            if a[0] == "--control" and len(a) >= 2:
                sock, a = a[1], a[2:]
            elif a[0] == "--route" and len(a) >= 4:
                routes.append((a[1], a[2], a[3]))
                a = a[4:]
            else:
                print("faultproxy.py: bad argument %s" % a[0], file=sys.stderr)
                return 2
        if not sock:
            print("faultproxy.py serve: --control SOCK is required", file=sys.stderr)
            return 2
        asyncio.run(Proxy().serve(sock, routes))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
