"""A riverbed.streams app counting records per key, run as a child process by
test_streams_failover.py, which kills it with SIGKILL at random moments.

usage: python streams_counter.py BOOTSTRAP APP_ID STATE_DIR GUARANTEE [NUM_STANDBY_REPLICAS]

Reads ``events`` (str keys), counts per key into store ``counts`` and writes every new count to
``counts`` (str key, 8-byte count). SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import signal
import sys

from riverbed.streams import LONG, STRING, StreamsApp


def main() -> int:
    bootstrap, app_id, state_dir, guarantee = sys.argv[1:5]
    standbys = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    app = StreamsApp(app_id, bootstrap, state_dir=state_dir, processing_guarantee=guarantee, num_standby_replicas=standbys,
                     consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                     cache_max_bytes=0)  # (the test checks every count 1, 2, ..., n: no record cache)
    app.stream("events", STRING, STRING).group_by_key().count(name="counts").to_stream().to("counts", STRING, LONG)
    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
