"""Device profiles: a real (tiny) profile, durability under kill -9 and Ctrl-C, resume rules."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings

import pytest

from hwnas.devices import load_device
from hwnas.errors import DeviceMismatchError, ProfileError
from hwnas.measure import MeasureConfig
from hwnas.profile import DeviceMismatchWarning, Profile, build_profile, lut_specs
from hwnas.profile.store import ProfileStore

from conftest import TINY_PLAN, TINY_SPACE

CLI_TINY = ["--resolutions", "128", "--width-mults", "1.0", "--n-archs", "5", "--n-kernels", "8", "--n-token-kernels", "2",
            "--n-lrn-kernels", "1", "--n-patch-kernels", "1", "--n-fc-kernels", "0", "--n-attention-kernels", "0",
            "--n-fused-act-kernels", "0", "--n-kernel-profiles", "1", "--zoo-per-family", "0", "--short-timing"]
N_BLOCKS = len(lut_specs(TINY_SPACE))


def test_lut_covers_every_block_of_the_space():
    keys = {s.key for s in lut_specs(TINY_SPACE)}
    from hwnas.layers import plan

    for a in TINY_SPACE.sample_many(50, seed=0):
        p = plan(a)
        for s in (p.stem, *p.all_blocks(), p.head):
            assert s.key in keys
    # 5 stages x (first, later) x 9 (kernel, expand) + stem + fixed first block + head
    assert N_BLOCKS == 5 * 2 * 9 + 3


def test_tiny_profile_complete(tiny_profile):
    d, reports = tiny_profile
    assert [r.part for r in reports] == ["block", "kernel", "kernel_profile", "zoo", "arch"]
    p = Profile.load(d)
    assert p.status == "complete"
    counts = p.measurements.groupby("kind").size().to_dict()
    # 24 CNN-shaped + 6 transformer-shaped + 2 LRN + 2 patch + 2 fused-activation kernels; 10 CNN + 1 opened + 3
    # transformer tuning + 5 sealed families
    assert counts == {"block": N_BLOCKS, "kernel": 24 + 6 + 2 + 2 + 2, "zoo": 10 + 1 + 3 + 5, "arch": 36}
    # kernel profiles: 3 full architectures, every campaign kernel, every zoo model
    assert len(p.kernel_profiles) == 3 + 36 + 19 and len(p.kernel_records) > 100
    assert set(p.table("zoo")["target"].map(lambda t: t["family"])) == {
        "resnet", "vgg", "mobilenetv2", "shufflenet", "squeezenet", "efficientnet", "densenet", "inception",
        "resnext", "repvgg", "convnext", "vit", "bert", "hybrid", "regnetx", "ghostnet", "mnasnet", "xception",
        "squeezenext"}
    assert p.device.name == "cpu-1t" and p.space == TINY_SPACE
    assert p.meta["fingerprint"]["cpu_model"]
    arch = p.table("arch")
    assert (arch["corrected_ms"] > 0).all() and (arch["macs"] > 0).all()
    assert set(p.noise_summary()) == {"block", "kernel", "zoo", "arch"}
    # the profile file is self-contained after a run (WAL folded back)
    assert not (d / "profile.sqlite-wal").exists() or (d / "profile.sqlite-wal").stat().st_size == 0


def test_existing_profile_needs_resume(tiny_profile):
    d, _ = tiny_profile
    with pytest.raises(ProfileError, match="--resume"):
        build_profile(load_device("cpu-1t"), d, TINY_PLAN, space=TINY_SPACE)


def test_resume_complete_profile_adds_nothing(tiny_profile):
    d, _ = tiny_profile
    before = ProfileStore(d, readonly=True).row_counts()
    reports = build_profile(load_device("cpu-1t"), d, TINY_PLAN, space=TINY_SPACE, resume=True,
                            config=MeasureConfig.quick())
    assert sum(r.done_now for r in reports) == 0
    assert ProfileStore(d, readonly=True).row_counts() == before


def test_resume_on_other_device_or_machine_fails(tiny_profile, tmp_path):
    d, _ = tiny_profile
    with pytest.raises(DeviceMismatchError, match="cpu-2t"):
        build_profile(load_device("cpu-2t"), d, TINY_PLAN, space=TINY_SPACE, resume=True)
    # a copy whose fingerprint says another CPU: warning on read, error on resume
    import shutil

    other = tmp_path / "other"
    shutil.copytree(d, other)
    st = ProfileStore(other)
    fp = st.get_meta("fingerprint")
    st.set_meta("fingerprint", dict(fp, cpu_model="Imaginary CPU 9000"))
    st.close(compact=True)
    with pytest.warns(DeviceMismatchWarning, match="Imaginary CPU 9000"):
        Profile.load(other)
    with pytest.raises(DeviceMismatchError, match="another machine"):
        build_profile(load_device("cpu-1t"), other, TINY_PLAN, space=TINY_SPACE, resume=True)


def test_resume_profile_saved_before_allow_spinning_existed(tmp_path):
    """A profile whose saved device spec predates the optional allow_spinning key (the bundled
    cpu-1t) resumes with the same settings today, and still refuses other settings."""
    from hwnas.profile.campaign import check_resume, write_new_meta

    st = ProfileStore(tmp_path / "old", create=True)
    dev = load_device("cpu-1t")
    write_new_meta(st, dev, TINY_SPACE, TINY_PLAN)
    old = dev.to_dict()
    del old["allow_spinning"]
    st.set_meta("device", old)
    check_resume(st, dev, TINY_SPACE, TINY_PLAN)
    with pytest.raises(DeviceMismatchError, match="cpu-2t"):
        check_resume(st, load_device("cpu-2t"), TINY_SPACE, TINY_PLAN)
    st.set_meta("device", dict(old, allow_spinning=False))
    with pytest.raises(DeviceMismatchError):
        check_resume(st, dev, TINY_SPACE, TINY_PLAN)
    st.close()


def test_replace_measurement_swaps_row_and_kernel_profile(tmp_path):
    """A second, quieter measurement of a zoo model replaces the first: one row per key after it,
    the new figures, the new kernel records only; a key never measured is a KeyError, nothing
    written."""
    from hwnas.measure import KernelProfile, KernelRecord, LatencyStats, Measurement

    def meas(ms):
        return Measurement("zoo:m", LatencyStats.of([ms, ms * 1.01, ms * 0.99]), 5.0, ms / 5.0, (ms / 5.0,), 0.01, 0.0,
                           0.1)

    def kprof(ms, n):
        recs = tuple(KernelRecord(f"n{i}", "Conv", "", ((1, 3, 8, 8),), ((1, 4, 8, 8),), {}, ms / n, i) for i in range(n))
        return KernelProfile(recs, ms, ms, 5, 5.0)

    st = ProfileStore(tmp_path / "p", create=True)
    st.add_measurement("zoo", "zoo:m", {"name": "m"}, meas(10.0), 100, 10, kernel_profile=kprof(10.0, 3))
    st.add_measurement("zoo", "zoo:other", {"name": "other"}, meas(4.0), 50, 5, kernel_profile=kprof(4.0, 2))
    st.replace_measurement("zoo", "zoo:m", {"name": "m"}, meas(8.0), 100, 10, kernel_profile=kprof(8.0, 4))
    df = st.measurements("zoo").set_index("key")
    assert len(df) == 2 and df.loc["zoo:m", "latency_ms"] == pytest.approx(8.0)
    assert df.loc["zoo:other", "latency_ms"] == pytest.approx(4.0)
    kr = st.kernel_records()
    assert (kr["arch"] == "zoo:m").sum() == 4 and (kr["arch"] == "zoo:other").sum() == 2
    kp = st.kernel_profiles().set_index("arch")
    assert len(kp) == 2 and kp.loc["zoo:m", "e2e_ms"] == pytest.approx(8.0)
    with pytest.raises(KeyError, match="zoo:none"):
        st.replace_measurement("zoo", "zoo:none", {}, meas(1.0))
    assert len(st.measurements("zoo")) == 2
    st.close()


def test_profile_errors(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ProfileError, match="is a file"):
        build_profile(load_device("cpu-1t"), f, TINY_PLAN, space=TINY_SPACE)
    with pytest.raises(ProfileError, match="nothing to resume"):
        build_profile(load_device("cpu-1t"), tmp_path / "new", TINY_PLAN, space=TINY_SPACE, resume=True)
    with pytest.raises(ProfileError, match="no device profile"):
        Profile.load(tmp_path / "missing")
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "profile.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(ProfileError, match="corrupt"):
        Profile.load(bad)


def _rows(db):
    # a plain reader (not ``mode=ro``): a read-only connection to a WAL database can fail until the
    # writer checkpoints at close, and the test then saw its first rows only once the profile had
    # finished (its Ctrl-C arrived too late)
    con = sqlite3.connect(str(db), timeout=5)
    try:
        return {(k, key): lat for k, key, lat in con.execute("SELECT kind, key, latency_ms FROM measurements")}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(out):
    return subprocess.Popen([sys.executable, "-m", "hwnas.cli", "profile", "--device", "cpu-1t", "--out", str(out),
                             *CLI_TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_rows(db, n, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if db.exists() and len(_rows(db)) >= n:
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    raise AssertionError("profile made no progress")


@pytest.mark.slow
def test_ctrl_c_and_kill_9_then_resume(tmp_path):
    out = tmp_path / "p"
    db = out / "profile.sqlite"
    # full timing (not --short-timing): the signals get a wide margin
    cli = [a for a in CLI_TINY if a != "--short-timing"]
    # Ctrl-C: clean message, exit 130.  The child gets SIGINT's default back: a test run started in the background
    # of a non-interactive shell (`.ci/run &`) inherits SIGINT ignored, and a Python started so keeps ignoring it
    p = subprocess.Popen([sys.executable, "-m", "hwnas.cli", "profile", "--device", "cpu-1t", "--out", str(out), *cli],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)
    _wait_rows(db, 10, p)
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    # kill -9 in the middle of the resumed run
    first = _rows(db)
    p = subprocess.Popen([sys.executable, "-m", "hwnas.cli", "profile", "--device", "cpu-1t", "--out", str(out),
                          *cli, "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_rows(db, len(first) + 10, p)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    second = _rows(db)
    assert all(second[k] == v for k, v in first.items())  # nothing lost or rewritten
    # resume to completion
    r = subprocess.run([sys.executable, "-m", "hwnas.cli", "profile", "--device", "cpu-1t", "--out", str(out),
                        *CLI_TINY, "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    final = _rows(db)
    assert all(final[k] == v for k, v in second.items())
    con = sqlite3.connect(db)
    kinds = dict(con.execute("SELECT kind, count(*) FROM measurements GROUP BY kind").fetchall())
    n_prof = con.execute("SELECT count(*) FROM kernel_profiles").fetchone()[0]
    dup = con.execute("SELECT count(*) FROM (SELECT arch, node_name, count(*) c FROM kernel_records "
                      "GROUP BY arch, node_name HAVING c > 1)").fetchone()[0]
    con.close()
    assert kinds == {"block": N_BLOCKS, "kernel": 8 + 2 + 1 + 1, "arch": 5}
    assert n_prof == 1 + 8 + 2 + 1 + 1 and dup == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Profile.load(out).status == "complete"


def test_profile_archs_are_frozen_across_versions():
    """Profiles of different devices, made by different hwnas versions with the same seed, share
    architectures: the bundled cpu-1t profile's 400 are reproduced exactly, and cpu-2t's are its first 300."""
    from hwnas.paths import profiles_dir
    from hwnas.profile import Profile
    from hwnas.profile.campaign import profile_archs

    ref = Profile.load(profiles_dir() / "cpu-1t", check_machine=False)
    keys = list(ref.table("arch")["key"])
    assert [str(a) for a in profile_archs(ref.space, len(keys), ref.meta["plan"]["seed"])] == keys
    two = Profile.load(profiles_dir() / "cpu-2t", check_machine=False)
    assert set(two.table("arch")["key"]) <= set(keys)


def test_zoo_part_takes_families_round_robin_and_default_shares_sum_to_one():
    """A zoo part its time budget stops must still hold every family (the transformers and sealed
    families came last, whole, before): the first task of every family comes before any family's
    second."""
    from hwnas.profile.campaign import ProfilePlan, round_robin_by_family, zoo_tasks
    from hwnas.zoo import zoo_models
    from hwnas.zoo_sealed import opened_models, sealed_models
    from hwnas.zoo_transformers import transformer_models

    tasks = zoo_tasks(2)
    families = [t.target["family"] for t in tasks]
    n = len(set(families))
    assert n >= 19 and len(set(families[:n])) == n
    # the same models as family by family (a profile made before resumes unchanged)
    every = [*zoo_models(2), *opened_models(2), *transformer_models(2), *sealed_models(2)]
    assert sorted(t.key for t in tasks) == sorted(f"zoo:{m.name}" for m in every)
    for fam in set(families):  # within a family, smallest first as before
        macs = [t.macs for t in tasks if t.target["family"] == fam]
        assert macs == sorted(macs)
    fake = [type("M", (), {"family": f, "i": i})() for f, k in (("a", 3), ("b", 1), ("c", 2)) for i in range(k)]
    assert [(m.family, m.i) for m in round_robin_by_family(fake)] == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("c", 1),
                                                                     ("a", 2)]
    assert sum(ProfilePlan().shares.values()) == pytest.approx(1.0)


def test_size_fields_name_every_count_of_the_plan():
    """The CLI's refusals (few-shot, --space vit), the plan's own check and archs_only read one list."""
    import dataclasses

    from hwnas.profile.campaign import SIZE_FIELDS, ProfilePlan

    counts = {f.name for f in dataclasses.fields(ProfilePlan) if f.name.startswith("n_") or f.name == "zoo_per_family"}
    assert set(SIZE_FIELDS) == counts and len(SIZE_FIELDS) == len(counts)
    plan = ProfilePlan.archs_only(7, 3)
    assert (plan.n_archs, plan.seed) == (7, 3) and all(getattr(plan, f) == 0 for f in SIZE_FIELDS if f != "n_archs")
