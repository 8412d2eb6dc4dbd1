"""Models: a flat parameter vector plus its shape, with init, views, save and load."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import files, formats
from .kernels.cell import n_params, unpack
from .kernels.ternary import (
    FLOAT_MATRICES,
    ROW_FLOAT,
    init_scales,
    n_scales,
    per_scale,
    quantize,
    quantized_cols,
    quantized_rows,
    scale_layout,
)
from .settings import StudentSettings

FORMAT_VERSION = 1
KINDS = ("teacher", "student")


class ModelFileError(ValueError):
    """A model file that is missing, unreadable, foreign or of another format version."""


@dataclass
class Model:
    """A CfC model. ``theta`` is flat float32: the cell layout, then (students) the row scales.

    Parameters
    ----------
    kind : {"teacher", "student"}
        A teacher runs its float weights; a student runs its weights quantized to ``weight_format``.
    n_in, hidden, n_out : int
        Input, hidden and output sizes.
    theta : np.ndarray
        The trained parameters (for a student: float shadow weights and scales).
    meta : dict
        Free-form provenance: config, seed, task, figures. Saved with the model.
    weight_format : str
        A student's weight format, a name of :data:`ternq.formats.FORMATS` (a teacher's stays "ternary", unused).
    float_matrices : str
        The part of a student whose rows run their float weights, unquantized (research: where the error comes
        from): "none", "gate", "cand", "out", "input" or "recurrent" (:data:`ternq.kernels.ternary.FLOAT_MATRICES`).
    weight_format_gate, weight_format_cand, weight_format_out : str
        A matrix's own weight format ("": ``weight_format``).
    scale_group : int
        Columns per scale: 0, one scale per row; G > 0, one per run of G columns of each row
        (:func:`ternq.kernels.ternary.scale_cols`).
    scale_sign : bool
        Two scales per row: one for its weights >= 0, one for its weights < 0.
    """

    kind: str
    n_in: int
    hidden: int
    n_out: int
    theta: np.ndarray
    meta: dict = field(default_factory=dict)
    weight_format: str = "ternary"
    float_matrices: str = "none"
    weight_format_gate: str = ""
    weight_format_cand: str = ""
    weight_format_out: str = ""
    scale_group: int = StudentSettings.scale_group
    scale_sign: bool = StudentSettings.scale_sign

    @property
    def format(self) -> formats.Format:
        """The :class:`ternq.formats.Format` of ``weight_format``."""
        return formats.get(self.weight_format)

    @property
    def matrix_formats(self) -> tuple[formats.Format, formats.Format, formats.Format]:
        """The gate's, candidate's and output matrix's formats ("" takes ``weight_format``)."""
        return formats.matrix_formats(self.weight_format, self.weight_format_gate, self.weight_format_cand,
                                      self.weight_format_out)

    @property
    def mixed(self) -> bool:
        """Whether the matrices are of more than one format."""
        return len({f.name for f in self.matrix_formats}) > 1

    @property
    def format_label(self) -> str:
        """The formats' name: ``ternary``, or ``ternary+cand:int8`` for a mixed model (:func:`formats.label`)."""
        return formats.label(self.weight_format, self.weight_format_gate, self.weight_format_cand,
                             self.weight_format_out)

    def row_qmax(self) -> np.ndarray:
        """(S,) int64: each scale's format code (its row's), the kernels' ``qmax``."""
        return scale_rows(self.dims, self.matrix_formats, self.float_matrices, self.scale_layout)[0]

    @property
    def scale_layout(self) -> int:
        """The kernels' ``group`` of its scales (:func:`ternq.kernels.ternary.scale_layout`)."""
        return scale_layout(self.scale_group, self.scale_sign)

    @property
    def n_scales(self) -> int:
        """How many scales a student has (:func:`ternq.kernels.ternary.n_scales`)."""
        return n_scales(*self.dims, self.scale_layout)

    @property
    def n_cell(self) -> int:
        return n_params(self.n_in, self.hidden, self.n_out)

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.n_in, self.hidden, self.n_out

    def params(self, dtype=np.float32) -> np.ndarray:
        """The effective parameters the forward pass runs (for a student, its weights' levels times the scales)."""
        theta = np.ascontiguousarray(self.theta, dtype=dtype)
        if self.kind == "teacher":
            return theta
        p = np.empty(self.n_cell, dtype)
        quantize(theta, *self.dims, p, self.row_qmax(), self.scale_codes(), self.scale_layout)
        return p

    def quantized_rows(self) -> np.ndarray:
        """(2H + O,) int8: each row's code, how much of it runs quantized
        (:func:`ternq.kernels.ternary.quantized_rows`)."""
        return quantized_rows(self.hidden, self.n_out, self.float_matrices)

    def scale_codes(self) -> np.ndarray:
        """(S,) int8: each scale's row code (:meth:`quantized_rows`), the kernels' ``live``."""
        return scale_rows(self.dims, self.matrix_formats, self.float_matrices, self.scale_layout)[1]

    def weight_scales(self) -> tuple[np.ndarray, np.ndarray]:
        """Each weight's scale: (2H, I + H) for W and (O, H) for W_out (by sign: its shadow weight's)."""
        scales = self.theta[self.n_cell:]
        h2, z, h = 2 * self.hidden, self.n_in + self.hidden, self.hidden
        g = self.scale_group
        if self.scale_sign:
            W, _, _, Wout, _ = unpack(self.theta[: self.n_cell], *self.dims)
            pair = scales.reshape(-1, 2)  # (w >= 0, w < 0) of each row
            return (np.where(W < 0, pair[:h2, 1:], pair[:h2, :1]), np.where(Wout < 0, pair[h2:, 1:], pair[h2:, :1]))
        if g <= 0:
            return np.repeat(scales[:h2, None], z, 1), np.repeat(scales[h2:, None], h, 1)
        per_w = -(-z // g)
        sw = np.repeat(scales[: h2 * per_w].reshape(h2, per_w), g, 1)[:, :z]
        so = np.repeat(scales[h2 * per_w:].reshape(self.n_out, -1), g, 1)[:, :h]
        return sw, so

    def weights(self, effective: bool = False) -> dict[str, np.ndarray]:
        """Named views: W_gate, W_cand, b_gate, b_cand, tau, W_out, b_out (and scales)."""
        src = self.params() if effective else self.theta
        W, b, tau, Wout, bout = unpack(src, *self.dims)
        h = self.hidden
        out = {"W_gate": W[:h], "W_cand": W[h:], "b_gate": b[:h], "b_cand": b[h:],
               "tau": tau, "W_out": Wout, "b_out": bout}
        if self.kind == "student":
            out["scales"] = self.theta[self.n_cell:]
        return out

    def levels(self) -> np.ndarray:
        """The student's integer weight levels of W (2H rows) then W_out, as int8 (a flat array per layout; the
        weights kept in float have none: zeros)."""
        if self.kind != "student":
            raise ValueError("only a student has weight levels")
        p = self.params()  # s * level rounds to the float32 nearest; dividing it by s comes back within an ulp
        sw, so = self.weight_scales()
        W, _, _, Wout, _ = unpack(p, *self.dims)
        tW = np.rint(W / sw).astype(np.int8)
        tO = np.rint(Wout / so).astype(np.int8)
        levels = np.concatenate([tW.ravel(), tO.ravel()])
        levels[~self.quantized_weights()] = 0
        return levels

    def quantized_weights(self) -> np.ndarray:
        """(2H(I+H) + OH,) bool in :meth:`levels`' order: False for a weight kept in float (``float_matrices``)."""
        h2, z = 2 * self.hidden, self.n_in + self.hidden
        out = []
        for r, code in enumerate(self.quantized_rows()):
            q = np.zeros(z if r < h2 else self.hidden, bool)
            if code != ROW_FLOAT:
                qa, qb = quantized_cols(code, self.n_in, q.size)
                q[qa:qb] = True
            out.append(q)
        return np.concatenate(out)

    def trits(self) -> np.ndarray:
        """A ternary student's trits: :meth:`levels` (ValueError for another format)."""
        if self.kind == "student" and self.format_label != "ternary":
            raise ValueError(f"a {self.format_label} student has levels, not trits")
        return self.levels()

    def zero_share(self) -> float:
        """Share of the student's quantized weights whose level is zero (none for binary)."""
        return float(np.mean(self.levels()[self.quantized_weights()] == 0))

    def weight_bytes(self) -> int:
        """Bytes of the student's weights on a device (:func:`ternq.formats.weight_bytes_mixed`); a research
        student's weights kept in float (``float_matrices``) at 4 bytes each, with no scale for a row of them; every
        scale (of a scale group, or by sign) 4 bytes."""
        if self.float_matrices == "none" and self.scale_layout == 0:
            return formats.weight_bytes_mixed(self.matrix_formats, *self.dims)
        q = self.quantized_weights()
        h, z = self.hidden, self.n_in + self.hidden
        counts: dict[formats.Format, int] = {}
        for f, (a, b) in zip(self.matrix_formats, ((0, h * z), (h * z, 2 * h * z), (2 * h * z, q.size)), strict=True):
            counts[f] = counts.get(f, 0) + int(q[a:b].sum())
        scaled = int(np.count_nonzero(self.scale_codes() != ROW_FLOAT))
        return sum(f.packed_bytes(n) for f, n in counts.items()) + 4 * int((~q).sum()) + 4 * scaled

    def copy(self) -> Model:
        return Model(self.kind, self.n_in, self.hidden, self.n_out, self.theta.copy(), dict(self.meta),
                     self.weight_format, self.float_matrices, self.weight_format_gate, self.weight_format_cand,
                     self.weight_format_out, self.scale_group, self.scale_sign)

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` atomically (temporary file in the same folder, then rename).

        It holds ``theta`` (float shadow weights, then scales for a student), a
        JSON ``header`` (format version, kind, sizes, a student's weight format, meta: config, seed, figures)
        and, for a student, its weight levels (int8, W rows then W_out rows) as ``trits`` (ternary) or
        ``levels`` (other formats).
        """
        path = Path(path)
        header = {"format": "ternq-model", "version": FORMAT_VERSION, "kind": self.kind,
                  "n_in": self.n_in, "hidden": self.hidden, "n_out": self.n_out, "meta": self.meta}
        if self.kind == "student":
            header["weight_format"] = self.format.name
            if self.float_matrices != "none":
                header["float_matrices"] = self.float_matrices
            if self.scale_group:
                header["scale_group"] = self.scale_group
            if self.scale_sign:
                header["scale_sign"] = True
            for m, f in zip(formats.MATRICES, self.matrix_formats, strict=True):
                if f.name != self.format.name:  # a file of one format stays as it was
                    header[f"weight_format_{m}"] = f.name
        # a student also carries its levels (what it runs), for readers other than ternq
        extra = {}
        if self.kind == "student":
            extra = {"trits" if self.format_label == "ternary" else "levels": self.levels()}
        buf = io.BytesIO()
        np.savez(buf, theta=self.theta, header=np.array(json.dumps(header)), **extra)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """Read a model written by :meth:`save`; raise :class:`ModelFileError` on anything else.

        Nothing is trusted before it is checked: only a regular file of at most
        ``MAX_FILE_BYTES`` is opened; each archive member's declared uncompressed
        size is checked before it is read (a small file cannot inflate to GiBs);
        the JSON header is read first, and ``theta``'s ``.npy`` header must then
        declare exactly the float vector that header's sizes need. Sizes, kind,
        meta, finiteness and (students) positive scales are validated.
        """
        path = Path(path)
        try:
            fh, _ = files.open_regular(path, MAX_FILE_BYTES, "model file")
        except files.FileInputError as exc:
            raise ModelFileError(str(exc)) from None
        try:
            with fh, zipfile.ZipFile(fh) as zf:
                members = files.npz_members(zf, {"header": MAX_HEADER_BYTES, "theta": 8 * MAX_PARAMS + 4096},
                                            f"model file {path}")
                if "header" not in members or "theta" not in members:
                    raise ModelFileError(f"not a ternq model file: {path} (no header or theta)")
                head = files.read_npz_member(zf, members["header"], (), "U", f"model file {path}")
                header = json.loads(str(head))
                if not isinstance(header, dict) or header.get("format") != "ternq-model":
                    raise ModelFileError(f"not a ternq model file: {path}")
                if header.get("version") != FORMAT_VERSION:
                    raise ModelFileError(f"model file {path} has format version {header.get('version')!r}, "
                                         f"this ternq reads {FORMAT_VERSION}")
                kind, dims, meta, weight_format = _check_header(header, path)
                float_matrices = header.get("float_matrices", "none")
                if float_matrices not in FLOAT_MATRICES:
                    raise ModelFileError(f"model file {path} has an unknown float_matrices {float_matrices!r}")
                matrix = {}
                for m in formats.MATRICES:
                    f = header.get(f"weight_format_{m}", "")
                    if not isinstance(f, str) or (f and f not in formats.FORMATS):
                        raise ModelFileError(f"model file {path} has an unknown weight format {f!r} for {m}")
                    matrix[f"weight_format_{m}"] = f
                group = header.get("scale_group", 0)
                if not isinstance(group, int) or isinstance(group, bool) or not 0 <= group <= MAX_PARAMS:
                    raise ModelFileError(f"model file {path} has a damaged header (scale_group = {group!r})")
                sign = header.get("scale_sign", False)
                if not isinstance(sign, bool) or (sign and group):
                    raise ModelFileError(f"model file {path} has a damaged header (scale_sign = {sign!r})")
                want = n_params(*dims) + (n_scales(*dims, scale_layout(group, sign)) if kind == "student" else 0)
                theta = files.read_npz_member(zf, members["theta"], (want,), "f", f"model file {path}")
        except files.FileInputError as exc:
            raise ModelFileError(str(exc)) from None
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile,
                RecursionError, NotImplementedError) as exc:  # JSON errors are ValueErrors
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"not a ternq model file: {path} ({exc.__class__.__name__})") from None
        with np.errstate(over="ignore"):
            theta = theta.astype(np.float32)
        if not np.all(np.isfinite(theta)):
            raise ModelFileError(f"model file {path} holds non-finite parameters")
        model = cls(kind, *dims, theta, meta, weight_format, float_matrices, **matrix, scale_group=group,
                    scale_sign=sign)
        if kind == "student" and not np.all(theta[model.n_cell:] > 0):
            raise ModelFileError(f"model file {path} holds a scale that is not positive")
        return model


MAX_PARAMS = 1 << 26  # 67 million parameters (268 MB as float32): far beyond any width ternq trains
MAX_FILE_BYTES = 8 * MAX_PARAMS + (64 << 20)
MAX_HEADER_BYTES = 16 << 20  # the JSON header, stored as UTF-32 by numpy


def _check_header(header: dict, path) -> tuple[str, tuple[int, int, int], dict, str]:
    """Kind, (n_in, hidden, n_out), meta and weight format of a model header, each validated; sizes bounded by
    MAX_PARAMS. A file without a weight format (written before there were others) is ternary."""
    kind = header.get("kind")
    if kind not in KINDS:
        raise ModelFileError(f"model file {path} has an unknown kind {kind!r}")
    weight_format = header.get("weight_format", "ternary")
    if not isinstance(weight_format, str) or weight_format not in formats.FORMATS:
        raise ModelFileError(f"model file {path} has an unknown weight format {weight_format!r} "
                             f"(this ternq reads {', '.join(formats.FORMATS)})")
    dims = []
    for name in ("n_in", "hidden", "n_out"):
        v = header.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_PARAMS:
            raise ModelFileError(f"model file {path} has a damaged header ({name} = {v!r})")
        dims.append(v)
    if n_params(*dims) > MAX_PARAMS:
        raise ModelFileError(f"model file {path} declares sizes {tuple(dims)} beyond the {MAX_PARAMS:.3g} "
                             "parameters accepted")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise ModelFileError(f"model file {path} has a damaged header (meta is not a table)")
    return kind, (dims[0], dims[1], dims[2]), meta, weight_format


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # read once at import: os.umask is process-wide, not thread-safe


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half-written.

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def init_teacher(hidden: int, rng: np.random.Generator, n_in: int = 1, n_out: int = 1) -> Model:
    """A fresh float teacher, initialised as the C program does.

    W_gate, W_cand uniform in +-1/sqrt(I+H); W_out uniform in +-1/sqrt(H);
    biases 0; tau uniform in [0.5, 2.0].
    """
    if hidden <= 0 or n_in <= 0 or n_out <= 0:
        raise ValueError("hidden, n_in and n_out must be positive")
    theta = np.zeros(n_params(n_in, hidden, n_out), np.float32)
    W, _, tau, Wout, _ = unpack(theta, n_in, hidden, n_out)
    k = 1.0 / np.sqrt(n_in + hidden)
    W[:] = rng.uniform(-k, k, size=W.shape)
    Wout[:] = rng.uniform(-1.0 / np.sqrt(hidden), 1.0 / np.sqrt(hidden), size=Wout.shape)
    tau[:] = rng.uniform(0.5, 2.0, size=hidden)
    return Model("teacher", n_in, hidden, n_out, theta)


def scale_rows(dims: tuple[int, int, int], fmts: tuple[formats.Format, formats.Format, formats.Format],
               float_matrices: str, layout: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernels' per-scale arrays of a student: ``qmax`` (S,) int64, each scale's row's format code, and
    ``live`` (S,) int8, its row's code (:func:`ternq.kernels.ternary.quantized_rows`), for the scale ``layout``."""
    _, hidden, n_out = dims
    return (per_scale(formats.row_qmax(fmts, hidden, n_out), *dims, layout),
            per_scale(quantized_rows(hidden, n_out, float_matrices), *dims, layout))


def student_from(teacher: Model, weight_format: str = "ternary", float_matrices: str = "none",
                 weight_format_gate: str = "", weight_format_cand: str = "", weight_format_out: str = "",
                 scale_group: int = StudentSettings.scale_group,
                 scale_sign: bool = StudentSettings.scale_sign) -> Model:
    """A student of ``weight_format`` that starts as a copy of ``teacher``, with the format's starting scales
    (:func:`ternq.kernels.ternary.init_scales`: ternary and binary mean|w|, intN max|w| / qmax) per row or per
    ``scale_group`` columns or two per row by sign (``scale_sign``), and the part ``float_matrices`` kept in float;
    a matrix's ``weight_format_<matrix>`` ("": ``weight_format``) its own."""
    fmt = formats.get(weight_format)
    fmts = formats.matrix_formats(fmt.name, weight_format_gate, weight_format_cand, weight_format_out)
    matrix = {f"weight_format_{m}": f.name if f.name != fmt.name else ""
              for m, f in zip(formats.MATRICES, fmts, strict=True)}
    student = Model("student", *teacher.dims, np.empty(0, np.float32), weight_format=fmt.name,
                    float_matrices=float_matrices, **matrix, scale_group=scale_group, scale_sign=scale_sign)
    theta = np.concatenate([teacher.theta.astype(np.float32), np.zeros(student.n_scales, np.float32)])
    init_scales(theta, *teacher.dims, student.scale_layout, student.row_qmax(), student.scale_codes())
    student.theta = theta
    return student
