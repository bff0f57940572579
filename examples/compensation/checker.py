#!/usr/bin/env python3
"""Message compensation, the checker: receives the delayed check events and makes sure every
order was processed.

For each check event it looks the order up in the consumer's record (--db):
  * processed: nothing to do;
  * not processed: it publishes the order again (confirmed) and schedules another check, so an
    order that is lost again is noticed again -- up to --max-attempts checks, after which a
    human has to look.

The check event is acked only after that: a checker that dies halfway gets the event again.
Sending an order twice is possible (say the consumer was just slow), so the consumer must
tolerate duplicates: it does, through its record (see also ../idempotent/).

What if a check event itself were lost? The notes add a periodic reconciliation that
compares the order service's database with the consumer's record; it is not shown here.

    python checker.py --db processed.sqlite3
"""
import argparse
import json
import os
import sys

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

import shop  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--db", default="processed.sqlite3",
                    help="the consumer's record (default: processed.sqlite3)")
parser.add_argument("--check-delay", type=float, default=10.0, metavar="S",
                    help="delay of the next check after sending an order again (default: 10 s)")
parser.add_argument("--max-attempts", type=int, default=3, help="checks per order (default: 3)")
parser.add_argument("--prefix", default="shop",
                    help="prefix of the queue and exchange names (default: shop)")
add_stop_arguments(parser, "orders found processed")
args = parser.parse_args()

db = shop.open_record(args.db)

with connect("compensation/checker") as connection:
    channel = connection.channel()
    names = shop.declare(channel, args.prefix)
    # A second channel, in confirm mode, for what the checker publishes.
    publisher = connection.channel()
    publisher.confirm_delivery()
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)

    def persistent(**props):
        return pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                    content_type="application/json", **props)

    def on_check(ch, method, properties, body):
        check = json.loads(body)
        order, attempt = check["order"], check["attempt"]
        order_id = order["order_id"]
        if shop.was_processed(db, order_id):
            print(f" [ok] {order_id} was processed (check {attempt})")
            counted = True
        elif attempt >= args.max_attempts:
            print(f" [!!] {order_id} is still not processed after {attempt} checks: giving up")
            counted = False
        else:
            print(f" [!] {order_id} was never processed (check {attempt}): sending it again")
            publisher.basic_publish(exchange="", routing_key=names.orders, body=json.dumps(order),
                                    mandatory=True, properties=persistent(message_id=order_id))
            publisher.basic_publish(
                exchange=names.delayed_exchange, routing_key=names.checks,
                body=json.dumps({"order": order, "attempt": attempt + 1}),
                properties=persistent(headers={"x-delay": int(args.check_delay * 1000)}))
            counted = False
        ch.basic_ack(delivery_tag=method.delivery_tag)
        if counted:
            stop.count()
        else:
            stop.keep_alive()

    channel.basic_consume(queue=names.checks, on_message_callback=on_check)
    print(f" [*] Waiting for check events on {names.checks}. To exit press CTRL+C")
    ok = stop.start_consuming()

print(f" [.] {stop.counted} order(s) found processed")
sys.exit(0 if ok else 1)
