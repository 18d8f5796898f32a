// kafkajs transactions: commit one transaction, abort another, and a consume-transform-
// produce step with sendOffsets. Then a read_committed consumer (kafkajs's default) reads the
// topic back. Prints a JSON summary on stdout for the Python test to check.
const { Kafka, logLevel } = require('kafkajs');

const topic = process.argv[2];
const source = process.argv[3];
const kafka = new Kafka({ clientId: 'riverbed-txn', brokers: [process.env.BOOTSTRAP], logLevel: logLevel.ERROR });

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }, { topic: source, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();

  const plain = kafka.producer();
  await plain.connect();
  await plain.send({ topic: source, messages: [{ value: 'in-0' }, { value: 'in-1' }, { value: 'in-2' }] });
  await plain.disconnect();

  const producer = kafka.producer({ transactionalId: `js-${topic}`, maxInFlightRequests: 1, idempotent: true });
  await producer.connect();

  const committed = await producer.transaction();
  await committed.send({ topic, messages: [{ key: 'a', value: 'committed-1' }, { key: 'b', value: 'committed-2' }] });
  await committed.commit();

  const aborted = await producer.transaction();
  await aborted.send({ topic, messages: [{ key: 'a', value: 'aborted-1' }, { key: 'b', value: 'aborted-2' }] });
  await aborted.abort();

  const etl = await producer.transaction();
  await etl.send({ topic, messages: [{ key: 'c', value: 'from-etl' }] });
  await etl.sendOffsets({ consumerGroupId: `js-etl-${topic}`, topics: [{ topic: source, partitions: [{ partition: 0, offset: '3' }] }] });
  await etl.commit();
  await producer.disconnect();

  const admin2 = kafka.admin();
  await admin2.connect();
  const offsets = await admin2.fetchOffsets({ groupId: `js-etl-${topic}`, topics: [source] });
  await admin2.disconnect();

  const consumer = kafka.consumer({ groupId: `js-reader-${topic}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const values = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value.toString());
        if (values.length >= 3) { clearTimeout(timer); setTimeout(resolve, 500); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ values, offsets }));
})().catch((e) => { console.error(e); process.exit(1); });
