// kafkajs admin.describeAcls for test_admin_real_clients.py: prints one JSON line with the
// ACLs matching the filter (any resource, pattern, operation, permission; the principal in
// argv[2] if given), flattened to [resourceType, name, patternType, principal, host,
// operation, permissionType] with kafkajs's numeric codes.
const { Kafka, logLevel, AclResourceTypes, ResourcePatternTypes, AclOperationTypes, AclPermissionTypes } = require('kafkajs');

const principal = process.argv[2];
const kafka = new Kafka({ clientId: 'riverbed-acls', brokers: [process.env.BOOTSTRAP], logLevel: logLevel.ERROR });
const admin = kafka.admin();

(async () => {
  await admin.connect();
  const filter = {
    resourceType: AclResourceTypes.ANY,
    resourcePatternType: ResourcePatternTypes.ANY,
    operation: AclOperationTypes.ANY,
    permissionType: AclPermissionTypes.ANY,
  };
  if (principal) filter.principal = principal;
  const res = await admin.describeAcls(filter);
  const rows = [];
  for (const r of res.resources) {
    for (const a of r.acls) {
      rows.push([r.resourceType, r.resourceName, r.resourcePatternType, a.principal, a.host, a.operation, a.permissionType]);
    }
  }
  console.log(JSON.stringify({ rows }));
  await admin.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
