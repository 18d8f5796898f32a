// kafkajs over SASL (SASL_SSL when CA is set): produce one record and read the topic's
// offsets. Prints a JSON summary; on an authentication error prints {"error": name}.
// env: BOOTSTRAP, MECHANISM (scram-sha-256 | scram-sha-512 | plain), SASL_USER, SASL_PASSWORD, CA (PEM file)
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const topic = process.argv[2];
const ssl = process.env.CA ? { ca: [fs.readFileSync(process.env.CA, 'utf-8')] } : false;
const kafka = new Kafka({
  clientId: 'riverbed-sasl-test',
  brokers: [process.env.BOOTSTRAP],
  ssl,
  sasl: { mechanism: process.env.MECHANISM, username: process.env.SASL_USER, password: process.env.SASL_PASSWORD },
  logLevel: logLevel.NOTHING,
  retry: { retries: 0 },
  connectionTimeout: 5000,
});

(async () => {
  const admin = kafka.admin();
  try {
    await admin.connect();
  } catch (e) {
    console.log(JSON.stringify({ error: e.name, message: e.message }));
    return;
  }
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: [{ key: 'k', value: 'from-kafkajs' }], acks: -1 });
  await producer.disconnect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  console.log(JSON.stringify({ offsets }));
})().catch((e) => { console.error(e); process.exit(1); });
