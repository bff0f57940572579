#!/usr/bin/env python3
"""Topics, the publisher: sends messages whose routing keys are dot-separated words
("<speed>.<colour>.<species>", or "<facility>.<severity>" for logs) to a topic exchange.

Arguments come in pairs, ROUTING_KEY MESSAGE:

    python emit_log_topic.py quick.orange.rabbit "A quick orange rabbit" lazy.brown.fox "..."
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("messages", nargs="*", metavar="ROUTING_KEY MESSAGE",
                    default=["anonymous.info", "Hello World!"], help="routing key/message pairs")
parser.add_argument("--exchange", default="topic_logs", help="the exchange (default: topic_logs)")
args = parser.parse_args()
if len(args.messages) % 2:
    parser.error("arguments come in pairs: ROUTING_KEY MESSAGE")

with connect("topics/emit_log_topic") as connection:
    channel = connection.channel()
    channel.exchange_declare(exchange=args.exchange, exchange_type="topic")

    for routing_key, message in zip(args.messages[0::2], args.messages[1::2]):
        # A topic routing key: words separated by dots, 255 bytes at most.
        channel.basic_publish(exchange=args.exchange, routing_key=routing_key, body=message)
        print(f" [x] Sent {routing_key}:{message!r}")
