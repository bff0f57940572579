#!/usr/bin/env python3
"""Work queues, the producer: puts tasks on a queue that several workers share.

Each argument is one task; each dot in it stands for one unit of work (the worker sleeps that
long), so "resize a photo." is light and "render a video.........." is heavy.

    python new_task.py "First task." "Second task.." "Third task..."
"""
import argparse
import os
import sys

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("tasks", nargs="*", default=["Hello World!"], help="one message per task")
parser.add_argument("--queue", default="task_queue", help="the queue (default: task_queue)")
args = parser.parse_args()

with connect("work_queues/new_task") as connection:
    channel = connection.channel()

    # Tasks must survive a broker restart: a durable queue, and persistent messages
    # (delivery_mode=2). The workers declare the queue the same way.
    channel.queue_declare(queue=args.queue, durable=True)

    # Publisher confirms: basic_publish now returns only once the broker has taken the task
    # (and raises if it could not), so a task cannot vanish between us and the queue.
    channel.confirm_delivery()

    for task in args.tasks:
        channel.basic_publish(
            exchange="", routing_key=args.queue, body=task,
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
        print(f" [x] Sent {task!r}")
