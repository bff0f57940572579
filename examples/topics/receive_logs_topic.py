#!/usr/bin/env python3
"""Topics, a subscriber: binds its queue with patterns over the routing key's words.

  *  matches exactly one word:       "*.orange.*" matches quick.orange.rabbit, not orange
  #  matches zero or more words:     "lazy.#" matches lazy, lazy.fox and lazy.brown.fox

A binding without * or # is routing (a direct exchange); "#" alone is fanout. A message that
matches two bindings of the same queue arrives there once.

    python receive_logs_topic.py "*.orange.*"
    python receive_logs_topic.py "*.*.rabbit" "lazy.#"
    python receive_logs_topic.py "#"
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("binding_keys", nargs="+", metavar="BINDING_KEY")
parser.add_argument("--exchange", default="topic_logs", help="the exchange (default: topic_logs)")
add_stop_arguments(parser)
args = parser.parse_args()

with connect("topics/receive_logs_topic") as connection:
    channel = connection.channel()
    channel.exchange_declare(exchange=args.exchange, exchange_type="topic")
    queue_name = channel.queue_declare(queue="", exclusive=True).method.queue

    for binding_key in args.binding_keys:
        channel.queue_bind(exchange=args.exchange, queue=queue_name, routing_key=binding_key)
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)

    def callback(ch, method, properties, body):
        print(f" [x] {method.routing_key}:{body.decode()!r}")
        stop.count()

    channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
    print(f" [*] Waiting for {' '.join(args.binding_keys)}. To exit press CTRL+C")
    ok = stop.start_consuming()

print(f" [.] Received {stop.counted} message(s)")
sys.exit(0 if ok else 1)
