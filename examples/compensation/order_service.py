#!/usr/bin/env python3
"""Message compensation, the producer (an order service).

For each order it publishes two messages:
  1. the business message, the order itself, to the queue <prefix>.orders;
  2. a check event, through the delayed exchange, which holds it for --check-delay seconds and
     then hands it to the checker. By then the order should long have been processed; if the
     consumer's record says it was not, the checker sends the order again (see checker.py).

Both are persistent and confirmed (publisher confirms): when basic_publish returns, the
broker has the message. The order goes out with mandatory=True, so an order that no queue
would take comes back as an error instead of vanishing.

    python order_service.py --orders 5 --check-delay 10
"""
import argparse
import json
import os
import sys

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import connect  # noqa: E402

import shop  # noqa: E402  (examples/compensation/shop.py)

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--orders", type=int, default=3, help="how many orders to place (default: 3)")
parser.add_argument("--first", type=int, default=1, help="number of the first order (default: 1)")
parser.add_argument("--check-delay", type=float, default=10.0, metavar="S",
                    help="seconds after which the checker looks at an order (default: 10)")
parser.add_argument("--prefix", default="shop",
                    help="prefix of the queue and exchange names (default: shop)")
args = parser.parse_args()

with connect("compensation/order_service") as connection:
    channel = connection.channel()
    names = shop.declare(channel, args.prefix)
    channel.confirm_delivery()

    for i in range(args.first, args.first + args.orders):
        order = {"order_id": f"order-{i}", "item": f"book #{i}", "quantity": 1}
        body = json.dumps(order)

        # 1. The order. message_id lets consumers recognise the same order sent twice.
        channel.basic_publish(
            exchange="", routing_key=names.orders, body=body, mandatory=True,
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                            content_type="application/json",
                                            message_id=order["order_id"]))

        # 2. The check event: everything the checker needs to send the order again, held by the
        # delayed exchange for x-delay milliseconds.
        check = {"order": order, "attempt": 1}
        channel.basic_publish(
            exchange=names.delayed_exchange, routing_key=names.checks, body=json.dumps(check),
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                            content_type="application/json",
                                            headers={"x-delay": int(args.check_delay * 1000)}))
        print(f" [x] Placed {order['order_id']}; its check is due in {args.check_delay:g} s")
