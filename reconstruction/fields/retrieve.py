"""Field retrieval: off-axis holograms of an :class:`holo.model.Acquisition` → :class:`FieldSet`.

Steps (conventions: :mod:`holo.conventions`; each step has its own module):

1. carrier (:mod:`.carrier`): the sideband peak of the background, in the half-plane
   fx > 0; with one background per frame, the peaks p_a of all frames are located and
   - with known illumination NAs (ν_a = (NA_y, NA_x)_a/λ) both sidebands are tested: if
     the + half-plane holds u, p_a − ν_a is the same for all frames; if it holds the twin
     u*, p_a + ν_a is. The hypothesis with the smaller spread fixes the carrier and the
     sideband;
   - without them, the carrier is the peak nearest to the centroid of the peaks (the
     normal-incidence frame of a scan centred on the axis), and ν_a = p_a − c.
2. demodulation and cropping (:mod:`.sideband`) of holograms and backgrounds, streamed in
   batches of frames (h5py datasets are read batch by batch), and division by the background
   field of the same illumination. With one background frame for all illuminations, the
   remaining illumination plane wave exp(i2π ν_a·x) is divided out too (ν_a from the given
   NA, or measured on the field when the NA must be estimated).
3. unwrapping (:mod:`.unwrap`), residual tilt/offset removal and amplitude normalisation on the
   background pixels (:mod:`.background`).
4. the sideband that holds u: a real hologram cannot tell u from u* by itself. When the
   illumination NAs (given) do not decide it (step 1), the sideband is chosen so that the
   phase summed over the object pixels is positive (a sample denser than its medium, the
   case of cells, bacteria and beads in water/PBS); the choice and its origin are recorded
   in ``FieldSet.metadata``. ``carrier_cycles_per_um=`` bypasses detection and the choice.
5. optional refocusing / autofocus (:mod:`.refocus`), then unwrapping and background
   removal again on the refocused fields.
6. quality control (:mod:`.qc`): frames flagged are ``valid`` False and listed.

An acquisition that already holds fields passes through unwrapping and QC only (refocusing
only when asked for).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from holo.errors import ValidationError
from holo.model import Acquisition

from .background import remove_background
from .carrier import in_positive_half_plane, spectral_peaks
from .qc import excluded_list, frame_qc
from .refocus import autofocus as _autofocus
from .refocus import depth_of_field_um, refocus as _refocus
from .sideband import SIDEBAND_SHAPES, demodulate, output_grid
from .unwrap import unwrap_about_border, unwrap_phase

__all__ = ["FieldSet", "retrieve_fields"]

#: Memory budget for one batch of raw frames (float32 holograms + their spectra), bytes.
_BATCH_BYTES = 96 * 2**20


@dataclass
class FieldSet:
    """Retrieved fields u/u0 of an acquisition, ready for tomography.

    Attributes
    ----------
    fields : (A, Y', X') complex64
        u/u0 in the focal plane z = 0 (conventions: :mod:`holo.conventions`); the phase is
        consistent with :meth:`unwrapped_phase` (angle(u) = wrapped unwrapped phase).
    pixel_size_um : float
        Pitch of the field grid (after cropping to the NA band), µm.
    geometry : {"illumination-scan", "sample-rotation"}
    wavelength_um, medium_index, objective_na : float
    illumination_na : (A, 2) float64 or None
        (NA_x, NA_y) per frame (given or estimated).
    angles : (A,) float64 or None
        Rotation angles (radians) for sample rotation.
    rotation_axis : {"y", "x"}
    valid : (A,) bool
        False for frames rejected by quality control.
    qc : list of dict
        Per-frame QC report (:func:`.qc.frame_qc`) plus the fitted ``offset_rad``,
        ``slope_rad_per_px`` and ``amplitude_scale``.
    source : str or None
        File the acquisition came from.
    metadata : dict
        How the fields were retrieved (carrier, sideband filter, sideband choice, refocus
        distance, …), for provenance.
    phase : (A, Y', X') float32 or None
        Unwrapped phase (cached by the retrieval); use :meth:`unwrapped_phase`.
    """

    fields: np.ndarray
    pixel_size_um: float
    geometry: str
    wavelength_um: float
    medium_index: float
    objective_na: float
    illumination_na: np.ndarray | None = None
    angles: np.ndarray | None = None
    rotation_axis: str = "y"
    valid: np.ndarray | None = None
    qc: list = field(default_factory=list)
    source: str | None = None
    metadata: dict = field(default_factory=dict)
    phase: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        f = np.asarray(self.fields)
        if f.ndim != 3 or not np.iscomplexobj(f):
            raise ValidationError(f"must be complex (A, Y, X), got {f.dtype} {f.shape}", path=self.source, item="fields")
        self.fields = f.astype(np.complex64, copy=False)
        a = f.shape[0]
        self.valid = np.ones(a, bool) if self.valid is None else np.asarray(self.valid, bool).reshape(-1)
        if self.valid.shape != (a,):
            raise ValidationError(f"shape {self.valid.shape} != ({a},)", path=self.source, item="valid")
        if self.illumination_na is not None:
            self.illumination_na = np.asarray(self.illumination_na, np.float64).reshape(a, 2)
        if self.angles is not None:
            self.angles = np.asarray(self.angles, np.float64).reshape(a)
        if self.phase is not None and tuple(np.shape(self.phase)) != f.shape:
            raise ValidationError(f"shape {np.shape(self.phase)} != fields {f.shape}", path=self.source, item="phase")

    @property
    def n_frames(self) -> int:
        return int(self.fields.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.fields.shape[1]), int(self.fields.shape[2])

    @property
    def excluded(self) -> list[tuple[int, str]]:
        """(frame index, reason) of every frame rejected by quality control."""
        listed = excluded_list(self.qc) if self.qc else []
        known = {i for i, _ in listed}
        listed += [(int(i), "marked invalid") for i in np.flatnonzero(~self.valid) if int(i) not in known]
        return sorted(listed)

    def unwrapped_phase(self) -> np.ndarray:
        """Unwrapped phase φ (A, Y', X') float32 with angle(fields) = W(φ).

        The cached phase of the retrieval (background ≈ 0 after the offset fit) when present;
        otherwise the fields are unwrapped now and each frame is shifted by the multiple of
        2π that puts the median of its border pixels in (−π, π].
        """
        if self.phase is None:
            self.phase = unwrap_about_border(self.fields)
        return self.phase

    def replace(self, **changes) -> "FieldSet":
        return dataclasses.replace(self, **changes)


# -- helpers ------------------------------------------------------------------------------


def _batch_size(frame_shape: tuple[int, int], per_frame_copies: int = 4) -> int:
    ny, nx = frame_shape
    return int(max(1, min(64, _BATCH_BYTES // max(1, ny * nx * 4 * per_frame_copies))))


def _read(arr, i0: int, i1: int) -> np.ndarray:
    return np.asarray(arr[i0:i1], dtype=np.float32)


def _ramp(shape_yx, pixel_size_um, nu_yx) -> np.ndarray:
    """exp(−i2π ν·x) on the field grid, (B, Y, X) complex64 for ν (B, 2) in (fy, fx)."""
    ny, nx = shape_yx
    y = (np.arange(ny) * pixel_size_um)[None, :, None]
    x = (np.arange(nx) * pixel_size_um)[None, None, :]
    nu = np.asarray(nu_yx, np.float64).reshape(-1, 2)
    return np.exp(-2j * np.pi * (nu[:, 0, None, None] * y + nu[:, 1, None, None] * x)).astype(np.complex64)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den with den = 0 giving NaN (caught by QC) instead of a warning."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (num / den).astype(np.complex64, copy=False)


def _decisive_sign(r_pos: float, r_neg: float) -> int | None:
    """+1 (the + half-plane holds u) or −1 (it holds u*) when that hypothesis leaves less than
    half the spread of the other, else None (undecided)."""
    if min(r_pos, r_neg) < 0.5 * max(r_pos, r_neg):
        return 1 if r_pos <= r_neg else -1
    return None


def _choose_carrier(peaks: np.ndarray, nu_given: np.ndarray | None, dfreq: float, geometry: str):
    """Carrier (+ half-plane), sideband sign s (or None) and how they were found.

    ``peaks`` (A, 2) are the background peaks (fy, fx) in the + half-plane; ``nu_given``
    (A, 2) the illumination frequencies (fy, fx) = (NA_y, NA_x)/λ when known.
    """
    ok = np.all(np.isfinite(peaks), axis=1)
    if not ok.any():
        raise ValueError("background: no sideband peak found in any frame")
    p = peaks[ok]
    if nu_given is not None:
        nu = nu_given[ok]
        spread = np.max(np.hypot(nu[:, 0], nu[:, 1])) if len(nu) else 0.0
        if spread > 2.0 * dfreq:
            c_pos = np.median(p - nu, axis=0)
            c_neg = np.median(p + nu, axis=0)
            r_pos = np.median(np.hypot(*(p - nu - c_pos).T))
            r_neg = np.median(np.hypot(*(p + nu - c_neg).T))
            sign = _decisive_sign(r_pos, r_neg)
            if sign is not None:
                return (c_pos if sign > 0 else c_neg), sign, "illumination_na"
        # Undecided: the frame closest to normal incidence peaks (nearly) at the carrier.
        j = int(np.argmin(np.hypot(nu[:, 0], nu[:, 1])))
        return p[j], None, None
    if geometry == "sample-rotation":
        return np.median(p, axis=0), None, None
    centroid = p.mean(axis=0)
    j = int(np.argmin(np.hypot(*(p - centroid).T)))
    return p[j], None, None


def _object_phase_sign(phase: np.ndarray, masks: np.ndarray) -> int:
    """Sign of the median over finite frames of the phase summed over each frame's object
    pixels (+1 when ≥ 0); the median keeps a corrupted frame from deciding."""
    use = np.isfinite(phase).all(axis=(1, 2))
    if not use.any():
        return 1
    sums = np.sum(np.where(masks[use], phase[use], 0.0), axis=(1, 2), dtype=np.float64)
    return 1 if np.median(sums) >= 0 else -1


def _correct(fields, *, degree: int, wavelength_um: float, objective_na: float, pixel_size_um: float):
    phi = unwrap_phase(fields)
    dilate = int(np.ceil(wavelength_um / objective_na / pixel_size_um))
    return remove_background(fields, phi, degree=degree, dilate_px=max(2, dilate))


# -- the retrieval ------------------------------------------------------------------------------


def retrieve_fields(
    acq: Acquisition,
    *,
    sideband: str = "circle",
    refocus_um: float | None = None,
    autofocus: bool = False,
    qc: bool = True,
    progress: Callable | None = None,
    carrier_cycles_per_um: tuple[float, float] | None = None,
    background_degree: int = 1,
    sideband_edge: float = 0.1,
    autofocus_range_um: tuple[float, float] = (-10.0, 10.0),
) -> FieldSet:
    """Complex fields u/u0 of every frame of an acquisition (module docstring for the steps).

    Parameters
    ----------
    acq : Acquisition
        With ``holograms`` + ``background`` (NumPy arrays or lazy h5py datasets) or with
        ``fields`` already.
    sideband : {"circle", "tukey", "gaussian"}
        Sideband filter shape (radius NA/λ; :mod:`.sideband`).
    refocus_um : float, optional
        Propagate the fields by this distance (µm, along +z) before QC.
    autofocus : bool
        Find the refocus distance (:func:`.refocus.autofocus` within ``autofocus_range_um``,
        common to all frames); added to ``refocus_um`` when both are given.
    qc : bool
        Run per-frame quality control; when False every frame is valid.
    progress : callable(done, total, note=""), optional
        Called after each batch of frames.
    carrier_cycles_per_um : (fy, fx), optional
        Carrier of the sideband holding u (cycles/µm); skips detection and the sideband
        choice.
    background_degree : {1, 2}
        Degree of the phase polynomial removed on the background pixels.
    sideband_edge : float
        Relative soft-edge width for the "tukey" and "gaussian" filters.
    autofocus_range_um : (z_min, z_max)
        Distances searched by the autofocus.

    Returns
    -------
    FieldSet

    Raises
    ------
    ValidationError
        Bad parameters or data that give no field (no carrier found).
    """
    _check_arguments(acq, sideband, background_degree)
    report = _reporter(progress)
    meta: dict[str, Any] = {"sideband": sideband}
    illum = None if acq.illumination_na is None else np.asarray(acq.illumination_na, np.float64)
    if acq.fields is not None:
        fields, pixel = _read_fields(acq, report), acq.pixel_size_um
        meta["input"] = "fields"
        phase = fit_info = None
    else:
        fields, phase, fit_info, illum, pixel = _fields_from_holograms(
            acq, illum, meta, report, sideband=sideband, sideband_edge=sideband_edge,
            carrier_cycles_per_um=carrier_cycles_per_um, background_degree=background_degree,
        )
    # 5. refocus
    if refocus_um is not None or autofocus:
        fields, phase, fit_info, dist = _refocus_stage(
            fields, pixel, acq, illum, refocus_um, autofocus, autofocus_range_um, background_degree
        )
        meta["refocus_um"] = dist
    if phase is None:
        phase = unwrap_about_border(fields)
    return _finish(acq, fields, phase, pixel, illum, fit_info, qc, meta)


def _check_arguments(acq, sideband: str, background_degree: int) -> None:
    if not isinstance(acq, Acquisition):
        raise ValidationError(f"must be an Acquisition, got {type(acq).__name__}", item="acq")
    if sideband not in SIDEBAND_SHAPES:
        raise ValidationError(f"must be one of {SIDEBAND_SHAPES}, got {sideband!r}", path=acq.source, item="sideband")
    if background_degree not in (1, 2):
        raise ValidationError(f"must be 1 or 2, got {background_degree}", path=acq.source, item="background_degree")


def _reporter(progress: Callable | None) -> Callable:
    """``report(done, total, note="")`` calling ``progress`` when there is one."""

    def report(done, total, note=""):
        if progress is not None:
            progress(done, total, note=note)

    return report


def _read_fields(acq: Acquisition, report) -> np.ndarray:
    """The acquisition's fields u/u0 as complex64 (A, Y, X), read in batches."""
    a = acq.n_frames
    fields = np.empty((a,) + acq.frame_shape, np.complex64)
    step = _batch_size(acq.frame_shape, 2)
    for i0 in range(0, a, step):
        i1 = min(i0 + step, a)
        fields[i0:i1] = np.asarray(acq.fields[i0:i1], dtype=np.complex64)
        report(i1, a, "reading fields")
    return fields


