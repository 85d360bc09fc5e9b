"""`culvert bench languages`'s Python package: the Rust `hello` and
`shapes`'s `ten`, in Python."""

from culvert_sdk import Context, task, workflow


@workflow(name="hello")
class Hello:
    @task(id="greet")
    def greet(ctx: Context) -> None:
        """Reads `name` (default "world") and writes `greeting`."""
        ctx.set("greeting", f"Hello, {ctx.get('name', 'world')}!")


@workflow(name="ten")
class Ten:
    root = task(id="root")(lambda ctx: None)
    p1 = task(id="p1", dependencies=["root"])(lambda ctx: None)
    p2 = task(id="p2", dependencies=["root"])(lambda ctx: None)
    p3 = task(id="p3", dependencies=["root"])(lambda ctx: None)
    p4 = task(id="p4", dependencies=["root"])(lambda ctx: None)
    p5 = task(id="p5", dependencies=["root"])(lambda ctx: None)
    p6 = task(id="p6", dependencies=["root"])(lambda ctx: None)
    p7 = task(id="p7", dependencies=["root"])(lambda ctx: None)
    p8 = task(id="p8", dependencies=["root"])(lambda ctx: None)
    join = task(id="join", dependencies=[f"p{i}" for i in range(1, 9)])(lambda ctx: None)
