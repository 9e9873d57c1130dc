from trackway.domain.ratelimit import TokenBuckets, retry_after_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_of_one_second_then_refill() -> None:
    clock = Clock()
    buckets = TokenBuckets(10, clock)
    assert [buckets.take("a") for _ in range(10)] == [0.0] * 10
    assert buckets.take("a") == 0.1
    assert buckets.take("b") == 0.0  # keys are independent
    clock.now += 0.5
    assert [buckets.take("a") for _ in range(5)] == [0.0] * 5
    assert buckets.take("a") > 0


def test_batch_larger_than_the_rate_waits_for_a_full_bucket() -> None:
    clock = Clock()
    buckets = TokenBuckets(10, clock)
    assert buckets.take("a", 4) == 0.0
    assert buckets.take("a", 100) == 0.4  # waits until the bucket is full again
    assert retry_after_seconds(0.4) == 1
    assert retry_after_seconds(2.1) == 3
