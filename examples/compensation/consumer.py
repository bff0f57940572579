#!/usr/bin/env python3
"""Message compensation, the consumer: processes orders and records each one it processed.

The record (a SQLite file, --db) is what the checker looks at. An order is acked only after
it is recorded: if the consumer dies in between, the broker delivers the order again, and the
record turns the second delivery into a harmless duplicate.

To watch the compensation at work, --lose ORDER_ID makes the consumer "lose" the first
delivery of that order: it acks it without processing it -- as a bug, a crash after an early
ack, or a message dropped on its way would. The checker notices and sends the order again.

    python consumer.py --db processed.sqlite3 --lose order-2
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

import shop  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--db", default="processed.sqlite3",
                    help="the record (default: processed.sqlite3)")
parser.add_argument("--lose", action="append", default=[], metavar="ORDER_ID",
                    help="drop the first delivery of this order on purpose (repeatable)")
parser.add_argument("--prefix", default="shop",
                    help="prefix of the queue and exchange names (default: shop)")
add_stop_arguments(parser, "processed orders")
args = parser.parse_args()

db = shop.open_record(args.db)
to_lose = set(args.lose)

with connect("compensation/consumer") as connection:
    channel = connection.channel()
    names = shop.declare(channel, args.prefix)
    channel.basic_qos(prefetch_count=10)
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)

    def on_order(ch, method, properties, body):
        order = json.loads(body)
        order_id = order["order_id"]
        if order_id in to_lose:
            to_lose.discard(order_id)
            ch.basic_ack(delivery_tag=method.delivery_tag)
            print(f" [!] Lost {order_id} (on purpose: acked, never processed)")
            stop.keep_alive()
            return
        # "Processing" the order happens here. In a real service, the business change and the
        # record of the order id are written in one database transaction.
        if shop.record(db, order_id, body.decode()):
            print(f" [x] Processed {order_id}")
            counted = True
        else:
            print(f" [=] {order_id} was processed before: duplicate skipped")
            counted = False
        ch.basic_ack(delivery_tag=method.delivery_tag)
        if counted:
            stop.count()
        else:
            stop.keep_alive()

    channel.basic_consume(queue=names.orders, on_message_callback=on_order)
    print(f" [*] Waiting for orders on {names.orders}. To exit press CTRL+C")
    ok = stop.start_consuming()

print(f" [.] Processed {stop.counted} order(s)")
sys.exit(0 if ok else 1)
