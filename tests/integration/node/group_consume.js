// kafkajs group consumer: reads `count` messages of a topic from the beginning, commits,
// prints them as JSON lines (key, value, headers, partition, offset) and exits.
const { Kafka, logLevel } = require('kafkajs');

const [topic, groupId, count] = [process.argv[2], process.argv[3], parseInt(process.argv[4], 10)];
const kafka = new Kafka({ clientId: 'riverbed-test', brokers: [process.env.BOOTSTRAP], logLevel: logLevel.ERROR });
const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
const seen = [];

(async () => {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const headers = {};
      for (const [k, v] of Object.entries(message.headers || {})) headers[k] = v.toString();
      seen.push({ partition, offset: message.offset, key: message.key && message.key.toString(), value: message.value.toString(), headers, timestamp: message.timestamp });
      if (seen.length === count) {
        setImmediate(async () => {
          await consumer.disconnect();
          for (const s of seen) console.log(JSON.stringify(s));
          process.exit(0);
        });
      }
    },
  });
})().catch((e) => { console.error(e); process.exit(1); });
setTimeout(() => { console.error(`timed out with ${seen.length} of ${count}`); process.exit(2); }, 40000);
