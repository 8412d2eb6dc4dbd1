"""A compact, deployable file for a quantized student (ternary, binary or intN weights), and inference on it.

File layout (all little-endian)::

    8 bytes   magic b"TERNQDEP"
    4 bytes   uint32 length M of the manifest
    M bytes   manifest, UTF-8 JSON (format, version, dims, task, packing, counts, sections, sha256;
              ``weight_format`` for every format but ternary)
    payload   the sections listed in the manifest, back to back:
              trits   (ternary) or levels (other formats): packed, W rows (2H, I+H) then W_out rows (O, H),
                      row-major, as one stream
              scales  float32 (2H + O): one per row of W, then of W_out
              b       float32 (2H): gate then candidate biases
              tau     float32 (H)
              b_out   float32 (O)

Level packing, by the section's encoding (its ``dtype``); every encoding pads the last byte with zero bits
(a zero trit for ``trit5``) and a reader refuses other padding:

``trit5`` (ternary)
    digit d = trit + 1 in {0, 1, 2}; five digits per byte, least significant first,
    byte = d0 + 3 d1 + 9 d2 + 27 d3 + 81 d4 (at most 242). A ternary file is byte for
    byte what ternq wrote before other formats existed (no ``weight_format`` key).
``sign8`` (binary)
    one bit per weight, 1 for +1 and 0 for -1, eight per byte, least significant bit first.
``intNxK`` (intN, K = 8 // N per byte)
    each level in a field of 8 // K bits, two's complement, least significant field first:
    int4 (``int4x2``) puts the first weight in the low nibble; int8 (``int8x1``) is one int8
    per byte; int2 (``int2x4``) four 2-bit fields. A code beyond +-qmax (int4's -8) is refused.

The manifest's ``sha256`` is that of the whole payload. A file is written atomically (temporary file, then rename).

Inference (:meth:`Deployable.predict`) runs :func:`ternq.kernels.infer.run` on the levels and row scales,
bit-identical to the training forward of the student it came from (effective weight ``s * float32(q)``).

A model trained on a recorded series works in normalised units; the manifest's
``task`` keeps the training part's per-channel ``mean`` and ``std``, from which
:class:`Units` derives the float32 constants that :meth:`Deployable.predict_units`
and the C library's ``ternq_step_units`` apply, in the same float32 operations.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import files, formats
from .kernels import infer
from .kernels.cell import n_params, tau_decay, unpack
from .model import Model, ModelFileError, atomic_write_bytes
from .train import DT

MAGIC = b"TERNQDEP"
FORMAT = "ternq-deploy"
VERSION = 1
MAX_FILE_BYTES = 64 << 20  # a deployable file of the widest model ternq trains (H = 4096) is about 15 MB
LAYOUT = "W (2H, I+H) then W_out (O, H), row-major"
PACKING = {"scheme": "base3", "trits_per_byte": 5, "digit": "trit+1", "order": "lsd-first", "pad": "trit 0",
           "layout": LAYOUT}
MAX_DIM = 1 << 16  # no dimension of a file may exceed this (refuses crafted sizes before allocating)
_POW3 = np.array([1, 3, 9, 27, 81], np.uint8)


class DeployFileError(ModelFileError):
    """A deployable file that is missing, corrupt, foreign or of another format version."""


def pack_trits(trits: np.ndarray) -> bytes:
    """Pack trits in {-1, 0, 1} five per byte (base 3); see the module docstring."""
    t = np.asarray(trits).ravel()
    if t.size and (t.min() < -1 or t.max() > 1):
        raise ValueError("trits must lie in {-1, 0, 1}")
    n = t.size
    d = np.ones(-(-n // 5) * 5, np.uint8)  # padding digit 1 = trit 0
    d[:n] = (t + 1).astype(np.uint8)
    return (d.reshape(-1, 5) * _POW3).sum(axis=1, dtype=np.uint8).tobytes()


def unpack_trits(data: bytes, n: int) -> np.ndarray:
    """The first ``n`` trits (int8) packed in ``data``; ValueError on a byte > 242, a wrong length or bad padding."""
    b = np.frombuffer(data, np.uint8)
    if b.size != -(-n // 5):
        raise ValueError(f"{b.size} packed bytes cannot hold exactly {n} trits")
    if b.size and b.max() > 242:
        raise ValueError("packed trit byte out of range (> 242)")
    d = (b[:, None] // _POW3) % 3
    flat = d.ravel().astype(np.int8) - 1
    if np.any(flat[n:] != 0):
        raise ValueError("packed trits have non-zero padding")
    return np.ascontiguousarray(flat[:n])


def encoding(fmt: formats.Format) -> str:
    """The name of a format's packing in the file (a section's ``dtype``): trit5, sign8 or intNxK."""
    if fmt.name == "ternary":
        return "trit5"
    if fmt.qmax == formats.BINARY:
        return "sign8"
    return f"{fmt.name}x{fmt.per_byte}"


def packing(fmt: formats.Format) -> dict:
    """The manifest's ``packing`` object for a format (ternary: :data:`PACKING`, as ever)."""
    if fmt.name == "ternary":
        return PACKING
    code = "bit 1 = +1, bit 0 = -1" if fmt.qmax == formats.BINARY else "two's complement"
    return {"scheme": encoding(fmt), "per_byte": fmt.per_byte, "field_bits": 8 // fmt.per_byte, "code": code,
            "order": "least significant field first", "pad": "zero bits", "layout": LAYOUT}


