-- The lecture's examples in riverbed sql (ksqlDB's language). Run by examples/sql/run.py.
SET 'auto.offset.reset' = 'earliest';

-- 1. "CREATE STREAM VIP_USERS AS SELECT * FROM users WHERE status = 'VIP';"
CREATE STREAM users (id STRING KEY, name STRING, status STRING)
  WITH (kafka_topic = 'users', value_format = 'JSON', partitions = 2);
CREATE STREAM vip_users AS SELECT * FROM users WHERE status = 'VIP' EMIT CHANGES;

-- 2. Revenue per minute: a windowed table, read with pull queries
CREATE STREAM orders (order_id STRING KEY, customer_id STRING, shop STRING, amount DOUBLE)
  WITH (kafka_topic = 'orders', value_format = 'JSON', partitions = 2);
CREATE TABLE revenue_per_minute AS
  SELECT shop, SUM(amount) AS revenue, COUNT(*) AS orders
  FROM orders WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 1 HOUR)
  GROUP BY shop EMIT CHANGES;

-- 3. Orders joined with their customers (a stream-table join)
CREATE TABLE customers (id STRING PRIMARY KEY, name STRING, country STRING)
  WITH (kafka_topic = 'customers', value_format = 'JSON', partitions = 2);
CREATE STREAM orders_enriched AS
  SELECT o.order_id, o.customer_id, c.name AS customer, c.country, o.amount
  FROM orders o LEFT JOIN customers c ON o.customer_id = c.id
  EMIT CHANGES;

-- 4. The orders' statuses (a table: the latest status of each order) joined with their customers
--    by foreign key: the result has one row per order, and a customer's change shows on every
--    order of hers (a table-table join on a column that is not the left table's key)
CREATE TABLE order_status (order_id STRING PRIMARY KEY, customer_id STRING, status STRING)
  WITH (kafka_topic = 'order_status', value_format = 'JSON', partitions = 2);
CREATE TABLE order_status_customers AS
  SELECT s.order_id, s.status, c.name AS customer, c.country
  FROM order_status s JOIN customers c ON s.customer_id = c.id
  EMIT CHANGES;
