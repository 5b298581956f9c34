"""Sparse autoencoders for `fv concepts --method sae|batchtopk` (fvcli/concepts/sae*.py), against planted truth.

Planted data: samples that are sums of 3 of 48 random unit directions with positive weights (plus an offset); a
TopK SAE with k = 3 must find the planted directions among its decoder's rows, its feature statistics must match
what the codes say, a run killed half-way and resumed from its checkpoint must end with the same bytes as one never
stopped, and the command must run end to end on the demo model and write what `fv sweep --directions` reads.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fvcli
from fvcli.concepts.sae_stats import FeatureStats
from fvcli.concepts.sae_train import SAESettings, SAETrainer
from fvcli.errors import FvError
from fvcli.examples import list_images

from conftest import write_demo_images

pytestmark = pytest.mark.usefixtures("one_thread")


def planted(n: int = 60000, k: int = 48, c: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(k, c, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(k, generator=g)[:3] for _ in range(n)])
    z = torch.zeros(n, k).scatter_(1, idx, torch.rand(n, 3, generator=g) * 2 + 0.5)
    return z @ d + 0.3, d, z


def train(x: torch.Tensor, s: SAESettings, epochs: int = 2, chunk: int = 500) -> SAETrainer:
    tr = SAETrainer(s, x.shape[1])
    for _ in range(epochs):
        for i in range(0, x.shape[0], chunk):
            tr.partial_fit(x[i:i + chunk])
    tr.finish()
    return tr


@pytest.mark.parametrize("batchtopk", [False, True])
def test_sae_recovers_the_planted_dictionary(batchtopk):
    x, d, _z = planted(n=40000)
    tr = train(x, SAESettings(features=96, topk=3, batchtopk=batchtopk, batch=256, buffer=4096, lr=1e-2,
                              dead_window=5000))
    w = tr.sae.w_dec.detach()
    assert torch.allclose(w.norm(dim=1), torch.ones(96), atol=1e-5)  # unit decoder rows
    best = (d @ w.T).amax(1)  # each planted atom's best cosine among the features
    assert (best > 0.9).float().mean() >= 0.9, best
    assert tr.curve[-1][2] < 0.15 < tr.curve[0][2]  # normalized MSE fell
    assert tr.curve[-1][3] == pytest.approx(3.0, abs=0.5)  # L0 ~ k


def test_feature_statistics_match_the_codes():
    z = torch.zeros(10, 4)
    z[0, 0], z[3, 0], z[9, 1], z[2, 2] = 2.0, 4.0, 1.0, 5.0  # feature 3 never fires
    st = FeatureStats(4, window=5)
    st.update(z[:6])
    st.update(z[6:])
    assert st.frequency().tolist() == [0.2, 0.1, 0.1, 0.0]
    assert st.mean_when_firing().tolist() == [3.0, 1.0, 5.0, 0.0]
    assert st.last.tolist() == [3, 9, 2, -1]
    assert st.dead().tolist() == [True, False, True, True]  # none of samples 5..9 fired features 0, 2, 3
    assert FeatureStats(4, window=100).dead().tolist() == [True] * 4  # nothing seen yet
    s = st.summary()
    assert s["dead"] == [0, 2, 3] and s["dead_count"] == 3


def test_sae_statistics_on_planted_data_count_the_firings():
    x, _d, _z = planted(n=20000)
    tr = train(x, SAESettings(features=48, topk=3, batch=256, buffer=4096, lr=1e-2, dead_window=5000), epochs=1)
    from fvcli.concepts.sae_stats import SAEMeasure

    m = SAEMeasure(tr.sae)
    m.update(x[:10000])
    m.update(x[10000:])
    r = m.result()
    codes = tr.sae.encode(x).detach()
    assert r["feature_stats"]["frequency"] == pytest.approx((codes > 0).float().mean(0).tolist(), rel=1e-5, abs=1e-6)
    assert r["mean_l0"] == pytest.approx(float((codes > 0).sum(1).float().mean()), rel=1e-6)
    assert sum(r["feature_stats"]["frequency"]) == pytest.approx(r["mean_l0"], rel=1e-5)
    assert r["fraction_of_variance_explained"] > 0.8


def test_bad_settings_are_refused():
    with pytest.raises(FvError, match="--topk 9"):
        SAESettings(features=8, topk=9).check()
    with pytest.raises(FvError, match="buffer"):
        SAESettings(features=8, topk=2, batch=64, buffer=32).check()


@pytest.fixture(scope="module")
def demo():
    return fvcli.load_model("demo")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_demo_images(tmp_path_factory.mktemp("sae_imgs"), 48, 64, 3, flat=True)


def test_killed_sae_run_resumes_to_the_same_dictionary(demo, folder, tmp_path):
    from fvcli.concepts import run_sae

    imgs = list_images(folder)
    s = SAESettings(features=64, topk=4, batch=128, buffer=1024, epochs=2, lr=3e-3, dead_window=2000, seed=3)
    kw = dict(batch_size=8, workers=0, measure=False)
    whole = run_sae(demo, "block3", imgs, s, **kw)

    class Kill(Exception):
        pass

    seen = []

    def die(n):
        seen.append(n)
        if len(seen) == 9:  # in the second epoch (6 image batches per epoch)
            raise Kill

    ck = tmp_path / "sae.ckpt"
    with pytest.raises(Kill):
        run_sae(demo, "block3", imgs, s, checkpoint=ck, checkpoint_every=0, on_batch=die, **kw)
    assert ck.is_file()
    state = torch.load(ck, weights_only=True)
    assert (state["epoch"], state["next_batch"], state["done"]) == (1, 3, False)
    resumed = run_sae(demo, "block3", imgs, s, checkpoint=ck, checkpoint_every=0, **kw)
    assert torch.equal(resumed.dictionary, whole.dictionary)
    assert resumed.report["curve"] == whole.report["curve"]
    assert resumed.report["sae"]["steps"] == whole.report["sae"]["steps"] > 0
    with pytest.raises(FvError, match="another run .*settings"):  # another run's checkpoint is refused
        run_sae(demo, "block3", imgs, SAESettings(features=32, topk=4, batch=128, buffer=1024), checkpoint=ck, **kw)


def test_fv_concepts_sae_end_to_end(demo, folder, tmp_path, cli):
    out = tmp_path / "sae.npy"
    r = cli("concepts", str(folder), "block3", "--method", "sae", "--k", "256", "--topk", "8", "--model", "demo",
            "-o", str(out), "-j", "0", "-b", "8", "--sae-batch", "256", "--buffer", "2048", "--epochs", "2")
    assert r.exit_code == 0, r.output
    d = np.load(out)
    assert d.shape == (256, 128) and np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    rep = json.loads(out.with_suffix(".json").read_text())
    st = rep["feature_stats"]
    assert rep["method"] == "sae" and len(st["frequency"]) == 256 and rep["samples"] == 48 * 64
    assert rep["mean_l0"] <= 8 and rep["fraction_of_variance_explained"] > 0.5
    assert all((f == 0) == (i in st["dead"]) for i, f in enumerate(st["frequency"]))
    curve = json.loads((tmp_path / "sae.curve.json").read_text())
    assert curve["nmse"][-1] < curve["nmse"][0] and len(curve["step"]) == len(curve["l0"])
    names = (tmp_path / "sae.names.txt").read_text().splitlines()
    assert len(names) == 256 and names[0].startswith("sae 0 (")
    assert "never fired" in r.output
    from fvcli.units.unit import dictionary_units

    units = dictionary_units(demo, "block3", str(out), "0-3")  # what `fv sweep --directions` reads
    assert [u.channel for u in units] == [0, 1, 2, 3]
    from fvcli.units.dictionary_stats import read_dictionary_stats

    side = read_dictionary_stats(out)  # the sidecar the gallery sorts and filters a large layer by
    assert side["firing_frequency"] == st["frequency"] and side["dead"] == [f == 0 for f in st["frequency"]]
    r0 = fvcli.render(demo, f"block3:dir={out}#0-1", steps=4, size=32, device="cpu")  # the stats reach the records
    assert [rec["row_stats"]["frequency"] for rec in r0.records] == pytest.approx(st["frequency"][:2], rel=1e-5)
    bad = cli("concepts", str(folder), "block3", "--method", "pca", "--k", "4", "--model", "demo", "-o",
              str(tmp_path / "p.npy"), "--checkpoint", str(tmp_path / "c.ckpt"))
    assert bad.exit_code == 2 and "--checkpoint is for --method sae or batchtopk" in bad.output


def test_dictionary_reads_an_sae_checkpoints_statistics_with_its_decoder(demo, tmp_path):
    from fvcli.units.dictionary import load_dictionary, open_source
    from fvcli.units.unit import dictionary_units

    g = torch.Generator().manual_seed(0)
    dec = torch.randn(128, 32, generator=g)  # (C, D): a decoder weight, one feature per column
    freq = torch.rand(32, generator=g)
    torch.save({"sae.decoder.weight": dec, "sae.encoder.weight": dec.T.clone(), "sae.feature_frequency": freq,
                "log_feature_sparsity": freq.log10()}, tmp_path / "sae.pt")
    d = load_dictionary(open_source(f"{tmp_path / 'sae.pt'}:sae.decoder.weight"), "block3", 128)
    assert d.rows == 32 and d.row_stats(5) == {"feature_frequency": pytest.approx(float(freq[5])),
                                               "log_feature_sparsity": pytest.approx(float(freq[5].log10()))}
    # fv's own SAE output: the statistics come from OUT.json beside OUT.npy, and reach a unit's record
    np.save(tmp_path / "own.npy", np.eye(4, 128))
    (tmp_path / "own.json").write_text(json.dumps({"feature_stats": {"frequency": [0.5, 0.0, 0.25, 0.1],
                                                                     "mean_when_firing": [1, 0, 2, 3], "dead": [1]}}))
    u = dictionary_units(demo, "block3", str(tmp_path / "own.npy"), "1")[0]
    assert u.row_stats(demo) == {"frequency": 0.0, "mean_when_firing": 0.0, "dead": 1.0}