def _field_codes(levels: np.ndarray, fmt: formats.Format) -> np.ndarray:
    """The unsigned field value of each level (binary: 1 for +1, 0 for -1; intN: two's complement)."""
    bits = 8 // fmt.per_byte
    if fmt.qmax == formats.BINARY:
        return (levels > 0).astype(np.uint8)
    return (levels.astype(np.int16) & ((1 << bits) - 1)).astype(np.uint8)


def check_levels(levels: np.ndarray, fmt: formats.Format) -> None:
    """ValueError unless every level is one of the format's (binary: +-1; otherwise -qmax..qmax)."""
    q = np.asarray(levels)
    if not q.size:
        return
    if fmt.qmax == formats.BINARY:
        if not np.all(np.abs(q) == 1):
            raise ValueError("binary levels must be -1 or +1")
    elif q.min() < -fmt.qmax or q.max() > fmt.qmax:
        raise ValueError(f"{fmt.name} levels must lie in -{fmt.qmax}..{fmt.qmax}")


def pack_levels(levels: np.ndarray, fmt: formats.Format) -> bytes:
    """Pack int levels in the format's encoding (see the module docstring); ValueError for a level out of range."""
    q = np.asarray(levels).ravel()
    if fmt.name == "ternary":
        return pack_trits(q)
    check_levels(q, fmt)
    k, bits = fmt.per_byte, 8 // fmt.per_byte
    codes = np.zeros(fmt.packed_bytes(q.size) * k, np.uint16)
    codes[: q.size] = _field_codes(q, fmt)
    shifts = (bits * np.arange(k)).astype(np.uint16)
    return (codes.reshape(-1, k) << shifts).sum(axis=1).astype(np.uint8).tobytes()


def unpack_levels(data: bytes, n: int, fmt: formats.Format) -> np.ndarray:
    """The first ``n`` levels (int8) packed in ``data``; ValueError on a wrong length, a code out of the format's
    range or non-zero padding."""
    if fmt.name == "ternary":
        return unpack_trits(data, n)
    b = np.frombuffer(data, np.uint8)
    if b.size != fmt.packed_bytes(n):
        raise ValueError(f"{b.size} packed bytes cannot hold exactly {n} {fmt.name} levels")
    k, bits = fmt.per_byte, 8 // fmt.per_byte
    codes = ((b[:, None].astype(np.int16) >> (bits * np.arange(k))) & ((1 << bits) - 1)).ravel()
    if np.any(codes[n:] != 0):
        raise ValueError(f"packed {fmt.name} levels have non-zero padding")
    codes = codes[:n]
    if fmt.qmax == formats.BINARY:
        return np.ascontiguousarray(2 * codes - 1, np.int8)
    q = np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes)
    if q.size and (q.min() < -fmt.qmax or q.max() > fmt.qmax):
        raise ValueError(f"packed {fmt.name} level out of range (beyond +-{fmt.qmax})")
    return np.ascontiguousarray(q, np.int8)


