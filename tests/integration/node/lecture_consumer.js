// The lecture's consumer: group email-service-group, fromBeginning, eachMessage.
// Exits after the first message (printing it) so the test can check what arrived.
const { Kafka, logLevel } = require('kafkajs');

const kafka = new Kafka({ clientId: 'email-service', brokers: [process.env.BOOTSTRAP], logLevel: logLevel.ERROR });
const consumer = kafka.consumer({ groupId: 'email-service-group' });

const run = async () => {
  await consumer.connect();
  await consumer.subscribe({ topic: 'ecommerce-orders', fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      console.log(JSON.stringify({ topic, partition, key: message.key.toString(), value: message.value.toString() }));
      setImmediate(async () => { await consumer.disconnect(); process.exit(0); });
    },
  });
};

setTimeout(() => { console.error('timed out'); process.exit(2); }, 30000);
run().catch((e) => { console.error(e); process.exit(1); });
