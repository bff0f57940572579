#!/usr/bin/env python3
"""Idempotent consumer: handling a message twice, or late, must not change the result.

The broker delivers at least once, never exactly once: a message can arrive twice (the
producer retried; the consumer died after its work but before its ack), and messages from
different senders can arrive out of order. This consumer keeps its state in SQLite (--db)
and protects it twice, in the same transaction as the change itself:

  1. by message id: it records the message_id of every message it handled, and skips a
     message whose id it has seen. This works for any message, also for ones that are not
     idempotent by nature ("add 5 to the stock").
  2. by version number, an optimistic lock: an update carries the version of the record it
     produces, and is written only if it is newer than the stored version --

         UPDATE stock SET ..., version = :v WHERE sku = :sku AND version < :v

     -- a check and a write in one statement, so that two consumers cannot both win. An update
     older than what is stored (stale, out of order) changes nothing.

It acks a message only after the transaction committed; a crash in between means the message
comes again, and step 1 skips it.

    python consumer.py --db stock.sqlite3 --expect 8 --timeout 10
"""
import argparse
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import StopWhen, add_stop_arguments, connect  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--queue", default="stock-updates", help="the queue (default: stock-updates)")
parser.add_argument("--db", default="stock.sqlite3",
                    help="the consumer's state (default: stock.sqlite3)")
add_stop_arguments(parser)
args = parser.parse_args()

db = sqlite3.connect(args.db, timeout=30)
db.executescript("""
    CREATE TABLE IF NOT EXISTS handled_messages (message_id TEXT PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, stock INTEGER NOT NULL,
                                      version INTEGER NOT NULL);
""")


def handle(message_id, update):
    """Applies one update; returns "applied", "duplicate" or "stale"."""
    with db:  # one transaction: committed when the block ends, rolled back on an exception
        # 1. Seen this message before?
        seen = db.execute("INSERT OR IGNORE INTO handled_messages (message_id) VALUES (?)",
                          (message_id,)).rowcount == 0
        if seen:
            return "duplicate"
        # 2. The optimistic lock: write only over an older version (a new sku starts at 0).
        db.execute("INSERT OR IGNORE INTO stock (sku, stock, version) VALUES (?, 0, 0)",
                   (update["sku"],))
        written = db.execute(
            "UPDATE stock SET stock = ?, version = ? WHERE sku = ? AND version < ?",
            (update["stock"], update["version"], update["sku"], update["version"])).rowcount
        return "applied" if written else "stale"


with connect("idempotent/consumer") as connection:
    channel = connection.channel()
    channel.queue_declare(queue=args.queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.basic_qos(prefetch_count=10)
    stop = StopWhen(channel, expect=args.expect, timeout=args.timeout)

    def on_update(ch, method, properties, body):
        update = json.loads(body)
        outcome = handle(properties.message_id, update)
        what = f"{update['sku']} stock={update['stock']} (version {update['version']})"
        if outcome == "applied":
            print(f" [x] Applied {properties.message_id}: {what}")
        elif outcome == "duplicate":
            print(f" [=] Duplicate {properties.message_id} skipped: {what}")
        else:
            (stored,) = db.execute("SELECT version FROM stock WHERE sku = ?",
                                   (update["sku"],)).fetchone()
            print(f" [<] Stale {properties.message_id} rejected: {what}, "
                  f"stored version is {stored}")
        ch.basic_ack(delivery_tag=method.delivery_tag)  # only now: the change is committed
        stop.count()

    channel.basic_consume(queue=args.queue, on_message_callback=on_update)
    print(f" [*] Waiting for updates on {args.queue}. To exit press CTRL+C")
    ok = stop.start_consuming()

for sku, stock, version in db.execute("SELECT sku, stock, version FROM stock ORDER BY sku"):
    print(f" [.] Stock of {sku}: {stock} (version {version})")
sys.exit(0 if ok else 1)