@dataclass(frozen=True)
class Units:
    """The per-channel normalisation of a model trained on a recorded series, as float32 constants.

    Into the model: ``x_n = (x - mean_in) * inv_sd_in``; out of it: ``y = y_n * sd_out + mean_out``; each a
    float32 subtraction or multiplication then a separate float32 multiplication or addition (no fused
    multiply-add), so Python and C round identically. ``inv_sd_in`` is ``1 / std`` in float64, rounded once.
    """

    mean_in: np.ndarray  # float32 (I,)
    inv_sd_in: np.ndarray  # float32 (I,)
    mean_out: np.ndarray  # float32 (O,)
    sd_out: np.ndarray  # float32 (O,)

    @classmethod
    def of_task(cls, task: dict, n_in: int, n_out: int) -> Units | None:
        """The constants from a task description's ``mean`` and ``std`` (a series' channels are both the inputs
        and the outputs); None for a task without them. ValueError (one line) when they are malformed."""
        if "mean" not in task and "std" not in task:
            return None
        mean, std = task.get("mean"), task.get("std")
        for key, v in (("mean", mean), ("std", std)):
            if not (isinstance(v, list) and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in v)):
                raise ValueError(f"task.{key} must be a list of numbers")
        if not len(mean) == len(std) == n_in == n_out:
            raise ValueError(f"task.mean and task.std must have {n_in} values (one per channel)")
        mean64, std64 = np.array(mean, np.float64), np.array(std, np.float64)
        with np.errstate(over="ignore", divide="ignore"):
            m, sd, inv = mean64.astype(np.float32), std64.astype(np.float32), (1.0 / std64).astype(np.float32)
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(sd)) and np.all(np.isfinite(inv)) and np.all(sd > 0)
                and np.all(inv > 0)):
            raise ValueError("task.mean and task.std must be finite in float32, std > 0")
        return cls(m, inv, m.copy(), sd)

    def to_normalised(self, x: np.ndarray) -> np.ndarray:
        """Values in the series' units (..., I) as the model's normalised float32 inputs."""
        return (np.asarray(x, np.float32) - self.mean_in) * self.inv_sd_in

    def to_units(self, y: np.ndarray) -> np.ndarray:
        """The model's normalised float32 outputs (..., O) in the series' units."""
        return np.asarray(y, np.float32) * self.sd_out + self.mean_out


