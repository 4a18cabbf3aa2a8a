"""The shop pipeline: orders -> payments -> shipments (+ notifications).

Start a worker with ``faust -A agents.app worker -l info``. Topic names get
the prefix ``SHOP_TOPIC_PREFIX`` (default ``shop.``) and the consumer group
is ``SHOP_APP_ID`` (default ``shop``), so several pipelines can share a broker.
"""

from __future__ import annotations

import os

import streamproc
from agents.models import (
    Base,
    CustomerNotified,
    Order,
    Payment,
    PaymentRequested,
    Reservation,
    Shipment,
    ShipmentRequested,
)

PREFIX = os.environ.get("SHOP_TOPIC_PREFIX", "shop.")
PARTITIONS = int(os.environ.get("SHOP_PARTITIONS", "4"))

app = streamproc.App(
    os.environ.get("SHOP_APP_ID", "shop"),
    tables=Base.metadata,
    topic_partitions=PARTITIONS,
)

orders = app.topic(f"{PREFIX}orders", value_type=Order, partitions=PARTITIONS)
payments = app.topic(f"{PREFIX}payments", value_type=PaymentRequested, partitions=PARTITIONS)
shipments = app.topic(f"{PREFIX}shipments", value_type=ShipmentRequested, partitions=PARTITIONS)
notifications = app.topic(f"{PREFIX}notifications", value_type=CustomerNotified, partitions=PARTITIONS)


@app.processor(orders, dead_letter_topic=True)
async def reserve_stock(ctx: streamproc.Context, order: Order) -> None:
    """Hold stock for the order, then ask for payment."""
    ctx.session.add(Reservation(order_id=order.order_id, sku=order.sku, quantity=order.quantity))
    await ctx.emit(
        payments,
        PaymentRequested(
            order_id=order.order_id, amount_cents=order.amount_cents, sku=order.sku, quantity=order.quantity
        ),
        key=order.order_id,
    )


@app.processor(payments)
async def charge_payment(ctx: streamproc.Context, request: PaymentRequested) -> None:
    """Capture the payment, then ask for shipment and notify the customer."""
    ctx.session.add(Payment(order_id=request.order_id, amount_cents=request.amount_cents))
    await ctx.emit(
        shipments,
        ShipmentRequested(order_id=request.order_id, sku=request.sku, quantity=request.quantity),
        key=request.order_id,
    )
    await ctx.emit(
        notifications,
        CustomerNotified(order_id=request.order_id, message="payment received"),
        key=request.order_id,
    )


@app.processor(shipments)
async def ship_order(ctx: streamproc.Context, request: ShipmentRequested) -> None:
    """Record the shipment: the end of the chain."""
    ctx.session.add(Shipment(order_id=request.order_id, sku=request.sku, quantity=request.quantity))
