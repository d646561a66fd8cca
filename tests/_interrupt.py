"""Interrupting a run at a chosen step, for the resume tests: `fit(..., callback=stop_at(3))` raises `Stop` when
step 3's record is logged (after its checkpoint and resume state, if any, are written)."""


class Stop(Exception):
    """Raised by a `stop_at` callback."""


def stop_at(step: int):
    def callback(record: dict) -> None:
        if record["step"] == step:
            raise Stop

    return callback
