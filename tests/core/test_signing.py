"""Ed25519 signatures on artifacts (inspector.core.signing) and on the two artifact types that carry
them: calibration profiles (judge.profile) and engine manifests (engine.manifest)."""

from __future__ import annotations

import json

import pytest

from inspector.core.signing import SignatureError, SigningKey, TrustedKeys, canonical, make_site_key
from inspector.judge.profile import ProfileError, load_profile, new_profile, save_profile

pytestmark = pytest.mark.unit


@pytest.fixture
def site(tmp_path):
    private, public = make_site_key(tmp_path / "site", "site")
    other_private, other_public = make_site_key(tmp_path / "other", "other")
    return {"key": SigningKey.load(private), "trusted": TrustedKeys.load(public), "public": public,
            "other": SigningKey.load(other_private), "other_public": other_public}


def profile(threshold: float = 0.5) -> dict:
    engine = {"sha256": "a" * 64, "backend": "onnxruntime", "precision": "fp32", "image_size": [64, 64]}
    return new_profile(engine, {"image": threshold, "pixel": None, "min_defect_area": None})


def test_keys_are_made_once_with_a_private_file_only_its_owner_reads(site, tmp_path):
    assert (tmp_path / "site" / "site.signing").stat().st_mode & 0o777 == 0o600
    with pytest.raises(SignatureError, match="exists; not overwriting"):
        make_site_key(tmp_path / "site", "site")
    assert site["key"].key_id in site["trusted"].keys and len(site["key"].key_id) == 16


def test_a_signature_covers_everything_but_itself(site):
    signed = site["key"].sign({"b": 1, "a": [1.5, "x"]})
    assert site["trusted"].verify(signed, "doc") == site["key"].key_id
    assert canonical(signed) == b'{"a":[1.5,"x"],"b":1}'
    for tampered in ({**signed, "b": 2}, {**signed, "c": None}, {k: v for k, v in signed.items() if k != "a"}):
        with pytest.raises(SignatureError, match="altered after it was signed"):
            site["trusted"].verify(tampered, "doc")
    with pytest.raises(SignatureError, match="is not signed"):
        site["trusted"].verify({"b": 1, "a": [1.5, "x"]}, "doc")
    with pytest.raises(SignatureError, match="not a trusted key"):
        site["trusted"].verify(site["other"].sign({"b": 1}), "doc")


def test_trusted_keys_load_from_files_and_folders_and_refuse_junk(site, tmp_path):
    both = TrustedKeys.load([site["public"], site["other_public"].parent])
    assert set(both.keys) == {site["key"].key_id, site["other"].key_id}
    (tmp_path / "empty").mkdir()
    with pytest.raises(SignatureError, match="no trusted public key"):
        TrustedKeys.load(tmp_path / "empty")
    with pytest.raises(SignatureError, match="cannot use the trusted key .*No such file"):
        TrustedKeys.load(tmp_path / "missing.pub")
    junk = tmp_path / "junk.pub"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(SignatureError, match="cannot use the trusted key"):
        TrustedKeys.load(junk)


def test_profiles_edited_by_hand_are_refused_by_a_verifying_loader(site, tmp_path):
    """Issue 9: a threshold raised to 5.0, and another engine's profile with its engine.sha256
    edited to match, were both accepted. Signed profiles: refused, naming why."""
    path = save_profile(tmp_path / "p.json", profile(0.5), signing_key=site["key"])
    loaded = load_profile(path, site["trusted"])
    assert loaded.image_threshold == 0.5 and loaded.key_id == site["key"].key_id and len(loaded.sha256) == 64
    for edit in (lambda d: d["thresholds"].update(image=5.0), lambda d: d["engine"].update(sha256="b" * 64)):
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        with pytest.raises(ProfileError, match="altered after it was signed"):
            load_profile(path, site["trusted"])
        save_profile(path, profile(0.5), signing_key=site["key"])
    save_profile(path, profile(5.0))                                   # unsigned
    with pytest.raises(ProfileError, match="is not signed"):
        load_profile(path, site["trusted"])
    save_profile(path, profile(5.0), signing_key=site["other"])       # signed, but not by the site
    with pytest.raises(ProfileError, match="not a trusted key"):
        load_profile(path, site["trusted"])
