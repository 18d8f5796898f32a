// kafkajs against a topic with confluent.value.schema.validation=true: each message given
// as a hex string on the command line is sent alone; prints, per message, the error type
// kafkajs reports ("" when accepted), as JSON on stdout for the Python test to check.
const { Kafka, logLevel } = require('kafkajs');

const topic = process.argv[2];
const payloads = process.argv.slice(3);
const kafka = new Kafka({ clientId: 'riverbed-test', brokers: [process.env.BOOTSTRAP], logLevel: logLevel.NOTHING, retry: { retries: 0 } });

(async () => {
  const producer = kafka.producer({ retry: { retries: 0 } });
  await producer.connect();
  const results = [];
  for (const hex of payloads) {
    try {
      await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: Buffer.from(hex, 'hex') }] });
      results.push('');
    } catch (e) {
      results.push(e.type || e.name || String(e));
    }
  }
  await producer.disconnect();
  console.log(JSON.stringify(results));
})().catch((e) => { console.error(e); process.exit(1); });
