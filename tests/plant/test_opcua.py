"""``inspector opcua`` as a subprocess, read by an asyncua client as SCADA would: browse the box,
subscribe to counters and the line stop, see the calibration in force change with its file,
connect with Basic256Sha256 (SignAndEncrypt) and a user login, and be refused a write."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from conftest import free_port, wait_until
from inspector.judge.profile import new_profile, save_profile
from certs import make_cert
from plant_helpers import box_config, daemon, procs  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def write_profile(path, threshold: float) -> None:
    engine = {"sha256": "ab" * 32, "backend": "onnxruntime", "precision": "fp32", "image_size": [64, 64]}
    save_profile(path, new_profile(engine, {"image": threshold, "pixel": None, "min_defect_area": None}, camera="cam0",
                                       target_frr=0.01))


class Changes:
    """asyncua subscription handler: every (node id, value) notified, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def datachange_notification(self, node, value, data) -> None:
        self.seen.append((node.nodeid.to_string(), value))

    def values(self, node) -> list:
        return [v for n, v in self.seen if n == node.nodeid.to_string()]


async def wait_for(predicate, timeout: float, what: str):
    end = asyncio.get_running_loop().time() + timeout
    while not (value := await predicate()):
        assert asyncio.get_running_loop().time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


async def scada_session(url: str, daemon, profile) -> None:
    from asyncua import Client, ua

    async with Client(url, timeout=10) as client:          # anonymous, no security: a config choice
        index = await client.get_namespace_index("urn:inspector")
        box = await client.nodes.objects.get_child(f"{index}:box-a")
        names = {(await n.read_browse_name()).Name for n in await box.get_children()}
        assert {"LineStop", "DaemonAlive", "DaemonReady", "MalformedMessages", "Cameras"} <= names
        cam0 = await box.get_child([f"{index}:Cameras", f"{index}:cam0"])
        ok, reject, decision = [await cam0.get_child(f"{index}:{name}") for name in ("Ok", "Reject", "LastDecision")]
        line_stop = await box.get_child(f"{index}:LineStop")
        threshold = await cam0.get_child([f"{index}:Calibration", f"{index}:Threshold"])

        changes = Changes()
        subscription = await client.create_subscription(50, changes)
        await subscription.subscribe_data_change([ok, reject, line_stop, threshold])
        daemon.alive.set()
        await wait_for(lambda: _false(line_stop), 15, "LineStop false while the daemon beats")
        assert await threshold.read_value() == pytest.approx(0.42)

        daemon.judge("cam0", range(5), "OK")
        daemon.judge("cam0", range(5, 8), "REJECT")
        await wait_for(lambda: _equals(reject, 3), 10, "3 rejects")
        assert await ok.read_value() == 5 and await decision.read_value() == "REJECT"
        await wait_for(lambda: _async(5 in changes.values(ok) and 3 in changes.values(reject)), 5, "notifications")
        assert changes.values(ok) == sorted(changes.values(ok))        # counters only go up

        write_profile(profile, 0.55)                                    # a new calibration goes in force
        await wait_for(lambda: _async(0.55 in [round(v, 2) for v in changes.values(threshold)]), 10, "new threshold")

        daemon.alive.clear()                                            # heartbeat lost: line stop
        await wait_for(lambda: _async(True in changes.values(line_stop)), 10, "LineStop notified")
        with pytest.raises(ua.UaStatusCodeError):                       # read-only for everyone
            await ok.write_value(ua.Variant(0, ua.VariantType.UInt64))


async def _false(node) -> bool:
    return (await node.read_value()) is False


async def _equals(node, value) -> bool:
    return (await node.read_value()) == value


async def _async(value):
    return value


async def secure_session(url: str, client_files, server_cert, password: str) -> float:
    from asyncua import Client, ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    client = Client(url, timeout=10)
    client.application_uri = "urn:inspector:test-client"
    await client.set_security(SecurityPolicyBasic256Sha256, str(client_files[0]), str(client_files[1]),
                              server_certificate=str(server_cert), mode=ua.MessageSecurityMode.SignAndEncrypt)
    client.set_user("scada")
    client.set_password(password)
    async with client:
        index = await client.get_namespace_index("urn:inspector")
        node = await client.nodes.objects.get_child([f"{index}:box-a", f"{index}:Cameras", f"{index}:cam0", f"{index}:Ok"])
        return await node.read_value()


def test_opcua_nodes_subscriptions_calibration_and_basic256sha256(tmp_path, daemon, procs):
    certs = tmp_path / "certs"
    server_cert, server_key, _, _ = make_cert(certs, "server", uri="urn:freeopcua:python:server")
    client_files = make_cert(certs, "client", uri="urn:inspector:test-client", server=False)[:2]
    (tmp_path / "users").write_text(f"scada:{hashlib.sha256(b's3cret').hexdigest()}\n")
    profile = tmp_path / "cam0.json"
    write_profile(profile, 0.42)
    port = free_port()
    url = f"opc.tcp://127.0.0.1:{port}/inspector/"
    section = {"kind": "opcua", "endpoint": url, "security": ["none", "sign_encrypt"], "certificate": str(server_cert),
               "private_key": str(server_key), "anonymous": True, "users_file": str(tmp_path / "users"),
               "heartbeat_timeout_s": 0.5}
    config = box_config(tmp_path, daemon.endpoint, {"scada": section}, camera_keys={"cam0": {"calibration": str(profile)}})
    server = procs.start("opcua", "opcua", "--config", str(config), "--gateway", "scada")
    wait_until(lambda: "opcua: box 'box-a'" in server.output(), 90, "the OPC UA server up")
    asyncio.run(scada_session(url, daemon, profile))
    assert asyncio.run(secure_session(url, client_files, server_cert, "s3cret")) == 5
    with pytest.raises(Exception):                                          # a wrong password is refused
        asyncio.run(secure_session(url, client_files, server_cert, "wrong"))
    assert server.alive()                                                   # nothing above crashed it
