#!/usr/bin/env python3
"""Work queues, the worker: several workers compete for the tasks of one queue; each task goes
to exactly one of them.

How the broker shares the tasks out depends on the prefetch count (basic.qos), the number of
unacknowledged tasks the broker may hand one worker at a time:

* --prefetch 0 (no limit, the default): round robin. Task 1 to worker A, task 2 to B, task 3
  to A... however long each one takes. A worker that drew the heavy tasks falls behind while
  the other one idles: both get the same *number* of tasks.
* --prefetch 1: fair dispatch. The broker gives a worker its next task only once it has acked
  the previous one, so a worker busy with a heavy task gets nothing more, and a free worker
  takes the next task: the faster (or luckier) worker does more tasks.

Try it: start two workers in two terminals, then send one heavy task and nine light ones.

    python worker.py --name A --prefetch 1
    python worker.py --name B --prefetch 1
    python new_task.py "Task 0 .........." "Task 1 ." "Task 2 ." "Task 3 ." "Task 4 ." \\
        "Task 5 ." "Task 6 ." "Task 7 ." "Task 8 ." "Task 9 ."

With --prefetch 1 the worker that drew "Task 0" does one or two tasks and the other one does
the rest; without it, each does five (and one of them waits ten seconds before its next four).

Prefetch only matters with manual acks: with auto_ack=True the broker counts a task as done as
soon as it is sent, and shares them out round robin whatever the prefetch.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--queue", default="task_queue", help="the queue (default: task_queue)")
parser.add_argument("--name", default="worker", help="what this worker calls itself in its output")
parser.add_argument("--prefetch", type=int, default=0,
                    help="unacknowledged tasks at a time: 0 = no limit (round robin, the "
                         "default), 1 = fair dispatch")
parser.add_argument("--seconds-per-dot", type=float, default=1.0, metavar="S",
                    help="how long one dot of work takes (default: 1 s)")
add_stop_arguments(parser, "tasks")
args = parser.parse_args()

with connect(f"work_queues/worker {args.name}") as connection:
    channel = connection.channel()
    channel.queue_declare(queue=args.queue, durable=True)
    if args.prefetch:
        channel.basic_qos(prefetch_count=args.prefetch)
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)
    done = []

    def callback(ch, method, properties, body):
        task = body.decode()
        print(f" [x] {args.name} received {task!r}")
        time.sleep(task.count(".") * args.seconds_per_dot)  # the "work"
        # Manual ack, after the work is done: if this worker dies before this line, the broker
        # gives the task to another worker instead of losing it.
        ch.basic_ack(delivery_tag=method.delivery_tag)
        done.append(task)
        print(f" [x] {args.name} done {task!r}")
        stop.count()

    channel.basic_consume(queue=args.queue, on_message_callback=callback)  # manual acks
    print(f" [*] {args.name} waiting for tasks (prefetch {args.prefetch or 'unlimited'}). "
          "To exit press CTRL+C")
    ok = stop.start_consuming()

units = sum(task.count(".") for task in done)
print(f" [.] {args.name} did {len(done)} task(s), {units} unit(s) of work")
sys.exit(0 if ok else 1)
