"""DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51): the users of
SASL/SCRAM, kept in the broker's CredentialStore (``<data dir>/credentials.json``). The
client computes the salted password; the store keeps only the derived keys. Both need the
cluster permission (DESCRIBE / ALTER on ``kafka-cluster``) once an authorizer is on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.alter_user_scram_credentials import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
)
from riverbed.protocol.messages.describe_user_scram_credentials import (
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
)
from riverbed.security.acl import AclOperation, ResourceType
from riverbed.security.credentials import ScramDeletion, ScramUpsertion
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker

CLUSTER = "kafka-cluster"
AR = AlterUserScramCredentialsResponse
DR = DescribeUserScramCredentialsResponse


def handle_describe_user_scram_credentials(
    broker: Broker, conn: ConnectionInfo, version: int, req: DescribeUserScramCredentialsRequest
) -> DescribeUserScramCredentialsResponse:
    if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER):
        return DR(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=None, results=[])
    assert broker.credentials is not None
    users = None if not req.users else [u.name for u in req.users]
    results = [
        DR.DescribeUserScramCredentialsResult(
            user=r.user,
            error_code=r.error_code,
            error_message=r.error_message,
            credential_infos=[DR.CredentialInfo(mechanism=m, iterations=i) for m, i in r.credentials],
        )
        for r in broker.credentials.describe_request(users)
    ]
    return DR(error_code=0, error_message=None, results=results)


def handle_alter_user_scram_credentials(
    broker: Broker, conn: ConnectionInfo, version: int, req: AlterUserScramCredentialsRequest
) -> AlterUserScramCredentialsResponse:
    if not broker.authorize(conn, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER):
        names = dict.fromkeys([d.name for d in req.deletions] + [u.name for u in req.upsertions])
        return AR(
            results=[
                AR.AlterUserScramCredentialsResult(user=n, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=None)
                for n in names
            ]
        )
    assert broker.credentials is not None
    results = broker.credentials.apply_alterations(
        [ScramDeletion(d.name, d.mechanism) for d in req.deletions],
        [ScramUpsertion(u.name, u.mechanism, u.iterations, u.salt, u.salted_password) for u in req.upsertions],
    )
    return AR(
        results=[
            AR.AlterUserScramCredentialsResult(user=r.user, error_code=r.error_code, error_message=r.error_message)
            for r in results
        ]
    )
