"""MIB's circuit-track tasks, read from a local copy of MIB's own data files.

    data = edgeprune.tasks.mib.dataset("ioi", tokenizer, path="/data/mib", split="test")
    EDGEPRUNE_MIB_DATA=/data/mib edgeprune prune gpt2 mib-ioi --budgets mib --out runs/mib-ioi

MIB publishes its data as Hugging Face datasets (mib-bench/ioi, copycolors_mcqa, arithmetic_addition,
arithmetic_subtraction, arc_easy, arc_challenge). `path` (or the EDGEPRUNE_MIB_DATA variable, for
the registered names mib-ioi, mib-mcqa, ...) is a folder holding one folder per dataset, named as
on the hub, each as `huggingface-cli download mib-bench/<name> --repo-type dataset --local-dir
<path>/<name>` leaves it: a split's rows in `<split>.jsonl`, `.json` or `.parquet` files, or shards
`<split>-*.parquet` (also under `data/`), and for MCQA its `4_answer_choices/` configuration.
Parquet needs pyarrow.

Each row becomes a clean/corrupted pair as MIB's circuit track pairs them (MIB_circuit_track/
dataset.py): the clean prompt is `prompt`; the corrupted prompt and the counterfactual answer come
from the counterfactual MIB uses for the task; each answer is the first token of its text
tokenised alone; the loss and metrics read the last prompt token. MIB's filters drop the rows it
drops (answers of unequal token lengths, arithmetic rows of the other operator or with multi-token
answers), and, as every edgeprune task, pairs whose prompts tokenise to different lengths. The
first n rows left are used, in the file's order, as MIB's `head(n)` does; the seed is not used.
Prompts are encoded as every edgeprune task encodes them (the tokenizer's own BOS, none for GPT-2;
MIB's TransformerLens runs put a BOS token before every prompt).
"""
from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass

from ..errors import MissingFile, UserError
from .base import AnswerTask, Example, TaskDataset
from .custom import read_jsonl
from .encoding import Encoder
from .splits import MissingSplit, check_split

ENVIRONMENT = "EDGEPRUNE_MIB_DATA"


@dataclass(frozen=True)
class MIBTask:
    folder: str                  # the dataset's name under mib-bench on the hub
    counterfactual: str          # the column MIB's circuit track pairs each prompt with
    kind: str                    # "ioi", "choices" (MCQA, ARC) or "arithmetic"
    config: str | None = None    # a configuration's subfolder (MCQA: 4 answer choices)
    operator: str | None = None  # arithmetic: the rows MIB keeps


TASKS = {
    "ioi": MIBTask("ioi", "s2_io_flip_counterfactual", "ioi"),
    "mcqa": MIBTask("copycolors_mcqa", "symbol_counterfactual", "choices", config="4_answer_choices"),
    "arithmetic-addition": MIBTask("arithmetic_addition", "random_counterfactual", "arithmetic", operator="+"),
    "arithmetic-subtraction": MIBTask("arithmetic_subtraction", "random_counterfactual", "arithmetic", operator="-"),
    "arc-easy": MIBTask("arc_easy", "symbol_counterfactual", "choices"),
    "arc-challenge": MIBTask("arc_challenge", "symbol_counterfactual", "choices"),
}


class MIBAnswerTask(AnswerTask):
    """An MIB task: KL, logit difference (answer vs counterfactual answer), accuracy, exact match."""
    position_reduction = "mean"
    max_length = None   # MIB keeps every prompt (ARC's are long)

    def __init__(self, name: str):
        self.name = name


def dataset(task: str, tokenizer, split: str = "train", n: int | None = None, seed: int = 0,
            path: str | os.PathLike | None = None) -> TaskDataset:
    """The `split` of MIB's `task` (one of TASKS) from the files under `path` (default: $EDGEPRUNE_MIB_DATA)."""
    if task not in TASKS:
        raise UserError(f"unknown MIB task {task!r}; choose one of {', '.join(TASKS)}")
    check_split(split)
    if n is not None and n < 1:
        raise UserError(f"n must be a positive number of examples, got {n}")
    spec = TASKS[task]
    rows = read_rows(spec, _root(path), split)
    encoder = Encoder(tokenizer)
    examples, reasons = [], Counter()
    for row in rows:
        made = _example(spec, row, encoder)
        if isinstance(made, str):
            reasons[made] += 1
            continue
        examples.append(made)
        if n is not None and len(examples) == n:
            break
    if not examples or (n is not None and len(examples) < n):
        why = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common()) or "no rows"
        raise UserError(f"MIB {task} ({split}): {len(examples)} usable examples, "
                        f"{'fewer than n=' + str(n) if n else 'none'} ({why})")
    return TaskDataset(MIBAnswerTask(f"mib-{task}"), examples, split=split, pad_id=encoder.pad_id,
                       dropped=sum(reasons.values()), drop_reasons=dict(reasons))


def _root(path) -> str:
    root = path if path is not None else os.environ.get(ENVIRONMENT)
    if not root:
        raise UserError(f"MIB's tasks read MIB's data files: set {ENVIRONMENT} to the folder holding them (one "
                        "folder per dataset, e.g. <folder>/ioi from `huggingface-cli download mib-bench/ioi "
                        "--repo-type dataset --local-dir <folder>/ioi`), or pass path= to edgeprune.tasks.mib.dataset")
    return os.fspath(root)


