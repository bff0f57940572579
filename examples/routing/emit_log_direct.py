#!/usr/bin/env python3
"""Routing, the publisher: sends each log line with its severity as the routing key to a direct
exchange, which delivers it only to the queues bound with exactly that key.

Arguments come in pairs, SEVERITY MESSAGE:

    python emit_log_direct.py ERROR "Run. Run. Or it will explode." INFO "All fine"
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import connect  # noqa: E402

SEVERITIES = ["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"]

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("logs", nargs="*", metavar="SEVERITY MESSAGE",
                    default=["INFO", "Hello World!"], help="severity/message pairs")
parser.add_argument("--exchange", default="direct_logs", help="the exchange (default: direct_logs)")
args = parser.parse_args()
if len(args.logs) % 2:
    parser.error("arguments come in pairs: SEVERITY MESSAGE")
pairs = list(zip(args.logs[0::2], args.logs[1::2]))
for severity, _ in pairs:
    if severity not in SEVERITIES:
        parser.error(f"unknown severity {severity!r}: one of {', '.join(SEVERITIES)}")

with connect("routing/emit_log_direct") as connection:
    channel = connection.channel()
    channel.exchange_declare(exchange=args.exchange, exchange_type="direct")

    for severity, message in pairs:
        # The routing key decides which queues get the message: those bound with this key.
        channel.basic_publish(exchange=args.exchange, routing_key=severity, body=message)
        print(f" [x] Sent {severity}:{message!r}")
