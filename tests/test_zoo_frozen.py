"""Zoo graphs are frozen: a profile stores zoo models by name (``zoo:<name>``) and rebuilds them
from the builders, so a refactoring of the zoo modules must leave every existing graph
bit-identical.  The digests below were computed before ``hwnas/zoo.py`` was split into
``zoo_context.py`` / ``zoo_cnn.py`` / ``zoo.py`` (2026-12-01), one or two models per family
(tuning, opened, sealed, transformer).  They depend on the protobuf serialization of this
environment's ``onnx``; a failure after an ``onnx`` upgrade alone means re-deriving them, not a
changed graph."""

from __future__ import annotations

import hashlib

import pytest

from hwnas.zoo_sealed import model_by_name

FROZEN_SHA256 = {
    "resnet10_w0.25_r112": "eb7b571739fb6f20fb672e054261ce10c3f4f0f661524fb1c268e5a803fd07a6",
    "resnet26_w0.5_r224": "74cd88fbc721f10d0cae7c995211b25ae247cd12e9f68687f27ad79a87a13e32",
    "vgg11_w0.125_r112": "da29f016e615914ee115da93b0590bb682c159c580ad1b2f4208acdd796d15ca",
    "mobilenetv2_w0.35_r128": "1b49d6cc556317e49b792417c426d6a1b4e3628f5334dd73c1bf43595d452f1d",
    "shufflenetv2_w0.5_r160": "f8e4fb6b5c1ddd132fe0bb202f8fc6fad5a5bee4e13d8654e73c18971977eb2d",
    "squeezenet1.1_w0.5_r112": "4b1a3ca0d89c8cf66edef9c75ae13ed3eb2b611d49418d9cc8be5e438cb43284",
    "squeezenet1.0_w0.5_r224": "ddc1f8ddf5951f2dbb245a340270b067bba9df02615f144d5a58f22fb8ff4488",
    "efficientnet_w0.5_d0.5_r128": "41d94880bfa1bce5a49ca1d452776d63e6d0dd0d573adae238a63684427462a4",
    "densenet39_k12_r112": "74fee07fe26d03590d0947e4e70e7c950f1c1f75297c0a87a747d042b2c0a134",
    "regnetx_200mf_r128": "a272c28bc443c68df23c3bbb01b8607cd1304674b27a5e6381d7975453a8185b",
    "ghostnet_w0.5_r128": "960b7855416f6ae930cc6ccfafce0d26150cb717138d786642c918cc30ce9bcc",
    "mnasnet_w0.5_r128": "1ac0de78b5e2fa3543e67b125aa73cdecafd3f8d03a7a60db01a30b1fa05e230",
    "convnext_atto_r112": "2e5dfaa58019d8331d2fcf853d8f36791f7fa0b32b51d6ee40a72e1ae44a1e56",
    "vit_192x4_h3_p16_r112": "6dc3118faa166b267453f280f395a8acdf075d9729db107978a09e79f9179270",
    "bert_128x2_h2_t64": "742b7da8189ece30513e1ccd38357678052d79f5b9ff56aa6c66d1da1f05698f",
    "hybrid_128x2_h2_s16_r128": "7eb54ad48760bfec744be9e0c25f150dea6f68bac7297bf0c44305da6d3d2fb5",
}


@pytest.mark.parametrize("name", sorted(FROZEN_SHA256))
def test_existing_zoo_graphs_unchanged(name: str) -> None:
    digest = hashlib.sha256(model_by_name(name).build().SerializeToString()).hexdigest()
    assert digest == FROZEN_SHA256[name], f"{name}: its graph changed; a stored profile's zoo:{name} no longer matches"
