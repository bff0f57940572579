#!/usr/bin/env python3
"""Idempotent consumer, the producer: publishes stock updates ("the stock of apples is now 8,
version 2") -- including what real systems do to a consumer sooner or later:

  * duplicates: the same message (same message_id) twice, as a producer that retries after
    a lost confirm, or a redelivery after a consumer crashed before its ack, would send;
  * out-of-order versions: version 4 of a record arriving before version 3, as two producers,
    or a retry that overtakes, can cause.

Each update carries a message_id (AMQP property) and the record's version number (in the body).

    python producer.py            # run it twice: the second run changes nothing downstream
"""
import argparse
import json
import os
import sys

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import connect  # noqa: E402

# (message_id, sku, version, stock)
UPDATES = [
    ("upd-1", "apple", 1, 10),
    ("upd-2", "apple", 2, 8),
    ("upd-2", "apple", 2, 8),   # duplicate: sent again, e.g. after a lost publisher confirm
    ("upd-3", "pear", 1, 5),
    ("upd-5", "apple", 4, 3),   # version 4 overtakes version 3...
    ("upd-4", "apple", 3, 6),   # ...so version 3 arrives stale: applying it would lose v4
    ("upd-3", "pear", 1, 5),    # another duplicate
    ("upd-6", "pear", 2, 4),
]

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--queue", default="stock-updates", help="the queue (default: stock-updates)")
args = parser.parse_args()

with connect("idempotent/producer") as connection:
    channel = connection.channel()
    channel.queue_declare(queue=args.queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    for message_id, sku, version, stock in UPDATES:
        body = json.dumps({"sku": sku, "version": version, "stock": stock})
        channel.basic_publish(
            exchange="", routing_key=args.queue, body=body,
            properties=pika.BasicProperties(message_id=message_id,
                                            content_type="application/json",
                                            delivery_mode=pika.DeliveryMode.Persistent))
        print(f" [x] Sent {message_id}: {sku} stock={stock} (version {version})")
    print(f" [.] Sent {len(UPDATES)} update(s)")
