"""A TCP proxy for tests that cuts connections: every chunk coming back from the broker is,
with probability ``drop``, thrown away together with the connection, so the request it
answers was carried out but the client never hears about it (and retries)."""

from __future__ import annotations

import contextlib
import random
import socket
import threading


class CuttingProxy:
    def __init__(self, listen_port: int, upstream: tuple[str, int], drop: float, seed: int = 1) -> None:
        self.upstream = upstream
        self.drop = drop
        self.cuts = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _should_cut(self) -> bool:
        with self._lock:
            cut = self._rng.random() < self.drop
            if cut:
                self.cuts += 1
            return cut

    def _pump(self, src: socket.socket, dst: socket.socket, responses: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if responses and self._should_cut():
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()
