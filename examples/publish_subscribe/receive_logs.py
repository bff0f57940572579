#!/usr/bin/env python3
"""Publish/Subscribe, a subscriber: gets a copy of every log line sent while it runs.

Each subscriber has its own queue: a fresh one with a name the broker chooses, exclusive to
this connection, deleted when the subscriber goes away. Start two and both print every line.

    python receive_logs.py
    python receive_logs.py --expect 5 --timeout 10
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--exchange", default="logs", help="the exchange (default: logs)")
add_stop_arguments(parser)
args = parser.parse_args()

with connect("publish_subscribe/receive_logs") as connection:
    channel = connection.channel()
    channel.exchange_declare(exchange=args.exchange, exchange_type="fanout")

    # queue="" asks the broker for a new queue with a generated name (amq.gen-...);
    # exclusive=True: only this connection may use it, and it is deleted when we disconnect.
    result = channel.queue_declare(queue="", exclusive=True)
    queue_name = result.method.queue

    # The binding connects our queue to the exchange: from now on it gets a copy of each log.
    channel.queue_bind(exchange=args.exchange, queue=queue_name)
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)

    def callback(ch, method, properties, body):
        print(f" [x] {body.decode()}")
        stop.count()

    channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
    print(f" [*] Queue {queue_name} waiting for logs. To exit press CTRL+C")
    ok = stop.start_consuming()

print(f" [.] Received {stop.counted} log(s)")
sys.exit(0 if ok else 1)
