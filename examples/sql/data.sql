-- Records for examples/sql/lecture.sql (ROWTIME sets each record's event time, in ms).
INSERT INTO users (id, name, status) VALUES ('u1', 'Ada', 'VIP');
INSERT INTO users (id, name, status) VALUES ('u2', 'Bob', 'regular');
INSERT INTO users (id, name, status) VALUES ('u3', 'Cy', 'VIP');
INSERT INTO customers (id, name, country) VALUES ('c1', 'Ada', 'NO');
INSERT INTO customers (id, name, country) VALUES ('c2', 'Bob', 'IT');
INSERT INTO order_status (order_id, customer_id, status) VALUES ('o1', 'c1', 'open');
INSERT INTO order_status (order_id, customer_id, status) VALUES ('o2', 'c2', 'open');
INSERT INTO order_status (order_id, customer_id, status) VALUES ('o4', 'c9', 'open');
INSERT INTO order_status (order_id, customer_id, status) VALUES ('o1', 'c1', 'shipped');
INSERT INTO orders (ROWTIME, order_id, customer_id, shop, amount) VALUES (1700000000000, 'o1', 'c1', 'north', 10.0);
INSERT INTO orders (ROWTIME, order_id, customer_id, shop, amount) VALUES (1700000030000, 'o2', 'c2', 'north', 5.5);
INSERT INTO orders (ROWTIME, order_id, customer_id, shop, amount) VALUES (1700000045000, 'o3', 'c1', 'south', 7.0);
INSERT INTO orders (ROWTIME, order_id, customer_id, shop, amount) VALUES (1700000065000, 'o4', 'c9', 'north', 2.5);
