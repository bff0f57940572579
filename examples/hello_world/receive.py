#!/usr/bin/env python3
"""Hello World, the consumer: prints every message that arrives on the queue "hello".

    python receive.py                          # runs until Ctrl+C
    python receive.py --expect 3 --timeout 10  # stops after 3 messages (or 10 s without one)
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--queue", default="hello", help="the queue (default: hello)")
add_stop_arguments(parser)
args = parser.parse_args()

with connect("hello_world/receive") as connection:
    channel = connection.channel()
    channel.queue_declare(queue=args.queue)  # the same declaration as the producer's
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)

    # The broker pushes messages to the consumer; pika calls this function for each one.
    def callback(ch, method, properties, body):
        print(f" [x] Received {body.decode()!r}")
        stop.count()

    # auto_ack=True: the broker forgets a message as soon as it has sent it. Simple, but a
    # message is lost if the consumer dies while handling it -- see work_queues/ for acks.
    channel.basic_consume(queue=args.queue, on_message_callback=callback, auto_ack=True)
    print(" [*] Waiting for messages. To exit press CTRL+C")
    ok = stop.start_consuming()

print(f" [.] Received {stop.counted} message(s)")
sys.exit(0 if ok else 1)
