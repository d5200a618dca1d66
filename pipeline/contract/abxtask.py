"""The official ABX task file: an HDF5 file written by ABXpy (``ABXpy/task.py``), read here with
h5py alone (ABXpy, pandas and PyTables are not needed).

The real dataset ships its English task as ``ROOT/2019/ABXTasks/byCtxt_acSpkr.abx`` (ON phone,
BY context, ACROSS speaker); the surprise language's, ``surprise_byCtxt_acSpkr.abx``, was kept by
the organisers (the official evaluator adds it only on their server). What ABXpy writes, and
what its distance, score and analyze steps read back:

* ``bys``: the BY blocks that hold at least one triplet (strings, ``str(by value)``);
* ``feat_dbs/<by>/table``: a pandas ``HDFStore`` table (PyTables ``frame_table``) of the block's
  items, columns ``file``, ``onset``, ``offset``; a triplet names an item by its row;
* ``triplets/data`` (triplets x 3: A, B, X rows) and ``triplets/by_index`` (one ``[start, end)``
  row range per block, in the order of ``bys``);
* ``regressors/<by>/indexed_data`` (one row per triplet) with the column names in
  ``indexed_datasets`` and each column's labels in ``indexes/<name>``: the default regressors
  ``<on>_1`` (A's and X's label), ``<on>_2`` (B's), ``<across>_1`` (A's and B's) and ``<across>_2``
  (X's). ``analyze`` groups triplets into cells by these columns and the block;
* ``unique_pairs`` (the (A or B, X) pairs to compute) is derived from the triplets; not read.

Each item's phone and speaker are recovered from the regressors of the triplets it takes part
in (a contradiction is an error). Item times are in the units of the features' time stamps:
the official 2019 loader gives frame i of a file of L lines the time i / L, so an item spanning
[0, 1] is the whole file.
"""
from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError

TASK_FOLDER = "ABXTasks"
# ROOT/2019/ABXTasks/<name>, per language (the official evaluator's names)
TASK_FILES = {"english": "byCtxt_acSpkr.abx", "surprise": "surprise_byCtxt_acSpkr.abx"}


@dataclass(frozen=True)
class AbxTaskFile:
    """The items and triplets of an ABXpy task, as flat arrays (items block after block)."""
    path: Path
    on: str                   # the ON column (phone)
    across: str               # the ACROSS column (speaker)
    bys: tuple[str, ...]      # one label per block
    files: np.ndarray         # per item: file stem (str)
    onsets: np.ndarray        # per item: float, in the features' time units
    offsets: np.ndarray
    phones: np.ndarray        # per item: ON label (str; "" for an item in no triplet)
    speakers: np.ndarray      # per item: ACROSS label
    block_starts: np.ndarray  # items of block k: block_starts[k]:block_starts[k + 1]
    triplets: np.ndarray      # (n, 3) int64: A, B, X as item indices (into the flat arrays)
    triplet_starts: np.ndarray  # triplets of block k: triplet_starts[k]:triplet_starts[k + 1]

    def __len__(self) -> int:
        return len(self.files)

    @property
    def n_triplets(self) -> int:
        return len(self.triplets)


def task_file_path(root: str | os.PathLike, language: str) -> Path:
    """Where the official evaluator looks for a language's task: ROOT/2019/ABXTasks/<name>."""
    return Path(root) / "2019" / TASK_FOLDER / TASK_FILES[language]


def is_task_file(path: str | os.PathLike) -> bool:
    """An HDF5 file (its signature), as opposed to a text ``.item`` file."""
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def read_task_file(path: str | os.PathLike) -> AbxTaskFile:
    """Read an ABXpy task file; one UserError naming the file for anything unexpected."""
    import h5py   # only the evaluator needs it (imported here: reading item files does not)

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ABX task file does not exist")
    if not is_task_file(path):
        raise UserError(f"{path}: not an ABXpy task file (an HDF5 file); a text item file must be named *.item")
    try:
        with h5py.File(path, "r") as handle:
            return _read(path, handle)
    except (KeyError, ValueError, IndexError, TypeError, OSError) as exc:
        raise UserError(f"{path}: unreadable ABXpy task file ({type(exc).__name__}: {exc})") from None


