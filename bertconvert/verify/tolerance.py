"""Default tolerances of a parity check, from the precision of the weights and of the run.

A stage passes when every element satisfies ``|torch - reference| <= atol_stage + rtol *
|reference|`` with ``atol_stage = atol + scale * max|reference stage|``: the ``scale`` term
is the rounding error that reduced precision adds, which is proportional to the size of
what is computed (a relative error of a few units of ``eps(dtype)``, measured against the
stage's largest value), so one formula fits embeddings of size ~4 and logits of size ~10.

Where the error comes from, and what each default is:

* **float32 run, float32 weights** -- float32 round-off only: ``atol = rtol = 1e-4``, no
  scale term (see :mod:`bertconvert.verify` for the measurements behind 1e-4).
* **float16 or bfloat16 weights** (``convert --dtype``), float32 run -- the TensorFlow
  reference reads the checkpoint's weights rounded to the stored dtype exactly as the
  converter rounds them (the weights stage proves the model directory holds exactly those),
  so both sides compute with identical numbers and the float32 defaults apply unchanged.
  Rounding the reference's weights is what keeps a corrupted half-precision model
  detectable: compared with the unrounded float32 computation, float16 weights alone move
  a tiny model's stages by ~1 ``eps(float16) * max|stage|`` (2.8e-3 at a layer's attention
  output), more than a 0.05-sigma noise added to that layer's attention-output kernel moves
  it (1.2e-3); against the rounded reference that noise is 12x the 1e-4 tolerance.
* **float16/bfloat16 run** (``--dtype``) -- activations are rounded at every operation:
  ``scale = K_COMPUTE * eps(dtype)``. K_COMPUTE = 16: the largest error measured on
  faithful conversions is 2.3 eps * max|stage| on the fixtures (float16 and bfloat16, on
  CPU); on a random BERT-base the largest errors recorded before this rule (float16 3.2e-2,
  bfloat16 0.24 max abs) are about 6.5 eps * max|stage| if its stages reach ~5 (an
  estimate: their magnitudes were not recorded), so 16 leaves a margin of ~2.5 while a
  wrong or transposed weight, an O(1) relative error, stays far outside (16 eps is 1.6% of
  the stage's largest value in float16, 12.5% in bfloat16).
* **A golden file recorded over other weights** (e.g. float32 weights, verifying a
  float16 model) -- the reference cannot be re-rounded, so the weights' rounding is
  tolerated: ``scale += K_WEIGHTS * eps(coarser dtype)``. K_WEIGHTS = 8: float16/bfloat16
  weights under a float32 computation move the fixtures' stages by at most 1.1 eps *
  max|stage|; 8 allows the growth of that error through a 12- or 24-layer residual stream.
* **float64 run** -- both sides in double precision: ``atol = 1e-10``, ``rtol = 1e-9``.

``--atol``/``--rtol`` replace these: a given ``atol`` is used as is (no scale term).
"""
import dataclasses

from ..errors import VerificationError

#: Unit roundoff times two (the spacing of numbers in [1, 2)) of each floating dtype.
EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23,
       "float64": 2.0 ** -52}
#: Reduced precisions: weights stored in them are rounded; runs in them round activations.
REDUCED = ("float16", "bfloat16")
#: (atol, rtol) of the comparison itself: float32 round-off, or float64 for an exact check.
BASE_TOLERANCES = {"float32": (1e-4, 1e-4), "float64": (1e-10, 1e-9)}
#: Multiples of eps(dtype) * max|reference stage| (see the module docstring for why).
K_COMPUTE = 16
K_WEIGHTS = 8
DTYPES = ("float32", "float16", "bfloat16", "float64")


def weight_rounding(stored, compute):
    """The reduced dtypes the PyTorch side's weights pass through, in order: the stored
    dtype (weights of a ``--dtype float16`` conversion), then the run's (a float16 run casts
    every weight). A reference rounding its weights the same way computes with the same
    numbers."""
    return tuple(d for d in (stored, compute) if d in REDUCED)


@dataclasses.dataclass
class Tolerance:
    """How a run compares: ``atol + scale * max|reference stage|`` and ``rtol``, and why."""

    atol: float
    rtol: float
    scale: float = 0.0
    why: str = ""

    def atol_for(self, reference_max):
        """The absolute tolerance of a stage whose largest reference magnitude is given."""
        return self.atol + self.scale * reference_max

    def describe(self):
        """One phrase for the summary: the numbers, then why."""
        atol = f"atol={self.atol:g}" + (f" + {self.scale:.3g}*max|reference stage|"
                                        if self.scale else "")
        return f"{atol} rtol={self.rtol:g}: {self.why}"

    def to_dict(self):
        return dataclasses.asdict(self)


def resolve_tolerance(compute="float32", stored="float32", atol=None, rtol=None,
                      reference_rounding=None):
    """The :class:`Tolerance` of a run computing in ``compute`` on weights stored as
    ``stored``, against a reference whose weights went through ``reference_rounding`` (None:
    the same rounding as the PyTorch side's, as the TensorFlow reference does; a golden file
    says what it recorded). ``atol``/``rtol`` override the defaults."""
    for name, value in (("dtype", compute), ("stored dtype", stored)):
        if value not in DTYPES:
            raise VerificationError(f"{name} must be one of {', '.join(DTYPES)}, got {value!r}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not float(value) >= 0:
            raise VerificationError(f"tolerances must be >= 0, got {name}={value}")
    base_atol, base_rtol = BASE_TOLERANCES["float64" if compute == "float64" else "float32"]
    rounding = weight_rounding(stored, compute)
    reference_rounding = rounding if reference_rounding is None else tuple(reference_rounding)
    scale, reasons = 0.0, []
    if compute in REDUCED:
        scale += K_COMPUTE * EPS[compute]
        reasons.append(f"{compute} run: {K_COMPUTE}*eps({compute}) for its rounding of "
                       "every activation")
    differ = set(rounding) ^ set(reference_rounding)
    if differ or rounding != reference_rounding:
        coarse = max(differ or set(rounding) | set(reference_rounding), key=EPS.get)
        scale += K_WEIGHTS * EPS[coarse]
        was = "/".join(reference_rounding) or "float32"
        reasons.append(f"{stored} model against a reference recorded over {was} weights: "
                       f"{K_WEIGHTS}*eps({coarse}) for the weights' {coarse} rounding")
    if stored in REDUCED and not differ:
        reasons.append(f"{stored} model: the reference computes with the same "
                       f"{stored}-rounded weights" + ("" if compute in REDUCED else
                                                      ", leaving float32 round-off"))
    if not reasons:
        reasons.append(f"{compute} defaults ({compute} round-off)")
    why = "; ".join(reasons)
    if atol is not None or rtol is not None:
        given = " and ".join(n for n, v in (("atol", atol), ("rtol", rtol)) if v is not None)
        why = f"{given} as given" + ("" if atol is not None and rtol is not None
                                     else f", otherwise {why}")
    if atol is not None:
        base_atol, scale = float(atol), 0.0
    if rtol is not None:
        base_rtol = float(rtol)
    return Tolerance(base_atol, base_rtol, scale, why)
