"""A compact, deployable file for a ternary student, and inference on it.

File layout (all little-endian)::

    8 bytes   magic b"TERNQDEP"
    4 bytes   uint32 length M of the manifest
    M bytes   manifest, UTF-8 JSON (format, version, dims, task, packing, counts, sections, sha256)
    payload   the sections listed in the manifest, back to back:
              trits   packed 5 per byte (base 3), W rows (2H, I+H) then W_out rows (O, H), row-major
              scales  float32 (2H + O): one per row of W, then of W_out
              b       float32 (2H): gate then candidate biases
              tau     float32 (H)
              b_out   float32 (O)

Trit packing: digit d = trit + 1 in {0, 1, 2}; five digits per byte, least
significant first, byte = d0 + 3 d1 + 9 d2 + 27 d3 + 81 d4 (at most 242). The
last byte is padded with trit 0. The manifest's ``sha256`` is that of the whole
payload. A file is written atomically (temporary file, then rename).

Inference (:meth:`Deployable.predict`) runs :func:`ternq.kernels.infer.run`,
bit-identical to the training forward of the student it came from.
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

from . import files
from .kernels import infer
from .kernels.cell import n_params, tau_decay, unpack
from .model import Model, ModelFileError, atomic_write_bytes
from .train import DT

MAGIC = b"TERNQDEP"
FORMAT = "ternq-deploy"
VERSION = 1
MAX_FILE_BYTES = 64 << 20  # a deployable file of the widest model ternq trains (H = 4096) is about 15 MB
PACKING = {"scheme": "base3", "trits_per_byte": 5, "digit": "trit+1", "order": "lsd-first", "pad": "trit 0",
           "layout": "W (2H, I+H) then W_out (O, H), row-major"}
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


@dataclass
class Deployable:
    """A deployed ternary CfC: trits (int8), row scales, biases and tau (float32)."""

    n_in: int
    hidden: int
    n_out: int
    trits_W: np.ndarray  # int8 (2H, I+H)
    trits_out: np.ndarray  # int8 (O, H)
    scales: np.ndarray  # float32 (2H + O)
    b: np.ndarray  # float32 (2H)
    tau: np.ndarray  # float32 (H)
    b_out: np.ndarray  # float32 (O)
    task: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.n_in, self.hidden, self.n_out

    @property
    def n_trits(self) -> int:
        return self.trits_W.size + self.trits_out.size

    @classmethod
    def from_model(cls, model: Model) -> Deployable:
        """The deployable form of a ternary student (a teacher has no trits: ValueError)."""
        if model.kind != "student":
            raise ValueError(f"this is a {model.kind}; only a ternary student can be deployed (exported or run by "
                             "'ternq predict')")
        I, H, O = model.dims
        trits = model.trits()
        nW = 2 * H * (I + H)
        scales = np.ascontiguousarray(model.theta[model.n_cell:], np.float32)
        _, b, tau, _, bout = unpack(model.params(), I, H, O)
        dep = cls(I, H, O, trits[:nW].reshape(2 * H, I + H).copy(), trits[nW:].reshape(O, H).copy(), scales,
                  b.copy(), tau.copy(), bout.copy(), dict(model.meta.get("task", {})))
        figs = model.meta.get("figures", {})
        if "eval_mse" in figs:
            dep.info["eval_mse_at_training"] = figs["eval_mse"]
        if not np.array_equal(dep.params(), model.params()):  # == ignores the sign of zeros, by design
            raise ValueError("trits times scales do not reproduce the student's weights")
        return dep

    def params(self) -> np.ndarray:
        """The effective float32 parameters in the training cell's layout (for checks and comparisons)."""
        I, H, O = self.dims
        p = np.zeros(n_params(I, H, O), np.float32)
        W, b, tau, Wout, bout = unpack(p, I, H, O)
        W[:] = self.trits_W * self.scales[: 2 * H, None]
        Wout[:] = self.trits_out * self.scales[2 * H:, None]
        b[:], tau[:], bout[:] = self.b, self.tau, self.b_out
        return p

    def decay(self) -> np.ndarray:
        """The decay factors exp(-dt / (|tau| + 1e-6)), float32, exactly as the inference kernel computes them."""
        out = np.empty(self.hidden, np.float32)
        tau_decay(np.ascontiguousarray(self.tau, np.float32), np.float32(DT), out)
        return out

    def predict(self, X: np.ndarray, factored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Predictions (N, T, O) and hidden states (N, T+1, H) on X (N, T, I), from h_0 = 0."""
        X = np.ascontiguousarray(X, np.float32)
        if X.ndim != 3 or X.shape[2] != self.n_in:
            raise ValueError(f"inputs must have shape (N, T, {self.n_in}), not {X.shape}")
        N, T = X.shape[:2]
        ys = np.empty((N, T, self.n_out), np.float32)
        hs = np.empty((N, T + 1, self.hidden), np.float32)
        infer.run(self.trits_W, self.scales[: 2 * self.hidden], self.b, self.tau, self.trits_out,
                  self.scales[2 * self.hidden:], self.b_out, X, DT, factored, ys, hs)
        return ys, hs

    def mse(self, X: np.ndarray, Y: np.ndarray, factored: bool = False) -> tuple[float, np.ndarray]:
        """(MSE, predictions) on X against Y, summed as the training code's ``mse`` does."""
        ys, _ = self.predict(X, factored)
        return float(infer.mse(ys, np.ascontiguousarray(Y, np.float32))), ys

    # ---- the file

    def _sections(self) -> list[tuple[str, bytes, str, list[int]]]:
        f32 = "<f4"
        return [
            ("trits", pack_trits(np.concatenate([self.trits_W.ravel(), self.trits_out.ravel()])), "trit5",
             [self.n_trits]),
            ("scales", self.scales.astype(f32).tobytes(), "float32", [self.scales.size]),
            ("b", self.b.astype(f32).tobytes(), "float32", [self.b.size]),
            ("tau", self.tau.astype(f32).tobytes(), "float32", [self.tau.size]),
            ("b_out", self.b_out.astype(f32).tobytes(), "float32", [self.b_out.size]),
        ]

    def to_bytes(self) -> bytes:
        sections = self._sections()
        payload = b"".join(s[1] for s in sections)
        all_t = np.concatenate([self.trits_W.ravel(), self.trits_out.ravel()])
        offset, table = 0, []
        for name, data, dtype, shape in sections:
            table.append({"name": name, "offset": offset, "bytes": len(data), "dtype": dtype, "shape": shape})
            offset += len(data)
        manifest = {
            "format": FORMAT, "version": VERSION, "cell": "CfC", "dt": DT,
            "dims": {"n_in": self.n_in, "hidden": self.hidden, "n_out": self.n_out},
            "task": self.task, "packing": PACKING,
            "counts": {"trits": int(all_t.size), "plus": int(np.sum(all_t > 0)), "minus": int(np.sum(all_t < 0)),
                       "zero": int(np.sum(all_t == 0)), "float32": int(self.scales.size + self.b.size
                                                                         + self.tau.size + self.b_out.size)},
            "sections": table, "payload_bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
            "info": self.info,
        }
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
        need(man.get("dt") == DT, f"dt must be {DT}")
        need(man["packing"] == PACKING, "unknown trit packing")
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
        want = {"trits": ("trit5", 2 * H * (I + H) + O * H), "scales": ("float32", 2 * H + O),
                "b": ("float32", 2 * H), "tau": ("float32", H), "b_out": ("float32", O)}
        need(set(sec) == set(want), f"sections must be {', '.join(want)}")
        for key, (dtype, size) in want.items():
            need(sec[key][1] == dtype and sec[key][2] == [size], f"section {key} must be {dtype} [{size}]")
        nW = 2 * H * (I + H)
        trits = unpack_trits(sec["trits"][0], want["trits"][1])

        def f32(key):
            data = sec[key][0]
            need(len(data) == 4 * want[key][1], f"section {key} has {len(data)} bytes, expected {4 * want[key][1]}")
            a = np.frombuffer(data, "<f4").astype(np.float32)
            need(bool(np.all(np.isfinite(a))), f"section {key} holds non-finite values")
            return a

        counts = man["counts"]
        real = {"trits": trits.size, "plus": int(np.sum(trits > 0)), "minus": int(np.sum(trits < 0)),
                "zero": int(np.sum(trits == 0)), "float32": 5 * H + 2 * O}
        need(counts == real, "counts do not match the trits")
        return cls(I, H, O, trits[:nW].reshape(2 * H, I + H).copy(), trits[nW:].reshape(O, H).copy(), f32("scales"),
                   f32("b"), f32("tau"), f32("b_out"), dict(man.get("task", {})), dict(man.get("info", {})))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Deployable:
        """A deployable file (``.tqd``), or a ternary student ``.npz`` converted in memory.

        :class:`DeployFileError` / :class:`ModelFileError` for unreadable files, ValueError (one line) for a
        teacher or a student whose trits do not reproduce its weights.
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
        """Byte accounting of the file: total, payload (trits, float32), manifest; against plain float32."""
        sections = {s[0]: len(s[1]) for s in self._sections()}
        file_bytes = len(self.to_bytes())
        payload = sum(sections.values())
        f32 = float32_bytes(*self.dims)
        return {"dims": list(self.dims), "file_bytes": file_bytes, "payload_bytes": payload,
                "manifest_bytes": file_bytes - payload - 12, "trit_bytes": sections["trits"],
                "float_bytes": payload - sections["trits"], "trits": self.n_trits,
                "zero_share": float((self.trits_W == 0).sum() + (self.trits_out == 0).sum()) / self.n_trits,
                "float32_bytes": f32, "file_vs_float32": file_bytes / f32, "payload_vs_float32": payload / f32}


def float32_bytes(n_in: int, hidden: int, n_out: int) -> int:
    """Size of the same model's weights stored as plain float32 (every parameter 4 bytes)."""
    return 4 * n_params(n_in, hidden, n_out)


def save_npy(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write ``arr`` as ``.npy`` atomically."""
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(Path(path), buf.getvalue())
