"""What every example shares: where the broker is, and how a consumer knows when to stop.

Where the broker is comes from the environment, so the same script runs against one node on
this machine or against the docker compose cluster behind HAProxy:

    AMQP_URL    the whole address, e.g. amqp://USER:PASS@127.0.0.1:5672/%2F
                (default: amqp://guest:guest@localhost:5672/%2F; "%2F" is the vhost "/").
                pika's URL options work too: ...?connection_attempts=5&retry_delay=1

Without AMQP_URL the address is put together from AMQP_HOST (localhost), AMQP_PORT (5672),
AMQP_VHOST (/) and WARREN_DEFAULT_USER / WARREN_DEFAULT_PASS (guest / guest): the variables
the compose cluster's deploy/.env sets, so `set -a; . deploy/.env; set +a` is enough there.
Remember that `guest` may only log in from the broker's own machine (as in RabbitMQ).
"""
import os
import signal
import sys
import urllib.parse

import pika

# Print each line as soon as it is written, also when the output goes to a pipe or a file.
sys.stdout.reconfigure(line_buffering=True)


def amqp_url():
    url = os.environ.get("AMQP_URL")
    if url:
        return url
    quote = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    return "amqp://%s:%s@%s:%s/%s" % (
        quote(os.environ.get("WARREN_DEFAULT_USER", "guest")),
        quote(os.environ.get("WARREN_DEFAULT_PASS", "guest")),
        os.environ.get("AMQP_HOST", "localhost"),
        os.environ.get("AMQP_PORT", "5672"),
        quote(os.environ.get("AMQP_VHOST", "/")))


def connect(name):
    """A blocking connection to the broker; `name` shows in the management UI's connections."""
    params = pika.URLParameters(amqp_url())
    params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)


def add_stop_arguments(parser, what="messages"):
    """--expect and --timeout: without them a consumer runs until Ctrl+C, as a service does."""
    parser.add_argument("--expect", type=int, metavar="N",
                        help="stop after N %s (exit status 1 if --timeout ends it first)" % what)
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="stop after S seconds in which no message arrived")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class StopWhen:
    """Runs channel.start_consuming() until `expect` messages are counted, or `timeout` seconds
    pass without a message, or Ctrl+C (or a plain `kill`, e.g. `docker stop`).

    The message callback calls count() for each message it counts, or keep_alive() for one it
    does not count (a message arrived, so the idle clock starts again)."""

    def __init__(self, channel, expect=None, timeout=None):
        self.channel = channel
        self.connection = channel.connection
        self.expect = expect
        self.timeout = timeout
        self.counted = 0
        self.timed_out = False
        self._timer = None

    def count(self):
        self.counted += 1
        if self.expect is not None and self.counted >= self.expect:
            self.channel.stop_consuming()
        else:
            self.keep_alive()

    def keep_alive(self):
        if self.timeout is None:
            return
        if self._timer is not None:
            self.connection.remove_timeout(self._timer)
        self._timer = self.connection.call_later(self.timeout, self._idle)

    def _idle(self):
        self._timer = None
        self.timed_out = True
        self.channel.stop_consuming()

    def start_consuming(self):
        """Consumes until one of the ends above; True unless --expect was not reached."""
        if self.expect is None or self.counted < self.expect:
            signal.signal(signal.SIGTERM, _interrupt)
            self.keep_alive()
            try:
                self.channel.start_consuming()
            except KeyboardInterrupt:
                pass
        if self._timer is not None:
            self.connection.remove_timeout(self._timer)
            self._timer = None
        if self.timed_out and self.expect is not None:
            print(" [!] No message for %g s: stopping with %d of the %d expected"
                  % (self.timeout, self.counted, self.expect))
        return self.expect is None or self.counted >= self.expect