def _read(path: Path, handle) -> AbxTaskFile:
    for name in ("bys", "feat_dbs", "triplets/data", "triplets/by_index", "regressors"):
        if name not in handle:
            raise UserError(f"{path}: not an ABXpy task file (no '{name}'; written by ABXpy >= 0.2 expected)")
    bys = [_text(b) for b in handle["bys"][...]]
    by_index = np.asarray(handle["triplets/by_index"][...], dtype=np.int64).reshape(-1, 2)
    if len(by_index) != len(bys):
        raise UserError(f"{path}: {len(bys)} blocks in 'bys' but {len(by_index)} rows in 'triplets/by_index'")
    data = handle["triplets/data"]
    columns: dict[str, list] = {k: [] for k in ("files", "onsets", "offsets", "phones", "speakers", "triplets")}
    names: tuple[str, str] | None = None
    block_starts, triplet_starts, n_items = [0], [0], 0
    for k, by in enumerate(bys):
        files, onsets, offsets = _feat_db(path, handle, by)
        start, end = int(by_index[k, 0]), int(by_index[k, 1])
        triplets = np.asarray(data[start:end], dtype=np.int64).reshape(-1, 3)
        if triplets.size and (triplets.min() < 0 or triplets.max() >= len(files)):
            raise UserError(f"{path}: block {by!r}: a triplet names item {int(triplets.max())} of {len(files)}")
        regressors = _regressors(path, handle, by, len(triplets))
        names = names or _on_across(path, regressors)
        phones, speakers = _item_labels(path, by, triplets, regressors, names, len(files))
        for key, value in (("files", files), ("onsets", onsets), ("offsets", offsets), ("phones", phones),
                           ("speakers", speakers), ("triplets", triplets + n_items)):
            columns[key].append(value)
        n_items += len(files)
        block_starts.append(n_items)
        triplet_starts.append(triplet_starts[-1] + len(triplets))
    if not bys or triplet_starts[-1] == 0:
        raise UserError(f"{path}: the ABX task has no triplet")
    cat = {k: np.concatenate(v) for k, v in columns.items()}
    return AbxTaskFile(path, names[0], names[1], tuple(bys), cat["files"], cat["onsets"].astype(np.float64),
                       cat["offsets"].astype(np.float64), cat["phones"], cat["speakers"],
                       np.asarray(block_starts, dtype=np.int64), cat["triplets"].reshape(-1, 3),
                       np.asarray(triplet_starts, dtype=np.int64))


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class _PlainUnpickler(pickle.Unpickler):
    """PyTables pickles the column names of a pandas table into HDF5 attributes; these hold only
    lists, tuples and strings. No class may be loaded: a crafted file cannot run code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an ABX task file")


def _unpickle_names(raw) -> list[str] | None:
    """A pickled list of column names, or None when the attribute is not one."""
    if raw is None:
        return None
    try:
        value = _PlainUnpickler(io.BytesIO(bytes(raw)), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bytes)) for v in value):
        return [_text(v) for v in value]
    return None


def _feat_db(path: Path, handle, by: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(file stems, onsets, offsets) of a block, in row order (the triplets' item numbers)."""
    key = f"feat_dbs/{by}/table"
    if key not in handle:
        raise UserError(f"{path}: no item table {key!r} for block {by!r}")
    table = handle[key]
    rows = table[...]
    found: dict[str, np.ndarray] = {}
    for field in rows.dtype.names:
        if not field.startswith("values_block_"):
            continue
        values = rows[field].reshape(len(rows), -1)
        names = _unpickle_names(table.attrs.get(f"{field}_kind"))
        if names is None or len(names) != values.shape[1]:
            # unnamed: pandas groups columns by type, the strings are the files, the numbers
            # the (onset, offset) pair, in the item file's order
            names = ["file"] if values.dtype.kind in "SUO" else ["onset", "offset"][:values.shape[1]]
        for j, name in enumerate(names):
            found[name] = values[:, j]
    missing = [c for c in ("file", "onset", "offset") if c not in found]
    if missing:
        raise UserError(f"{path}: item table {key!r} has no column {', '.join(missing)}")
    files = np.array([_text(v).strip() for v in found["file"]], dtype=object).astype(str)
    return files, found["onset"].astype(np.float64), found["offset"].astype(np.float64)


