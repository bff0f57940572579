#!/usr/bin/env python3
"""RPC, the server: answers requests that arrive on the queue "rpc_queue".

A request's body is a number n; the answer, fib(n), goes to the queue the request names in
its reply_to property, carrying the request's correlation_id so the client can tell which
request it answers. Start several servers to share the load (prefetch 1: fair dispatch).

    python rpc_server.py
    python rpc_server.py --expect 4 --timeout 30   # stop after answering 4 requests
"""
import argparse
import os
import sys

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--queue", default="rpc_queue", help="the request queue (default: rpc_queue)")
add_stop_arguments(parser, "requests")
args = parser.parse_args()


def fib(n):
    """Deliberately slow (exponential), to stand for real work."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


with connect("rpc/rpc_server") as connection:
    channel = connection.channel()
    channel.queue_declare(queue=args.queue)
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)

    def on_request(ch, method, props, body):
        n = int(body)
        print(f" [.] fib({n})")
        response = fib(n)
        # Answer through the default exchange, straight to the client's reply queue.
        ch.basic_publish(exchange="", routing_key=props.reply_to,
                         properties=pika.BasicProperties(correlation_id=props.correlation_id),
                         body=str(response))
        ch.basic_ack(delivery_tag=method.delivery_tag)
        stop.count()

    # One request at a time per server: a second server takes the next request while this
    # one is busy.
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue=args.queue, on_message_callback=on_request)
    print(" [x] Awaiting RPC requests")
    ok = stop.start_consuming()

print(f" [.] Answered {stop.counted} request(s)")
sys.exit(0 if ok else 1)
