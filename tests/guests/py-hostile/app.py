"""Hostile tasks, one workflow each: what the host must stop or refuse with
a typed error while every other package runs on."""

from culvert_sdk import Context, task, workflow


@workflow(name="spin")
class Spin:
    @task(id="spin", timeout_ms=1500)
    def spin(ctx: Context) -> None:
        """Loops forever: the deadline preempts it."""
        n = 0
        while True:
            n += 1


@workflow(name="bloat")
class Bloat:
    @task(id="bloat")
    def bloat(ctx: Context) -> None:
        """Allocates without bound: the memory cap stops it."""
        chunks = []
        while True:
            chunks.append(bytearray(4 << 20))


@workflow(name="socket")
class Socket:
    @task(id="socket")
    def socket(ctx: Context) -> None:
        """Tries to open a socket to the host's PostgreSQL."""
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", 5432))
        ctx.set("connected", True)


@workflow(name="files")
class Files:
    @task(id="files")
    def files(ctx: Context) -> None:
        """Tries to read a host file and to write one."""
        try:
            ctx.set("read", open("/etc/passwd").read()[:64])
        except OSError as e:
            ctx.set("read_error", type(e).__name__)
        with open("/tmp/culvert-py-hostile", "w") as f:
            f.write("escaped")
        ctx.set("wrote", True)
