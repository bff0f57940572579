#!/usr/bin/env python3
"""Hello World, the producer: one producer, one queue, one consumer -- the simplest mode.

    python send.py              # sends "Hello World!" to the queue "hello"
    python send.py --count 3    # sends "Hello World 0!" .. "Hello World 2!"
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import connect  # noqa: E402  (examples/common.py: the address from the environment)

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--queue", default="hello", help="the queue (default: hello)")
parser.add_argument("--count", type=int, default=1, help="how many messages (default: 1)")
args = parser.parse_args()

with connect("hello_world/send") as connection:
    channel = connection.channel()

    # Declaring a queue creates it if it does not exist yet, and is a no-op if it exists with
    # the same settings (different settings are an error). Producer and consumer both declare
    # it, so it does not matter which one starts first.
    channel.queue_declare(queue=args.queue)

    for i in range(args.count):
        body = "Hello World!" if args.count == 1 else f"Hello World {i}!"
        # exchange="" is the default exchange: it routes each message to the queue whose name
        # is the routing key. In this mode the routing key is therefore the queue's name.
        channel.basic_publish(exchange="", routing_key=args.queue, body=body)
        print(f" [x] Sent {body!r}")
# Leaving the `with` block closes the connection; the broker keeps the messages in the queue
# until a consumer takes them.