@dataclass
class Deployable:
    """A deployed quantized CfC: integer levels (int8; trits for ternary), row scales, biases and tau (float32).

    The effective weight of row r, column j is ``scales[r] * float32(level[r, j])``, as in training.
    """

    n_in: int
    hidden: int
    n_out: int
    levels_W: np.ndarray  # int8 (2H, I+H)
    levels_out: np.ndarray  # int8 (O, H)
    scales: np.ndarray  # float32 (2H + O)
    b: np.ndarray  # float32 (2H)
    tau: np.ndarray  # float32 (H)
    b_out: np.ndarray  # float32 (O)
    task: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    weight_format: str = "ternary"  # a name of ternq.formats.FORMATS

    def __post_init__(self) -> None:
        check_levels(self.levels_W, self.format)
        check_levels(self.levels_out, self.format)

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.n_in, self.hidden, self.n_out

    @property
    def format(self) -> formats.Format:
        return formats.get(self.weight_format)

    @property
    def n_weights(self) -> int:
        return self.levels_W.size + self.levels_out.size

    def levels(self) -> np.ndarray:
        """Every level (int8): W's 2H rows, then W_out's O rows, flattened."""
        return np.concatenate([self.levels_W.ravel(), self.levels_out.ravel()])

    @classmethod
    def from_model(cls, model: Model) -> Deployable:
        """The deployable form of a student (a teacher has no levels: ValueError)."""
        if model.kind != "student":
            raise ValueError(f"this is a {model.kind}; only a quantized student can be deployed (exported or run "
                             "by 'ternq predict')")
        if model.mixed:
            raise ValueError(f"mixed formats are not deployable yet ({model.format_label})")
        if model.float_matrices != "none":
            raise ValueError(f"a research student with float_matrices {model.float_matrices} keeps weights in float: "
                             "it has no levels to deploy")
        if model.scale_layout:
            what = "scale_sign" if model.scale_sign else f"scale_group {model.scale_group}"
            raise ValueError(f"a student with {what} has several scales per row; the deployed forms carry one per row")
        I, H, O = model.dims
        levels = model.levels()
        nW = 2 * H * (I + H)
        scales = np.ascontiguousarray(model.theta[model.n_cell:], np.float32)
        _, b, tau, _, bout = unpack(model.params(), I, H, O)
        dep = cls(I, H, O, levels[:nW].reshape(2 * H, I + H).astype(np.int8), levels[nW:].reshape(O, H).astype(
            np.int8), scales, b.copy(), tau.copy(), bout.copy(), dict(model.meta.get("task", {})),
                  weight_format=model.weight_format)
        figs = model.meta.get("figures", {})
        if "eval_mse" in figs:
            dep.info["eval_mse_at_training"] = figs["eval_mse"]
        if not np.array_equal(dep.params(), model.params()):  # == ignores the sign of zeros, by design
            raise ValueError("levels times scales do not reproduce the student's weights")
        return dep

    def params(self) -> np.ndarray:
        """The effective float32 parameters in the training cell's layout: ``s * float32(level)`` per weight."""
        I, H, O = self.dims
        p = np.zeros(n_params(I, H, O), np.float32)
        W, b, tau, Wout, bout = unpack(p, I, H, O)
        W[:] = self.scales[: 2 * H, None] * self.levels_W.astype(np.float32)
        Wout[:] = self.scales[2 * H:, None] * self.levels_out.astype(np.float32)
        b[:], tau[:], bout[:] = self.b, self.tau, self.b_out
        return p

    def decay(self) -> np.ndarray:
        """The decay factors exp(-dt / (|tau| + 1e-6)), float32, exactly as the inference kernel computes them."""
        out = np.empty(self.hidden, np.float32)
        tau_decay(np.ascontiguousarray(self.tau, np.float32), np.float32(DT), out)
        return out

    @property
    def units(self) -> Units | None:
        """The normalisation of the series the model was trained on; None for a task that has none."""
        return Units.of_task(self.task, self.n_in, self.n_out)

    def predict_units(self, X: np.ndarray, factored: bool = False) -> np.ndarray:
        """Predictions (N, T, O) in the series' own units on inputs X (N, T, I) in those units, from h_0 = 0:
        :meth:`predict` between :meth:`Units.to_normalised` and :meth:`Units.to_units` (the identity for a
        task without normalisation). ValueError when a value is not finite in float32."""
        units = self.units
        with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 is refused below
            Xn = np.asarray(X, np.float32) if units is None else units.to_normalised(X)
        if not np.all(np.isfinite(Xn)):
            raise ValueError("the inputs must be finite float32 values (also once normalised)")
        ys = self.predict(Xn, factored)[0]
        return ys if units is None else units.to_units(ys)

    def predict(self, X: np.ndarray, factored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Predictions (N, T, O) and hidden states (N, T+1, H) on X (N, T, I), from h_0 = 0."""
        X = np.ascontiguousarray(X, np.float32)
        if X.ndim != 3 or X.shape[2] != self.n_in:
            raise ValueError(f"inputs must have shape (N, T, {self.n_in}), not {X.shape}")
        N, T = X.shape[:2]
        ys = np.empty((N, T, self.n_out), np.float32)
        hs = np.empty((N, T + 1, self.hidden), np.float32)
        infer.run(self.levels_W, self.scales[: 2 * self.hidden], self.b, self.tau, self.levels_out,
                  self.scales[2 * self.hidden:], self.b_out, X, DT, factored, ys, hs)
        return ys, hs

    def mse(self, X: np.ndarray, Y: np.ndarray, factored: bool = False) -> tuple[float, np.ndarray]:
        """(MSE, predictions) on X against Y, summed as the training code's ``mse`` does."""
        ys, _ = self.predict(X, factored)
        return float(infer.mse(ys, np.ascontiguousarray(Y, np.float32))), ys

    # ---- the file

    @property
    def _levels_section(self) -> str:
        return "trits" if self.weight_format == "ternary" else "levels"

    def _sections(self) -> list[tuple[str, bytes, str, list[int]]]:
        f32 = "<f4"
        fmt = self.format
        return [
            (self._levels_section, pack_levels(self.levels(), fmt), encoding(fmt), [self.n_weights]),
            ("scales", self.scales.astype(f32).tobytes(), "float32", [self.scales.size]),
            ("b", self.b.astype(f32).tobytes(), "float32", [self.b.size]),
            ("tau", self.tau.astype(f32).tobytes(), "float32", [self.tau.size]),
            ("b_out", self.b_out.astype(f32).tobytes(), "float32", [self.b_out.size]),
        ]

    def to_bytes(self) -> bytes:
        sections = self._sections()
        payload = b"".join(s[1] for s in sections)
        offset, table = 0, []
        for name, data, dtype, shape in sections:
            table.append({"name": name, "offset": offset, "bytes": len(data), "dtype": dtype, "shape": shape})
            offset += len(data)
        manifest = {
            "format": FORMAT, "version": VERSION, "cell": "CfC", "dt": DT,
            "dims": {"n_in": self.n_in, "hidden": self.hidden, "n_out": self.n_out},
            "task": self.task, "packing": packing(self.format), "counts": _counts(self.levels(), self.weight_format,
                                                                                  *self.dims),
            "sections": table, "payload_bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
            "info": self.info,
        }
        if self.weight_format != "ternary":  # a ternary file stays byte for byte what older ternq wrote
            manifest["weight_format"] = self.weight_format
        head = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        return MAGIC + struct.pack("<I", len(head)) + head + payload

    def save(self, path: str | os.PathLike) -> int:
        """Write the file atomically; return its size in bytes."""
        data = self.to_bytes()
        atomic_write_bytes(Path(path), data)
        return len(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Deployable:
        """Read a file written by :meth:`save`; :class:`DeployFileError` (one line) on anything else."""
        path = Path(path)
        try:  # a regular file, read within a bound (not a FIFO, a device or a huge file)
            raw = files.read_bytes(path, MAX_FILE_BYTES, "deployable model file")
        except files.FileInputError as exc:
            raise DeployFileError(str(exc)) from None
        return cls.from_bytes(raw, str(path))

    @classmethod
    def from_bytes(cls, raw: bytes, name: str = "<bytes>") -> Deployable:
        """Parse a file's bytes, checking every manifest field; :class:`DeployFileError` (one line) on anything
        malformed, inconsistent or non-finite."""
        if raw[:8] != MAGIC:
            hint = "; it looks like a ternq .npz model: run 'ternq export' on it first" if raw[:2] == b"PK" else ""
            raise DeployFileError(f"not a ternq deployable model file: {name}{hint}")
        try:
            (m,) = struct.unpack("<I", raw[8:12])
            if 12 + m > len(raw):
                raise ValueError
            manifest = json.loads(raw[12 : 12 + m].decode())
        except (struct.error, UnicodeDecodeError, ValueError, RecursionError):
            raise DeployFileError(f"deployable model file {name} is corrupt (unreadable manifest)") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise DeployFileError(f"not a ternq deployable model file: {name}")
        if manifest.get("version") != VERSION or isinstance(manifest.get("version"), bool):
            raise DeployFileError(f"deployable model file {name} has format version {manifest.get('version')!r}, "
                                  f"this ternq reads {VERSION}")
        payload = raw[12 + m:]
        if len(payload) != manifest.get("payload_bytes") or hashlib.sha256(payload).hexdigest() != manifest.get(
                "sha256"):
            raise DeployFileError(f"deployable model file {name} is corrupt (payload checksum mismatch)")
        try:
            return cls._from_manifest(manifest, payload)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            why = str(exc) if isinstance(exc, ValueError) else f"bad or missing field {exc}"
            raise DeployFileError(f"deployable model file {name} is inconsistent ({why})") from None

    @classmethod
    def _from_manifest(cls, man: dict, payload: bytes) -> Deployable:
        def need(cond, what):
            if not cond:
                raise ValueError(what)

        def count(v, what, lo=0):
            need(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= MAX_DIM * MAX_DIM * 4,
                 f"{what} must be an integer >= {lo}")
            return v

        for key in ("dims", "packing", "counts"):
            need(isinstance(man.get(key), dict), f"'{key}' must be an object")
        for key in ("task", "info"):
            need(isinstance(man.get(key, {}), dict), f"'{key}' must be an object")
        need(isinstance(man.get("sections"), list), "'sections' must be a list")
        mse = man.get("info", {}).get("eval_mse_at_training")
        need(mse is None or (isinstance(mse, (int, float)) and not isinstance(mse, bool) and math.isfinite(mse)
                             and mse >= 0), "info.eval_mse_at_training must be a number >= 0")
        need(man.get("cell") == "CfC", "cell must be CfC")
        Units.of_task(man.get("task", {}), man["dims"].get("n_in"), man["dims"].get("n_out"))
        need(man.get("dt") == DT, f"dt must be {DT}")
        name = man.get("weight_format", "ternary")
        need(isinstance(name, str) and name in formats.FORMATS and not (name == "ternary" and "weight_format" in man),
             "weight_format must be one of " + ", ".join(f for f in formats.FORMATS if f != "ternary")
             + " (absent for ternary)")
        fmt = formats.get(name)
        need(man["packing"] == packing(fmt), f"unknown {name} packing")
        dims = man["dims"]
        need(set(dims) == {"n_in", "hidden", "n_out"}, "dims must be n_in, hidden, n_out")
        I, H, O = (count(dims[k], f"dims.{k}", 1) for k in ("n_in", "hidden", "n_out"))
        need(max(I, H, O) <= MAX_DIM, f"dims above {MAX_DIM}")
        sec = {}
        for s in man["sections"]:
            need(isinstance(s, dict) and set(s) == {"name", "offset", "bytes", "dtype", "shape"},
                 "a section must have name, offset, bytes, dtype, shape")
            off, nb = count(s["offset"], "section offset"), count(s["bytes"], "section bytes")
            need(off + nb <= len(payload), f"section {s['name']!r} lies beyond the payload")
            need(s["name"] not in sec, f"section {s['name']!r} appears twice")
            sec[s["name"]] = (payload[off : off + nb], s["dtype"], s["shape"])
        section = "trits" if name == "ternary" else "levels"
        want = {section: (encoding(fmt), 2 * H * (I + H) + O * H), "scales": ("float32", 2 * H + O),
                "b": ("float32", 2 * H), "tau": ("float32", H), "b_out": ("float32", O)}
        need(set(sec) == set(want), f"sections must be {', '.join(want)}")
        for key, (dtype, size) in want.items():
            need(sec[key][1] == dtype and sec[key][2] == [size], f"section {key} must be {dtype} [{size}]")
        nW = 2 * H * (I + H)
        levels = unpack_levels(sec[section][0], want[section][1], fmt)

        def f32(key):
            data = sec[key][0]
            need(len(data) == 4 * want[key][1], f"section {key} has {len(data)} bytes, expected {4 * want[key][1]}")
            a = np.frombuffer(data, "<f4").astype(np.float32)
            need(bool(np.all(np.isfinite(a))), f"section {key} holds non-finite values")
            return a

        need(man["counts"] == _counts(levels, name, I, H, O), f"counts do not match the {section}")
        return cls(I, H, O, levels[:nW].reshape(2 * H, I + H).copy(), levels[nW:].reshape(O, H).copy(),
                   f32("scales"), f32("b"), f32("tau"), f32("b_out"), dict(man.get("task", {})),
                   dict(man.get("info", {})), name)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Deployable:
        """A deployable file (``.tqd``), or a ternary student ``.npz`` converted in memory.

        :class:`DeployFileError` / :class:`ModelFileError` for unreadable files, ValueError (one line) for a
        teacher or a student whose levels do not reproduce its weights.
        """
        path = Path(path)
        try:  # only a regular file is opened: a FIFO would block, a device never end
            fh, _ = files.open_regular(path, MAX_FILE_BYTES, "model file")
            with fh:
                head = fh.read(8)
        except files.FileInputError as exc:
            raise DeployFileError(str(exc)) from None
        if head == MAGIC:
            return cls.load(path)
        if head[:2] != b"PK":
            raise DeployFileError(f"not a ternq deployable model file (nor a student .npz): {path}")
        return cls.from_model(Model.load(path))

    def sizes(self) -> dict:
        """Byte accounting of the file: total, payload (packed levels, float32), manifest; against plain float32."""
        sections = {s[0]: len(s[1]) for s in self._sections()}
        file_bytes = len(self.to_bytes())
        payload = sum(sections.values())
        f32 = float32_bytes(*self.dims)
        packed = sections[self._levels_section]
        return {"dims": list(self.dims), "weight_format": self.weight_format, "file_bytes": file_bytes,
                "payload_bytes": payload, "manifest_bytes": file_bytes - payload - 12, "level_bytes": packed,
                "float_bytes": payload - packed, "levels": self.n_weights, "per_byte": self.format.per_byte,
                "zero_share": float(np.count_nonzero(self.levels() == 0)) / self.n_weights,
                "float32_bytes": f32, "file_vs_float32": file_bytes / f32, "payload_vs_float32": payload / f32}


def _counts(levels: np.ndarray, weight_format: str, n_in: int, hidden: int, n_out: int) -> dict:
    """The manifest's ``counts``: trits with their signs for ternary (as ever), levels and zeros otherwise."""
    n_float = 5 * hidden + 2 * n_out
    if weight_format == "ternary":
        return {"trits": int(levels.size), "plus": int(np.sum(levels > 0)), "minus": int(np.sum(levels < 0)),
                "zero": int(np.sum(levels == 0)), "float32": n_float}
    return {"levels": int(levels.size), "zero": int(np.sum(levels == 0)), "float32": n_float}


def channel_names(task: dict, n: int) -> list[str]:
    """The names of a model's n channels from its task description: the data file's column names where the
    description has them, else "channel k"."""
    names = task.get("channels") or task.get("columns")
    if isinstance(names, list) and len(names) == n and all(isinstance(c, str) for c in names):
        return list(names)
    return [f"channel {k}" for k in range(n)]


def read_values(dep: Deployable, path: str | os.PathLike) -> np.ndarray:
    """One input sequence (1, T, I) in the series' own units: the rows of a CSV or ``.npy`` file, with the
    columns the model's data file was trained on (``task.columns``, when it selected some). ValueError
    (one line) for an unreadable file or a wrong number of columns."""
    from .tasks.series import read_table

    columns = dep.task.get("columns") if isinstance(dep.task.get("columns"), list) else None
    table, _ = read_table(path, columns=columns)
    if table.shape[1] != dep.n_in:
        raise ValueError(f"{path} has {table.shape[1]} columns; the model takes {dep.n_in} inputs")
    return table[None]


def held_out_rmse(ys: np.ndarray, Y: np.ndarray, task: dict) -> list[float] | None:
    """Per output channel, the RMSE of normalised predictions ys against Y (N, T, O) in the series' own units:
    the normalised RMSE times the channel's training ``std`` from the task description, in float64; None for a
    task without normalisation."""
    std = task.get("std")
    if not isinstance(std, list) or len(std) != np.shape(Y)[-1]:
        return None
    err = np.asarray(ys, np.float64) - np.asarray(Y, np.float64)
    return [float(v) for v in np.sqrt(np.mean(err * err, axis=(0, 1))) * np.asarray(std, np.float64)]


def score_values(dep: Deployable, X: np.ndarray, factored: bool = False) -> dict:
    """Predictions on one sequence X (1, T, I) in the series' own units, each row predicting the next, and
    their errors on rows 2..T: ``predictions`` (1, T, O) float32 in the series' units, ``rmse`` per channel
    (float64, the series' units) and ``mse_normalised`` (both None for fewer than 2 rows)."""
    ys = dep.predict_units(X, factored)
    res = {"predictions": ys, "rows": int(X.shape[1]), "rmse": None, "mse_normalised": None}
    if X.shape[1] < 2:
        return res
    target = np.asarray(X[:, 1:], np.float32)
    err = np.asarray(ys[:, :-1], np.float64) - target.astype(np.float64)
    res["rmse"] = [float(v) for v in np.sqrt(np.mean(err * err, axis=(0, 1)))]
    units = dep.units
    if units is None:
        res["mse_normalised"] = float(infer.mse(np.ascontiguousarray(ys[:, :-1]), np.ascontiguousarray(target)))
    else:
        yn = dep.predict(units.to_normalised(X), factored)[0]
        res["mse_normalised"] = float(infer.mse(np.ascontiguousarray(yn[:, :-1]),
                                                np.ascontiguousarray(units.to_normalised(target))))
    return res


def float32_bytes(n_in: int, hidden: int, n_out: int) -> int:
    """Size of the same model's weights stored as plain float32 (every parameter 4 bytes)."""
    return 4 * n_params(n_in, hidden, n_out)


def save_npy(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write ``arr`` as ``.npy`` atomically."""
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(Path(path), buf.getvalue())
