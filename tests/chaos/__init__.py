"""The fault-injection suite: the shop chain under worker kills, database and
broker restarts and rebalances, checked from the database and the topics."""
