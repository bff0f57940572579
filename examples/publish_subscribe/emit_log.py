#!/usr/bin/env python3
"""Publish/Subscribe, the publisher: sends log lines to a fanout exchange, which gives a copy
of each to every queue bound to it. The publisher knows nothing about queues or subscribers.

    python emit_log.py "info: Hello World!" "warning: disk almost full"
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("messages", nargs="*", default=["info: Hello World!"], help="log lines")
parser.add_argument("--exchange", default="logs", help="the exchange (default: logs)")
args = parser.parse_args()

with connect("publish_subscribe/emit_log") as connection:
    channel = connection.channel()

    # A fanout exchange ignores routing keys and copies each message to every bound queue.
    channel.exchange_declare(exchange=args.exchange, exchange_type="fanout")

    for message in args.messages:
        # No queue is bound yet? Then the message is dropped: nobody was listening.
        channel.basic_publish(exchange=args.exchange, routing_key="", body=message)
        print(f" [x] Sent {message!r}")
