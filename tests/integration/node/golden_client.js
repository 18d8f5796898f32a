// kafkajs side of tests/data/golden/capture.py: produce the known record, then read it back
// in a consumer group and commit, with client id golden-kafkajs.
const { Kafka, logLevel } = require('kafkajs');

const kafka = new Kafka({ clientId: 'golden-kafkajs', brokers: [process.env.BOOTSTRAP], logLevel: logLevel.ERROR });

(async () => {
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic: 'golden', acks: -1, messages: [{ partition: 0, key: 'golden-key', value: 'golden-value', headers: { h: 'golden-header' } }] });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: 'golden-group-kafkajs' });
  await consumer.connect();
  await consumer.subscribe({ topic: 'golden', fromBeginning: true });
  await new Promise((resolve, reject) => {
    consumer.run({ autoCommit: false, eachMessage: async ({ topic, partition, message }) => {
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      resolve();
    } }).catch(reject);
  });
  await consumer.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