def _fields_from_holograms(acq, illum, meta, report, *, sideband, sideband_edge, carrier_cycles_per_um, background_degree):
    """Steps 1–4 of the module docstring: (fields, phase, fit_info, illumination_na, pixel).

    ``meta`` is updated with how the fields were retrieved; ``illumination_na`` is ``illum``
    or, for an illumination scan without it, the estimate.
    """
    lam, na_obj = acq.wavelength_um, acq.objective_na
    a = acq.n_frames
    ny, nx = acq.frame_shape
    scan = acq.geometry == "illumination-scan"
    dfreq = 1.0 / (max(ny, nx) * acq.pixel_size_um)
    nu_given = None if illum is None else illum[:, ::-1] / lam  # (fy, fx)
    step = _batch_size((ny, nx), 4)

    # 1. carrier and (when decidable) the sideband
    c_plus, sign, sign_from, bg_peaks = _locate_carrier(acq, illum, nu_given, carrier_cycles_per_um, dfreq, step, report)
    (my, mx), pixel = output_grid((ny, nx), acq.pixel_size_um, lam, na_obj, shape=sideband, edge=sideband_edge)

    # 2. demodulate, crop, divide by the background field (in the + half-plane frame)
    dem = dict(pixel_size_um=acq.pixel_size_um, wavelength_um=lam, objective_na=na_obj, shape=sideband, edge=sideband_edge)
    fields = _demodulate_frames(acq, c_plus, (my, mx), dem, step, report)
    nu_plus, sign, sign_from = _illumination_plus(fields, pixel, acq, illum, nu_given, bg_peaks, c_plus, sign, sign_from, dfreq)

    # 3. unwrap, tilt/offset, amplitude
    report(a, a, "unwrapping")
    fields, phase, fit_info = _correct(fields, degree=background_degree, wavelength_um=lam, objective_na=na_obj, pixel_size_um=pixel)

    # 4. which sideband holds u
    sign, sign_from = _choose_sideband(fields, phase, fit_info, sign, sign_from)
    carrier = sign * c_plus
    if scan and illum is None:
        if nu_plus is None:
            raise ValidationError("cannot be estimated from this background", path=acq.source, item="illumination_na")
        illum = lam * (sign * nu_plus)[:, ::-1]
        meta["illumination_na_estimated"] = True
    meta.update(
        input="holograms",
        carrier_cycles_per_um=(float(carrier[0]), float(carrier[1])),
        sideband_sign_from=sign_from,
        sideband_edge=None if sideband == "circle" else float(sideband_edge),
        camera_pixel_size_um=float(acq.pixel_size_um),
        background_degree=background_degree,
    )
    return fields, phase, fit_info, illum, pixel


