"""Events on the shop's topics and rows in its tables."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from sqlalchemy import DateTime, Integer, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Order(BaseModel):
    """A customer placed an order (input from outside the pipeline)."""

    order_id: str
    sku: str
    quantity: int
    amount_cents: int


class PaymentRequested(BaseModel):
    """Stock is reserved; charge the customer. Carries what shipping needs, so
    the next handler needs no read (a read is one round trip per event)."""

    order_id: str
    amount_cents: int
    sku: str
    quantity: int


class ShipmentRequested(BaseModel):
    """Payment captured; ship the goods."""

    order_id: str
    sku: str
    quantity: int


class CustomerNotified(BaseModel):
    """Tell the customer the payment went through."""

    order_id: str
    message: str


class Base(DeclarativeBase):
    """The shop's tables."""


class Reservation(Base):
    """Stock held for an order."""

    __tablename__ = "shop_reservation"
    order_id: Mapped[str] = mapped_column(String, primary_key=True)
    sku: Mapped[str] = mapped_column(String)
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Payment(Base):
    """A captured payment."""

    __tablename__ = "shop_payment"
    order_id: Mapped[str] = mapped_column(String, primary_key=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Shipment(Base):
    """A shipment on its way."""

    __tablename__ = "shop_shipment"
    order_id: Mapped[str] = mapped_column(String, primary_key=True)
    sku: Mapped[str] = mapped_column(String)
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
