"""Write the seed-paper constructions of tests/reference/cases.py as bundled .npz problems.

Run from the repository root: ``python data/make_seeds.py``. Each file holds the model (W1, b1, ...),
the data (X, y) and the metadata certify needs (activation, loss, weight_decay) plus the verdict
derived by hand (``expected``) and where the construction comes from (``source``).
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import exact  # noqa: E402
from tests.helpers import activation_spec  # noqa: E402
from tests.reference.cases import CASES  # noqa: E402

SELECTED = ["gt01_relu", "gt02", "gt04_relu", "gt05", "gt06", "gt07", "gt08", "gt09", "gt10", "gt11", "gt12",
            "gt13", "gt13b_leaky", "gt14", "gt15", "gt16", "gt16b_weight_decay"]


def main():
    out = Path(__file__).resolve().parent / "seeds"
    out.mkdir(exist_ok=True)
    for case in CASES:
        if case.name not in SELECTED:
            continue
        arrays = {}
        for l, (W, b) in enumerate(exact.to_float_arrays(case.layers), start=1):
            arrays[f"W{l}"], arrays[f"b{l}"] = W, b
        np.savez(out / f"{case.name}.npz", **arrays, X=exact.X_to_numpy(case.X),
                 y=exact.y_to_numpy(case.y, case.loss), activation=np.array(activation_spec(case.activation)),
                 loss=np.array(case.loss), weight_decay=np.array(float(case.weight_decay)),
                 expected=np.array(case.verdict), source=np.array(case.source),
                 inconclusive_ok=np.array(bool(case.allow_inconclusive)))
        print("wrote", out / f"{case.name}.npz")


if __name__ == "__main__":
    main()
