// kafkajs group member for test_multi_member_groups.py (three of them in one group, one is
// killed or closed). usage: node group_member.js TOPIC GROUP CLIENT_ID  (BOOTSTRAP in the env)
// Default assigner (kafkajs's round robin); no auto-commit: every record is committed after it
// was printed. Prints JSON lines: {"assigned": [...], "member": id} on every GROUP_JOIN,
// {"rec": [partition, offset, value]}, {"committed": {partition: next offset}},
// {"commit_failed": "..."}, and {"closed": true} after SIGTERM (disconnect = LeaveGroup).
const { Kafka, logLevel } = require('kafkajs');

const [topic, groupId, clientId] = process.argv.slice(2, 5);
const kafka = new Kafka({ clientId, brokers: [process.env.BOOTSTRAP], logLevel: logLevel.NOTHING });
const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 20000 });
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
  const assigned = (payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
  out({ assigned, member: payload.memberId });
});

process.on('SIGTERM', async () => {
  await consumer.disconnect();
  out({ closed: true });
  process.exit(0);
});

(async () => {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      out({ rec: [partition, Number(message.offset), message.value.toString()] });
      const next = Number(message.offset) + 1;
      try {
        await consumer.commitOffsets([{ topic, partition, offset: String(next) }]);
        out({ committed: { [partition]: next } });
      } catch (e) {
        out({ commit_failed: String(e) });
      }
    },
  });
})().catch((e) => { console.error(e); process.exit(1); });