def _regressors(path: Path, handle, by: str, n_triplets: int) -> dict[str, np.ndarray]:
    """Regressor name -> per-triplet label (str), from ``regressors/<by>``."""
    group_key = f"regressors/{by}"
    if group_key not in handle or "indexed_data" not in handle[group_key]:
        raise UserError(f"{path}: no regressors for block {by!r} (the triplets' phone and speaker labels)")
    group = handle[group_key]
    names = [_text(n) for n in group["indexed_datasets"][...]]
    index_names = ([_text(n) for n in group["indexed_datasets_indexes"][...]]
                   if "indexed_datasets_indexes" in group else names)
    data = np.asarray(group["indexed_data"][...]).reshape(-1, len(names))
    if len(data) != n_triplets:
        raise UserError(f"{path}: block {by!r}: {len(data)} regressor rows for {n_triplets} triplets")
    out = {}
    for j, (name, index_name) in enumerate(zip(names, index_names)):
        source = name if name in group["indexes"] else index_name
        labels = np.array([_text(v) for v in group["indexes"][source][...]], dtype=object).astype(str)
        codes = data[:, j].astype(np.int64)
        if codes.size and codes.max() >= len(labels):
            raise UserError(f"{path}: block {by!r}: regressor {name} refers to label {int(codes.max())} "
                            f"of {len(labels)}")
        out[name] = labels[codes]
    return out


def _on_across(path: Path, regressors: dict[str, np.ndarray]) -> tuple[str, str]:
    """The ON and ACROSS column names, from the default regressors ``<on>_1, <on>_2,
    <across>_1, <across>_2`` (phone and speaker when present, else ABXpy's order: ON first)."""
    bases = [n[:-2] for n in regressors if n.endswith("_1") and f"{n[:-2]}_2" in regressors]
    if "phone" in bases and "speaker" in bases:
        return "phone", "speaker"
    if len(bases) < 2:
        raise UserError(f"{path}: expected the regressors <on>_1, <on>_2, <across>_1, <across>_2 of an "
                        f"ON/ACROSS task, found {', '.join(regressors) or 'none'}")
    return bases[0], bases[1]


def _item_labels(path: Path, by: str, triplets: np.ndarray, regressors: dict[str, np.ndarray],
                 names: tuple[str, str], n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per item ON and ACROSS labels: A and X carry ``<on>_1``, B ``<on>_2``; A and B carry
    ``<across>_1``, X ``<across>_2``."""
    on, across = names
    a, b, x = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    out = []
    for column, (first, second), (with_first, with_second) in (
            (on, (f"{on}_1", f"{on}_2"), ((a, x), (b,))),
            (across, (f"{across}_1", f"{across}_2"), ((a, b), (x,)))):
        if first not in regressors or second not in regressors:
            raise UserError(f"{path}: block {by!r}: no regressor {first} / {second}")
        items = np.concatenate([*with_first, *with_second])
        labels = np.concatenate([regressors[first]] * len(with_first) + [regressors[second]] * len(with_second))
        label_names, codes = np.unique(labels, return_inverse=True)
        keys = np.unique(items * len(label_names) + codes.reshape(-1))    # distinct (item, label)
        item_ids, label_codes = keys // len(label_names), keys % len(label_names)
        if np.any(np.diff(item_ids) == 0):
            clash = int(item_ids[np.flatnonzero(np.diff(item_ids) == 0)[0]])
            raise UserError(f"{path}: block {by!r}: item {clash} has two {column} labels in its triplets")
        values = np.full(n_items, "", dtype=object)
        values[item_ids] = label_names[label_codes]
        out.append(values.astype(str))
    return out[0], out[1]
