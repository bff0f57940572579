#!/usr/bin/env python3
"""RPC, the client: asks the server for fib(n) and waits for the answer.

The client declares its own reply queue (exclusive, named by the broker), sends each request
with reply_to = that queue and a fresh correlation_id, and accepts an answer only if its
correlation_id is the one of the request it waits for.

    python rpc_client.py 30
    python rpc_client.py 1 10 20 --timeout 5
"""
import argparse
import os
import sys
import time
import uuid

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("numbers", nargs="*", type=int, default=[30], metavar="N")
parser.add_argument("--queue", default="rpc_queue", help="the request queue (default: rpc_queue)")
parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="how long to wait for each answer (default: 30 s)")
args = parser.parse_args()


class FibonacciRpcClient:
    def __init__(self, connection, queue):
        self.connection = connection
        self.queue = queue
        self.channel = connection.channel()
        # Our reply queue: the server publishes its answers here.
        result = self.channel.queue_declare(queue="", exclusive=True)
        self.callback_queue = result.method.queue
        self.channel.basic_consume(queue=self.callback_queue, on_message_callback=self.on_response,
                                   auto_ack=True)
        self.corr_id = None
        self.response = None

    def on_response(self, ch, method, props, body):
        # An answer to an earlier request we gave up on, or a stray message: ignore it.
        if props.correlation_id == self.corr_id:
            self.response = int(body)

    def call(self, n, timeout):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange="", routing_key=self.queue, body=str(n),
            properties=pika.BasicProperties(reply_to=self.callback_queue,
                                            correlation_id=self.corr_id))
        deadline = time.monotonic() + timeout
        while self.response is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to fib({n}) within {timeout:g} s")
            # Let pika read from the socket (and call on_response) for a while.
            self.connection.process_data_events(time_limit=remaining)
        return self.response


with connect("rpc/rpc_client") as connection:
    fibonacci_rpc = FibonacciRpcClient(connection, args.queue)
    for n in args.numbers:
        print(f" [x] Requesting fib({n})")
        try:
            answer = fibonacci_rpc.call(n, args.timeout)
        except TimeoutError as e:
            print(f" [!] {e}")
            sys.exit(1)
        print(f" [.] Got fib({n}) = {answer}")