def _locate_carrier(acq, illum, nu_given, carrier_cycles_per_um, dfreq: float, step: int, report):
    """Step 1: (c⁺, s, origin of s, background peaks).

    c⁺ (fy, fx) is the carrier in the + half-plane (:func:`.carrier.in_positive_half_plane`),
    s the sideband sign (+1: c⁺ carries u, −1: its twin does; None when undecided) and the
    background peaks (A, 2) those of one background per frame (else of the single background,
    or None when not needed).
    """
    src, bg_ds = acq.source, acq.background
    radius = acq.objective_na / acq.wavelength_um
    per_frame_bg = len(bg_ds.shape) == 3
    if carrier_cycles_per_um is not None:
        c = np.asarray(carrier_cycles_per_um, np.float64).reshape(2)
        if not np.all(np.isfinite(c)):
            raise ValidationError(f"must be finite, got {carrier_cycles_per_um!r}", path=src, item="carrier_cycles_per_um")
        sign = 1 if in_positive_half_plane(c[0], c[1]) else -1
        bg_peaks = None
        if acq.geometry == "illumination-scan" and illum is None and per_frame_bg:
            bg_peaks = spectral_peaks(bg_ds, acq.pixel_size_um, min_radius_cycles_per_um=radius, batch=step)
        return np.asarray(sign * c, np.float64), sign, "given", bg_peaks
    report(0, acq.n_frames, "locating the carrier")
    if per_frame_bg:
        bg_peaks = spectral_peaks(bg_ds, acq.pixel_size_um, min_radius_cycles_per_um=radius, batch=step)
        c_plus, sign, sign_from = _choose_carrier(bg_peaks, nu_given, dfreq, acq.geometry)
        return np.asarray(c_plus, np.float64), sign, sign_from, bg_peaks
    bg_peaks = spectral_peaks(bg_ds, acq.pixel_size_um, min_radius_cycles_per_um=radius)
    if not np.all(np.isfinite(bg_peaks)):
        raise ValidationError("no off-axis sideband peak found", path=src, item="background")
    return np.asarray(bg_peaks[0], np.float64), None, None, bg_peaks


