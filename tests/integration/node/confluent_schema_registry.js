// @kafkajs/confluent-schema-registry (the registry client kafkajs users have) against
// riverbed's registry: registers an Avro, a JSON Schema and a Protobuf schema, encodes a record
// with each, produces them with kafkajs to a topic that checks schema ids, reads them back
// and decodes them. Subjects follow RecordNameStrategy (the topic checks ids that way).
// Protobuf: see below. Prints a JSON report on stdout for the Python test to check.
const { Kafka, logLevel } = require('kafkajs');
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry');

const [topic] = process.argv.slice(2);
const registry = new SchemaRegistry({ host: process.env.REGISTRY });
const kafka = new Kafka({ clientId: 'riverbed-csr', brokers: [process.env.BOOTSTRAP], logLevel: logLevel.NOTHING });

const avro = { type: 'record', name: 'OrderEvent', namespace: 'shop', fields: [{ name: 'orderId', type: 'string' }, { name: 'amount', type: 'double' }] };
const json = { $schema: 'http://json-schema.org/draft-07/schema#', title: 'Payment', type: 'object', properties: { id: { type: 'string' }, cents: { type: 'integer' } }, required: ['id'] };
const proto = 'syntax = "proto3";\npackage shop;\nmessage Shipment {\n  string id = 1;\n  int32 parcels = 2;\n}\n';

(async () => {
  const report = {};
  const a = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(avro) }, { subject: 'shop.OrderEvent' });
  const j = await registry.register({ type: SchemaType.JSON, schema: JSON.stringify(json) }, { subject: 'Payment' });
  const p = await registry.register({ type: SchemaType.PROTOBUF, schema: proto }, { subject: 'shop.Shipment' });
  report.ids = [a.id, j.id, p.id];
  report.again = (await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(avro) }, { subject: 'shop.OrderEvent' })).id;
  report.latest = await registry.getLatestSchemaId('shop.OrderEvent');
  report.bySchema = await registry.getRegistryIdBySchema('shop.OrderEvent', { type: SchemaType.AVRO, schema: JSON.stringify(avro) });
  const values = [
    await registry.encode(a.id, { orderId: 'A1', amount: 12.5 }),
    await registry.encode(j.id, { id: 'P1', cents: 1250 }),
    await registry.encode(p.id, { id: 'S1', parcels: 2 }),
  ];
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: values.slice(0, 2).map((value, i) => ({ key: `k${i}`, value })) });
  // this client writes Protobuf without Confluent's message indexes (its own wire format), which a
  // topic that checks ids refuses; the record goes to a topic without checks instead
  let protoRefused = '';
  try {
    await producer.send({ topic, acks: -1, messages: [{ key: 'k2', value: values[2] }] });
  } catch (e) {
    protoRefused = e.type || e.name || String(e);
  }
  report.protoRefused = protoRefused;
  await producer.send({ topic: `${topic}-plain`, acks: -1, messages: [{ key: 'k2', value: values[2] }] });
  let refused = '';
  try {
    await producer.send({ topic, acks: -1, messages: [{ key: 'raw', value: Buffer.from('{"orderId":"raw"}') }] });
  } catch (e) {
    refused = e.type || e.name || String(e);
  }
  report.refused = refused;
  await producer.disconnect();
  // a fresh client: decoding fetches every schema by id
  const reader = new SchemaRegistry({ host: process.env.REGISTRY });
  const consumer = kafka.consumer({ groupId: `csr-${topic}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic, `${topic}-plain`], fromBeginning: true });
  report.decoded = await new Promise((resolve, reject) => {
    const out = [];
    consumer.run({
      eachMessage: async ({ message }) => {
        try {
          out.push(await reader.decode(message.value));
          if (out.length === 3) resolve(out);
        } catch (e) { reject(e); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify(report));
})().catch((e) => { console.error(e); process.exit(1); });
