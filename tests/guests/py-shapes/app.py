"""Every declaration the Python SDK maps onto the contract: each backoff and
retry_on, each trigger rule and condition, a schedule with every catch-up
and overlap setting, and capabilities. languages.rs compares what the
component's describe returns with what is declared here."""

from culvert_sdk import (
    Retry, Schedule, all_of, always, any_of, capabilities, contains, equals, exists, failed,
    greater_than, less_than, none_of, not_equals, skipped, succeeded, task, workflow,
)

capabilities(env=["TOKEN"], dirs=[("/data", True), "/ro"], http_hosts=["api.example.com"],
             wall_clock=True, random=True)


def noop(ctx):
    pass


@workflow(
    name="forms",
    description="Every form.",
    schedules=[
        Schedule(cron="0 0 3 * * *", timezone="Europe/Berlin", context={"full": True},
                 catch_up="all", catch_up_cap=5, overlap="queue_one"),
        Schedule(cron="0 */5 * * * *", catch_up="latest", overlap="skip"),
    ],
)
class Forms:
    a = task(id="a", retry=Retry(max_attempts=4, backoff="fixed", initial_delay_ms=10,
                                 max_delay_ms=20, jitter=False, retry_on="all"))(noop)
    b = task(id="b", dependencies=["a"], timeout_ms=1234,
             retry=Retry(backoff="linear", retry_on="never"))(noop)
    c = task(id="c", dependencies=["a", "b"],
             trigger=any_of(failed("a"), skipped("b"), exists("k"), not_equals("k", 1)))(noop)
    d = task(id="d", dependencies=["c"],
             trigger=none_of(greater_than("n", 2), less_than("n", -2), contains("tags", "x")))(noop)
    e = task(id="e", dependencies=["d"], trigger=always())(noop)
    f = task(id="f", dependencies=["e"], trigger=all_of(succeeded("e"), equals("mode", "full")))(noop)