def _demodulate_frames(acq, c_plus, shape_yx, dem: dict, step: int, report) -> np.ndarray:
    """Step 2: u/u0 (A, Y', X') complex64 of the sideband at ``c_plus``, streamed in batches."""
    holo_ds, bg_ds = acq.holograms, acq.background
    a = acq.n_frames
    per_frame_bg = len(bg_ds.shape) == 3
    fields = np.empty((a,) + tuple(shape_yx), np.complex64)
    if not per_frame_bg:
        bg_field, _ = demodulate(np.asarray(bg_ds, np.float32), tuple(c_plus), **dem)
    for i0 in range(0, a, step):
        i1 = min(i0 + step, a)
        h, _ = demodulate(_read(holo_ds, i0, i1), tuple(c_plus), **dem)
        b = demodulate(_read(bg_ds, i0, i1), tuple(c_plus), **dem)[0] if per_frame_bg else bg_field[None]
        fields[i0:i1] = _divide(h, b)
        report(i1, a, "demodulating")
    return fields


def _illumination_plus(fields, pixel, acq, illum, nu_given, bg_peaks, c_plus, sign, sign_from, dfreq):
    """Illumination frequencies ν⁺ = s·ν (A, 2) in the + frame (or None), and (s, its origin).

    With one normal-incidence background for all frames the illumination ramp remains in
    ``fields``: it is divided out here, in place, and may decide the sideband.
    """
    if acq.geometry != "illumination-scan":
        return None, sign, sign_from
    if len(acq.background.shape) == 3:
        return (bg_peaks - c_plus[None, :] if illum is None else None), sign, sign_from
    lam = acq.wavelength_um
    measured = spectral_peaks(fields, pixel, max_radius_cycles_per_um=acq.objective_na / lam)
    if nu_given is None:
        nu_plus = measured
    else:
        if sign is None and np.max(np.hypot(*nu_given.T)) > 2.0 * dfreq:
            okm = np.all(np.isfinite(measured), axis=1)
            r_pos = np.median(np.hypot(*(measured[okm] - nu_given[okm]).T))
            r_neg = np.median(np.hypot(*(measured[okm] + nu_given[okm]).T))
            decided = _decisive_sign(r_pos, r_neg)
            if decided is not None:
                sign, sign_from = decided, "illumination_na"
        nu_plus = measured if sign is None else sign * nu_given
    fields *= _ramp(fields.shape[1:], pixel, np.nan_to_num(nu_plus))
    return nu_plus, sign, sign_from


