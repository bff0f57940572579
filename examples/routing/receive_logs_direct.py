#!/usr/bin/env python3
"""Routing, a subscriber: gets only the log lines of the severities it names.

One queue may be bound several times, once per severity; a queue bound with ERROR gets the
errors, one bound with INFO, WARN and ERROR gets all three, and nobody gets DEBUG unless some
queue is bound with it.

    python receive_logs_direct.py ERROR                 # e.g. to save errors to disk
    python receive_logs_direct.py INFO WARN ERROR       # e.g. to show on screen
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

SEVERITIES = ["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"]

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("severities", nargs="+", choices=SEVERITIES, metavar="SEVERITY",
                    help=" | ".join(SEVERITIES))
parser.add_argument("--exchange", default="direct_logs", help="the exchange (default: direct_logs)")
add_stop_arguments(parser)
args = parser.parse_args()

with connect("routing/receive_logs_direct") as connection:
    channel = connection.channel()
    channel.exchange_declare(exchange=args.exchange, exchange_type="direct")
    queue_name = channel.queue_declare(queue="", exclusive=True).method.queue

    # One binding per severity we want: the binding key must equal the routing key.
    for severity in args.severities:
        channel.queue_bind(exchange=args.exchange, queue=queue_name, routing_key=severity)
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)

    def callback(ch, method, properties, body):
        print(f" [x] {method.routing_key}:{body.decode()!r}")
        stop.count()

    channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
    print(f" [*] Waiting for {' '.join(args.severities)} logs. To exit press CTRL+C")
    ok = stop.start_consuming()

print(f" [.] Received {stop.counted} log(s)")
sys.exit(0 if ok else 1)
