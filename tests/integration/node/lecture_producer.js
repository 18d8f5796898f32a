// The lecture's producer, unchanged apart from the broker address (from the environment).
const { Kafka } = require('kafkajs');

const kafka = new Kafka({
  clientId: 'ecommerce-app',
  brokers: [process.env.BOOTSTRAP || 'localhost:9092'],
});

const producer = kafka.producer();

const run = async () => {
  await producer.connect();
  await producer.send({
    topic: 'ecommerce-orders',
    messages: [
      { key: 'user_id_bob', value: JSON.stringify({ orderId: 'A123', item: 'Laptop', price: 1200 }) },
    ],
  });
  console.log('Order event sent successfully!');
  await producer.disconnect();
};

run().catch((e) => { console.error(e); process.exit(1); });