def _choose_sideband(fields, phase, fit_info, sign, sign_from):
    """Step 4: the sideband sign (decided by the object phase when still None) and its origin;
    for s = −1 the fields, phase and fitted background are conjugated in place."""
    if sign is None:
        sign = _object_phase_sign(phase, fit_info["mask"])
        sign_from = "positive object phase"
    if sign < 0:
        np.conjugate(fields, out=fields)
        np.negative(phase, out=phase)
        fit_info["offset_rad"] = -fit_info["offset_rad"]
        fit_info["slope_rad_per_px"] = -fit_info["slope_rad_per_px"]
    return sign, sign_from


def _refocus_stage(fields, pixel, acq, illum, refocus_um, autofocus, z_range, degree):
    lam, na_obj, n_m = acq.wavelength_um, acq.objective_na, acq.medium_index
    dist = 0.0 if refocus_um is None else float(refocus_um)
    if not np.isfinite(dist):
        raise ValidationError(f"must be finite, got {refocus_um}", path=acq.source, item="refocus_um")
    if autofocus:
        ok = np.isfinite(fields).all(axis=(1, 2))
        idx = np.flatnonzero(ok)
        if illum is not None and idx.size:
            idx = idx[np.argsort(np.hypot(illum[idx, 0], illum[idx, 1]))]
        idx = idx[:5]
        if idx.size:
            start = fields[idx] if dist == 0.0 else _refocus(
                fields[idx], dist, pixel, lam, n_m, illumination_na=None if illum is None else illum[idx], objective_na=na_obj
            )
            dist += _autofocus(
                start, pixel, lam, n_m, illumination_na=None if illum is None else illum[idx],
                objective_na=na_obj, z_range_um=z_range,
            )
    if dist != 0.0:
        fields = _refocus(fields, dist, pixel, lam, n_m, illumination_na=illum, objective_na=na_obj)
    fields, phase, fit_info = _correct(fields, degree=degree, wavelength_um=lam, objective_na=na_obj, pixel_size_um=pixel)
    return fields, phase, fit_info, dist


