// kafkajs: metadata, create a 3-partition topic, produce keyed records with headers,
// list offsets. Prints a JSON summary on stdout for the Python test to check.
const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

const topic = process.argv[2];
const kafka = new Kafka({ clientId: 'riverbed-test', brokers: [process.env.BOOTSTRAP], logLevel: logLevel.ERROR });

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < 30; i++) {
    messages.push({ key: `key-${i % 5}`, value: `value-${i}`, headers: { idx: `${i}`, src: 'kafkajs' } });
  }
  const res = await producer.send({ topic, messages, acks: -1 });
  const gz = await producer.send({ topic, compression: CompressionTypes.GZIP, messages: [{ key: 'gz', value: 'gzipped' }] });
  await producer.disconnect();
  const offsets = await admin.fetchTopicOffsets(topic);
  const cluster = await admin.describeCluster();
  await admin.disconnect();
  console.log(JSON.stringify({ created, partitions: md.topics[0].partitions.length, produced: res.length + gz.length, offsets, brokers: cluster.brokers.length }));
})().catch((e) => { console.error(e); process.exit(1); });