def files_for(spec: MIBTask, root: str, split: str) -> list[str]:
    """The files holding a split's rows under root/<folder>[/<config>], in order (shards sorted)."""
    folder = os.path.join(root, spec.folder)
    if spec.config and os.path.isdir(os.path.join(folder, spec.config)):
        folder = os.path.join(folder, spec.config)
    found = []
    for ext in ("jsonl", "json", "parquet"):
        for pattern in (f"{split}.{ext}", f"{split}-*.{ext}", f"data/{split}.{ext}", f"data/{split}-*.{ext}",
                        f"{split}/*.{ext}"):
            found += sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))
    return list(dict.fromkeys(found))


def read_rows(spec: MIBTask, root: str, split: str) -> list[dict]:
    if not os.path.isdir(os.path.join(root, spec.folder)):
        raise MissingFile(f"no MIB dataset folder {os.path.join(root, spec.folder)!r}: MIB's {spec.folder} goes "
                          f"there (`huggingface-cli download mib-bench/{spec.folder} --repo-type dataset "
                          f"--local-dir {os.path.join(root, spec.folder)}`)")
    files = files_for(spec, root, split)
    if not files:
        where = os.path.join(root, spec.folder, *([spec.config] if spec.config else []))
        raise MissingSplit(f"no {split} rows for MIB's {spec.folder} under {where!r}: expected {split}.jsonl, "
                           f"{split}.json or {split}.parquet there (or shards {split}-*.parquet, also under data/)")
    rows = []
    for file in files:
        rows += _parquet(file) if file.endswith(".parquet") else read_jsonl(file)[0]
    return rows


def _parquet(file: str) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{file} is a parquet file, which needs pyarrow: pip install pyarrow (or convert the "
                        "split to JSON lines)") from None
    return pq.read_table(file).to_pylist()


def _example(spec: MIBTask, row: dict, encoder: Encoder) -> Example | str:
    """The row's Example, or why MIB's filters (or unequal prompt lengths) drop it."""
    try:
        clean, corrupted, answer, counterfactual, lengths = _texts(spec, row)
    except (KeyError, TypeError, IndexError) as error:
        raise UserError(f"a row of MIB's {spec.folder} lacks what MIB reads ({type(error).__name__}: {error}); "
                        f"its keys: {sorted(row) if isinstance(row, dict) else type(row).__name__}") from None
    if clean is None:
        return lengths
    sizes = [len(encoder.raw(text)) for text in lengths]
    if spec.kind == "arithmetic" and sizes != [1, 1]:
        return "an answer that is not one token (MIB's filter)"
    if len(set(sizes)) > 1:
        return "answers of unequal token lengths (MIB's filter)"
    clean_ids, corrupted_ids = encoder.encode(clean), encoder.encode(corrupted)
    if len(clean_ids) != len(corrupted_ids):
        return "clean and corrupted prompts tokenise to different lengths"
    answer_id, counterfactual_id = encoder.first_token(answer), encoder.first_token(counterfactual)
    if answer_id is None or counterfactual_id is None:
        return "an answer tokenises to nothing"
    return Example(clean=clean_ids, corrupted=corrupted_ids, positions=[len(clean_ids) - 1], answer=answer_id,
                   distractor=counterfactual_id, label={"answer": answer, "counterfactual": counterfactual},
                   text=clean, corrupted_text=corrupted)


def _texts(spec: MIBTask, row: dict):
    """(clean prompt, corrupted prompt, answer text, counterfactual answer text, texts whose token
    lengths MIB requires equal, or one token each for arithmetic); clean None means MIB drops the
    row, the last item saying why."""
    cf = row[spec.counterfactual]
    if spec.kind == "ioi":
        meta = row["metadata"]
        io, s = " " + str(meta["indirect_object"]), " " + str(meta["subject"])
        same = [io, s] + ([" " + str(meta["random_c"])] if meta.get("random_c") is not None else [])
        return row["prompt"], cf["prompt"], io, s, same
    if spec.kind == "choices":
        answer = str(row["choices"]["label"][int(row["answerKey"])])
        counterfactual = str(cf["choices"]["label"][int(cf["answerKey"])])
        return row["prompt"], cf["prompt"], answer, counterfactual, [answer, counterfactual]
    if row.get("operator") != spec.operator:
        return None, None, None, None, f"an arithmetic row whose operator is not {spec.operator!r} (MIB's filter)"
    if cf is None or cf.get("prompt") is None:
        return None, None, None, None, "no counterfactual prompt (MIB's filter)"
    return row["prompt"], cf["prompt"], str(row["label"]), str(cf["label"]), [str(row["label"]), str(cf["label"])]


def _factory(task: str):
    def make(tokenizer, split: str = "train", n: int | None = None, seed: int = 0, path=None) -> TaskDataset:
        return dataset(task, tokenizer, split, n, seed, path)
    make.__name__ = make.__qualname__ = task.replace("-", "_")
    make.__doc__ = f"MIB's {task} from the files under path (default: ${ENVIRONMENT})."
    return make


ioi = _factory("ioi")
mcqa = _factory("mcqa")
arithmetic_addition = _factory("arithmetic-addition")
arithmetic_subtraction = _factory("arithmetic-subtraction")
arc_easy = _factory("arc-easy")
arc_challenge = _factory("arc-challenge")

__all__ = ["ENVIRONMENT", "MIBTask", "TASKS", "dataset", "files_for", "read_rows"]