def _finish(acq, fields, phase, pixel, illum, fit_info, qc, meta) -> FieldSet:
    a = fields.shape[0]
    if qc:
        scan = acq.geometry == "illumination-scan" and illum is not None
        valid, reports = frame_qc(
            fields, phase, illumination_na=illum if scan else None, medium_index=acq.medium_index if scan else None
        )
    else:
        valid = np.ones(a, bool)
        reports = [{"frame": i, "valid": True, "reasons": []} for i in range(a)]
    if fit_info is not None:
        for i, r in enumerate(reports):
            r["offset_rad"] = float(fit_info["offset_rad"][i])
            r["slope_rad_per_px"] = [float(v) for v in fit_info["slope_rad_per_px"][i]]
            r["amplitude_scale"] = float(fit_info["amplitude_scale"][i])
    meta["output_pixel_size_um"] = float(pixel)
    meta["excluded_frames"] = excluded_list(reports)
    meta["depth_of_field_um"] = depth_of_field_um(acq.wavelength_um, acq.medium_index, acq.objective_na)
    return FieldSet(
        fields=fields,
        pixel_size_um=float(pixel),
        geometry=acq.geometry,
        wavelength_um=acq.wavelength_um,
        medium_index=acq.medium_index,
        objective_na=acq.objective_na,
        illumination_na=illum,
        angles=acq.angles,
        rotation_axis=acq.rotation_axis,
        valid=valid,
        qc=reports,
        source=acq.source,
        metadata=meta,
        phase=phase,
    )
